//! A database's page: its running transfers (live), backups, restores and the rest, its
//! schedule, retention and protection; and the actions taken from it: capture and restore.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use serde::Deserialize;

use crate::catalog::{Origin, TransferKind, TransferRecord, TransferState};
use crate::pg::DumpFilter;
use crate::server::auth::AuditTarget;
use crate::server::extract::Path;
use crate::team::Principal;

/// How many backups a database's page lists (the CLI's `--all` lists every one).
const LISTED_BACKUPS: usize = 50;
/// How many restores, copies and verifications it lists.
const LISTED_OTHERS: usize = 20;

use super::protection::{ProtectionSection, Rollback};
use super::views::{self, BackupRow, Layout, OtherRow, TransferCard};
use super::{
    ApiError, AppState, PageError, PageResult, blocking, html, is_htmx, layout, protection_view,
    schedule_view_of,
};

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
    size_chart: String,
    duration_chart: String,
    schedule: Option<String>,
    schedule_at: String,
    schedule_verify: &'static str,
    preview: Vec<String>,
    retention: String,
    policy: crate::catalog::RetentionPolicy,
    protection: Option<ProtectionSection>,
}

/// The query of a database's page: the moment picked on the protection timeline.
#[derive(Deserialize)]
pub(super) struct DatabaseQuery {
    at: Option<String>,
}

/// `GET /databases/{name}[?at=2026-11-30T12:00]`.
pub(super) async fn database(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(name): Path<String>,
    Query(q): Query<DatabaseQuery>,
) -> PageResult {
    database_page(&s, &p, &name, q.at.as_deref(), None, StatusCode::OK).await
}

/// How many completed backups the charts draw.
const CHARTED: usize = 30;
/// How many completed backups the restore form offers, newest first (`backups:restore ID`
/// takes any other).
const RESTORABLE: usize = 50;

/// What a database's page reads of its transfers, each list newest first.
struct Loaded {
    /// Pending and running.
    running: Vec<TransferRecord>,
    /// The newest [`LISTED_BACKUPS`] captures, whatever their state.
    captures: Vec<TransferRecord>,
    /// How many captures it has in all.
    all_captures: u64,
    /// The newest succeeded captures: the restore form's and the charts'.
    completed: Vec<TransferRecord>,
    /// The newest [`LISTED_OTHERS`] restores, copies and verifications.
    others: Vec<TransferRecord>,
}

/// A database's page, with `flash` (why an action was refused) above it, and the rollback
/// command for the moment `at` when one was picked.
pub(super) async fn database_page(
    s: &AppState,
    p: &Principal,
    name: &str,
    at: Option<&str>,
    flash: Option<String>,
    status: StatusCode,
) -> PageResult {
    let (r, e, c, n) = (
        s.registry.clone(),
        s.engine.clone(),
        s.catalog.clone(),
        name.to_string(),
    );
    // Only the rows the page shows, newest first, each through the catalog's index: a
    // database with years of daily backups costs what one with a month does.
    let (db, loaded, policy) = blocking(move || {
        let db = r.list()?.into_iter().find(|d| d.name == n);
        let loaded = Loaded {
            running: e.unfinished_of(&n)?,
            captures: e.transfers_of(&n, &[TransferKind::Capture], None, LISTED_BACKUPS)?,
            all_captures: e.count_transfers_of(&n, TransferKind::Capture)?,
            completed: e.transfers_of(
                &n,
                &[TransferKind::Capture],
                Some(TransferState::Succeeded),
                RESTORABLE.max(CHARTED),
            )?,
            others: e.transfers_of(
                &n,
                &[
                    TransferKind::Restore,
                    TransferKind::Copy,
                    TransferKind::Verify,
                ],
                None,
                LISTED_OTHERS,
            )?,
        };
        Ok((db, loaded, c.retention(&n)?.unwrap_or_default()))
    })
    .await?;
    let Some(db) = db else {
        return Err(PageError::new(
            StatusCode::NOT_FOUND,
            format!("no database named `{name}` is registered; the overview lists those that are"),
        ));
    };
    let now = s.clock.now();
    let running = loaded
        .running
        .iter()
        .map(|t| views::transfer_card(t, now))
        .collect();
    let charted: Vec<&TransferRecord> = loaded.completed.iter().take(CHARTED).rev().collect();
    let others = loaded.others.iter().map(views::other_row).collect();
    let schedule = schedule_view_of(s, name).await?;
    let schedule = schedule.as_ref();
    let spec = schedule.and_then(|v| crate::schedule::DailyAt::parse(&v.at).ok());
    let protection = s
        .protector
        .list()
        .await
        .map_err(ApiError::from)?
        .into_iter()
        .map(protection_view)
        .find(|v| v.database == name && v.protected);
    // A protected database's archive (its base backups) is read from the store for the
    // charts; the live state stands alone when the store cannot be read.
    let protection = match protection {
        Some(v) => match s.protector.info(name).await {
            Ok(full) => Some(protection_view(full)),
            Err(_) => Some(v),
        },
        None => None,
    };
    let mut layout = layout(p);
    layout.flash = flash;
    let page = DatabasePage {
        layout,
        name: db.name.clone(),
        url: db.url.clone(),
        running,
        backups_hidden: usize::try_from(loaded.all_captures)
            .unwrap_or(usize::MAX)
            .saturating_sub(loaded.captures.len()),
        backups: loaded.captures.iter().map(views::backup_row).collect(),
        restorable: loaded
            .completed
            .iter()
            .take(RESTORABLE)
            .map(|t| t.id.to_string())
            .collect(),
        others,
        size_chart: super::charts::size_chart(&charted),
        duration_chart: super::charts::duration_chart(&charted),
        schedule: schedule.map(|v| format!("Daily at {}", v.at)),
        schedule_at: schedule.map(|v| v.at.clone()).unwrap_or_default(),
        schedule_verify: schedule.map(|v| v.verify.as_str()).unwrap_or("off"),
        preview: spec
            .map(|spec| super::schedule::preview_lines(&spec, now))
            .unwrap_or_default(),
        retention: format!(
            "Keeps the newest {} manual backups, and of the scheduled ones the newest of each of the last {} days, {} weeks and {} months; pinned backups are never expired.",
            policy.manual, policy.daily, policy.weekly, policy.monthly
        ),
        policy,
        protection: protection.map(|v| super::protection::section(name, &v, now, at)),
    };
    Ok((status, html(&page)).into_response())
}

#[derive(Template)]
#[template(path = "running_item.html")]
pub(super) struct RunningItem {
    pub(super) t: TransferCard,
}

/// `POST /databases/{name}/capture`. From htmx: the new transfer's live row, and the "nothing
/// is running" line removed; from a plain form: to the transfer's page.
pub(super) async fn capture(
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
            let out = fragment(
                &item,
                r#"<li id="nothing-running" hx-swap-oob="delete"></li>"#,
            );
            Ok(audited(out, &rec))
        }
        (Ok(rec), false) => Ok(audited(
            Redirect::to(&format!("/transfers/{}", rec.id)).into_response(),
            &rec,
        )),
        (Err(e), true) => Ok(html(&FragmentError {
            message: e.message(),
        })),
        (Err(e), false) => {
            let status = e.status();
            database_page(&s, &p, &name, None, Some(e.message().to_string()), status).await
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

/// `resp` with the transfer it started named for the audit log: `b006 (main)`.
fn audited(mut resp: Response, rec: &TransferRecord) -> Response {
    resp.extensions_mut()
        .insert(AuditTarget(format!("{} ({})", rec.id, rec.database)));
    resp
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
pub(super) struct RestoreForm {
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
pub(super) async fn restore(
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
                return database_page(&s, &p, &name, None, Some(why), StatusCode::BAD_REQUEST)
                    .await;
            }
        },
    };
    let backup = match form.backup.trim().parse() {
        Ok(id) => id,
        Err(e) => {
            let why = format!("{e}");
            return database_page(&s, &p, &name, None, Some(why), StatusCode::BAD_REQUEST).await;
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
        Ok(rec) => Ok(audited(
            Redirect::to(&format!("/transfers/{}", rec.id)).into_response(),
            &rec,
        )),
        Err(e) => {
            let why = match e.confirm() {
                Some(expected) => format!(
                    "Not restored: the name typed does not match. Type {expected} to confirm that its data will be replaced."
                ),
                None => e.message().to_string(),
            };
            database_page(&s, &p, &name, None, Some(why), e.status()).await
        }
    }
}
