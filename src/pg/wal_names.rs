//! WAL positions and segment file names, formatted and parsed in this one place.
//!
//! A segment file name is 24 hex digits: the timeline, then the segment number split into a
//! "log" (the number of 4 GiB spans before it) and the segment within that span. How many
//! segments a span holds depends on the segment size, fixed at initdb (1 MiB to 1 GiB).

use std::fmt;
use std::str::FromStr;

/// A WAL position, as PostgreSQL prints it: `16/B374D848`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lsn(pub u64);

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

impl FromStr for Lsn {
    type Err = ();

    fn from_str(text: &str) -> Result<Lsn, ()> {
        let (hi, lo) = text.trim().split_once('/').ok_or(())?;
        let hi = u64::from_str_radix(hi, 16).map_err(|_| ())?;
        let lo = u64::from_str_radix(lo, 16).map_err(|_| ())?;
        if hi > u32::MAX as u64 || lo > u32::MAX as u64 {
            return Err(());
        }
        Ok(Lsn((hi << 32) | lo))
    }
}

/// Segments in one 4 GiB span of WAL for a segment size.
fn per_log(segment_size: u64) -> u64 {
    0x1_0000_0000 / segment_size.max(1)
}

/// The file name of segment number `segno` on timeline `tli`.
pub fn segment_name(tli: u32, segno: u64, segment_size: u64) -> String {
    let per_log = per_log(segment_size);
    format!("{tli:08X}{:08X}{:08X}", segno / per_log, segno % per_log)
}

/// A segment file name split into its timeline and segment number; `None` for anything that
/// is not 24 hex digits.
pub fn parse_segment_name(file: &str, segment_size: u64) -> Option<(u32, u64)> {
    if file.len() != 24 || !file.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let tli = u32::from_str_radix(&file[..8], 16).ok()?;
    let log = u64::from_str_radix(&file[8..16], 16).ok()?;
    let seg = u64::from_str_radix(&file[16..24], 16).ok()?;
    Some((tli, log * per_log(segment_size) + seg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsns_and_segment_names_round_trip() {
        let lsn: Lsn = "16/B374D848".parse().unwrap();
        assert_eq!(lsn.0, 0x16_B374_D848);
        assert_eq!(lsn.to_string(), "16/B374D848");
        assert!("16/1_0000_0000".parse::<Lsn>().is_err());
        assert!("nonsense".parse::<Lsn>().is_err());
        for size in [1u64 << 20, 16 << 20, 64 << 20, 1 << 30] {
            let segno = lsn.0 / size;
            let name = segment_name(3, segno, size);
            assert_eq!(name.len(), 24);
            assert_eq!(parse_segment_name(&name, size), Some((3, segno)));
        }
        assert_eq!(segment_name(1, 2, 16 << 20), "000000010000000000000002");
        assert_eq!(segment_name(1, 0x100, 16 << 20), "000000010000000100000000");
        assert_eq!(
            parse_segment_name("00000001000000000000000G", 16 << 20),
            None
        );
        assert_eq!(parse_segment_name("0000000100000000", 16 << 20), None);
    }
}
