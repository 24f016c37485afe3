//! A transfer's page: its fields, and a live part (state, progress, the tail of its log)
//! that htmx polls every second until the transfer ends; cancelling it.

use askama::Template;
use axum::Extension;
use axum::extract::State;
use axum::response::{IntoResponse, Redirect};

use crate::api::Role;
use crate::catalog::TransferRecord;
use crate::server::extract::Path;
use crate::team::Principal;

/// How many log lines a transfer's page shows: its tail.
const LOG_TAIL: usize = 300;

use super::database::RunningItem;
use super::views::{self, Layout, TransferCard};
use super::{AppState, PageError, PageResult, blocking, html, layout, parse_id};

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
pub(super) async fn transfer(
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
pub(super) async fn transfer_live(
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
pub(super) async fn transfer_row(State(s): State<AppState>, Path(id): Path<String>) -> PageResult {
    let id = parse_id(&id)?;
    let e = s.engine.clone();
    let rec = blocking(move || e.transfer(id)).await?;
    Ok(html(&RunningItem {
        t: views::transfer_card(&rec, s.clock.now()),
    }))
}

/// `POST /transfers/{id}/cancel`: then back to its page, which shows it ending.
pub(super) async fn cancel(State(s): State<AppState>, Path(id): Path<String>) -> PageResult {
    let id = parse_id(&id)?;
    let e = s.engine.clone();
    blocking(move || e.cancel(Some(id))).await?;
    Ok(Redirect::to(&format!("/transfers/{id}")).into_response())
}
