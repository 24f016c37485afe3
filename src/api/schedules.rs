//! The API's schedules and retention: daily captures and how many backups are kept.

use serde::{Deserialize, Serialize};

use crate::catalog::VerifyMode;

/// `POST /api/schedules`: a daily capture at a local time.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SetScheduleRequest {
    /// A registered name, or none for the only registered database.
    pub database: Option<String>,
    /// `02:00 America/Los_Angeles`.
    pub at: String,
    /// Whether each scheduled backup is verified after its capture.
    #[serde(default)]
    pub verify: VerifyMode,
}

/// A schedule as the API shows it, with its next run (`GET /api/schedules`, and the answer to
/// `POST /api/schedules`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleView {
    pub database: String,
    /// `02:00 America/Los_Angeles`.
    pub at: String,
    pub zone: String,
    pub created_at: jiff::Timestamp,
    pub next_run_at: jiff::Timestamp,
    /// The next run in the schedule's zone: `2026-11-26 02:00 PST`.
    pub next_run_local: String,
    /// What the database's backups are kept by.
    pub retention: RetentionPolicy,
    /// Whether each scheduled backup is verified after its capture.
    pub verify: VerifyMode,
}

/// How many backups of each kind a database keeps: the newest `manual` manual ones, and of
/// the scheduled ones the newest of each of the last `daily` days, `weekly` weeks and
/// `monthly` months.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionPolicy {
    pub daily: u32,
    pub weekly: u32,
    pub monthly: u32,
    pub manual: u32,
}

/// A database's retention (`GET`/`PUT /api/retention/{database}`): the policy's counts beside
/// the database's name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionView {
    pub database: String,
    #[serde(flatten)]
    pub policy: RetentionPolicy,
    /// Whether this is the default policy (none was set).
    pub default: bool,
}

/// `PUT /api/retention/{database}`: the counts to change (those left out keep their value),
/// each from 0 to [`RetentionView::MAX_COUNT`].
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SetRetentionRequest {
    pub daily: Option<u32>,
    pub weekly: Option<u32>,
    pub monthly: Option<u32>,
    pub manual: Option<u32>,
}

impl RetentionView {
    /// The largest count a policy takes.
    pub const MAX_COUNT: u32 = 10_000;
}

impl SetRetentionRequest {
    /// `policy` with the counts this request sets.
    pub fn apply(&self, policy: RetentionPolicy) -> RetentionPolicy {
        RetentionPolicy {
            daily: self.daily.unwrap_or(policy.daily),
            weekly: self.weekly.unwrap_or(policy.weekly),
            monthly: self.monthly.unwrap_or(policy.monthly),
            manual: self.manual.unwrap_or(policy.manual),
        }
    }

    /// Whether every count given is within 0 to [`RetentionView::MAX_COUNT`].
    pub fn in_range(&self) -> bool {
        [self.daily, self.weekly, self.monthly, self.manual]
            .iter()
            .flatten()
            .all(|n| *n <= RetentionView::MAX_COUNT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::contract::{assert_json, at};

    const POLICY: RetentionPolicy = RetentionPolicy {
        daily: 7,
        weekly: 4,
        monthly: 0,
        manual: 25,
    };

    #[test]
    fn schedule_json_is_stable() {
        assert_json(
            &ScheduleView {
                database: "main".into(),
                at: "02:00 America/Los_Angeles".into(),
                zone: "America/Los_Angeles".into(),
                created_at: at(),
                next_run_at: at(),
                next_run_local: "2026-11-24 21:24 PST".into(),
                retention: POLICY,
                verify: VerifyMode::Checksum,
            },
            r#"{"database":"main","at":"02:00 America/Los_Angeles","zone":"America/Los_Angeles","created_at":"2026-11-25T05:24:00Z","next_run_at":"2026-11-25T05:24:00Z","next_run_local":"2026-11-24 21:24 PST","retention":{"daily":7,"weekly":4,"monthly":0,"manual":25},"verify":"checksum"}"#,
        );
        assert_json(
            &SetScheduleRequest {
                database: None,
                at: "02:00 UTC".into(),
                verify: VerifyMode::Off,
            },
            r#"{"database":null,"at":"02:00 UTC","verify":"off"}"#,
        );
    }

    #[test]
    fn retention_json_is_flat() {
        assert_json(
            &RetentionView {
                database: "main".into(),
                policy: POLICY,
                default: true,
            },
            r#"{"database":"main","daily":7,"weekly":4,"monthly":0,"manual":25,"default":true}"#,
        );
    }

    #[test]
    fn retention_requests_change_only_what_they_name() {
        let r: SetRetentionRequest = serde_json::from_str(r#"{"daily":3}"#).expect("valid");
        assert_eq!(r.apply(POLICY), RetentionPolicy { daily: 3, ..POLICY });
        assert!(r.in_range());
        let big = SetRetentionRequest {
            manual: Some(10_001),
            ..SetRetentionRequest::default()
        };
        assert!(!big.in_range());
    }
}
