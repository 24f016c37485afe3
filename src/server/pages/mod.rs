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

mod account;
mod backups;
mod charts;
mod database;
mod login;
mod protection;
mod schedule;
mod transfer;
mod views;

use askama::Template;
use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::api::{AuditQuery, ProtectionView};
use crate::server::extract::Path;
use crate::team::Principal;

use super::routes::{
    ApiError, AppState, Routes, apply_retention, apply_schedule, blocking, parse_id,
    protection_view, schedule_view_of, schedule_views, team_call,
};
use views::{Layout, OverviewRow};

/// The dashboard's routes added to the service's (the API's are under `/api`). Who may call
/// each is in `server/roles.rs`.
pub(super) fn add(r: Routes) -> Routes {
    use axum::http::Method as M;
    r.add(M::GET, "/", overview)
        .add(M::GET, "/login", login::form)
        .add_router(
            M::POST,
            "/login",
            axum::routing::post(login::submit)
                .layer(axum::extract::DefaultBodyLimit::max(login::MAX_FORM_BYTES)),
        )
        .add(M::POST, "/logout", login::logout)
        .add(M::GET, "/databases/{name}", database::database)
        .add(M::POST, "/databases/{name}/capture", database::capture)
        .add(M::POST, "/databases/{name}/restore", database::restore)
        .add(M::POST, "/databases/{name}/schedule", schedule::set)
        .add(
            M::POST,
            "/databases/{name}/schedule/remove",
            schedule::remove,
        )
        .add(M::POST, "/databases/{name}/retention", schedule::retention)
        .add(M::GET, "/schedule-preview", schedule::preview)
        .add(M::POST, "/backups/{id}/pin", backups::pin)
        .add(M::POST, "/backups/{id}/unpin", backups::unpin)
        .add(M::POST, "/backups/{id}/verify", backups::verify)
        .add(M::POST, "/backups/{id}/link", backups::link)
        .add(M::GET, "/backups/{id}/delete", backups::confirm_delete)
        .add(M::POST, "/backups/{id}/delete", backups::delete)
        .add(M::GET, "/transfers/{id}", transfer::transfer)
        .add(M::GET, "/transfers/{id}/live", transfer::transfer_live)
        .add(M::GET, "/transfers/{id}/row", transfer::transfer_row)
        .add(M::POST, "/transfers/{id}/cancel", transfer::cancel)
        .add(M::GET, "/audit", audit)
        .add(M::GET, "/account", account::account)
        .add(M::POST, "/account/tokens", account::create_token)
        .add(
            M::POST,
            "/account/tokens/{id}/revoke",
            account::revoke_token,
        )
        .add(M::GET, "/static/{file}", asset)
}

/// How many audit entries the audit page shows.
const AUDIT_ROWS: u32 = 200;

/// A page that could not be shown: an HTML page with the status and what to do.
struct PageError {
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

/// The dashboard's error page with `status` and what to do: what the authentication
/// middleware answers a page request it refuses.
pub(super) fn error_page(status: StatusCode, message: &str) -> Response {
    PageError::new(status, message).into_response()
}

/// What a page may load and who may frame it: only this service's own files, no inline
/// script or style, never in a frame (clickjacking), forms only to this service.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'";

/// A rendered template as an HTML answer, with the pages' security headers; a template that
/// cannot render (a bug) is a 500 with the reason in the log, not in the page.
fn html(t: &impl Template) -> Response {
    match t.render() {
        Ok(body) => (
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/html; charset=utf-8"),
                ),
                (
                    header::CONTENT_SECURITY_POLICY,
                    HeaderValue::from_static(CONTENT_SECURITY_POLICY),
                ),
                (
                    header::X_CONTENT_TYPE_OPTIONS,
                    HeaderValue::from_static("nosniff"),
                ),
                (
                    header::REFERRER_POLICY,
                    HeaderValue::from_static("same-origin"),
                ),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            ],
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
    // Per database, the few transfers the overview shows (indexed reads), not the history.
    let (dbs, summaries) = blocking(move || Ok((r.list()?, e.database_summaries()?))).await?;
    let schedules = schedule_views(&s).await?;
    let protections: Vec<ProtectionView> = s
        .protector
        .list()
        .await
        .map_err(ApiError::from)?
        .into_iter()
        .map(protection_view)
        .collect();
    let rows = views::overview_rows(&dbs, &summaries, &schedules, &protections, s.clock.now());
    Ok(html(&OverviewPage {
        layout: layout(&p),
        rows,
    }))
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
    let q = AuditQuery {
        limit: Some(AUDIT_ROWS),
        before: None,
    };
    let entries = team_call(move || team.audit_log(&q)).await?;
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
        "app.js" => (
            include_bytes!("../../../static/app.js"),
            "text/javascript; charset=utf-8",
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
