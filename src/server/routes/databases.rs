//! Routes of registered databases: list, add, remove; and what `pull` and `push` (which run
//! on the user's machine) ask of one: its dump, streamed, and its extensions.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::api::{
    AddDatabaseRequest, DUMP_CONTENT_TYPE, DUMP_VERSION_HEADER, DatabaseAdded, DatabaseView,
    DumpRequest, ExtensionsView,
};
use crate::server::auth::AuditTarget;
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
) -> ApiResult<(
    StatusCode,
    axum::Extension<AuditTarget>,
    Json<DatabaseAdded>,
)> {
    let r = s.registry.clone();
    let name = body.name.clone();
    let url = blocking(move || Ok(r.add(&body.name, &body.url)?)).await?;
    Ok((
        StatusCode::CREATED,
        axum::Extension(AuditTarget(name.clone())),
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

/// `POST /api/databases/{name}/dump`: the database's dump (`pg_dump -Fc -Z0`, the body's
/// filter applied) compressed with zstd, streamed. A pg_dump that fails ends the body with an
/// error, never a clean end.
pub(super) async fn dump(
    State(s): State<AppState>,
    Path(name): Path<String>,
    JsonBody(filter): JsonBody<DumpRequest>,
) -> ApiResult<Response> {
    let stream = s.engine.stream_dump(&name, filter).await?;
    let chunks = crate::pg::dump_stream::into_stream(stream.chunks);
    let mut resp = Body::from_stream(chunks).into_response();
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(DUMP_CONTENT_TYPE),
    );
    if let Some(v) = stream.pg_dump {
        headers.insert(DUMP_VERSION_HEADER, HeaderValue::from(v.major));
    }
    Ok(resp)
}

/// `GET /api/databases/{name}/extensions`.
pub(super) async fn extensions(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<ExtensionsView>> {
    let extensions = s.engine.extensions(&name).await?;
    Ok(Json(ExtensionsView {
        database: name,
        extensions,
    }))
}
