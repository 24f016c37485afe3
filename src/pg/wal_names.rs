//! WAL positions and WAL file names, parsed and formatted in this one place.
//!
//! A segment file name is 24 hex digits: the timeline, then the segment number split into a
//! "log" (the number of 4 GiB spans before it) and the segment within that span. How many
//! segments a span holds depends on the segment size, fixed at initdb (1 MiB to 1 GiB).
//! Beside segments, the archive holds partial segments (`….partial`), timeline histories
//! (`00000002.history`) and backup history files (`….00000028.backup`): [`WalFileName`] is
//! any of them, parsed once where a name comes in and trusted after.

use std::fmt;
use std::str::FromStr;

/// A WAL position, as PostgreSQL prints it: `16/B374D848`. Serialized as that text, so
/// records that held LSN strings read and write the same JSON.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lsn(pub u64);

/// Text that is not an LSN.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an LSN (such as 0/3000060)")]
pub struct BadLsn(pub String);

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

impl FromStr for Lsn {
    type Err = BadLsn;

    fn from_str(text: &str) -> Result<Lsn, BadLsn> {
        let bad = || BadLsn(text.to_string());
        let (hi, lo) = text.trim().split_once('/').ok_or_else(bad)?;
        let hi = u64::from_str_radix(hi, 16).map_err(|_| bad())?;
        let lo = u64::from_str_radix(lo, 16).map_err(|_| bad())?;
        if hi > u32::MAX as u64 || lo > u32::MAX as u64 {
            return Err(bad());
        }
        Ok(Lsn((hi << 32) | lo))
    }
}

impl serde::Serialize for Lsn {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Lsn {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Lsn, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl Lsn {
    /// The segment on timeline `tli` that holds this position.
    pub fn segment(self, tli: u32, segment_size: u64) -> SegmentName {
        SegmentName::new(tli, self.0 / segment_size.max(1), segment_size)
    }
}

/// Segments in one 4 GiB span of WAL for a segment size.
fn per_log(segment_size: u64) -> u64 {
    (0x1_0000_0000 / segment_size.max(1)).max(1)
}

/// A WAL segment: its timeline and its place in the WAL, as its 24-digit file name says.
/// Ordered as the names sort.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SegmentName {
    pub timeline: u32,
    log: u32,
    seg: u32,
}

impl SegmentName {
    /// Segment number `segno` (counted from 0) on timeline `tli`.
    pub fn new(tli: u32, segno: u64, segment_size: u64) -> SegmentName {
        let per_log = per_log(segment_size);
        SegmentName {
            timeline: tli,
            log: (segno / per_log) as u32,
            seg: (segno % per_log) as u32,
        }
    }

    /// Its segment number (counted from 0), for a segment size.
    pub fn number(self, segment_size: u64) -> u64 {
        self.log as u64 * per_log(segment_size) + self.seg as u64
    }

    /// The same place in the WAL on another timeline.
    pub fn on_timeline(self, tli: u32) -> SegmentName {
        SegmentName {
            timeline: tli,
            ..self
        }
    }

    /// The name without its timeline (the 16 digits that say where in the WAL it is).
    pub fn position(self) -> (u32, u32) {
        (self.log, self.seg)
    }
}

impl fmt::Display for SegmentName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The one place a segment name is written.
        write!(f, "{:08X}{:08X}{:08X}", self.timeline, self.log, self.seg)
    }
}

impl FromStr for SegmentName {
    type Err = NotAWalName;

    fn from_str(text: &str) -> Result<SegmentName, NotAWalName> {
        let hex8 = |s: &str| {
            (s.len() == 8 && s.bytes().all(|b| b.is_ascii_hexdigit()))
                .then(|| u32::from_str_radix(s, 16).ok())
                .flatten()
        };
        match (text.get(..8), text.get(8..16), text.get(16..)) {
            (Some(t), Some(l), Some(s)) => match (hex8(t), hex8(l), hex8(s)) {
                (Some(timeline), Some(log), Some(seg)) => Ok(SegmentName { timeline, log, seg }),
                _ => Err(NotAWalName(text.to_string())),
            },
            _ => Err(NotAWalName(text.to_string())),
        }
    }
}

/// A name PostgreSQL gives a file in its WAL archive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WalFileName {
    /// A whole segment: `000000010000000000000001`.
    Segment(SegmentName),
    /// A segment that was still filling (or ended a timeline): `….partial`.
    Partial(SegmentName),
    /// A timeline's history: `00000002.history`.
    History(u32),
    /// A backup history file: the segment the backup started in and the offset in it,
    /// `000000010000000000000002.00000028.backup`.
    Backup(SegmentName, u32),
}

/// Text that is not a WAL file name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{0}` is not a WAL file name (such as 000000010000000000000001, 00000002.history); pass %p to wal-push and %f %p to wal-fetch"
)]
pub struct NotAWalName(pub String);

impl WalFileName {
    /// The segment a segment or partial segment file holds.
    pub fn segment(self) -> Option<SegmentName> {
        match self {
            WalFileName::Segment(s) | WalFileName::Partial(s) => Some(s),
            _ => None,
        }
    }

    /// The history file of timeline `tli`.
    pub fn history(tli: u32) -> WalFileName {
        WalFileName::History(tli)
    }
}

impl fmt::Display for WalFileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WalFileName::Segment(s) => write!(f, "{s}"),
            WalFileName::Partial(s) => write!(f, "{s}.partial"),
            WalFileName::History(tli) => write!(f, "{tli:08X}.history"),
            WalFileName::Backup(s, offset) => write!(f, "{s}.{offset:08X}.backup"),
        }
    }
}

impl FromStr for WalFileName {
    type Err = NotAWalName;

    fn from_str(text: &str) -> Result<WalFileName, NotAWalName> {
        let bad = || NotAWalName(text.to_string());
        let segment = |s: &str| s.parse::<SegmentName>().map_err(|_| bad());
        let hex8 = |s: &str| {
            if s.len() == 8 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
                u32::from_str_radix(s, 16).map_err(|_| bad())
            } else {
                Err(bad())
            }
        };
        if let Some(seg) = text.strip_suffix(".partial") {
            return Ok(WalFileName::Partial(segment(seg)?));
        }
        if let Some(tli) = text.strip_suffix(".history") {
            return Ok(WalFileName::History(hex8(tli)?));
        }
        if let Some(rest) = text.strip_suffix(".backup") {
            let (seg, offset) = rest.split_once('.').ok_or_else(bad)?;
            return Ok(WalFileName::Backup(segment(seg)?, hex8(offset)?));
        }
        Ok(WalFileName::Segment(segment(text)?))
    }
}

impl serde::Serialize for WalFileName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl serde::Serialize for SegmentName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The file name of segment number `segno` on timeline `tli`.
pub fn segment_name(tli: u32, segno: u64, segment_size: u64) -> String {
    SegmentName::new(tli, segno, segment_size).to_string()
}

/// A segment file name split into its timeline and segment number; `None` for anything that
/// is not 24 hex digits.
pub fn parse_segment_name(file: &str, segment_size: u64) -> Option<(u32, u64)> {
    let s: SegmentName = file.parse().ok()?;
    Some((s.timeline, s.number(segment_size)))
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
        assert_eq!(
            "nonsense".parse::<Lsn>().unwrap_err().to_string(),
            "`nonsense` is not an LSN (such as 0/3000060)"
        );
        for size in [1u64 << 20, 16 << 20, 64 << 20, 1 << 30] {
            let segno = lsn.0 / size;
            let name = segment_name(3, segno, size);
            assert_eq!(name.len(), 24);
            assert_eq!(parse_segment_name(&name, size), Some((3, segno)));
            assert_eq!(lsn.segment(3, size).to_string(), name);
        }
        assert_eq!(segment_name(1, 2, 16 << 20), "000000010000000000000002");
        assert_eq!(segment_name(1, 0x100, 16 << 20), "000000010000000100000000");
        assert_eq!(
            parse_segment_name("00000001000000000000000G", 16 << 20),
            None
        );
        assert_eq!(parse_segment_name("0000000100000000", 16 << 20), None);
        assert_eq!(
            parse_segment_name("+0000001000000000000000F", 16 << 20),
            None
        );
    }

    #[test]
    fn lsns_serialize_as_postgresql_prints_them() {
        let lsn = Lsn(0x2000028);
        assert_eq!(serde_json::to_string(&lsn).unwrap(), "\"0/2000028\"");
        assert_eq!(serde_json::from_str::<Lsn>("\"0/2000028\"").unwrap(), lsn);
        let err = serde_json::from_str::<Lsn>("\"x/1\"").unwrap_err();
        assert!(err.to_string().contains("`x/1` is not an LSN"), "{err}");
    }

    #[test]
    fn wal_file_names_round_trip_and_say_what_they_are() {
        for (text, kind) in [
            ("000000010000000000000001", "segment"),
            ("000000010000000000000001.partial", "partial"),
            ("00000002.history", "history"),
            ("000000010000000000000002.00000028.backup", "backup"),
        ] {
            let name: WalFileName = text.parse().unwrap();
            assert_eq!(name.to_string(), text);
            let got = match name {
                WalFileName::Segment(_) => "segment",
                WalFileName::Partial(_) => "partial",
                WalFileName::History(_) => "history",
                WalFileName::Backup(..) => "backup",
            };
            assert_eq!(got, kind, "{text}");
        }
        for bad in [
            "",
            "../000000010000000000000001",
            "00000001000000000000001",
            "0000000100000000000000zz",
            "00000002.history.x",
            "x.partial",
            "000000010000000000000002.0000028.backup",
            "000000010000000000000002.backup",
        ] {
            assert_eq!(
                bad.parse::<WalFileName>(),
                Err(NotAWalName(bad.to_string())),
                "{bad}"
            );
        }
        assert_eq!(
            "x".parse::<WalFileName>().unwrap_err().to_string(),
            "`x` is not a WAL file name (such as 000000010000000000000001, 00000002.history); pass %p to wal-push and %f %p to wal-fetch"
        );
        let seg: SegmentName = "0000000200000001000000FE".parse().unwrap();
        assert_eq!(seg.number(16 << 20), 0x1FE);
        assert_eq!(seg.on_timeline(3).to_string(), "0000000300000001000000FE");
        assert!(seg < "000000020000000200000000".parse().unwrap());
    }

    proptest::proptest! {
        #[test]
        fn every_lsn_and_wal_name_round_trips(
            lsn: u64,
            tli in 1u32..,
            bits in 20u32..=30,
            offset: u32,
        ) {
            let size = 1u64 << bits;
            let parsed: Lsn = Lsn(lsn).to_string().parse().unwrap();
            proptest::prop_assert_eq!(parsed, Lsn(lsn));
            let seg = Lsn(lsn).segment(tli, size);
            proptest::prop_assert_eq!(seg.number(size), lsn / size);
            for name in [
                WalFileName::Segment(seg),
                WalFileName::Partial(seg),
                WalFileName::History(tli),
                WalFileName::Backup(seg, offset),
            ] {
                proptest::prop_assert_eq!(name.to_string().parse::<WalFileName>(), Ok(name));
            }
        }
    }
}
