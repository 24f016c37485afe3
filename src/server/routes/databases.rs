//! Routes of registered databases: list, add, remove.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

use crate::api::{AddDatabaseRequest, DatabaseAdded, DatabaseView};
use crate::server::extract::{Json as JsonBody, Path};

use super::{ApiError, ApiResult, AppState, blocking};

/// `GET /api/databases`.
pub(super) async fn list_databases(
    State(s): State<AppState>,
) -> ApiResult<Json<Vec<DatabaseView>>> {
    let r = s.registry.clone();
    Ok(Json(blocking(move || Ok(r.list()?)).await?))
}

/// `POST /api/databases`.
pub(super) async fn add_database(
    State(s): State<AppState>,
    JsonBody(body): JsonBody<AddDatabaseRequest>,
) -> ApiResult<(StatusCode, Json<DatabaseAdded>)> {
    let r = s.registry.clone();
    let name = body.name.clone();
    let url = blocking(move || Ok(r.add(&body.name, &body.url)?)).await?;
    Ok((
        StatusCode::CREATED,
        Json(DatabaseAdded {
            name,
            url: url.redacted(),
        }),
    ))
}

/// `DELETE /api/databases/{name}`: refused while the database is protected.
pub(super) async fn remove_database(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    let (p, n) = (s.protector.clone(), name.clone());
    if blocking(move || Ok(p.is_protected(&n))).await? {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("{name} is protected: stop that first with `pgbackups unprotect {name}`"),
        ));
    }
    let r = s.registry.clone();
    let removed = blocking(move || Ok(r.remove(&name)?)).await?;
    if removed {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no database of that name is registered; list them with `pgbackups databases`",
        ))
    }
}
