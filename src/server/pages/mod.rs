//! The web dashboard, served by `pgbackups serve` on the API's listener: server-rendered
//! pages (askama templates in `templates/`, checked at compile time) with htmx (vendored in
//! `static/`) for the parts that update without a reload: a transfer's progress and log, the
//! capture button, the overview every ten seconds. Every page reads without JavaScript, and
//! every form posts without it too.
//!
//! The pages call the same engine as the API's routes and show the same words as the CLI
//! (`crate::words`). Who may see and do what is decided before a handler runs, by the
//! authentication middleware and the role table (`server/auth.rs`, `server/roles.rs`); a
//! handler only hides what the user's role may not use. `login.rs` holds the login and
//! logout forms, `views.rs` the pure functions from records to what a page shows.

mod login;
mod views;

use askama::Template;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Form, Router};
use serde::Deserialize;

use crate::api::{AuditQuery, ProtectionView, Role};
use crate::catalog::{Origin, TransferKind, TransferRecord, TransferState};
use crate::pg::DumpFilter;
use crate::server::extract::Path;
use crate::team::Principal;

use super::routes::{ApiError, AppState, blocking, parse_id, protection_view, schedule_views};
use views::{BackupRow, Layout, OtherRow, OverviewRow, TransferCard};

/// The dashboard's routes (the API's are under `/api`).
pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(overview))
        .route("/login", get(login::form).post(login::submit))
        .route("/logout", post(login::logout))
        .route("/databases/{name}", get(database))
        .route("/databases/{name}/capture", post(capture))
        .route("/databases/{name}/restore", post(restore))
        .route("/transfers/{id}", get(transfer))
        .route("/transfers/{id}/live", get(transfer_live))
        .route("/transfers/{id}/row", get(transfer_row))
        .route("/transfers/{id}/cancel", post(cancel))
        .route("/audit", get(audit))
        .route("/static/{file}", get(asset))
        .layer(axum::middleware::from_fn(stub_principal))
}

/// How many backups a database's page lists (the CLI's `--all` lists every one).
const LISTED_BACKUPS: usize = 50;
/// How many restores, copies and verifications it lists.
const LISTED_OTHERS: usize = 20;
/// How many log lines a transfer's page shows: its tail.
const LOG_TAIL: usize = 300;
/// How many audit entries the audit page shows.
const AUDIT_ROWS: u32 = 200;

/// A page that could not be shown: an HTML page with the status and what to do.
pub(super) struct PageError {
    status: StatusCode,
    message: String,
}

impl PageError {
    fn new(status: StatusCode, message: impl Into<String>) -> PageError {
        PageError {
            status,
            message: crate::pg::redact(&message.into()),
        }
    }
}

impl From<ApiError> for PageError {
    fn from(e: ApiError) -> PageError {
        PageError::new(e.status(), e.message())
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    title: &'a str,
    message: &'a str,
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let title = match self.status {
            StatusCode::NOT_FOUND => "Not found",
            StatusCode::FORBIDDEN => "Not allowed",
            StatusCode::UNAUTHORIZED => "Not logged in",
            s if s.is_client_error() => "Refused",
            _ => "Something went wrong",
        };
        let page = ErrorPage {
            title,
            message: &self.message,
        };
        (self.status, html(&page)).into_response()
    }
}

type PageResult = Result<Response, PageError>;

/// A rendered template as an HTML answer; a template that cannot render (a bug) is a 500
/// with the reason in the log, not in the page.
fn html(t: &impl Template) -> Response {
    match t.render() {
        Ok(body) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            )],
            body,
        )
            .into_response(),
        Err(e) => {
            tracing::error!("a dashboard template failed to render: {e}");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page could not be rendered; the service's log says why",
            )
                .into_response()
        }
    }
}

/// Whether htmx made the request (it wants a fragment, not a page).
fn is_htmx(headers: &HeaderMap) -> bool {
    headers.contains_key("hx-request")
}

fn layout(p: &Principal) -> Layout {
    Layout::new(&p.user, p.role, p.csrf.as_deref().unwrap_or_default())
}

// ---- the overview ----

#[derive(Template)]
#[template(path = "overview.html")]
struct OverviewPage {
    layout: Layout,
    rows: Vec<OverviewRow>,
}

/// `GET /`: every database, what needs attention first.
async fn overview(State(s): State<AppState>, Extension(p): Extension<Principal>) -> PageResult {
    let (r, e) = (s.registry.clone(), s.engine.clone());
    let (dbs, transfers) = blocking(move || Ok((r.list()?, e.transfers(None)?))).await?;
    let schedules = schedule_views(&s).await?;
    let protections: Vec<ProtectionView> = s
        .protector
        .list()
        .await
        .map_err(ApiError::from)?
        .into_iter()
        .map(protection_view)
        .collect();
    let rows = views::overview_rows(&dbs, &transfers, &schedules, &protections, s.clock.now());
    Ok(html(&OverviewPage {
        layout: layout(&p),
        rows,
    }))
}

// ---- a database ----

#[derive(Template)]
#[template(path = "database.html")]
struct DatabasePage {
    layout: Layout,
    name: String,
    url: String,
    running: Vec<TransferCard>,
    backups: Vec<BackupRow>,
    backups_hidden: usize,
    restorable: Vec<String>,
    others: Vec<OtherRow>,
    schedule: Option<String>,
    retention: String,
    protection: Option<String>,
    protection_problems: Vec<String>,
}

/// `GET /databases/{name}`.
async fn database(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(name): Path<String>,
) -> PageResult {
    database_page(&s, &p, &name, None, StatusCode::OK).await
}

/// A database's page, with `flash` (why an action was refused) above it.
async fn database_page(
    s: &AppState,
    p: &Principal,
    name: &str,
    flash: Option<String>,
    status: StatusCode,
) -> PageResult {
    let (r, e, c, n) = (
        s.registry.clone(),
        s.engine.clone(),
        s.catalog.clone(),
        name.to_string(),
    );
    let (db, mut mine, policy) = blocking(move || {
        let db = r.list()?.into_iter().find(|d| d.name == n);
        let mine: Vec<TransferRecord> = e
            .transfers(None)?
            .into_iter()
            .filter(|t| t.database == n)
            .collect();
        Ok((db, mine, c.retention(&n)?.unwrap_or_default()))
    })
    .await?;
    let Some(db) = db else {
        return Err(PageError::new(
            StatusCode::NOT_FOUND,
            format!("no database named `{name}` is registered; the overview lists those that are"),
        ));
    };
    let now = s.clock.now();
    mine.sort_by_key(|t| std::cmp::Reverse((t.created_at, t.id)));
    let live =
        |t: &&TransferRecord| matches!(t.state, TransferState::Pending | TransferState::Running);
    let running = mine
        .iter()
        .filter(live)
        .map(|t| views::transfer_card(t, now))
        .collect();
    let captures: Vec<&TransferRecord> = mine
        .iter()
        .filter(|t| t.kind == TransferKind::Capture)
        .collect();
    let restorable = captures
        .iter()
        .filter(|t| t.state == TransferState::Succeeded)
        .map(|t| t.id.to_string())
        .collect();
    let others = mine
        .iter()
        .filter(|t| t.kind != TransferKind::Capture)
        .take(LISTED_OTHERS)
        .map(views::other_row)
        .collect();
    let schedules = schedule_views(s).await?;
    let schedule = schedules
        .iter()
        .find(|v| v.database == name)
        .map(|v| format!("Daily at {}; next run {}", v.at, views::next_run_text(v)));
    let protection = match s.protector.list().await {
        Ok(all) => all
            .into_iter()
            .map(protection_view)
            .find(|v| v.database == name && v.protected),
        Err(e) => return Err(ApiError::from(e).into()),
    };
    let mut layout = layout(p);
    layout.flash = flash;
    let page = DatabasePage {
        layout,
        name: db.name.clone(),
        url: db.url.clone(),
        running,
        backups_hidden: captures.len().saturating_sub(LISTED_BACKUPS),
        backups: captures
            .iter()
            .take(LISTED_BACKUPS)
            .map(|t| views::backup_row(t))
            .collect(),
        restorable,
        others,
        schedule,
        retention: format!(
            "Keeps the newest {} manual backups, and of the scheduled ones the newest of each of the last {} days, {} weeks and {} months; pinned backups are never expired.",
            policy.manual, policy.daily, policy.weekly, policy.monthly
        ),
        protection_problems: protection
            .as_ref()
            .map(|v| v.problems.clone())
            .unwrap_or_default(),
        protection: protection.map(|v| views::protection_text(&v, now)),
    };
    Ok((status, html(&page)).into_response())
}

#[derive(Template)]
#[template(path = "running_item.html")]
struct RunningItem {
    t: TransferCard,
}

/// `POST /databases/{name}/capture`. From htmx: the new transfer's live row, and the "nothing
/// is running" line removed; from a plain form: to the transfer's page.
async fn capture(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> PageResult {
    let e = s.engine.clone();
    let n = name.clone();
    let started =
        blocking(move || e.start_partial_capture(Some(&n), Origin::Manual, DumpFilter::default()))
            .await;
    match (started, is_htmx(&headers)) {
        (Ok(rec), true) => {
            let item = RunningItem {
                t: views::transfer_card(&rec, s.clock.now()),
            };
            // The new row, and the "nothing is running" line deleted out of band.
            Ok(fragment(
                &item,
                r#"<li id="nothing-running" hx-swap-oob="delete"></li>"#,
            ))
        }
        (Ok(rec), false) => Ok(Redirect::to(&format!("/transfers/{}", rec.id)).into_response()),
        (Err(e), true) => Ok(html(&FragmentError {
            message: e.message(),
        })),
        (Err(e), false) => {
            let status = e.status();
            database_page(&s, &p, &name, Some(e.message().to_string()), status).await
        }
    }
}

#[derive(Template)]
#[template(
    source = r#"<li class="error" role="alert">{{ message }}</li>"#,
    ext = "html"
)]
struct FragmentError<'a> {
    message: &'a str,
}

/// A rendered fragment with `tail` (out-of-band swaps) after it.
fn fragment(t: &impl Template, tail: &str) -> Response {
    match t.render() {
        Ok(mut body) => {
            body.push_str(tail);
            axum::response::Html(body).into_response()
        }
        Err(_) => html(t),
    }
}

/// The restore form's fields (its `csrf` is checked by the middleware).
#[derive(Deserialize)]
struct RestoreForm {
    backup: String,
    #[serde(default)]
    confirm: String,
    #[serde(default)]
    jobs: Option<String>,
    #[serde(default)]
    atomic: Option<String>,
}

/// `POST /databases/{name}/restore`: the typed name must be the database's, as the CLI's
/// `--confirm` must; then to the restore's page. A refusal shows the page again, saying why.
async fn restore(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(name): Path<String>,
    Form(form): Form<RestoreForm>,
) -> PageResult {
    let jobs = match form
        .jobs
        .as_deref()
        .map(str::trim)
        .filter(|j| !j.is_empty())
    {
        None => 1,
        Some(j) => match j.parse::<u32>() {
            Ok(n) => n,
            Err(_) => {
                let why = format!("jobs must be a whole number from 1 up, not `{j}`");
                return database_page(&s, &p, &name, Some(why), StatusCode::BAD_REQUEST).await;
            }
        },
    };
    let backup = match form.backup.trim().parse() {
        Ok(id) => id,
        Err(e) => {
            let why = format!("{e}");
            return database_page(&s, &p, &name, Some(why), StatusCode::BAD_REQUEST).await;
        }
    };
    let atomic = form
        .atomic
        .is_some()
        .then_some(crate::transfer::atomic::AtomicSwap { drop_old: false });
    let (e, n, confirm) = (
        s.engine.clone(),
        name.clone(),
        form.confirm.trim().to_string(),
    );
    let started = blocking(move || {
        e.start_restore_with(
            Some(backup),
            Some(&n),
            Some(&confirm),
            jobs,
            atomic,
            crate::transfer::RestoreExtras::default(),
        )
    })
    .await;
    match started {
        Ok(rec) => Ok(Redirect::to(&format!("/transfers/{}", rec.id)).into_response()),
        Err(e) => {
            let why = match e.confirm() {
                Some(expected) => format!(
                    "Not restored: the name typed does not match. Type {expected} to confirm that its data will be replaced."
                ),
                None => e.message().to_string(),
            };
            database_page(&s, &p, &name, Some(why), e.status()).await
        }
    }
}

// ---- a transfer ----

#[derive(Template)]
#[template(path = "transfer.html")]
struct TransferPage {
    layout: Layout,
    t: TransferCard,
    fields: Vec<(&'static str, String)>,
    log: Vec<String>,
    log_hidden: u64,
    can_operate: bool,
    csrf: String,
}

#[derive(Template)]
#[template(path = "transfer_live.html")]
struct TransferLive {
    t: TransferCard,
    log: Vec<String>,
    log_hidden: u64,
    can_operate: bool,
    csrf: String,
}

/// A transfer with the tail of its log.
async fn load_transfer(
    s: &AppState,
    id: &str,
) -> Result<(TransferRecord, Vec<String>, u64), PageError> {
    let id = parse_id(id)?;
    let (e, c) = (s.engine.clone(), s.catalog.clone());
    let (rec, lines) = blocking(move || Ok((e.transfer(id)?, c.log_tail(id, LOG_TAIL)?))).await?;
    let hidden = lines.first().map(|l| l.seq.saturating_sub(1)).unwrap_or(0);
    let log = lines
        .into_iter()
        .map(|l| format!("{} {}", l.at.strftime("%H:%M:%S"), l.line))
        .collect();
    Ok((rec, log, hidden))
}

/// `GET /transfers/{id}`: its info, live state, and the tail of its log.
async fn transfer(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> PageResult {
    let (rec, log, log_hidden) = load_transfer(&s, &id).await?;
    let now = s.clock.now();
    Ok(html(&TransferPage {
        layout: layout(&p),
        t: views::transfer_card(&rec, now),
        fields: views::transfer_fields(&rec),
        log,
        log_hidden,
        can_operate: p.role >= Role::Operator,
        csrf: p.csrf.clone().unwrap_or_default(),
    }))
}

/// `GET /transfers/{id}/live`: the live part of a transfer's page, polled by htmx every
/// second until the transfer ends (the last answer carries no poll).
async fn transfer_live(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> PageResult {
    let (rec, log, log_hidden) = load_transfer(&s, &id).await?;
    Ok(html(&TransferLive {
        t: views::transfer_card(&rec, s.clock.now()),
        log,
        log_hidden,
        can_operate: p.role >= Role::Operator,
        csrf: p.csrf.clone().unwrap_or_default(),
    }))
}

/// `GET /transfers/{id}/row`: a transfer's row in a database's "Running" list, polled the same way.
async fn transfer_row(State(s): State<AppState>, Path(id): Path<String>) -> PageResult {
    let id = parse_id(&id)?;
    let e = s.engine.clone();
    let rec = blocking(move || e.transfer(id)).await?;
    Ok(html(&RunningItem {
        t: views::transfer_card(&rec, s.clock.now()),
    }))
}

/// `POST /transfers/{id}/cancel`: then back to its page, which shows it ending.
async fn cancel(State(s): State<AppState>, Path(id): Path<String>) -> PageResult {
    let id = parse_id(&id)?;
    let e = s.engine.clone();
    blocking(move || e.cancel(Some(id))).await?;
    Ok(Redirect::to(&format!("/transfers/{id}")).into_response())
}

// ---- the audit log ----

/// One audit entry as the page shows it.
struct AuditRow {
    at: String,
    actor: String,
    action: String,
    target: String,
    result: String,
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    layout: Layout,
    entries: Vec<AuditRow>,
}

/// `GET /audit`: who did what, newest first.
async fn audit(State(s): State<AppState>, Extension(p): Extension<Principal>) -> PageResult {
    let team = s.team.clone();
    let entries = blocking(move || {
        Ok(team.audit_log(AuditQuery {
            limit: Some(AUDIT_ROWS),
            before: None,
        }))
    })
    .await?;
    let entries = entries
        .into_iter()
        .map(|e| AuditRow {
            at: crate::format::time(e.at),
            actor: e.actor,
            action: e.action,
            target: e.target,
            result: views::status_words(e.status),
        })
        .collect();
    Ok(html(&AuditPage {
        layout: layout(&p),
        entries,
    }))
}

// ---- static files ----

/// `GET /static/{file}`: the stylesheet and htmx, compiled into the binary.
async fn asset(Path(file): Path<String>) -> Response {
    let (body, kind): (&'static [u8], &'static str) = match file.as_str() {
        "app.css" => (
            include_bytes!("../../../static/app.css"),
            "text/css; charset=utf-8",
        ),
        "htmx.min.js" => (
            include_bytes!("../../../static/htmx.min.js"),
            "text/javascript; charset=utf-8",
        ),
        _ => return PageError::new(StatusCode::NOT_FOUND, "no such file").into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

/// STUB until the `team` branch lands: every page request is the service token's admin.
pub(super) async fn stub_principal(
    mut req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if req.extensions().get::<Principal>().is_none() {
        req.extensions_mut().insert(Principal {
            user: "service-token".into(),
            role: Role::Admin,
            csrf: Some("stub".into()),
        });
    }
    next.run(req).await
}
