//! Who may do what: ONE table from a request's method and matched route to the role it needs
//! and the name the audit log gives the action. The middleware (`auth.rs`) reads nothing else.
//!
//! - A GET (or HEAD) without a row needs a viewer: seeing is what every user may do. The GETs
//!   that hand out a backup's contents (downloads) have rows.
//! - Any other method without a row needs an admin: a new route is closed until its row says
//!   otherwise (fail closed). A unit test walks every route the router registers and fails for
//!   an unsafe one without a row.
//! - [`open`] lists the routes no credential is needed for (their own checks stand in).

use axum::http::Method;

use crate::api::Role;

/// What a route needs, and what the audit log calls it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Action {
    pub role: Role,
    pub name: &'static str,
}

use Role::{Admin, Operator, Viewer};

/// The table: method, matched route (as the router spells it), role, audit name.
const TABLE: &[(&str, &str, Role, &str)] = &[
    // ---- databases ----
    ("POST", "/api/databases", Admin, "add database"),
    ("DELETE", "/api/databases/{name}", Admin, "remove database"),
    ("POST", "/api/databases/{name}/dump", Operator, "pull"),
    // ---- transfers ----
    ("POST", "/api/captures", Operator, "capture"),
    ("POST", "/api/server-captures", Operator, "capture server"),
    ("POST", "/api/restores", Operator, "restore"),
    ("POST", "/api/set-restores", Operator, "restore set"),
    ("POST", "/api/restores/upload", Operator, "restore upload"),
    ("POST", "/api/copies", Operator, "copy"),
    ("POST", "/api/transfers/cancel", Operator, "cancel"),
    ("POST", "/api/transfers/{id}/cancel", Operator, "cancel"),
    // ---- backups ----
    ("DELETE", "/api/backups/{id}", Admin, "delete backup"),
    ("GET", "/api/backups/{id}/download", Operator, "download"),
    ("POST", "/api/backups/{id}/url", Operator, "link"),
    ("POST", "/api/backups/{id}/verify", Operator, "verify"),
    ("POST", "/api/backups/{id}/pin", Operator, "pin"),
    ("DELETE", "/api/backups/{id}/pin", Operator, "unpin"),
    ("POST", "/api/catalog/rebuild", Admin, "rebuild catalog"),
    // ---- schedules and retention ----
    ("POST", "/api/schedules", Admin, "schedule"),
    ("DELETE", "/api/schedules/{database}", Admin, "unschedule"),
    ("PUT", "/api/retention/{database}", Admin, "set retention"),
    // ---- Continuous Protection ----
    ("POST", "/api/protections", Admin, "protect"),
    ("DELETE", "/api/protections/{database}", Admin, "unprotect"),
    ("POST", "/api/wal/{name}/token", Admin, "WAL token"),
    // ---- users, tokens, audit ----
    ("GET", "/api/users", Admin, "list users"),
    ("POST", "/api/users", Admin, "add user"),
    ("DELETE", "/api/users/{name}", Admin, "remove user"),
    ("PUT", "/api/users/{name}/password", Admin, "set password"),
    ("PUT", "/api/users/{name}/role", Admin, "set role"),
    // Everyone manages their own tokens; the handlers ask for an admin to touch another's.
    ("GET", "/api/tokens", Viewer, "list tokens"),
    ("POST", "/api/tokens", Viewer, "create token"),
    ("DELETE", "/api/tokens/{id}", Viewer, "revoke token"),
    ("GET", "/api/audit", Admin, "read audit log"),
    // ---- the dashboard's pages ----
    ("POST", "/databases/{name}/capture", Operator, "capture"),
    ("POST", "/databases/{name}/restore", Operator, "restore"),
    ("POST", "/transfers/{id}/cancel", Operator, "cancel"),
    ("POST", "/databases/{name}/schedule", Admin, "schedule"),
    (
        "POST",
        "/databases/{name}/schedule/remove",
        Admin,
        "unschedule",
    ),
    (
        "POST",
        "/databases/{name}/retention",
        Admin,
        "set retention",
    ),
    ("POST", "/backups/{id}/pin", Operator, "pin"),
    ("POST", "/backups/{id}/unpin", Operator, "unpin"),
    ("POST", "/backups/{id}/verify", Operator, "verify"),
    ("POST", "/backups/{id}/link", Operator, "link"),
    ("GET", "/backups/{id}/delete", Admin, "view delete"),
    ("POST", "/backups/{id}/delete", Admin, "delete backup"),
    ("POST", "/logout", Viewer, "logout"),
    // One's own tokens (the handlers touch no one else's).
    ("POST", "/account/tokens", Viewer, "create token"),
    (
        "POST",
        "/account/tokens/{id}/revoke",
        Viewer,
        "revoke token",
    ),
    ("GET", "/audit", Admin, "read audit log"),
];

/// What `method` on the route `matched` needs, from the table; None when it has no row (see
/// [`action`] for the defaults).
pub fn required(method: &Method, matched: &str) -> Option<Action> {
    let method = if method == Method::HEAD {
        "GET"
    } else {
        method.as_str()
    };
    TABLE
        .iter()
        .find(|(m, p, _, _)| *m == method && *p == matched)
        .map(|&(_, _, role, name)| Action { role, name })
}

/// What `method` on `matched` needs, defaults included: a row of the table, else a viewer for
/// a safe method (`view`), else an admin (fail closed).
pub fn action(method: &Method, matched: &str) -> Action {
    required(method, matched).unwrap_or(if is_safe(method) {
        Action {
            role: Viewer,
            name: "view",
        }
    } else {
        Action {
            role: Admin,
            name: "unlisted action",
        }
    })
}

/// GET and HEAD change nothing: they need no CSRF token and are not audited.
pub fn is_safe(method: &Method) -> bool {
    method == Method::GET || method == Method::HEAD
}

/// Routes open to anyone: health, signed links (the signature is the credential), WAL for a
/// recovering server (its own token), the login page and static files.
pub fn open(matched: &str) -> bool {
    matches!(
        matched,
        "/healthz" | "/links/{id}" | "/wal/{name}/{file}" | "/login"
    ) || matched.starts_with("/static/")
}

/// The words of a refusal: `this needs the operator role; alice is a viewer`.
pub fn refusal(needed: Role, user: &str, has: Role) -> String {
    format!(
        "this needs the {needed} role; {user} is {}",
        has.with_article()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_unsafe_route_the_router_registers_has_a_row() {
        let routes = crate::server::routes::registered();
        assert!(routes.len() > 30, "{}", routes.len());
        let mut missing = Vec::new();
        for (method, path) in &routes {
            if open(path) || is_safe(method) {
                continue;
            }
            if required(method, path).is_none() {
                missing.push(format!("{method} {path}"));
            }
        }
        assert!(
            missing.is_empty(),
            "unsafe routes without a row in server/roles.rs (they would need an admin): {missing:?}"
        );
    }

    #[test]
    fn every_api_row_names_a_route_the_router_has() {
        let routes = crate::server::routes::registered();
        for (m, p, _, _) in TABLE {
            if !p.starts_with("/api/") {
                continue; // the dashboard's pages are added by the web module
            }
            assert!(
                routes.iter().any(|(rm, rp)| rm.as_str() == *m && rp == p),
                "{m} {p} has a row but no route"
            );
        }
    }

    #[test]
    fn rows_are_unique() {
        for (i, (m, p, _, _)) in TABLE.iter().enumerate() {
            assert!(
                !TABLE[i + 1..]
                    .iter()
                    .any(|(m2, p2, _, _)| m == m2 && p == p2),
                "{m} {p} twice"
            );
        }
    }

    #[test]
    fn the_roles_the_issue_names() {
        let need = |m: Method, p: &str| action(&m, p).role;
        // Viewers see.
        assert_eq!(need(Method::GET, "/api/transfers"), Viewer);
        assert_eq!(need(Method::HEAD, "/api/databases"), Viewer);
        // Operators capture, restore, cancel, verify, download.
        assert_eq!(need(Method::POST, "/api/captures"), Operator);
        assert_eq!(need(Method::POST, "/api/restores"), Operator);
        assert_eq!(need(Method::POST, "/api/transfers/{id}/cancel"), Operator);
        assert_eq!(need(Method::POST, "/api/backups/{id}/verify"), Operator);
        assert_eq!(need(Method::GET, "/api/backups/{id}/download"), Operator);
        assert_eq!(need(Method::HEAD, "/api/backups/{id}/download"), Operator);
        // Admins manage databases, schedules, retention, protection, users.
        assert_eq!(need(Method::POST, "/api/databases"), Admin);
        assert_eq!(need(Method::POST, "/api/schedules"), Admin);
        assert_eq!(need(Method::PUT, "/api/retention/{database}"), Admin);
        assert_eq!(need(Method::POST, "/api/protections"), Admin);
        assert_eq!(need(Method::POST, "/api/users"), Admin);
        assert_eq!(need(Method::DELETE, "/api/backups/{id}"), Admin);
        // Fail closed.
        assert_eq!(
            action(&Method::POST, "/api/something-new"),
            Action {
                role: Admin,
                name: "unlisted action"
            }
        );
        assert_eq!(action(&Method::PATCH, "/api/databases").role, Admin);
        assert!(open("/static/htmx.min.js") && open("/login") && !open("/api/databases"));
        assert_eq!(
            refusal(Operator, "alice", Viewer),
            "this needs the operator role; alice is a viewer"
        );
    }
}
