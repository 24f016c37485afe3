//! The service's routes, all in [`router`]: thin handlers, one file per group, that parse a
//! request into an [`crate::api`] type, call the engine, and answer an [`crate::api`] type.
//!
//! `databases.rs` (registered databases), `transfers.rs` (starting, following and cancelling
//! transfers; deleting and verifying backups; the catalog rebuild), `schedules.rs` (schedules,
//! retention, pins), `links.rs` (downloads and signed links), `protection.rs` (Continuous
//! Protection and WAL for recovering servers), `metrics.rs` (Prometheus text), `team.rs`
//! (users, personal tokens, the audit log); `error.rs` maps every error to its status and
//! `{"error"}` answer. Who may call each route is `server/roles.rs`'s table.

mod databases;
mod error;
mod links;
mod metrics;
mod protection;
mod schedules;
mod team;
mod transfers;

use std::sync::Arc;

use axum::Router;
use axum::handler::Handler;
use axum::http::{Method, StatusCode};
use axum::middleware;
use axum::routing::{MethodFilter, MethodRouter, on, post};

use crate::catalog::{Catalog, TransferId};
use crate::clock::Clock;
use crate::protect::Protector;
use crate::registry::Registry;
use crate::schedule::Scheduler;
use crate::secret::Secrets;
use crate::service::Service;
use crate::storage::Storage;
use crate::team::Team;
use crate::transfer::{Engine, Links, TransferError};

use super::auth::{Auth, authenticate};
use super::extract::json_errors;

pub use error::ApiError;
pub(in crate::server) use error::ApiResult;
pub(in crate::server) use protection::protection_view;
pub(in crate::server) use schedules::{
    apply_retention, apply_schedule, schedule_view_of, schedule_views,
};
pub(in crate::server) use team::team_call;

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
    pub(super) team: Arc<Team>,
    /// The URL clients reach this service at, for signed download links.
    pub(super) public_url: Arc<str>,
    /// Proxies whose `X-Forwarded-For` names the client.
    pub(super) trusted_proxies: Arc<[crate::config::TrustedProxy]>,
}

/// The service's routes, every one behind the middleware of `server/auth.rs` (which lets
/// the open ones through).
pub fn router(
    service: &Service,
    public_url: &str,
    trusted_proxies: &[crate::config::TrustedProxy],
) -> Router {
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
        team: service.team.clone(),
        public_url: public_url.into(),
        trusted_proxies: trusted_proxies.into(),
    };
    let auth = Auth {
        team: service.team.clone(),
        secrets: service.secrets.clone(),
    };
    // The dashboard's pages join here, before `route_layer`, so that they get the same
    // middleware (their rows are in `roles.rs` already); `/login` and `/static/` are open.
    let app = routes()
        .router
        // After every route (pages too): `route_layer` wraps the routes there are, and sees
        // which one matched (the roles table is keyed on it). Unknown paths reach the
        // fallback without it, and say so.
        .route_layer(middleware::from_fn_with_state(auth, authenticate))
        .fallback(|uri: axum::http::Uri| async move {
            if uri.path().starts_with("/api/") {
                ApiError::new(
                    StatusCode::NOT_FOUND,
                    "no such API route; docs/API.md lists them",
                )
            } else {
                ApiError::new(
                    StatusCode::NOT_FOUND,
                    "no such route: the API is under /api (docs/API.md lists its routes)",
                )
            }
        })
        .with_state(state);
    // A router's `layer` wraps each route, inside the part that answers a wrong method (and
    // adds its `Allow` header); as the one service of an outer router, the whole of `app` is
    // wrapped, so the layer sees every answer as it leaves.
    Router::new()
        .fallback_service(app)
        .layer(middleware::map_response(json_errors))
}

/// Every (method, route) the router registers, for the roles table's test.
#[cfg(test)]
pub(crate) fn registered() -> Vec<(Method, &'static str)> {
    routes().list
}

/// The routes, and the list of what was registered (the roles table is checked against it).
pub(in crate::server) struct Routes {
    router: Router<AppState>,
    list: Vec<(Method, &'static str)>,
}

impl Routes {
    /// Adds `handler` for `method` on `path`.
    pub(in crate::server) fn add<H, T>(
        self,
        method: Method,
        path: &'static str,
        handler: H,
    ) -> Routes
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        let filter = MethodFilter::try_from(method.clone())
            .unwrap_or_else(|_| unreachable!("only standard methods are registered"));
        self.add_router(method, path, on(filter, handler))
    }

    /// Hands the routes to `f` to add more (the dashboard's pages).
    fn pipe(self, f: impl FnOnce(Routes) -> Routes) -> Routes {
        f(self)
    }

    /// Adds a method router built by the caller (with a layer of its own) for `method`.
    pub(in crate::server) fn add_router(
        mut self,
        method: Method,
        path: &'static str,
        route: MethodRouter<AppState>,
    ) -> Routes {
        self.router = self.router.route(path, route);
        self.list.push((method, path));
        self
    }
}

/// Every route. Who may call each is in `server/roles.rs`.
fn routes() -> Routes {
    use Method as M;
    let r = Routes {
        router: Router::new(),
        list: Vec::new(),
    };
    r
        // Open: health; signed download links (the signature is the credential); WAL for a
        // recovering server (a token limited to one archive is the credential).
        .add(M::GET, "/healthz", || async { "ok\n" })
        .add(M::GET, "/links/{id}", links::signed_download)
        .add(M::GET, "/wal/{name}/{file}", protection::wal_file)
        // The API.
        .add(M::GET, "/api/databases", databases::list_databases)
        .add(M::POST, "/api/databases", databases::add_database)
        .add(
            M::DELETE,
            "/api/databases/{name}",
            databases::remove_database,
        )
        .add(M::POST, "/api/databases/{name}/dump", databases::dump)
        .add(
            M::GET,
            "/api/databases/{name}/extensions",
            databases::extensions,
        )
        .add(M::GET, "/api/transfers", transfers::list_transfers)
        .add(M::POST, "/api/transfers/cancel", transfers::cancel_newest)
        .add(M::GET, "/api/transfers/{id}", transfers::show_transfer)
        .add(M::GET, "/api/transfers/{id}/logs", transfers::transfer_logs)
        .add(
            M::POST,
            "/api/transfers/{id}/cancel",
            transfers::cancel_transfer,
        )
        .add(M::POST, "/api/captures", transfers::start_capture)
        .add(M::POST, "/api/restores", transfers::start_restore)
        .add(
            M::POST,
            "/api/server-captures",
            transfers::start_server_capture,
        )
        .add(M::POST, "/api/set-restores", transfers::start_set_restore)
        .add_router(
            M::POST,
            "/api/restores/upload",
            post(transfers::start_restore_upload).layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .add(M::POST, "/api/copies", transfers::start_copy)
        .add(M::GET, "/api/schedules", schedules::list_schedules)
        .add(M::POST, "/api/schedules", schedules::set_schedule)
        .add(
            M::DELETE,
            "/api/schedules/{database}",
            schedules::remove_schedule,
        )
        .add(
            M::GET,
            "/api/retention/{database}",
            schedules::show_retention,
        )
        .add(
            M::PUT,
            "/api/retention/{database}",
            schedules::set_retention,
        )
        .add(M::POST, "/api/backups/{id}/pin", schedules::pin)
        .add(M::DELETE, "/api/backups/{id}/pin", schedules::unpin)
        .add(M::DELETE, "/api/backups/{id}", transfers::delete_backup)
        .add(M::GET, "/api/backups/{id}/download", links::download)
        .add(M::POST, "/api/backups/{id}/url", links::backup_url)
        .add(
            M::POST,
            "/api/backups/{id}/verify",
            transfers::verify_backup,
        )
        .add(M::POST, "/api/catalog/rebuild", transfers::rebuild_catalog)
        .add(M::GET, "/api/protections", protection::list_protections)
        .add(M::POST, "/api/protections", protection::protect)
        .add(
            M::GET,
            "/api/protections/{database}",
            protection::show_protection,
        )
        .add(
            M::DELETE,
            "/api/protections/{database}",
            protection::unprotect,
        )
        .add(M::GET, "/api/metrics", metrics::metrics)
        .add(M::POST, "/api/wal/{name}/token", protection::wal_token)
        .add(M::GET, "/api/users", team::list_users)
        .add(M::POST, "/api/users", team::add_user)
        .add(M::DELETE, "/api/users/{name}", team::remove_user)
        .add(M::PUT, "/api/users/{name}/password", team::set_password)
        .add(M::PUT, "/api/users/{name}/role", team::set_role)
        .add(M::GET, "/api/tokens", team::list_tokens)
        .add(M::POST, "/api/tokens", team::create_token)
        .add(M::DELETE, "/api/tokens/{id}", team::revoke_token)
        .add(M::GET, "/api/audit", team::audit_log)
        .pipe(super::pages::add)
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
