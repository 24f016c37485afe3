//! The logged-in user's own page: who they are, their role, and their personal API tokens:
//! create one (shown once, to copy into `PGBACKUPS_TOKEN`), see them, revoke them. A user
//! touches only their own tokens here; admins manage everyone's with the CLI.

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect};
use axum::{Extension, Form};
use serde::Deserialize;

use crate::api::TokenView;
use crate::server::auth::AuditTarget;
use crate::server::extract::Path;
use crate::team::{Principal, TeamError};

use super::views::Layout;
use super::{AppState, PageError, PageResult, html, layout, team_call};

/// One token as the page lists it.
struct TokenRow {
    id: String,
    label: String,
    created: String,
}

#[derive(Template)]
#[template(path = "account.html")]
struct AccountPage {
    layout: Layout,
    tokens: Vec<TokenRow>,
    /// A token just created: shown this once.
    created: Option<String>,
}

/// The page, with `created` (a new token's text) when one was just made.
async fn account_page(s: &AppState, p: &Principal, created: Option<String>) -> PageResult {
    if p.is_service_token() {
        return Err(PageError::new(
            StatusCode::BAD_REQUEST,
            "the service's own token has no account: log in as a user (`pgbackups users:add NAME --role ...`)",
        ));
    }
    let (team, user) = (s.team.clone(), p.user.clone());
    let tokens: Vec<TokenView> = team_call(move || team.tokens(Some(&user))).await?;
    Ok(html(&AccountPage {
        layout: layout(p),
        tokens: tokens
            .into_iter()
            .map(|t| TokenRow {
                id: t.id,
                label: t.label.unwrap_or_default(),
                created: crate::format::time(t.created_at),
            })
            .collect(),
        created,
    }))
}

/// `GET /account`.
pub(super) async fn account(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
) -> PageResult {
    account_page(&s, &p, None).await
}

#[derive(Deserialize)]
pub(super) struct TokenForm {
    #[serde(default)]
    label: String,
}

/// `POST /account/tokens`: a new personal token with the user's role, shown once.
pub(super) async fn create_token(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Form(f): Form<TokenForm>,
) -> PageResult {
    let (team, user) = (s.team.clone(), p.user.clone());
    let label = f.label.trim().to_string();
    let created =
        team_call(move || team.create_token(&user, Some(label.as_str()).filter(|l| !l.is_empty())))
            .await?;
    let id = created.id.clone();
    let mut out = account_page(&s, &p, Some(created.token)).await?;
    out.extensions_mut().insert(AuditTarget(id));
    Ok(out)
}

/// `POST /account/tokens/{id}/revoke`: one of the user's own tokens.
pub(super) async fn revoke_token(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> PageResult {
    let (team, user, tid) = (s.team.clone(), p.user.clone(), id.clone());
    team_call(move || {
        match team.token_info(&tid)? {
            Some(tok) if tok.user == user => team.revoke_token(&tid),
            // Another user's token is reported as missing: its ID tells nothing.
            _ => Err(TeamError::NoSuchToken(tid)),
        }
    })
    .await?;
    let mut out = Redirect::to("/account").into_response();
    out.extensions_mut().insert(AuditTarget(id));
    Ok(out)
}
