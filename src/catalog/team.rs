//! The records of the team: users (with their password's argon2id hash), personal API tokens
//! and browser sessions (kept as the SHA-256 of their secret, never the secret), and the audit
//! log. Roles are kept as their names (`viewer`, `operator`, `admin`): the type that checks
//! them lives with the API contract, above this layer.

use jiff::Timestamp;

/// A user.
#[derive(Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub name: String,
    /// `viewer`, `operator` or `admin`.
    pub role: String,
    /// The argon2id hash in PHC form (`$argon2id$v=19$...`).
    pub password_hash: String,
    pub created_at: Timestamp,
}

impl std::fmt::Debug for UserRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserRecord")
            .field("name", &self.name)
            .field("role", &self.role)
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

/// A personal API token: its ID (shown, used to revoke it) and the SHA-256 of its text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRecord {
    pub id: String,
    /// Hex SHA-256 of the token's text.
    pub hash: String,
    pub user: String,
    pub label: Option<String>,
    pub created_at: Timestamp,
}

/// A browser session: the SHA-256 of its cookie's value, whose it is, and until when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRecord {
    /// Hex SHA-256 of the cookie's value.
    pub hash: String,
    pub user: String,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

/// One line of the audit log; `seq` is given by the catalog, in the order lines were added.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditRecord {
    pub seq: i64,
    pub at: Timestamp,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub status: u16,
}
