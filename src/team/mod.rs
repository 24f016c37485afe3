//! The team: users with roles and passwords, their personal API tokens, browser sessions,
//! login limits and the audit log. [`Team`] is built once by the composition root and shared
//! by the server's middleware (who is asking, may they) and the routes that manage users.
//!
//! - Passwords are hashed with argon2id (`password.rs`); a token or session secret is kept
//!   only as its SHA-256, so a copy of the catalog lets nobody in.
//! - Logins are limited in memory (`limiter.rs`): 5 failures per user name, 20 per address in
//!   15 minutes. A login for an unknown user costs the same argon2 work as a known one, so
//!   the time taken does not tell which names exist.
//! - Every method blocks (the catalog, argon2): call them from async code through
//!   `tokio::task::spawn_blocking`.
//!
//! This module stands at the registry's layer: it uses the catalog, the clock and the API's
//! plain types, nothing above.

pub mod limiter;
pub mod password;

use std::net::IpAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use jiff::{Timestamp, ToSpan};
use sha2::{Digest, Sha256};

use crate::api::{
    AuditEntry, AuditQuery, DEFAULT_AUDIT_LIMIT, MAX_AUDIT_LIMIT, Role, TokenCreated, TokenView,
    UserView,
};
use crate::catalog::{AuditRecord, Catalog, CatalogError, SessionRecord, TokenRecord, UserRecord};
use crate::clock::Clock;

use limiter::Limiter;
pub use password::{MIN_PASSWORD_CHARS, RuleError, SERVICE_TOKEN_USER};

/// The name of the browser's session cookie.
pub const SESSION_COOKIE: &str = "pgbackups_session";
/// How long a browser session lasts after its login.
pub const SESSION_HOURS: i64 = 12;
/// What every personal token starts with, so that it is recognised (by people and by secret
/// scanners) and told apart from the service's own token.
pub const TOKEN_PREFIX: &str = "pgb_";

/// Who is asking: a user (by a personal token or a browser session) or the service's own API
/// token (`service-token`, an admin). Put in each request's extensions by the server's
/// middleware.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub user: String,
    pub role: Role,
    /// The session's CSRF token: `Some` only for a browser session, whose unsafe requests
    /// must carry it.
    pub csrf: Option<String>,
}

impl Principal {
    /// The service's own API token: an admin, named `service-token` in the audit log.
    pub fn service_token() -> Principal {
        Principal {
            user: SERVICE_TOKEN_USER.to_string(),
            role: Role::Admin,
            csrf: None,
        }
    }

    /// Whether this is the service's own API token rather than a user.
    pub fn is_service_token(&self) -> bool {
        self.user == SERVICE_TOKEN_USER && self.csrf.is_none()
    }
}

/// A new browser session: the cookie's secret value (to set with [`session_cookie`]), its
/// CSRF token (for every form and unsafe request) and when it ends.
pub struct NewSession {
    pub cookie: String,
    pub csrf: String,
    pub expires: Timestamp,
}

impl std::fmt::Debug for NewSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewSession")
            .field("expires", &self.expires)
            .finish_non_exhaustive()
    }
}

/// Why a login failed. `Wrong` says nothing of whether the user exists.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("wrong user name or password")]
    Wrong,
    #[error(
        "too many failed logins for this user or from this address; try again in {} minute(s)",
        retry_after.as_secs().div_ceil(60)
    )]
    Limited { retry_after: Duration },
    /// The catalog failed (the service's problem, not the user's).
    #[error(transparent)]
    Failed(#[from] TeamError),
}

/// What went wrong managing the team, with what to do.
#[derive(Debug, thiserror::Error)]
pub enum TeamError {
    #[error(transparent)]
    Rule(#[from] RuleError),
    #[error("no user named `{0}`; `pgbackups users` lists them")]
    NoSuchUser(String),
    #[error("no token with ID `{0}`; `pgbackups tokens` lists them")]
    NoSuchToken(String),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("the catalog holds a role it does not know for user `{user}`: {role}")]
    BadRole { user: String, role: String },
    #[error("cannot hash the password: {0}")]
    Hash(#[from] password::HashError),
    #[error("cannot get random bytes for a secret: {0}")]
    Random(#[source] getrandom::Error),
}

/// Users, tokens, sessions, login limits and the audit log.
pub struct Team {
    catalog: Arc<dyn Catalog>,
    clock: Arc<dyn Clock>,
    limiter: Mutex<Limiter>,
}

impl Team {
    /// The team kept in `catalog`, with sessions timed by `clock`.
    pub fn new(catalog: Arc<dyn Catalog>, clock: Arc<dyn Clock>) -> Team {
        // The stand-in hash for unknown users, made now (off the caller's thread), so that
        // not even the first login for an unknown name is faster or slower than a known one.
        std::thread::spawn(unknown_user_hash);
        Team {
            catalog,
            clock,
            limiter: Mutex::new(Limiter::default()),
        }
    }

    // ---- users ----

    /// Adds a user. Checks the name (as a database name: letters, digits, `_-.`, 1..=63) and
    /// the password (at least 12 characters) first.
    pub fn add_user(&self, name: &str, role: Role, password: &str) -> Result<UserView, TeamError> {
        password::check_name(name)?;
        password::check_password(password)?;
        let record = UserRecord {
            name: name.to_string(),
            role: role.as_str().to_string(),
            password_hash: password::hash(password)?,
            created_at: self.clock.now(),
        };
        self.catalog.add_user(&record)?;
        Ok(UserView {
            name: record.name,
            role,
            created_at: record.created_at,
        })
    }

    /// Removes a user with their sessions and tokens, in one change.
    pub fn remove_user(&self, name: &str) -> Result<(), TeamError> {
        if !self.catalog.remove_user(name)? {
            return Err(TeamError::NoSuchUser(name.to_string()));
        }
        Ok(())
    }

    /// Sets a user's password (checked as a new one); their browser sessions end.
    pub fn set_password(&self, name: &str, password: &str) -> Result<(), TeamError> {
        password::check_password(password)?;
        if self.catalog.user(name)?.is_none() {
            return Err(TeamError::NoSuchUser(name.to_string()));
        }
        let hash = password::hash(password)?;
        if !self.catalog.set_password_hash(name, &hash)? {
            return Err(TeamError::NoSuchUser(name.to_string()));
        }
        Ok(())
    }

    /// Sets a user's role; their tokens and sessions carry the new one from the next request.
    pub fn set_role(&self, name: &str, role: Role) -> Result<UserView, TeamError> {
        if !self.catalog.set_user_role(name, role.as_str())? {
            return Err(TeamError::NoSuchUser(name.to_string()));
        }
        let u = self
            .catalog
            .user(name)?
            .ok_or_else(|| TeamError::NoSuchUser(name.to_string()))?;
        view(u)
    }

    /// All users, by name.
    pub fn users(&self) -> Result<Vec<UserView>, TeamError> {
        self.catalog.users()?.into_iter().map(view).collect()
    }

    /// One user, if there is one by that name.
    pub fn user(&self, name: &str) -> Result<Option<UserView>, TeamError> {
        self.catalog.user(name)?.map(view).transpose()
    }

    // ---- browser sessions ----

    /// Checks a user's password and starts a browser session. Refused while the user name or
    /// the address is over its limit of failed logins, before any password is checked.
    pub fn login(
        &self,
        name: &str,
        password: &str,
        addr: IpAddr,
    ) -> Result<NewSession, LoginError> {
        let attempt = self
            .limiter()
            .begin(name, addr, Instant::now())
            .map_err(|retry_after| LoginError::Limited { retry_after })?;
        let user = self.catalog.user(name).map_err(TeamError::from)?;
        // Unknown users are checked against a hash of nothing, at the same cost.
        let stored = match &user {
            Some(u) => u.password_hash.as_str(),
            None => unknown_user_hash(),
        };
        if !password::verify(password, stored) || user.is_none() {
            return Err(LoginError::Wrong);
        }
        self.limiter().succeeded(name, addr, attempt);
        let cookie = random_secret()?;
        let now = self.clock.now();
        let expires = now + SESSION_HOURS.hours();
        let record = SessionRecord {
            hash: sha256_hex(&cookie),
            user: name.to_string(),
            created_at: now,
            expires_at: expires,
        };
        self.catalog
            .add_session(&record, now)
            .map_err(TeamError::from)?;
        Ok(NewSession {
            csrf: csrf_of(&cookie),
            cookie,
            expires,
        })
    }

    /// Who a session cookie's value belongs to, with their current role; None when it is
    /// unknown, expired or ended (a catalog failure is logged and also refuses).
    pub fn session(&self, cookie: &str) -> Option<Principal> {
        let found = self
            .catalog
            .session(&sha256_hex(cookie), self.clock.now())
            .inspect_err(|e| tracing::error!("cannot look up a session: {e}"))
            .ok()??;
        let (record, role) = found;
        Some(Principal {
            role: role.parse().ok()?,
            user: record.user,
            csrf: Some(csrf_of(cookie)),
        })
    }

    /// Ends the session of this cookie value (nothing happens when there is none).
    pub fn logout(&self, cookie: &str) -> Result<(), TeamError> {
        self.catalog.remove_session(&sha256_hex(cookie))?;
        Ok(())
    }

    fn limiter(&self) -> std::sync::MutexGuard<'_, Limiter> {
        // Counts only: a panic elsewhere leaves them usable.
        self.limiter.lock().unwrap_or_else(|p| p.into_inner())
    }

    // ---- personal API tokens ----

    /// A new personal token for `user` (who must exist), with their role. Its text is in the
    /// answer only: the catalog keeps its SHA-256.
    pub fn create_token(&self, user: &str, label: Option<&str>) -> Result<TokenCreated, TeamError> {
        let u = self
            .catalog
            .user(user)?
            .ok_or_else(|| TeamError::NoSuchUser(user.to_string()))?;
        let role = parse_role(&u)?;
        let token = format!("{TOKEN_PREFIX}{}", random_secret()?);
        let label = label.map(str::trim).filter(|l| !l.is_empty());
        // Eight hex digits name a token; on the rare clash, another is drawn.
        for _ in 0..8 {
            let record = TokenRecord {
                id: random_hex(4)?,
                hash: sha256_hex(&token),
                user: user.to_string(),
                label: label.map(|l| l.chars().take(100).collect()),
                created_at: self.clock.now(),
            };
            if self.catalog.add_token(&record)? {
                return Ok(TokenCreated {
                    id: record.id,
                    token,
                    user: record.user,
                    role,
                });
            }
        }
        Err(TeamError::Catalog(CatalogError::Corrupt(
            "no free token ID after 8 tries".into(),
        )))
    }

    /// A user's tokens (everyone's with None), oldest first; never their text.
    pub fn tokens(&self, user: Option<&str>) -> Result<Vec<TokenView>, TeamError> {
        Ok(self
            .catalog
            .tokens(user)?
            .into_iter()
            .map(token_view)
            .collect())
    }

    /// One token, by ID.
    pub fn token_info(&self, id: &str) -> Result<Option<TokenView>, TeamError> {
        Ok(self.catalog.token(id)?.map(token_view))
    }

    /// Revokes a token: it stops working at once.
    pub fn revoke_token(&self, id: &str) -> Result<(), TeamError> {
        if !self.catalog.remove_token(id)? {
            return Err(TeamError::NoSuchToken(id.to_string()));
        }
        Ok(())
    }

    /// Who a bearer token belongs to, with the user's current role; None when it is not a
    /// personal token or was revoked (a catalog failure is logged and also refuses).
    pub fn token(&self, bearer: &str) -> Option<Principal> {
        if !bearer.starts_with(TOKEN_PREFIX) {
            return None;
        }
        let (record, role) = self
            .catalog
            .token_by_hash(&sha256_hex(bearer))
            .inspect_err(|e| tracing::error!("cannot look up a token: {e}"))
            .ok()??;
        Some(Principal {
            user: record.user,
            role: role.parse().ok()?,
            csrf: None,
        })
    }

    // ---- audit ----

    /// Records that `who` asked for `action` on `target` and was answered `status`.
    pub fn audit(
        &self,
        who: &Principal,
        action: &str,
        target: &str,
        status: u16,
    ) -> Result<i64, TeamError> {
        Ok(self.catalog.append_audit(&AuditRecord {
            seq: 0,
            at: self.clock.now(),
            actor: who.user.clone(),
            action: action.to_string(),
            target: target.to_string(),
            status,
        })?)
    }

    /// The newest audit entries first (100 unless `limit` says, at most 1000), older than
    /// `before` when given.
    pub fn audit_log(&self, q: &AuditQuery) -> Result<Vec<AuditEntry>, TeamError> {
        let limit = q
            .limit
            .unwrap_or(DEFAULT_AUDIT_LIMIT)
            .clamp(1, MAX_AUDIT_LIMIT);
        Ok(self
            .catalog
            .audit(limit, q.before)?
            .into_iter()
            .map(|e| AuditEntry {
                seq: e.seq,
                at: e.at,
                actor: e.actor,
                action: e.action,
                target: e.target,
                status: e.status,
            })
            .collect())
    }
}

/// The `Set-Cookie` value that gives the browser its session: `HttpOnly` (no script reads
/// it), `SameSite=Strict` (no other site's page sends it), `Path=/`, and `Secure` when the
/// service is reached over TLS.
pub fn session_cookie(value: &str, expires: Timestamp, secure: bool) -> String {
    let max_age = expires.duration_since(Timestamp::now()).as_secs().max(0);
    format!(
        "{SESSION_COOKIE}={value}; Max-Age={max_age}; Path=/; HttpOnly; SameSite=Strict{}",
        if secure { "; Secure" } else { "" }
    )
}

/// The `Set-Cookie` value that makes the browser forget its session (at logout).
pub fn clear_session_cookie(secure: bool) -> String {
    format!(
        "{SESSION_COOKIE}=; Max-Age=0; Path=/; HttpOnly; SameSite=Strict{}",
        if secure { "; Secure" } else { "" }
    )
}

fn view(u: UserRecord) -> Result<UserView, TeamError> {
    Ok(UserView {
        role: parse_role(&u)?,
        name: u.name,
        created_at: u.created_at,
    })
}

fn parse_role(u: &UserRecord) -> Result<Role, TeamError> {
    u.role.parse().map_err(|_| TeamError::BadRole {
        user: u.name.clone(),
        role: u.role.clone(),
    })
}

fn token_view(t: TokenRecord) -> TokenView {
    TokenView {
        id: t.id,
        label: t.label,
        user: t.user,
        created_at: t.created_at,
    }
}

/// A session's CSRF token, derived from its cookie's value: the catalog need not keep it, and
/// nobody without the cookie can compute it.
fn csrf_of(cookie: &str) -> String {
    sha256_hex(&format!("pgbackups csrf v1\0{cookie}"))
}

/// Hex SHA-256: how tokens and sessions are looked up without keeping them.
fn sha256_hex(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// 32 random bytes as hex: a token's or cookie's secret.
fn random_secret() -> Result<String, TeamError> {
    random_hex(32)
}

fn random_hex(n: usize) -> Result<String, TeamError> {
    let mut buf = vec![0u8; n];
    getrandom::fill(&mut buf).map_err(TeamError::Random)?;
    Ok(hex::encode(buf))
}

/// What an unknown user's password is checked against: a real argon2id hash (made once), so
/// that the check costs what a known user's does.
fn unknown_user_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| password::hash("no such user: a password nobody has").unwrap_or_default())
}

/// Whether two secrets are equal, compared in constant time (for the CSRF token).
pub fn secrets_match(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests;
