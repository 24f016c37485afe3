//! The HTTP API's contract: every request body, query string and response body that
//! `pgbackups serve` takes or gives, as plain serde types, readable in one place.
//!
//! The server parses every request into these types and builds every answer from them; the
//! CLI (and the dashboard) send and read the same types. Their JSON is what docs/API.md
//! describes, and the tests at the bottom of each file pin it down: changing a field's name or
//! shape here is changing the API.
//!
//! This module depends only on plain data types (the catalog's records and IDs, the dump
//! filter). Engine results that are not plain data (a retention policy, a link, a rebuild
//! report, a protection's live state) have their own view here, filled in by the server.

mod databases;
mod protection;
mod schedules;
mod team;
mod transfers;

use serde::{Deserialize, Serialize};

pub use databases::{
    AddDatabaseRequest, DUMP_CONTENT_TYPE, DUMP_VERSION_HEADER, DatabaseAdded, DatabaseView,
    DumpRequest, ExtensionsView,
};
pub use protection::{
    ArchiveView, BaseBackupView, LiveView, ProtectRequest, ProtectionView, ReceiverState,
    Unprotected, WalToken,
};
pub use schedules::{
    RetentionPolicy, RetentionView, ScheduleView, SetRetentionRequest, SetScheduleRequest,
};
pub use team::{
    AddUserRequest, AuditEntry, AuditQuery, DEFAULT_AUDIT_LIMIT, MAX_AUDIT_LIMIT, RemoveUserQuery,
    Role, RoleError, SetPasswordRequest, SetRoleRequest, TokenCreated, TokenQuery, TokenRequest,
    TokenView, UserView,
};
pub use transfers::{
    BackupLink, CaptureRequest, CopyRequest, DeleteBackupQuery, DownloadQuery, DumpForm, LinkQuery,
    LogLine, LogQuery, RebuildReport, RefusedRestore, RestoreRequest, ServerCaptureRequest,
    SetRestoreRequest, SetRestoreStarted, ShowTransferQuery, TransferCancelled, TransferKindQuery,
    TransferView, UploadQuery, UrlRequest, VerifyRequest,
};

/// Every error answer, whatever the route: `{"error": "message"}`. The message says what is
/// wrong and what to do, and never holds a password.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
    /// For a destructive request refused for want of its confirmation: the name that `confirm`
    /// must carry. A CLI on a terminal asks the user to type it, as Heroku's does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirm: Option<String>,
}

/// The header a download names its backup in (`latest` resolved): `b001`.
pub const BACKUP_HEADER: &str = "x-pgbackups-backup";

/// The header a download of the stored object (`form=zstd`) gives its SHA-256 in, so that the
/// client can check what it received end to end.
pub const SHA256_HEADER: &str = "x-pgbackups-sha256";

/// The longest a download link may live, in seconds: S3's limit for presigned URLs.
pub const MAX_LINK_SECS: u64 = 7 * 24 * 3600;

/// How long a link lives when the request does not say, in seconds.
pub const DEFAULT_LINK_SECS: u64 = 3600;

/// The longest `GET /api/transfers/{id}?wait_ms=N` waits, in milliseconds.
pub const MAX_WAIT_MS: u64 = 30_000;

#[cfg(test)]
pub(crate) mod contract {
    //! Helpers for the contract tests: a type's JSON compared as text, so that a renamed
    //! field, a changed shape or a field that appears or vanishes fails a test.

    use serde::Serialize;
    use serde::de::DeserializeOwned;

    /// The compact JSON of `value`.
    pub fn json_of<T: Serialize>(value: &T) -> String {
        serde_json::to_string(value).expect("the API types always serialize")
    }

    /// `value` serializes to exactly `expected` (compact JSON, fields in declaration order),
    /// and reads back to the same JSON.
    pub fn assert_json<T: Serialize + DeserializeOwned>(value: &T, expected: &str) {
        let text = json_of(value);
        assert_eq!(text, expected);
        let back: T = serde_json::from_str(&text).expect("the API types read their own JSON");
        assert_eq!(json_of(&back), expected);
    }

    /// A fixed time for samples.
    pub fn at() -> jiff::Timestamp {
        "2026-11-25T05:24:00Z".parse().expect("a valid timestamp")
    }
}

#[cfg(test)]
mod tests {
    use super::contract::assert_json;
    use super::*;

    #[test]
    fn error_body_is_one_field() {
        assert_json(
            &ErrorBody {
                error: "no such route".into(),
                confirm: None,
            },
            r#"{"error":"no such route"}"#,
        );
        assert_json(
            &ErrorBody {
                error: "this is destructive".into(),
                confirm: Some("main".into()),
            },
            r#"{"error":"this is destructive","confirm":"main"}"#,
        );
    }
}
