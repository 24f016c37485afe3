//! The service's routes, all in [`router`]: thin handlers, one file per group, that parse a
//! request into an [`crate::api`] type, call the engine, and answer an [`crate::api`] type.
//!
//! `databases.rs` (registered databases), `transfers.rs` (starting, following and cancelling
//! transfers; deleting and verifying backups; the catalog rebuild), `schedules.rs` (schedules,
//! retention, pins), `links.rs` (downloads and signed links), `protection.rs` (Continuous
//! Protection and WAL for recovering servers), `metrics.rs` (Prometheus text); `error.rs` maps
//! every error to its status and `{"error"}` answer.

mod databases;
mod error;
mod links;
mod metrics;
mod protection;
mod schedules;
mod transfers;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};

use crate::catalog::{Catalog, TransferId};
use crate::clock::Clock;
use crate::protect::Protector;
use crate::registry::Registry;
use crate::schedule::Scheduler;
use crate::secret::Secrets;
use crate::service::Service;
use crate::storage::Storage;
use crate::transfer::{Engine, Links, TransferError};

use super::extract::json_errors;

pub use error::ApiError;
pub(in crate::server) use error::ApiResult;
pub(in crate::server) use protection::protection_view;
pub(in crate::server) use schedules::{apply_retention, apply_schedule, schedule_views};

/// What the handlers use: the parts of the service, as the composition root built them.
#[derive(Clone)]
pub(super) struct AppState {
    pub(super) engine: Arc<Engine>,
    pub(super) catalog: Arc<dyn Catalog>,
    pub(super) storage: Arc<dyn Storage>,
    pub(super) registry: Arc<Registry>,
    pub(super) links: Arc<Links>,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) secrets: Arc<Secrets>,
    pub(super) scheduler: Arc<Scheduler>,
    pub(super) protector: Arc<Protector>,
    pub(super) team: Arc<crate::team::Team>,
    /// The URL clients reach this service at, for signed download links.
    pub(super) public_url: Arc<str>,
}

/// The service's routes.
pub fn router(service: &Service, public_url: &str) -> Router {
    let state = AppState {
        engine: service.engine.clone(),
        catalog: service.catalog.clone(),
        storage: service.storage.clone(),
        registry: service.registry.clone(),
        links: service.links.clone(),
        clock: service.clock.clone(),
        secrets: service.secrets.clone(),
        scheduler: service.scheduler.clone(),
        protector: service.protector.clone(),
        team: Arc::new(crate::team::Team),
        public_url: public_url.into(),
    };
    let api = Router::new()
        .route(
            "/databases",
            get(databases::list_databases).post(databases::add_database),
        )
        .route("/databases/{name}", delete(databases::remove_database))
        .route("/databases/{name}/dump", post(databases::dump))
        .route("/databases/{name}/extensions", get(databases::extensions))
        .route("/transfers", get(transfers::list_transfers))
        .route("/transfers/cancel", post(transfers::cancel_newest))
        .route("/transfers/{id}", get(transfers::show_transfer))
        .route("/transfers/{id}/logs", get(transfers::transfer_logs))
        .route("/transfers/{id}/cancel", post(transfers::cancel_transfer))
        .route("/captures", post(transfers::start_capture))
        .route("/restores", post(transfers::start_restore))
        .route("/server-captures", post(transfers::start_server_capture))
        .route("/set-restores", post(transfers::start_set_restore))
        .route(
            "/restores/upload",
            post(transfers::start_restore_upload).layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .route("/copies", post(transfers::start_copy))
        .route(
            "/schedules",
            get(schedules::list_schedules).post(schedules::set_schedule),
        )
        .route("/schedules/{database}", delete(schedules::remove_schedule))
        .route(
            "/retention/{database}",
            get(schedules::show_retention).put(schedules::set_retention),
        )
        .route(
            "/backups/{id}/pin",
            post(schedules::pin).delete(schedules::unpin),
        )
        .route("/backups/{id}", delete(transfers::delete_backup))
        .route("/backups/{id}/download", get(links::download))
        .route("/backups/{id}/url", post(links::backup_url))
        .route("/backups/{id}/verify", post(transfers::verify_backup))
        .route("/catalog/rebuild", post(transfers::rebuild_catalog))
        .route(
            "/protections",
            get(protection::list_protections).post(protection::protect),
        )
        .route(
            "/protections/{database}",
            get(protection::show_protection).delete(protection::unprotect),
        )
        .route("/metrics", get(metrics::metrics))
        .route("/wal/{name}/token", post(protection::wal_token))
        .fallback(|| async {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "no such API route; docs/API.md lists them",
            )
        })
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        // Signed download links: the signature is the credential, no token.
        .route("/links/{id}", get(links::signed_download))
        // WAL for a recovering server: a token limited to one archive is the credential.
        .route("/wal/{name}/{file}", get(protection::wal_file))
        .nest("/api", api)
        .merge(super::pages::routes())
        .fallback(|| async {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "no such route: the API is under /api (docs/API.md lists its routes)",
            )
        })
        .with_state(state);
    // A router's `layer` wraps each route, inside the part that answers a wrong method (and
    // adds its `Allow` header); as the one service of an outer router, the whole of `app` is
    // wrapped, so the layer sees every answer as it leaves.
    Router::new()
        .fallback_service(app)
        .layer(middleware::map_response(json_errors))
}

/// The bearer token a request presents, if any.
fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

async fn require_token(State(state): State<AppState>, req: Request, next: Next) -> Response {
    match bearer(req.headers()) {
        Some(t) if state.secrets.token_matches(t) => next.run(req).await,
        Some(_) => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "the API token is wrong; use the token in the service's data directory (file `token`) as PGBACKUPS_TOKEN",
        )
        .into_response(),
        None => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "this API needs a token: send `Authorization: Bearer <token>` (the token is in the service's data directory, file `token`)",
        )
        .into_response(),
    }
}

/// A transfer ID from a path, exactly as the service prints them (400 otherwise).
pub(in crate::server) fn parse_id(s: &str) -> ApiResult<TransferId> {
    s.parse().map_err(|e: crate::catalog::TransferIdError| {
        ApiError::new(StatusCode::BAD_REQUEST, e.to_string())
    })
}

/// A backup ID, or none for `latest` (or nothing).
fn parse_optional_id(s: Option<&str>) -> ApiResult<Option<TransferId>> {
    match s.map(str::trim).filter(|s| !s.is_empty() && *s != "latest") {
        Some(s) => parse_id(s).map(Some),
        None => Ok(None),
    }
}

/// Runs a blocking engine call off the async threads.
pub(in crate::server) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, TransferError> + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(ApiError::from)
}
