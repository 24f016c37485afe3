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
use crate::team::{Principal, Team, TeamError};

use super::views::Layout;
use super::{ApiError, AppState, PageError, PageResult, html, layout};

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

/// Runs a blocking team call off the async threads.
async fn team_call<T: Send + 'static>(
    s: &AppState,
    f: impl FnOnce(&Team) -> Result<T, TeamError> + Send + 'static,
) -> Result<T, PageError> {
    let team = s.team.clone();
    tokio::task::spawn_blocking(move || f(&team))
        .await
        .map_err(|e| PageError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| ApiError::from(e).into())
}

/// The page, with `created` (a new token's text) when one was just made.
async fn account_page(s: &AppState, p: &Principal, created: Option<String>) -> PageResult {
    if p.is_service_token() {
        return Err(PageError::new(
            StatusCode::BAD_REQUEST,
            "the service's own token has no account: log in as a user (`pgbackups users:add NAME --role ...`)",
        ));
    }
    let user = p.user.clone();
    let tokens: Vec<TokenView> = team_call(s, move |t| t.tokens(Some(&user))).await?;
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
    let user = p.user.clone();
    let label = f.label.trim().to_string();
    let created = team_call(&s, move |t| {
        t.create_token(&user, Some(label.as_str()).filter(|l| !l.is_empty()))
    })
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
    let (user, tid) = (p.user.clone(), id.clone());
    team_call(&s, move |t| {
        match t.token_info(&tid)? {
            Some(tok) if tok.user == user => t.revoke_token(&tid),
            // Another user's token is reported as missing: its ID tells nothing.
            _ => Err(TeamError::NoSuchToken(tid)),
        }
    })
    .await?;
    let mut out = Redirect::to("/account").into_response();
    out.extensions_mut().insert(AuditTarget(id));
    Ok(out)
}
