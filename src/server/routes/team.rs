//! Routes of the team: users (admins only, by the roles table), personal tokens (everyone
//! their own; admins anyone's) and the audit log.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;

use crate::api::{
    AddUserRequest, AuditEntry, AuditQuery, RemoveUserQuery, Role, SetPasswordRequest,
    SetRoleRequest, TokenCreated, TokenQuery, TokenRequest, TokenView, UserView,
};
use crate::catalog::CatalogError;
use crate::server::auth::{AuditTarget, Caller, require};
use crate::server::extract::{Json as JsonBody, Path, Query};
use crate::team::{Principal, TeamError};

use super::{ApiError, ApiResult, AppState};

impl From<TeamError> for ApiError {
    fn from(e: TeamError) -> ApiError {
        let status = match &e {
            TeamError::Rule(_) => StatusCode::BAD_REQUEST,
            TeamError::NoSuchUser(_) | TeamError::NoSuchToken(_) => StatusCode::NOT_FOUND,
            TeamError::Catalog(CatalogError::UserExists(_)) => StatusCode::CONFLICT,
            TeamError::Catalog(CatalogError::NoSuchUser(_)) => StatusCode::NOT_FOUND,
            TeamError::Catalog(_)
            | TeamError::BadRole { .. }
            | TeamError::Hash(_)
            | TeamError::Random(_) => {
                tracing::error!("{e}");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        ApiError::new(status, e.to_string())
    }
}

/// Runs a blocking team call (catalog, argon2) off the async threads.
pub(in crate::server) async fn team_call<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, TeamError> + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(ApiError::from)
}

/// `GET /api/users`.
pub(super) async fn list_users(State(s): State<AppState>) -> ApiResult<Json<Vec<UserView>>> {
    let team = s.team.clone();
    Ok(Json(team_call(move || team.users()).await?))
}

/// `POST /api/users`: 201 and the new user.
pub(super) async fn add_user(
    State(s): State<AppState>,
    JsonBody(req): JsonBody<AddUserRequest>,
) -> ApiResult<impl IntoResponse> {
    let team = s.team.clone();
    let user = team_call(move || team.add_user(&req.name, req.role, &req.password)).await?;
    let target = AuditTarget(format!("{} ({})", user.name, user.role));
    Ok((StatusCode::CREATED, axum::Extension(target), Json(user)))
}

/// `DELETE /api/users/{name}?confirm=NAME`: with their sessions and tokens.
pub(super) async fn remove_user(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<RemoveUserQuery>,
) -> ApiResult<StatusCode> {
    if q.confirm.as_deref().map(str::trim) != Some(name.as_str()) {
        return Err(ApiError::unconfirmed(
            format!(
                "removing a user is destructive (their sessions and tokens go too); confirm with --confirm {name}"
            ),
            &name,
        ));
    }
    let team = s.team.clone();
    team_call(move || team.remove_user(&name)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `PUT /api/users/{name}/password`: their browser sessions end.
pub(super) async fn set_password(
    State(s): State<AppState>,
    Path(name): Path<String>,
    JsonBody(req): JsonBody<SetPasswordRequest>,
) -> ApiResult<StatusCode> {
    let team = s.team.clone();
    team_call(move || team.set_password(&name, &req.password)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `PUT /api/users/{name}/role`.
pub(super) async fn set_role(
    State(s): State<AppState>,
    Path(name): Path<String>,
    JsonBody(req): JsonBody<SetRoleRequest>,
) -> ApiResult<impl IntoResponse> {
    let team = s.team.clone();
    let user = team_call(move || team.set_role(&name, req.role)).await?;
    let target = AuditTarget(format!("{} ({})", user.name, user.role));
    Ok((axum::Extension(target), Json(user)))
}

/// Whose tokens a request is about: the named user (an admin's business unless it is the
/// caller), else the caller; the service token, not a user, must name one to create one.
fn whose(caller: &Principal, named: Option<String>) -> ApiResult<Option<String>> {
    match named.filter(|n| !n.trim().is_empty()) {
        Some(n) if n == caller.user => Ok(Some(n)),
        Some(n) => {
            require(caller, Role::Admin)?;
            Ok(Some(n))
        }
        None if caller.is_service_token() => Ok(None),
        None => Ok(Some(caller.user.clone())),
    }
}

/// `GET /api/tokens[?user=NAME]`: the caller's tokens, or (admins) another user's; with the
/// service token and no user, everyone's.
pub(super) async fn list_tokens(
    State(s): State<AppState>,
    Caller(caller): Caller,
    Query(q): Query<TokenQuery>,
) -> ApiResult<Json<Vec<TokenView>>> {
    let user = whose(&caller, q.user)?;
    let team = s.team.clone();
    Ok(Json(team_call(move || team.tokens(user.as_deref())).await?))
}

/// `POST /api/tokens`: 201 and the token's text, shown this once.
pub(super) async fn create_token(
    State(s): State<AppState>,
    Caller(caller): Caller,
    JsonBody(req): JsonBody<TokenRequest>,
) -> ApiResult<impl IntoResponse> {
    let Some(user) = whose(&caller, req.user)? else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "the service's own token is not a user: name the user the token is for (`pgbackups tokens:create --user NAME`)",
        ));
    };
    let team = s.team.clone();
    let label = req.label;
    let made: TokenCreated = team_call(move || team.create_token(&user, label.as_deref())).await?;
    let target = AuditTarget(format!("{} of {}", made.id, made.user));
    Ok((StatusCode::CREATED, axum::Extension(target), Json(made)))
}

/// `DELETE /api/tokens/{id}`: one's own, or (admins) anyone's.
pub(super) async fn revoke_token(
    State(s): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let team = s.team.clone();
    let lookup = id.clone();
    let token = team_call(move || team.token_info(&lookup))
        .await?
        .ok_or_else(|| ApiError::from(TeamError::NoSuchToken(id.clone())))?;
    if token.user != caller.user && caller.role < Role::Admin {
        // Someone else's token is "no such token" to a non-admin: its ID tells nothing.
        return Err(ApiError::from(TeamError::NoSuchToken(id)));
    }
    let team = s.team.clone();
    team_call(move || team.revoke_token(&id)).await?;
    let target = AuditTarget(format!("{} of {}", token.id, token.user));
    Ok((StatusCode::NO_CONTENT, axum::Extension(target)))
}

/// `GET /api/audit[?limit=N&before=SEQ]`: newest first.
pub(super) async fn audit_log(
    State(s): State<AppState>,
    Query(q): Query<AuditQuery>,
) -> ApiResult<Json<Vec<AuditEntry>>> {
    let team = s.team.clone();
    Ok(Json(team_call(move || team.audit_log(&q)).await?))
}
