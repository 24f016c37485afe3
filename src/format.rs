//! Human-readable sizes, ratios, durations and times, as `heroku pg:backups` prints them.

use jiff::Timestamp;

/// `980B`, `1.40KB`, `97.66KB`, `1.07MB`: binary units (1KB = 1024 bytes) with two decimals,
/// as `heroku pg:backups` prints sizes (its `bytes` formatting with `decimalPlaces: 2` and
/// fixed decimals). Sizes below 1KB are whole bytes.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KB", "MB", "GB", "TB", "PB"];
    if n < 1024 {
        return format!("{n}B");
    }
    let n = u128::from(n);
    let (mut unit, mut div) = (UNITS[0], 1024u128);
    for u in &UNITS[1..] {
        if n < div * 1024 {
            break;
        }
        div *= 1024;
        unit = u;
    }
    // Hundredths rounded half up in integers: exactly what JavaScript's `toFixed(2)` gives
    // for n / 1024^k (a value a double holds exactly), where a float `{:.2}` would round
    // 1.125 down to 1.12.
    let hundredths = (n * 200 + div) / (2 * div);
    format!("{}.{:02}{unit}", hundredths / 100, hundredths % 100)
}

/// `73% compression`: how much smaller the stored object is than `original`, the database's
/// size (`pg_database_size`), as Heroku's `backups:info` computes it: rounded half up, and
/// 0% when the object is not smaller, is empty or the original size is unknown (0).
pub fn ratio(original: u64, stored: u64) -> String {
    let saved = if original == 0 || stored == 0 || stored >= original {
        0.0
    } else {
        ((original - stored) as f64 / original as f64 * 100.0).round()
    };
    format!("{saved:.0}% compression")
}

/// `2026-11-24 02:00:13 +0000`.
pub fn time(t: Timestamp) -> String {
    t.strftime("%Y-%m-%d %H:%M:%S +0000").to_string()
}

/// `00:01:05`.
pub fn duration(secs: u64) -> String {
    format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_in_binary_units_with_two_decimals_as_heroku_prints_them() {
        assert_eq!(bytes(0), "0B");
        assert_eq!(bytes(980), "980B");
        assert_eq!(bytes(1023), "1023B");
        assert_eq!(bytes(1024), "1.00KB");
        assert_eq!(bytes(1_433), "1.40KB");
        assert_eq!(bytes(100_000), "97.66KB");
        // 1.125KB exactly: half up, as JavaScript's toFixed does.
        assert_eq!(bytes(1_152), "1.13KB");
        assert_eq!(bytes(1_048_575), "1024.00KB");
        assert_eq!(bytes(1_048_576), "1.00MB");
        assert_eq!(bytes(1_121_976), "1.07MB");
        assert_eq!(bytes(33_554_432), "32.00MB");
        assert_eq!(bytes(1_500_000_000), "1.40GB");
        assert_eq!(bytes(5 << 40), "5.00TB");
        assert_eq!(bytes(u64::MAX), "16384.00PB");
    }

    #[test]
    fn compression_against_the_original_size_as_heroku_computes_it() {
        assert_eq!(ratio(1000, 250), "75% compression");
        // Rounded half up (Math.round), not to even.
        assert_eq!(ratio(1000, 985), "2% compression");
        assert_eq!(ratio(1000, 995), "1% compression");
        assert_eq!(ratio(8_000_000, 1_433), "100% compression");
        assert_eq!(ratio(1000, 1000), "0% compression");
        assert_eq!(ratio(1000, 4000), "0% compression");
        assert_eq!(ratio(1000, 0), "0% compression");
        assert_eq!(ratio(0, 0), "0% compression");
        assert_eq!(ratio(0, 10), "0% compression");
    }

    #[test]
    fn times_and_durations() {
        assert_eq!(duration(3725), "01:02:05");
        let t: Timestamp = "2026-11-24T02:00:13Z".parse().unwrap();
        assert_eq!(time(t), "2026-11-24 02:00:13 +0000");
    }
}
