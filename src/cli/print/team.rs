//! What the team's commands print: users, tokens (never their text but once), the audit log.

use crate::api::{AuditEntry, TokenCreated, TokenView, UserView};
use crate::format;

use super::super::table::render;

/// The `users` listing.
pub fn users_listing(users: &[UserView]) -> String {
    if users.is_empty() {
        return "No users. Add one with `pgbackups users:add NAME --role admin`.\n".into();
    }
    let rows = users
        .iter()
        .map(|u| {
            vec![
                u.name.clone(),
                u.role.to_string(),
                format::time(u.created_at),
            ]
        })
        .collect::<Vec<_>>();
    format!(
        "=== Users\n{}",
        render(&["Name", "Role", "Added at"], &rows)
    )
}

/// What `tokens:create` prints: the token's text, this once, and how to use and revoke it.
pub fn token_created_text(t: &TokenCreated) -> String {
    format!(
        "Created token {id} for {user} ({role}). Copy it now: it is not shown again.\n{token}\nUse it as PGBACKUPS_TOKEN; revoke it with `pgbackups tokens:revoke {id}`.\n",
        id = t.id,
        user = t.user,
        role = t.role,
        token = t.token
    )
}

/// The `tokens` listing.
pub fn tokens_listing(tokens: &[TokenView]) -> String {
    if tokens.is_empty() {
        return "No personal API tokens. Create one with `pgbackups tokens:create`.\n".into();
    }
    let rows = tokens
        .iter()
        .map(|t| {
            vec![
                t.id.clone(),
                t.user.clone(),
                t.label.clone().unwrap_or_default(),
                format::time(t.created_at),
            ]
        })
        .collect::<Vec<_>>();
    format!(
        "=== API Tokens\n{}",
        render(&["ID", "User", "Label", "Created at"], &rows)
    )
}

/// The `audit` listing, newest first as the service gives it.
pub fn audit_listing(entries: &[AuditEntry]) -> String {
    if entries.is_empty() {
        return "The audit log is empty.\n".into();
    }
    let rows = entries
        .iter()
        .map(|e| {
            vec![
                format::time(e.at),
                e.actor.clone(),
                e.action.clone(),
                e.target.clone(),
                e.status.to_string(),
            ]
        })
        .collect::<Vec<_>>();
    format!(
        "=== Audit Log\n{}",
        render(&["At", "Who", "Action", "Target", "Status"], &rows)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Role;

    fn at() -> jiff::Timestamp {
        "2026-11-24T02:00:00Z".parse().unwrap_or_default()
    }

    #[test]
    fn users() {
        assert!(users_listing(&[]).starts_with("No users."));
        let u = [UserView {
            name: "alice".into(),
            role: Role::Operator,
            created_at: at(),
        }];
        assert_eq!(
            users_listing(&u),
            "=== Users\n\
             Name   Role      Added at\n\
             ─────  ────────  ─────────────────────────\n\
             alice  operator  2026-11-24 02:00:00 +0000\n"
        );
    }

    #[test]
    fn a_new_token_is_shown_once_with_how_to_use_it() {
        let t = TokenCreated {
            id: "3f9a01c2".into(),
            token: "pgb_abc".into(),
            user: "alice".into(),
            role: Role::Viewer,
        };
        let text = token_created_text(&t);
        assert_eq!(text.lines().nth(1), Some("pgb_abc"));
        assert!(text.starts_with("Created token 3f9a01c2 for alice (viewer)."));
        assert!(text.contains("`pgbackups tokens:revoke 3f9a01c2`"));
    }

    #[test]
    fn tokens_never_show_their_text() {
        assert!(tokens_listing(&[]).starts_with("No personal API tokens."));
        let t = [TokenView {
            id: "3f9a01c2".into(),
            label: Some("laptop".into()),
            user: "alice".into(),
            created_at: at(),
        }];
        let text = tokens_listing(&t);
        assert_eq!(
            text.lines().nth(3),
            Some("3f9a01c2  alice  laptop  2026-11-24 02:00:00 +0000")
        );
    }

    #[test]
    fn audit() {
        assert_eq!(audit_listing(&[]), "The audit log is empty.\n");
        let e = [AuditEntry {
            seq: 2,
            at: at(),
            actor: "bob".into(),
            action: "capture".into(),
            target: "main".into(),
            status: 403,
        }];
        let text = audit_listing(&e);
        assert_eq!(text.lines().next(), Some("=== Audit Log"));
        assert_eq!(
            text.lines().nth(3),
            Some("2026-11-24 02:00:00 +0000  bob  capture  main    403")
        );
    }
}
