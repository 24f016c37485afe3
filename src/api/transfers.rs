//! The API's transfers and backups: starting captures, restores, copies, pulls, pushes and
//! verifications; following, cancelling and deleting them; links, downloads and the catalog
//! rebuild.

use serde::{Deserialize, Serialize};

use crate::catalog::{TransferId, TransferKind, VerifyMode};
use crate::pg::DumpFilter;

/// A transfer as the API shows it (`GET /api/transfers`, the answer to every route that
/// starts one, a pin): the catalog record itself, whose JSON docs/API.md describes.
pub type TransferView = crate::catalog::TransferRecord;

/// One line of a transfer's log (`GET /api/transfers/{id}/logs`): `{"seq", "at", "line"}`.
pub type LogLine = crate::catalog::LogLine;

/// `GET /api/transfers?kind=...`: only transfers of one kind.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct TransferKindQuery {
    pub kind: Option<TransferKind>,
}

/// `GET /api/transfers/{id}?wait_ms=N`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ShowTransferQuery {
    /// Wait up to this many milliseconds (at most [`super::MAX_WAIT_MS`]) for a running
    /// transfer to end.
    pub wait_ms: Option<u64>,
}

/// `GET /api/transfers/{id}/logs?after=SEQ`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct LogQuery {
    /// Only lines after this sequence number.
    pub after: Option<u64>,
}

/// The answer to a cancel (202): the transfer that was told to stop.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferCancelled {
    pub id: TransferId,
}

/// `POST /api/captures`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct CaptureRequest {
    /// A registered name, a URL, or none for the only registered database.
    pub database: Option<String>,
    /// pg_dump's selection options, for a partial capture.
    #[serde(default, flatten)]
    pub filter: DumpFilter,
}

/// `POST /api/restores`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RestoreRequest {
    /// The backup (`b001`); none or `latest` for the newest completed one.
    pub backup: Option<String>,
    /// An http(s) URL of a custom-format dump to restore from, instead of a backup.
    pub url: Option<String>,
    /// The target: a registered name or a URL.
    pub database: Option<String>,
    /// The target's name, typed again.
    pub confirm: Option<String>,
    /// pg_restore's `--jobs` (default 1).
    pub jobs: Option<u32>,
    /// Restore into a fresh database and swap it in only on success.
    #[serde(default)]
    pub atomic: bool,
    /// With `atomic`: drop the previous contents right after the swap.
    #[serde(default)]
    pub drop_old: bool,
    /// Extensions to create in the target after emptying it and before pg_restore, as
    /// Heroku's `--extensions` (backup restores only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extensions: Vec<String>,
    /// Create the roles the backup carries that the target's server lacks, first.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub roles: bool,
}

/// `POST /api/server-captures`: `backups:capture --all SERVER`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ServerCaptureRequest {
    /// A registered name or a URL of any database on the server.
    pub server: String,
}

/// `POST /api/set-restores`: `backups:restore --set SET SERVER`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SetRestoreRequest {
    /// The set (the ID of its first backup, as the listing shows it).
    pub set: String,
    /// A registered name or a URL of any database on the target server.
    pub server: String,
    /// The server's name (the database of its URL), typed again.
    pub confirm: Option<String>,
}

/// The answer to `POST /api/set-restores`: one restore per database of the set, and the
/// databases whose restore could not start, with why.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SetRestoreStarted {
    pub started: Vec<TransferView>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refused: Vec<RefusedRestore>,
}

/// A database of a set whose restore did not start.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefusedRestore {
    pub database: String,
    pub error: String,
}

/// `POST /api/restores/upload?...`: the query string; the body is the dump file itself.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct UploadQuery {
    /// The file's name, for display (for a push: the local database's name).
    pub name: Option<String>,
    pub database: Option<String>,
    pub confirm: Option<String>,
    pub jobs: Option<u32>,
    #[serde(default)]
    pub atomic: bool,
    #[serde(default)]
    pub drop_old: bool,
    /// The body is the dump compressed with zstd (as `push` sends it).
    #[serde(default)]
    pub zstd: bool,
    /// `pgbackups push`: a target without tables needs no `confirm` (Heroku's pg:push), one
    /// with tables does; recorded as "local database NAME (pushed)".
    #[serde(default)]
    pub push: bool,
    /// Only check the target and the confirmation, reading no body and starting nothing:
    /// `204`, or the refusal the upload would get. The CLI asks for the name on a terminal
    /// after this answer, so a file (or a local pg_dump) is sent once, after the confirmation.
    #[serde(default)]
    pub check: bool,
}

/// `POST /api/copies`: database to database.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct CopyRequest {
    /// A registered name or a URL.
    pub source: String,
    /// A registered name or a URL.
    pub target: String,
    /// The target's name, typed again.
    pub confirm: Option<String>,
    /// pg_dump's selection options, for a partial copy.
    #[serde(default, flatten)]
    pub filter: DumpFilter,
}

/// `DELETE /api/backups/{id}?confirm=DATABASE`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct DeleteBackupQuery {
    /// The backup's database, typed again.
    pub confirm: Option<String>,
}

/// `POST /api/backups/{id}/verify`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct VerifyRequest {
    /// `checksum` or `restore`; left out (`off`), a checksum.
    #[serde(default)]
    pub mode: VerifyMode,
    /// Server for a restore test's scratch database (a registered name or URL).
    pub target: Option<String>,
}

/// `POST /api/backups/{id}/url`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct UrlRequest {
    /// Seconds the link stays valid (default [`super::DEFAULT_LINK_SECS`], at most
    /// [`super::MAX_LINK_SECS`]).
    pub expires_secs: Option<u64>,
    /// A link to the stored object as it is (the dump compressed with zstd), presigned
    /// where the store allows it, instead of the dump `pg_restore` reads.
    #[serde(default)]
    pub raw: bool,
}

/// What a download or link serves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DumpForm {
    /// The custom-format dump compressed as `pg_dump -Fc` compresses it: what the stock
    /// `pg_restore` reads (`--jobs` included), no larger than `pg_dump -Fc`'s own file.
    #[default]
    Dump,
    /// The custom-format dump, uncompressed.
    Plain,
    /// The stored object: the uncompressed dump compressed with zstd (`zstd -d` undoes it).
    Zstd,
}

/// `GET /api/backups/{id}/download?form=dump|plain|zstd`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct DownloadQuery {
    #[serde(default)]
    pub form: DumpForm,
}

/// The answer to `POST /api/backups/{id}/url`: a link to the backup.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupLink {
    pub id: TransferId,
    pub url: String,
    pub expires_at: jiff::Timestamp,
    /// `dump` (a custom-format dump the stock pg_restore reads) or `zstd` (the stored
    /// object: the uncompressed dump compressed with zstd).
    pub content: String,
}

/// `GET /links/{id}?expires=UNIX&sig=HEX`: a signed download link's query string.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct LinkQuery {
    pub expires: Option<i64>,
    pub sig: Option<String>,
    /// `zstd` for a link to the stored object; left out, the dump.
    #[serde(default)]
    pub form: DumpForm,
}

/// The answer to `POST /api/catalog/rebuild`: what the rebuild did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RebuildReport {
    /// Backups recreated from their manifests.
    pub added: Vec<TransferId>,
    /// Backups the catalog already had.
    pub present: Vec<TransferId>,
    /// Manifests that could not be read, as (key, reason).
    pub unreadable: Vec<(String, String)>,
    /// Manifests whose object is missing.
    pub orphaned: Vec<String>,
    /// Backups in the store whose ID the catalog already gives to another backup, with the
    /// stored object's key. They stay in the store.
    #[serde(default)]
    pub conflicts: Vec<(TransferId, String)>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::contract::{assert_json, at};
    use crate::catalog::{Origin, TransferState};

    fn id(s: &str) -> TransferId {
        s.parse().expect("a valid ID")
    }

    #[test]
    fn transfer_json_is_stable() {
        let mut t = TransferView::new(
            id("b001"),
            TransferKind::Capture,
            Origin::Manual,
            "main".into(),
            at(),
        );
        t.state = TransferState::Succeeded;
        t.started_at = Some(at());
        t.finished_at = Some(at());
        t.bytes_processed = 100;
        t.database_size = Some(200);
        t.dump_size = Some(100);
        t.object_size = Some(50);
        t.sha256 = Some("ab".into());
        t.object_key = Some("backups/b001.dump.zst".into());
        t.compression = Some("zstd".into());
        t.server_version = Some("15.4".into());
        t.tool_version = Some("15.4".into());
        assert_json(
            &t,
            r#"{"id":"b001","kind":"capture","origin":"manual","database":"main","backup_id":null,"source":null,"state":"succeeded","created_at":"2026-11-25T05:24:00Z","started_at":"2026-11-25T05:24:00Z","finished_at":"2026-11-25T05:24:00Z","bytes_processed":100,"database_size":200,"dump_size":100,"object_size":50,"sha256":"ab","object_key":"backups/b001.dump.zst","compression":"zstd","server_version":"15.4","tool_version":"15.4","error":null,"pinned":false}"#,
        );
        // The optional parts appear only when set.
        t.filter.schema = vec!["app".into()];
        t.encryption = Some("age".into());
        t.detail = Some("checked".into());
        t.pinned = true;
        let text = crate::api::contract::json_of(&t);
        assert!(text.contains(r#""filter":{"schema":["app"]}"#), "{text}");
        assert!(
            text.contains(r#""encryption":"age","detail":"checked","pinned":true}"#),
            "{text}"
        );
    }

    #[test]
    fn log_lines_and_cancels_are_stable() {
        assert_json(
            &LogLine {
                seq: 3,
                at: at(),
                line: "pg_dump: dumping contents of table".into(),
            },
            r#"{"seq":3,"at":"2026-11-25T05:24:00Z","line":"pg_dump: dumping contents of table"}"#,
        );
        assert_json(&TransferCancelled { id: id("r002") }, r#"{"id":"r002"}"#);
    }

    #[test]
    fn start_requests_are_stable() {
        assert_json(
            &CaptureRequest {
                database: Some("main".into()),
                filter: DumpFilter {
                    table: vec!["public.t".into()],
                    ..DumpFilter::default()
                },
            },
            r#"{"database":"main","table":["public.t"]}"#,
        );
        assert_json(&CaptureRequest::default(), r#"{"database":null}"#);
        assert_json(
            &RestoreRequest {
                backup: Some("b001".into()),
                database: Some("main".into()),
                confirm: Some("main".into()),
                jobs: Some(2),
                atomic: true,
                ..RestoreRequest::default()
            },
            r#"{"backup":"b001","url":null,"database":"main","confirm":"main","jobs":2,"atomic":true,"drop_old":false}"#,
        );
        assert_json(
            &CopyRequest {
                source: "main".into(),
                target: "staging".into(),
                confirm: Some("staging".into()),
                filter: DumpFilter::default(),
            },
            r#"{"source":"main","target":"staging","confirm":"staging"}"#,
        );
        assert_json(
            &VerifyRequest {
                mode: VerifyMode::Restore,
                target: None,
            },
            r#"{"mode":"restore","target":null}"#,
        );
        assert_json(
            &UrlRequest {
                expires_secs: Some(60),
                raw: true,
            },
            r#"{"expires_secs":60,"raw":true}"#,
        );
    }

    /// `backups:capture --all` and `backups:restore --set`.
    #[test]
    fn whole_server_requests_and_answers_are_stable() {
        assert_json(
            &ServerCaptureRequest {
                server: "main".into(),
            },
            r#"{"server":"main"}"#,
        );
        assert_json(
            &SetRestoreRequest {
                set: "b001".into(),
                server: "other".into(),
                confirm: Some("other".into()),
            },
            r#"{"set":"b001","server":"other","confirm":"other"}"#,
        );
        assert_json(&SetRestoreStarted::default(), r#"{"started":[]}"#);
        let mut t = TransferView::new(
            id("b001"),
            TransferKind::Capture,
            Origin::Manual,
            "main".into(),
            at(),
        );
        t.set = Some("b001".into());
        let text = crate::api::contract::json_of(&t);
        assert!(text.ends_with(r#""pinned":false,"set":"b001"}"#), "{text}");
    }

    #[test]
    fn short_requests_take_their_defaults() {
        let r: RestoreRequest = serde_json::from_str("{}").expect("all optional");
        assert!(r.backup.is_none() && !r.atomic && !r.drop_old);
        let v: VerifyRequest = serde_json::from_str("{}").expect("all optional");
        assert_eq!(v.mode, VerifyMode::Off);
        let c: CaptureRequest =
            serde_json::from_str(r#"{"database":null,"schema":["a"]}"#).expect("a partial capture");
        assert_eq!(c.filter.schema, vec!["a".to_string()]);
    }

    #[test]
    fn answers_of_links_and_rebuilds_are_stable() {
        assert_json(
            &BackupLink {
                id: id("b001"),
                url: "https://svc/links/b001?expires=1&sig=ab".into(),
                expires_at: at(),
                content: "dump".into(),
            },
            r#"{"id":"b001","url":"https://svc/links/b001?expires=1&sig=ab","expires_at":"2026-11-25T05:24:00Z","content":"dump"}"#,
        );
        assert_json(
            &RebuildReport {
                added: vec![id("b002")],
                present: vec![id("b001")],
                unreadable: vec![("backups/b003.json".into(), "bad JSON".into())],
                orphaned: vec!["backups/b004.json".into()],
                conflicts: vec![(id("b001"), "backups/b001-x.dump.zst".into())],
            },
            r#"{"added":["b002"],"present":["b001"],"unreadable":[["backups/b003.json","bad JSON"]],"orphaned":["backups/b004.json"],"conflicts":[["b001","backups/b001-x.dump.zst"]]}"#,
        );
    }
}
