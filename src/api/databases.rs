//! The API's databases: registering one, listing them, and what `pull` and `push` ask of one
//! (its dump, streamed; its extensions).

use serde::{Deserialize, Serialize};

/// A registered database as `GET /api/databases` lists it: `name`, `url` (redacted),
/// `created_at`. The catalog record itself: it never holds a password.
pub type DatabaseView = crate::catalog::DatabaseRecord;

/// `POST /api/databases`: a name and the database's URL (sealed in the catalog).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AddDatabaseRequest {
    pub name: String,
    pub url: String,
}

/// The answer to `POST /api/databases` (201): the name and the URL without its password.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabaseAdded {
    pub name: String,
    /// The URL as it is shown: its password redacted.
    pub url: String,
}

/// `POST /api/databases/{name}/dump`: which parts of the database the dump takes (pg_dump's
/// selection options, as for a copy). The answer is the dump itself, streamed.
pub type DumpRequest = crate::pg::DumpFilter;

/// The `Content-Type` of a streamed dump: a custom-format dump (`pg_dump -Fc -Z0`) in one zstd
/// stream. A dump that failed on the service ends with an aborted body, never a clean end.
pub const DUMP_CONTENT_TYPE: &str = "application/vnd.pgbackups.dump+zstd";

/// The header a streamed dump gives its pg_dump's major version in (`15`): the reader's
/// pg_restore must be at least as new.
pub const DUMP_VERSION_HEADER: &str = "x-pgbackups-pg-dump-version";

/// The answer to `GET /api/databases/{name}/extensions`: the extensions installed in the
/// database (`pg_extension`), sorted by name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtensionsView {
    pub database: String,
    pub extensions: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::contract::{assert_json, at};

    #[test]
    fn database_json_is_stable() {
        assert_json(
            &DatabaseView {
                name: "main".into(),
                url: "postgres://app:*****@db/main".into(),
                created_at: at(),
            },
            r#"{"name":"main","url":"postgres://app:*****@db/main","created_at":"2026-11-25T05:24:00Z"}"#,
        );
        assert_json(
            &AddDatabaseRequest {
                name: "main".into(),
                url: "postgres://app:pw@db/main".into(),
            },
            r#"{"name":"main","url":"postgres://app:pw@db/main"}"#,
        );
        assert_json(
            &DatabaseAdded {
                name: "main".into(),
                url: "postgres://app:*****@db/main".into(),
            },
            r#"{"name":"main","url":"postgres://app:*****@db/main"}"#,
        );
        assert_json(
            &ExtensionsView {
                database: "main".into(),
                extensions: vec!["hstore".into(), "plpgsql".into()],
            },
            r#"{"database":"main","extensions":["hstore","plpgsql"]}"#,
        );
    }
}
