//! The API's databases: registering one, listing them.

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
    }
}
