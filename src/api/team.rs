//! Users, roles, personal API tokens and the audit log (`/api/users`, `/api/tokens`,
//! `/api/audit`). A password or token travels in these types once (the request that sets it,
//! the answer that creates a token); their `Debug` never shows it.

use std::fmt;
use std::str::FromStr;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// What a user may do. Each role may do everything the roles below it may: viewers see,
/// operators also capture, restore, cancel, verify and download, admins also manage
/// databases, schedules, retention, protection and users.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Operator,
    Admin,
}

impl Role {
    /// The role's name as the API and the CLI spell it: `viewer`, `operator`, `admin`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    /// `a viewer`, `an operator`, `an admin`.
    pub fn with_article(self) -> &'static str {
        match self {
            Role::Viewer => "a viewer",
            Role::Operator => "an operator",
            Role::Admin => "an admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role name that is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a role: use viewer, operator or admin")]
pub struct RoleError(pub String);

impl FromStr for Role {
    type Err = RoleError;

    fn from_str(s: &str) -> Result<Role, RoleError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "viewer" => Ok(Role::Viewer),
            "operator" => Ok(Role::Operator),
            "admin" => Ok(Role::Admin),
            _ => Err(RoleError(s.to_string())),
        }
    }
}

/// A user, as `GET /api/users` lists them (never with the password's hash).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserView {
    pub name: String,
    pub role: Role,
    pub created_at: Timestamp,
}

/// `POST /api/users`: a new user with a password.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddUserRequest {
    pub name: String,
    pub role: Role,
    pub password: String,
}

impl fmt::Debug for AddUserRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AddUserRequest")
            .field("name", &self.name)
            .field("role", &self.role)
            .field("password", &"***")
            .finish()
    }
}

/// `PUT /api/users/{name}/password`: the new password.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetPasswordRequest {
    pub password: String,
}

impl fmt::Debug for SetPasswordRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SetPasswordRequest { password: *** }")
    }
}

/// `DELETE /api/users/{name}?confirm=NAME`: the user's name again, as a destructive
/// request's confirmation.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoveUserQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirm: Option<String>,
}

/// `PUT /api/users/{name}/role`: the user's new role.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetRoleRequest {
    pub role: Role,
}

/// `POST /api/tokens`: a personal API token for the caller, or (admins only) for `user`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

/// `GET /api/tokens?user=NAME`: whose tokens (the caller's own when left out; everyone's for
/// the service token).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

/// A new personal token: the only time its text is shown (the service keeps its hash).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenCreated {
    pub id: String,
    pub token: String,
    pub user: String,
    pub role: Role,
}

impl fmt::Debug for TokenCreated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenCreated")
            .field("id", &self.id)
            .field("token", &"***")
            .field("user", &self.user)
            .field("role", &self.role)
            .finish()
    }
}

/// A personal token as listed: never its text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenView {
    pub id: String,
    pub label: Option<String>,
    pub user: String,
    pub created_at: Timestamp,
}

/// One line of the audit log: who (`actor`, a user name or `service-token`) did what
/// (`action`, such as `capture`) to what (`target`, such as `main` or `b001`), when, and the
/// status the service answered (a refusal is 403).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub seq: i64,
    pub at: Timestamp,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub status: u16,
}

/// `GET /api/audit?limit=N&before=SEQ`: the newest `limit` entries (default 100, at most
/// 1000), older than `before` when given (to page back).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<i64>,
}

/// How many audit entries a query gives when it does not say.
pub const DEFAULT_AUDIT_LIMIT: u32 = 100;
/// The most audit entries one query gives.
pub const MAX_AUDIT_LIMIT: u32 = 1000;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::contract::{assert_json, at};

    #[test]
    fn roles_are_ordered_and_spelled_lowercase() {
        assert!(Role::Viewer < Role::Operator && Role::Operator < Role::Admin);
        assert_eq!("Operator".parse::<Role>(), Ok(Role::Operator));
        assert_eq!(Role::Admin.to_string(), "admin");
        assert_eq!(
            "root".parse::<Role>().unwrap_err().to_string(),
            "`root` is not a role: use viewer, operator or admin"
        );
        assert_json(
            &SetRoleRequest { role: Role::Viewer },
            r#"{"role":"viewer"}"#,
        );
    }

    #[test]
    fn users_tokens_and_audit_keep_their_json() {
        assert_json(
            &UserView {
                name: "alice".into(),
                role: Role::Operator,
                created_at: at(),
            },
            r#"{"name":"alice","role":"operator","created_at":"2026-11-25T05:24:00Z"}"#,
        );
        assert_json(
            &AddUserRequest {
                name: "bob".into(),
                role: Role::Admin,
                password: "correct horse battery".into(),
            },
            r#"{"name":"bob","role":"admin","password":"correct horse battery"}"#,
        );
        assert_json(&TokenRequest::default(), "{}");
        assert_json(
            &TokenCreated {
                id: "3f9a01c2".into(),
                token: "pgb_00".into(),
                user: "alice".into(),
                role: Role::Viewer,
            },
            r#"{"id":"3f9a01c2","token":"pgb_00","user":"alice","role":"viewer"}"#,
        );
        assert_json(
            &TokenView {
                id: "3f9a01c2".into(),
                label: Some("laptop".into()),
                user: "alice".into(),
                created_at: at(),
            },
            r#"{"id":"3f9a01c2","label":"laptop","user":"alice","created_at":"2026-11-25T05:24:00Z"}"#,
        );
        assert_json(
            &AuditEntry {
                seq: 7,
                at: at(),
                actor: "alice".into(),
                action: "capture".into(),
                target: "main".into(),
                status: 403,
            },
            r#"{"seq":7,"at":"2026-11-25T05:24:00Z","actor":"alice","action":"capture","target":"main","status":403}"#,
        );
    }

    #[test]
    fn secrets_stay_out_of_debug() {
        let r = AddUserRequest {
            name: "bob".into(),
            role: Role::Admin,
            password: "hunter2hunter2".into(),
        };
        assert!(!format!("{r:?}").contains("hunter2"));
        let p = SetPasswordRequest {
            password: "hunter2hunter2".into(),
        };
        assert!(!format!("{p:?}").contains("hunter2"));
        let t = TokenCreated {
            id: "1".into(),
            token: "pgb_secret".into(),
            user: "a".into(),
            role: Role::Viewer,
        };
        assert!(!format!("{t:?}").contains("pgb_secret"));
    }
}
