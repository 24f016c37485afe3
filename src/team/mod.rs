//! STUB until the `team` branch lands (lead's placeholder; replaced by helper A's module).

use std::net::IpAddr;
use std::time::Duration;

use crate::api::{AuditEntry, AuditQuery, Role};

/// Who makes a request.
#[derive(Clone, Debug)]
pub struct Principal {
    pub user: String,
    pub role: Role,
    pub csrf: Option<String>,
}

pub const SESSION_COOKIE: &str = "pgbackups_session";

pub struct NewSession {
    pub cookie: String,
    pub csrf: String,
    pub expires: jiff::Timestamp,
}

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("wrong user name or password")]
    Wrong,
    #[error("too many failed attempts")]
    Limited { retry_after: Duration },
}

#[derive(Default)]
pub struct Team;

impl Team {
    pub fn login(&self, _n: &str, _p: &str, _a: IpAddr) -> Result<NewSession, LoginError> {
        Err(LoginError::Wrong)
    }
    pub fn logout(&self, _cookie: &str) {}
    pub fn audit_log(&self, _q: AuditQuery) -> Vec<AuditEntry> {
        Vec::new()
    }
}

pub fn session_cookie(value: &str, _expires: jiff::Timestamp, secure: bool) -> String {
    let s = if secure { "; Secure" } else { "" };
    format!("{SESSION_COOKIE}={value}; HttpOnly; SameSite=Strict; Path=/{s}")
}

pub fn clear_session_cookie(secure: bool) -> String {
    let s = if secure { "; Secure" } else { "" };
    format!("{SESSION_COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0{s}")
}
