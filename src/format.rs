//! Human-readable sizes, ratios, durations and times, as `heroku pg:backups` prints them.

use jiff::Timestamp;

/// `12.3MB`, `1.50GB`, `512B` (decimal units, as Heroku prints backup sizes).
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["kB", "MB", "GB", "TB", "PB"];
    if n < 1000 {
        return format!("{n}B");
    }
    let mut v = n as f64;
    let mut unit = "B";
    for u in UNITS {
        if v < 1000.0 {
            break;
        }
        v /= 1000.0;
        unit = u;
    }
    if v < 10.0 {
        format!("{v:.2}{unit}")
    } else if v < 100.0 {
        format!("{v:.1}{unit}")
    } else {
        format!("{v:.0}{unit}")
    }
}

/// How much smaller the stored object is: `73% compression` (0% when it is not smaller).
pub fn ratio(original: u64, stored: u64) -> String {
    if original == 0 || stored >= original {
        return "0% compression".into();
    }
    let saved = 100.0 * (1.0 - stored as f64 / original as f64);
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
    fn formats_like_heroku() {
        assert_eq!(bytes(512), "512B");
        assert_eq!(bytes(1_234), "1.23kB");
        assert_eq!(bytes(12_345_678), "12.3MB");
        assert_eq!(bytes(1_500_000_000), "1.50GB");
        assert_eq!(ratio(1000, 250), "75% compression");
        assert_eq!(ratio(0, 0), "0% compression");
        assert_eq!(duration(3725), "01:02:05");
        let t: Timestamp = "2026-11-24T02:00:13Z".parse().unwrap();
        assert_eq!(time(t), "2026-11-24 02:00:13 +0000");
    }
}
