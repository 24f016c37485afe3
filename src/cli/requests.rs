//! The bodies of the CLI's API requests, as the service's routes read them.

use serde::Serialize;

use super::args::FilterArgs;
use crate::catalog::VerifyMode;

/// A request without a body of its own (`{}`).
#[derive(Serialize)]
pub struct Empty {}

/// `POST /databases`.
#[derive(Serialize)]
pub struct NewDatabase<'a> {
    pub name: &'a str,
    pub url: &'a str,
}

/// pg_dump's selection options, as every partial transfer takes them.
#[derive(Serialize)]
pub struct Filter<'a> {
    pub schema: &'a [String],
    pub exclude_schema: &'a [String],
    pub table: &'a [String],
    pub exclude_table_data: &'a [String],
}

impl<'a> From<&'a FilterArgs> for Filter<'a> {
    fn from(f: &'a FilterArgs) -> Filter<'a> {
        Filter {
            schema: &f.schema,
            exclude_schema: &f.exclude_schema,
            table: &f.table,
            exclude_table_data: &f.exclude_table_data,
        }
    }
}

/// `POST /captures`.
#[derive(Serialize)]
pub struct Capture<'a> {
    #[serde(flatten)]
    pub filter: Filter<'a>,
    pub database: Option<String>,
}

/// `POST /copies`, `/pulls`, `/pushes`.
#[derive(Serialize)]
pub struct Copy<'a> {
    #[serde(flatten)]
    pub filter: Filter<'a>,
    pub source: String,
    pub target: String,
    /// Pulls create their target and have nothing to confirm.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub confirm: Option<String>,
}

/// `POST /restores`.
#[derive(Serialize)]
pub struct Restore {
    pub backup: Option<String>,
    pub url: Option<String>,
    pub database: Option<String>,
    pub confirm: Option<String>,
    pub jobs: u32,
    pub atomic: bool,
    pub drop_old: bool,
}

/// `POST /backups/{id}/url`.
#[derive(Serialize)]
pub struct BackupUrl {
    pub expires_secs: u64,
    pub plain: bool,
}

/// `POST /backups/{id}/verify`.
#[derive(Serialize)]
pub struct Verify {
    pub mode: VerifyMode,
    pub target: Option<String>,
}

/// `POST /schedules`.
#[derive(Serialize)]
pub struct Schedule<'a> {
    pub database: Option<String>,
    pub at: &'a str,
    pub verify: VerifyMode,
}

/// `PUT /retention/{database}`.
#[derive(Serialize)]
pub struct Retention {
    pub daily: Option<u32>,
    pub weekly: Option<u32>,
    pub monthly: Option<u32>,
    pub manual: Option<u32>,
}

/// `POST /protections`.
#[derive(Serialize)]
pub struct Protect<'a> {
    pub database: &'a str,
    pub base_every_secs: Option<u64>,
    pub keep: Option<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_as_the_routes_read_them() {
        let f = FilterArgs {
            table: vec!["t*".into()],
            ..FilterArgs::default()
        };
        let body = Copy {
            filter: (&f).into(),
            source: "a".into(),
            target: "b".into(),
            confirm: None,
        };
        assert_eq!(
            serde_json::to_string(&body).ok().as_deref(),
            Some(
                r#"{"schema":[],"exclude_schema":[],"table":["t*"],"exclude_table_data":[],"source":"a","target":"b"}"#
            )
        );
        assert_eq!(serde_json::to_string(&Empty {}).ok().as_deref(), Some("{}"));
        let v = Verify {
            mode: VerifyMode::Restore,
            target: None,
        };
        assert_eq!(
            serde_json::to_string(&v).ok().as_deref(),
            Some(r#"{"mode":"restore","target":null}"#)
        );
    }
}
