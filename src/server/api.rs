//! The API routes: thin handlers that parse, call the engine, and answer JSON.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde::Deserialize;
use serde_json::json;

use crate::catalog::{
    Catalog, CatalogError, DatabaseRecord, Origin, ScheduleRecord, TransferId, TransferKind,
};
use crate::pg::DumpFilter;
use crate::protect::{ProtectError, Protector};
use crate::registry::Registry;
use crate::schedule::retention::Policy;
use crate::schedule::{Clock, DailyAt, Scheduler, spec_of};
use crate::secret::Secrets;
use crate::service::Service;
use crate::storage::{Storage, StorageError};
use crate::transfer::atomic::AtomicSwap;
use crate::transfer::{Engine, Links, TransferError};

use super::extract::{Json as JsonBody, Path, Query, json_errors};

/// What the handlers use: the parts of the service, as the composition root built them.
#[derive(Clone)]
struct AppState {
    engine: Arc<Engine>,
    catalog: Arc<dyn Catalog>,
    storage: Arc<dyn Storage>,
    registry: Arc<Registry>,
    links: Arc<Links>,
    clock: Arc<dyn Clock>,
    secrets: Arc<Secrets>,
    scheduler: Arc<Scheduler>,
    protector: Arc<Protector>,
    /// The URL clients reach this service at, for signed download links.
    public_url: Arc<str>,
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
        public_url: public_url.into(),
    };
    let api = Router::new()
        .route("/databases", get(list_databases).post(add_database))
        .route("/databases/{name}", delete(remove_database))
        .route("/transfers", get(list_transfers))
        .route("/transfers/cancel", post(cancel_newest))
        .route("/transfers/{id}", get(show_transfer))
        .route("/transfers/{id}/logs", get(transfer_logs))
        .route("/transfers/{id}/cancel", post(cancel_transfer))
        .route("/captures", post(start_capture))
        .route("/restores", post(start_restore))
        .route(
            "/restores/upload",
            post(start_restore_upload).layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .route("/copies", post(start_copy))
        .route("/pulls", post(start_pull))
        .route("/pushes", post(start_push))
        .route("/schedules", get(list_schedules).post(set_schedule))
        .route("/schedules/{database}", delete(remove_schedule))
        .route(
            "/retention/{database}",
            get(show_retention).put(set_retention),
        )
        .route("/backups/{id}/pin", post(pin).delete(unpin))
        .route("/backups/{id}", delete(delete_backup))
        .route("/backups/{id}/download", get(download))
        .route("/backups/{id}/url", post(backup_url))
        .route("/backups/{id}/verify", post(verify_backup))
        .route("/catalog/rebuild", post(rebuild_catalog))
        .route("/protections", get(list_protections).post(protect))
        .route(
            "/protections/{database}",
            get(show_protection).delete(unprotect),
        )
        .route("/metrics", get(metrics))
        .route("/wal/{name}/token", post(wal_token))
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
        .route("/links/{id}", get(signed_download))
        // WAL for a recovering server: a token limited to one archive is the credential.
        .route("/wal/{name}/{file}", get(wal_file))
        .nest("/api", api)
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

/// An error answer: `{"error": "..."}` with a status that tells the kind of failure.
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    /// An error answer. Its message goes through [`crate::pg::redact`]: whatever a message
    /// quotes of a request, a password in it is not sent back (nor written to a log).
    pub(super) fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: crate::pg::redact(&message.into()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "error": self.message }))).into_response()
    }
}

impl From<TransferError> for ApiError {
    fn from(e: TransferError) -> ApiError {
        use TransferError as E;
        let status = match &e {
            E::NotFound(_) | E::UnknownDatabase(_) | E::NoBackups => StatusCode::NOT_FOUND,
            E::NoDatabases
            | E::WhichDatabase(_)
            | E::BadName(_)
            | E::BadUrl(_)
            | E::Confirm { .. }
            | E::NotABackup(_)
            | E::BadJobs(_)
            | E::BadFilter(_)
            | E::BadSourceUrl
            | E::VerifyTarget(_)
            | E::Upload(_)
            | E::SameDatabase => StatusCode::BAD_REQUEST,
            E::Target(_) => StatusCode::CONFLICT,
            E::NotCompleted { .. }
            | E::InUse { .. }
            | E::StillRunning(_)
            | E::NotRunning { .. }
            | E::NothingRunning
            | E::Claim(_)
            | E::Unrecorded(_) => StatusCode::CONFLICT,
            E::Catalog(CatalogError::DatabaseExists(_)) => StatusCode::CONFLICT,
            E::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            E::Storage(StorageError::NotFound(key)) => {
                return ApiError::new(StatusCode::GONE, missing_object(None, key));
            }
            E::Catalog(_) | E::Storage(_) | E::Unseal(_) | E::Internal(_) => {
                tracing::error!("{}", crate::pg::redact(&e.to_string()));
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        ApiError::new(status, e.to_string())
    }
}

/// What a user meets when a backup's stored object is gone (removed from the store by hand,
/// or a store that is not the one the catalog was written with): 410, and the two ways out.
fn missing_object(id: Option<TransferId>, key: &str) -> String {
    let backup = id.map_or_else(|| "the backup".to_string(), |id| format!("backup {id}"));
    let id = id.map_or_else(|| "ID".to_string(), |id| id.to_string());
    format!(
        "the stored object of {backup} ({key}) is missing from the store: it was removed outside pgbackups, or the service is not using the store the backup was written to. Forget the backup with `pgbackups backups:delete {id} --confirm DATABASE`, or point the service at the right store and run `pgbackups catalog:rebuild`"
    )
}

impl From<CatalogError> for ApiError {
    fn from(e: CatalogError) -> ApiError {
        TransferError::from(e).into()
    }
}

impl From<ProtectError> for ApiError {
    fn from(e: ProtectError) -> ApiError {
        match e {
            ProtectError::Transfer(t) => t.into(),
            ProtectError::NotFound(m) => ApiError::new(StatusCode::NOT_FOUND, m),
            ProtectError::Refused(m) => ApiError::new(StatusCode::BAD_REQUEST, m),
            ProtectError::Internal(m) => {
                tracing::error!("{}", crate::pg::redact(&m));
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, m)
            }
        }
    }
}

type ApiResult<T> = Result<T, ApiError>;

async fn require_token(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match presented {
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

fn parse_id(s: &str) -> ApiResult<TransferId> {
    s.parse().map_err(|e: crate::catalog::TransferIdError| {
        ApiError::new(StatusCode::BAD_REQUEST, e.to_string())
    })
}

fn parse_optional_id(s: Option<&str>) -> ApiResult<Option<TransferId>> {
    match s.map(str::trim).filter(|s| !s.is_empty() && *s != "latest") {
        Some(s) => parse_id(s).map(Some),
        None => Ok(None),
    }
}

/// Runs a blocking engine call off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, TransferError> + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(ApiError::from)
}

// ---- databases ----

async fn list_databases(State(s): State<AppState>) -> ApiResult<Json<Vec<DatabaseRecord>>> {
    let r = s.registry.clone();
    Ok(Json(blocking(move || Ok(r.list()?)).await?))
}

#[derive(Deserialize)]
struct AddDatabase {
    name: String,
    url: String,
}

async fn add_database(
    State(s): State<AppState>,
    JsonBody(body): JsonBody<AddDatabase>,
) -> ApiResult<(StatusCode, Json<serde_json::Value>)> {
    let r = s.registry.clone();
    let name = body.name.clone();
    let url = blocking(move || Ok(r.add(&body.name, &body.url)?)).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "name": name, "url": url.redacted() })),
    ))
}

async fn remove_database(
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

// ---- transfers ----

#[derive(Deserialize)]
struct TransferFilter {
    kind: Option<TransferKind>,
}

async fn list_transfers(
    State(s): State<AppState>,
    Query(f): Query<TransferFilter>,
) -> ApiResult<impl IntoResponse> {
    let e = s.engine.clone();
    Ok(Json(blocking(move || e.transfers(f.kind)).await?))
}

#[derive(Deserialize)]
struct ShowQuery {
    /// Wait up to this many milliseconds (at most 30 s) for a running transfer to end.
    wait_ms: Option<u64>,
}

async fn show_transfer(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<ShowQuery>,
) -> ApiResult<impl IntoResponse> {
    let id = parse_id(&id)?;
    let wait = std::time::Duration::from_millis(q.wait_ms.unwrap_or(0).min(30_000));
    Ok(Json(s.engine.transfer_after(id, wait).await?))
}

#[derive(Deserialize)]
struct LogQuery {
    after: Option<u64>,
}

async fn transfer_logs(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<LogQuery>,
) -> ApiResult<impl IntoResponse> {
    let id = parse_id(&id)?;
    let (e, c) = (s.engine.clone(), s.catalog.clone());
    let logs = blocking(move || {
        e.transfer(id)?;
        Ok(c.logs(id, q.after.unwrap_or(0))?)
    })
    .await?;
    Ok(Json(logs))
}

async fn cancel_transfer(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let id = parse_id(&id)?;
    let e = s.engine.clone();
    let id = blocking(move || e.cancel(Some(id))).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "id": id }))))
}

async fn cancel_newest(State(s): State<AppState>) -> ApiResult<impl IntoResponse> {
    let e = s.engine.clone();
    let id = blocking(move || e.cancel(None)).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "id": id }))))
}

#[derive(Deserialize)]
struct StartCapture {
    database: Option<String>,
    #[serde(default, flatten)]
    filter: DumpFilter,
}

async fn start_capture(
    State(s): State<AppState>,
    JsonBody(body): JsonBody<StartCapture>,
) -> ApiResult<impl IntoResponse> {
    let e = s.engine.clone();
    let rec = blocking(move || {
        e.start_partial_capture(body.database.as_deref(), Origin::Manual, body.filter)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(rec)))
}

#[derive(Deserialize)]
struct StartRestore {
    backup: Option<String>,
    /// An http(s) URL to restore from, instead of a backup.
    url: Option<String>,
    database: Option<String>,
    confirm: Option<String>,
    jobs: Option<u32>,
    /// Restore into a fresh database and swap it in only on success.
    #[serde(default)]
    atomic: bool,
    /// With `atomic`: drop the previous contents right after the swap.
    #[serde(default)]
    drop_old: bool,
}

async fn start_restore(
    State(s): State<AppState>,
    JsonBody(body): JsonBody<StartRestore>,
) -> ApiResult<impl IntoResponse> {
    let atomic = body.atomic.then_some(AtomicSwap {
        drop_old: body.drop_old,
    });
    let e = s.engine.clone();
    if let Some(source) = body.url.clone() {
        let rec = blocking(move || {
            e.start_restore_from_url(
                &source,
                body.database.as_deref(),
                body.confirm.as_deref(),
                body.jobs.unwrap_or(1),
                atomic,
            )
        })
        .await?;
        return Ok((StatusCode::CREATED, Json(rec)));
    }
    let backup = parse_optional_id(body.backup.as_deref())?;
    let rec = blocking(move || {
        e.start_restore(
            backup,
            body.database.as_deref(),
            body.confirm.as_deref(),
            body.jobs.unwrap_or(1),
            atomic,
        )
    })
    .await?;
    Ok((StatusCode::CREATED, Json(rec)))
}

// ---- schedules ----

/// A schedule as the API shows it, with its next run.
#[derive(serde::Serialize)]
struct ScheduleView {
    database: String,
    /// `02:00 America/Los_Angeles`.
    at: String,
    zone: String,
    created_at: jiff::Timestamp,
    next_run_at: jiff::Timestamp,
    /// The next run in the schedule's zone: `2026-11-26 02:00 PST`.
    next_run_local: String,
    /// What the database's backups are kept by.
    retention: Policy,
    /// Whether each scheduled backup is verified after its capture.
    verify: crate::catalog::VerifyMode,
}

fn schedule_view(
    s: &ScheduleRecord,
    spec: &DailyAt,
    now: jiff::Timestamp,
    retention: Policy,
) -> ScheduleView {
    let (_, next) = spec.next_after(now);
    ScheduleView {
        database: s.database.clone(),
        at: spec.spec(),
        zone: spec.zone.clone(),
        created_at: s.created_at,
        next_run_at: next,
        next_run_local: spec.show_local(next),
        retention,
        verify: s.verify,
    }
}

async fn list_schedules(State(s): State<AppState>) -> ApiResult<impl IntoResponse> {
    let c = s.catalog.clone();
    let all = blocking(move || {
        let mut out = Vec::new();
        for s in c.schedules()? {
            let policy = c.retention(&s.database)?.unwrap_or_default();
            out.push((s, policy));
        }
        Ok(out)
    })
    .await?;
    let now = s.scheduler.clock().now();
    let views: Vec<ScheduleView> = all
        .iter()
        .filter_map(|(r, p)| spec_of(r).ok().map(|spec| schedule_view(r, &spec, now, *p)))
        .collect();
    Ok(Json(views))
}

#[derive(Deserialize)]
struct SetSchedule {
    database: Option<String>,
    at: String,
    #[serde(default)]
    verify: crate::catalog::VerifyMode,
}

async fn set_schedule(
    State(s): State<AppState>,
    JsonBody(body): JsonBody<SetSchedule>,
) -> ApiResult<impl IntoResponse> {
    let spec = DailyAt::parse(&body.at)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.to_string()))?;
    let r = s.registry.clone();
    let database = body.database.clone();
    let (name, _) = blocking(move || Ok(r.resolve(database.as_deref())?)).await?;
    if name.starts_with("postgres") && name.contains("://") {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "schedules are for registered databases: add it with `pgbackups databases:add NAME` first",
        ));
    }
    let now = s.scheduler.clock().now();
    let record = ScheduleRecord {
        database: name,
        hour: spec.hour,
        minute: spec.minute,
        zone: spec.zone.clone(),
        created_at: now,
        verify: body.verify,
    };
    let (c, r) = (s.catalog.clone(), record.clone());
    let policy = blocking(move || {
        c.set_schedule(&r)?;
        Ok(c.retention(&r.database)?.unwrap_or_default())
    })
    .await?;
    s.scheduler.schedules_changed();
    Ok((
        StatusCode::CREATED,
        Json(schedule_view(&record, &spec, now, policy)),
    ))
}

async fn remove_schedule(
    State(s): State<AppState>,
    Path(database): Path<String>,
) -> ApiResult<StatusCode> {
    let c = s.catalog.clone();
    let removed = blocking(move || Ok(c.remove_schedule(&database)?)).await?;
    if !removed {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "that database has no schedule; list them with `pgbackups backups:schedules`",
        ));
    }
    s.scheduler.schedules_changed();
    Ok(StatusCode::NO_CONTENT)
}

// ---- retention and pins ----

#[derive(serde::Serialize)]
struct RetentionView {
    database: String,
    #[serde(flatten)]
    policy: Policy,
    /// Whether this is the default policy (none was set).
    default: bool,
}

async fn show_retention(
    State(s): State<AppState>,
    Path(database): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let (r, c) = (s.registry.clone(), s.catalog.clone());
    let view = blocking(move || {
        crate::transfer::check_name(&database)?;
        if !r.contains(&database)? {
            return Err(TransferError::UnknownDatabase(database));
        }
        let set = c.retention(&database)?;
        Ok(RetentionView {
            default: set.is_none(),
            policy: set.unwrap_or_default(),
            database,
        })
    })
    .await?;
    Ok(Json(view))
}

#[derive(Deserialize)]
struct SetRetention {
    daily: Option<u32>,
    weekly: Option<u32>,
    monthly: Option<u32>,
    manual: Option<u32>,
}

async fn set_retention(
    State(s): State<AppState>,
    Path(database): Path<String>,
    JsonBody(body): JsonBody<SetRetention>,
) -> ApiResult<impl IntoResponse> {
    if [body.daily, body.weekly, body.monthly, body.manual]
        .iter()
        .flatten()
        .any(|n| *n > 10_000)
    {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "retention counts must be between 0 and 10000",
        ));
    }
    let (r, c) = (s.registry.clone(), s.catalog.clone());
    let view = blocking(move || {
        let (name, _) = r.resolve(Some(&database))?;
        let mut p = c.retention(&name)?.unwrap_or_default();
        p.daily = body.daily.unwrap_or(p.daily);
        p.weekly = body.weekly.unwrap_or(p.weekly);
        p.monthly = body.monthly.unwrap_or(p.monthly);
        p.manual = body.manual.unwrap_or(p.manual);
        c.set_retention(&name, &p)?;
        Ok(RetentionView {
            database: name,
            policy: p,
            default: false,
        })
    })
    .await?;
    Ok(Json(view))
}

async fn pin(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<impl IntoResponse> {
    let id = parse_id(&id)?;
    let e = s.engine.clone();
    Ok(Json(blocking(move || e.set_pinned(id, true)).await?))
}

async fn unpin(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<impl IntoResponse> {
    let id = parse_id(&id)?;
    let e = s.engine.clone();
    Ok(Json(blocking(move || e.set_pinned(id, false)).await?))
}

#[derive(Deserialize)]
struct UploadQuery {
    /// The file's name, for display.
    name: Option<String>,
    database: Option<String>,
    confirm: Option<String>,
    jobs: Option<u32>,
    #[serde(default)]
    atomic: bool,
    #[serde(default)]
    drop_old: bool,
}

/// The body is the dump file itself, streamed.
async fn start_restore_upload(
    State(s): State<AppState>,
    Query(q): Query<UploadQuery>,
    body: Body,
) -> ApiResult<impl IntoResponse> {
    use futures_util::StreamExt;
    let stream = body
        .into_data_stream()
        .map(|r| r.map_err(std::io::Error::other));
    let atomic = q.atomic.then_some(AtomicSwap {
        drop_old: q.drop_old,
    });
    let rec = s
        .engine
        .start_restore_from_upload(
            q.name.as_deref().unwrap_or("dump"),
            q.database.as_deref(),
            q.confirm.as_deref(),
            q.jobs.unwrap_or(1),
            atomic,
            Box::pin(stream),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(rec)))
}

#[derive(Deserialize)]
struct StartCopy {
    source: String,
    target: String,
    confirm: Option<String>,
    #[serde(default, flatten)]
    filter: DumpFilter,
}

async fn start_copy(
    State(s): State<AppState>,
    JsonBody(body): JsonBody<StartCopy>,
) -> ApiResult<impl IntoResponse> {
    let e = s.engine.clone();
    let rec = blocking(move || {
        e.start_copy(
            &body.source,
            &body.target,
            body.confirm.as_deref(),
            body.filter,
        )
    })
    .await?;
    Ok((StatusCode::CREATED, Json(rec)))
}

async fn start_pull(
    State(s): State<AppState>,
    JsonBody(body): JsonBody<StartCopy>,
) -> ApiResult<impl IntoResponse> {
    let rec = s
        .engine
        .start_pull(&body.source, &body.target, body.filter)
        .await?;
    Ok((StatusCode::CREATED, Json(rec)))
}

async fn start_push(
    State(s): State<AppState>,
    JsonBody(body): JsonBody<StartCopy>,
) -> ApiResult<impl IntoResponse> {
    let rec = s
        .engine
        .start_push(
            &body.source,
            &body.target,
            body.confirm.as_deref(),
            body.filter,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(rec)))
}

// ---- backups ----

#[derive(Deserialize)]
struct Confirm {
    confirm: Option<String>,
}

async fn delete_backup(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<Confirm>,
) -> ApiResult<StatusCode> {
    let id = parse_id(&id)?;
    let e = s.engine.clone();
    blocking(move || e.delete_backup(id, q.confirm.as_deref())).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct VerifyRequest {
    /// `checksum` (default) or `restore`.
    #[serde(default)]
    mode: crate::catalog::VerifyMode,
    /// Server for a restore test's scratch database (a registered name or URL).
    target: Option<String>,
}

async fn verify_backup(
    State(s): State<AppState>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<VerifyRequest>,
) -> ApiResult<impl IntoResponse> {
    let id = parse_optional_id(Some(&id))?;
    let e = s.engine.clone();
    let rec = blocking(move || {
        e.start_verify(
            id,
            body.mode,
            body.target.as_deref(),
            crate::catalog::Origin::Manual,
        )
    })
    .await?;
    Ok((StatusCode::ACCEPTED, Json(rec)))
}

async fn rebuild_catalog(State(s): State<AppState>) -> ApiResult<impl IntoResponse> {
    let (c, st, clock) = (s.catalog.clone(), s.storage.clone(), s.clock.clone());
    let report =
        blocking(move || crate::transfer::rebuild_catalog(c.as_ref(), st.as_ref(), clock.as_ref()))
            .await?;
    Ok(Json(report))
}

#[derive(Deserialize)]
struct UrlRequest {
    /// Seconds the link stays valid (default 3600, at most 7 days).
    expires_secs: Option<u64>,
    /// A service link to the plain dump even where a presigned link is possible.
    #[serde(default)]
    plain: bool,
}

/// The longest a link may live: S3's limit for presigned URLs.
const MAX_LINK_SECS: u64 = 7 * 24 * 3600;

async fn backup_url(
    State(s): State<AppState>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<UrlRequest>,
) -> ApiResult<impl IntoResponse> {
    let id = parse_optional_id(Some(&id))?;
    let secs = body.expires_secs.unwrap_or(3600);
    if secs == 0 || secs > MAX_LINK_SECS {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("--expires must be between 1 s and 7 days (S3's limit), not {secs} s"),
        ));
    }
    let (e, base) = (s.links.clone(), s.public_url.clone());
    let url =
        blocking(move || e.backup_url(id, std::time::Duration::from_secs(secs), body.plain, &base))
            .await?;
    Ok(Json(url))
}

#[derive(Deserialize)]
struct LinkQuery {
    expires: Option<i64>,
    sig: Option<String>,
}

async fn signed_download(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<LinkQuery>,
) -> Response {
    let refused = |why: &str| ApiError::new(StatusCode::FORBIDDEN, why).into_response();
    let (Ok(id), Some(expires), Some(sig)) = (id.parse::<TransferId>(), q.expires, q.sig) else {
        return refused("this is not a complete pgbackups download link");
    };
    let e = s.links.clone();
    let checked = tokio::task::spawn_blocking(move || e.check_link(id, expires, &sig)).await;
    match checked {
        Ok(Ok(backup)) => stream_dump(&s, Some(backup.id))
            .await
            .unwrap_or_else(|e| e.into_response()),
        Ok(Err(why)) => refused(why.0),
        Err(_) => refused("the link could not be checked"),
    }
}

async fn download(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    let id = parse_optional_id(Some(&id))?;
    stream_dump(&s, id).await
}

/// A backup as a plain custom-format dump, streamed.
async fn stream_dump(s: &AppState, id: Option<TransferId>) -> ApiResult<Response> {
    let e = s.engine.clone();
    let (backup, stream) = blocking(move || {
        // The ID (`latest` resolved) names the backup in a "missing from the store" answer.
        let id = match id {
            Some(id) => id,
            None => e.latest_backup()?.id,
        };
        Ok(e.download(Some(id)).map_err(|err| (id, err)))
    })
    .await?
    .map_err(|(id, err)| match err {
        TransferError::Storage(StorageError::NotFound(key)) => {
            ApiError::new(StatusCode::GONE, missing_object(Some(id), &key))
        }
        other => other.into(),
    })?;
    let mut resp = Body::from_stream(stream).into_response();
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{}.dump\"", backup.id)) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    if let Some(size) = backup.dump_size {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    }
    if let Ok(v) = HeaderValue::from_str(&backup.id.to_string()) {
        headers.insert("x-pgbackups-backup", v);
    }
    Ok(resp)
}

// ---- WAL for recovering servers ----

/// What a WAL token for archive `name` signs: it opens that archive's WAL and nothing else.
fn wal_token_message(name: &str) -> String {
    format!("wal-fetch:{name}")
}

/// Mints the token with which a server recovering from archive `name` fetches its WAL
/// (`rollback --through-service`): its restore_command then needs no access to the store.
async fn wal_token(State(s): State<AppState>, Path(name): Path<String>) -> ApiResult<Response> {
    crate::wal::key(&name, "00000001.history")
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.to_string()))?;
    let storage = s.storage.clone();
    let n = name.clone();
    let listed = tokio::task::spawn_blocking(move || storage.list(&format!("wal/{n}/")))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    if listed.is_empty() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "the store of this service has no WAL archived under {name}: protect the database (or archive with wal-push --name {name}) first"
            ),
        ));
    }
    let token = s.secrets.sign_link(&wal_token_message(&name));
    Ok(Json(json!({ "name": name, "token": token })).into_response())
}

/// One archived WAL file of `name`, as stored (zstd), for `wal-fetch --service`: 404 when the
/// archive has no such file (the normal end of recovery).
async fn wal_file(
    State(s): State<AppState>,
    Path((name, file)): Path<(String, String)>,
    headers: axum::http::HeaderMap,
) -> Response {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .unwrap_or("");
    if !s
        .secrets
        .link_signature_matches(&wal_token_message(&name), presented)
    {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            format!("this is not a WAL token for {name}: mint one with POST /api/wal/{name}/token (rollback --through-service does)"),
        )
        .into_response();
    }
    let storage = s.storage.clone();
    let (n, f) = (name.clone(), file.clone());
    let opened =
        tokio::task::spawn_blocking(move || crate::wal::open_stored(storage.as_ref(), &n, &f))
            .await;
    let reader = match opened {
        Ok(Ok(Some(r))) => r,
        Ok(Ok(None)) => {
            return ApiError::new(
                StatusCode::NOT_FOUND,
                format!("{file} is not archived under {name}"),
            )
            .into_response();
        }
        Ok(Err(crate::wal::WalError::Refused(m))) => {
            return ApiError::new(StatusCode::BAD_REQUEST, m).into_response();
        }
        Ok(Err(e)) => {
            return ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response();
        }
        Err(e) => {
            return ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response();
        }
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<bytes::Bytes>>(4);
    tokio::task::spawn_blocking(move || {
        let mut reader = reader;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            match std::io::Read::read(&mut reader, &mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    if tx
                        .blocking_send(Ok(bytes::Bytes::copy_from_slice(&buf[..n])))
                        .is_err()
                    {
                        return; // the client went away
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // The response breaks off: the client sees an incomplete body, not a file.
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
        }
    });
    let stream =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|i| (i, rx)) });
    Body::from_stream(stream).into_response()
}

// ---- Continuous Protection ----

#[derive(Deserialize)]
struct ProtectRequest {
    database: String,
    /// Seconds between base backups (default a day).
    base_every_secs: Option<u64>,
    /// Base backups kept (default 7).
    keep: Option<u32>,
}

async fn protect(
    State(s): State<AppState>,
    JsonBody(req): JsonBody<ProtectRequest>,
) -> ApiResult<Response> {
    let view = s
        .protector
        .protect(
            &req.database,
            req.base_every_secs.map(std::time::Duration::from_secs),
            req.keep,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

async fn list_protections(State(s): State<AppState>) -> ApiResult<Response> {
    Ok(Json(s.protector.list().await?).into_response())
}

async fn show_protection(
    State(s): State<AppState>,
    Path(database): Path<String>,
) -> ApiResult<Response> {
    Ok(Json(s.protector.info(&database).await?).into_response())
}

async fn unprotect(State(s): State<AppState>, Path(database): Path<String>) -> ApiResult<Response> {
    let warning = s.protector.unprotect(&database).await?;
    Ok(Json(json!({ "unprotected": database, "warning": warning })).into_response())
}

/// Prometheus text: the WAL stream of each protected database.
async fn metrics(State(s): State<AppState>) -> ApiResult<Response> {
    use std::fmt::Write;
    let views = s.protector.list().await?;
    let mut out = String::new();
    let mut metric = |name: &str, help: &str, values: &mut dyn Iterator<Item = (String, f64)>| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for (db, v) in values {
            // Label values escaped as the text format asks, whatever a name holds.
            let db = db
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            let _ = writeln!(out, "{name}{{database=\"{db}\"}} {v}");
        }
    };
    let live = |f: &dyn Fn(&crate::protect::Live) -> Option<f64>| -> Vec<(String, f64)> {
        views
            .iter()
            .filter_map(|v| Some((v.database.clone(), f(v.live.as_ref()?)?)))
            .collect()
    };
    metric(
        "pgbackups_wal_lag_bytes",
        "WAL the server wrote that is not in the store yet.",
        &mut live(&|l| l.lag_bytes.map(|b| b as f64)).into_iter(),
    );
    metric(
        "pgbackups_wal_lag_seconds",
        "How long ago the server was at the position the store has reached.",
        &mut live(&|l| l.lag_seconds.map(|b| b as f64)).into_iter(),
    );
    metric(
        "pgbackups_wal_slot_retained_bytes",
        "WAL the replication slot keeps on the server.",
        &mut live(&|l| l.slot_retained_bytes.map(|b| b as f64)).into_iter(),
    );
    metric(
        "pgbackups_wal_receiver_up",
        "1 while the WAL receiver streams.",
        &mut live(&|l| {
            Some(f64::from(u8::from(
                l.receiver == crate::protect::ReceiverState::Streaming,
            )))
        })
        .into_iter(),
    );
    metric(
        "pgbackups_wal_gaps",
        "Runs of WAL segments missing from the store.",
        &mut live(&|l| Some(l.gaps.len() as f64)).into_iter(),
    );
    metric(
        "pgbackups_base_backup_last_timestamp_seconds",
        "When the newest base backup finished.",
        &mut live(&|l| {
            l.last_base_backup
                .as_ref()
                .map(|b| b.finished_at.as_second() as f64)
        })
        .into_iter(),
    );
    metric(
        "pgbackups_protection_problems",
        "Problems protection:info reports.",
        &mut views
            .iter()
            .map(|v| (v.database.clone(), v.problems.len() as f64)),
    );
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response())
}
