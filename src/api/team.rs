//! STUB until the `team` branch lands (lead's placeholder; replaced by helper A's file).

use serde::{Deserialize, Serialize};

/// What a user may do: viewers see, operators also run transfers, admins also manage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Operator,
    Admin,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        })
    }
}

/// One audit entry.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AuditEntry {
    pub seq: i64,
    pub at: jiff::Timestamp,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub status: u16,
}

/// `GET /api/audit`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct AuditQuery {
    pub limit: Option<u32>,
    pub before: Option<i64>,
}
