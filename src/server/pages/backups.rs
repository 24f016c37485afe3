//! Actions on one backup from a database's page: pin and unpin, verify (checksum, or a
//! restore test), a signed download link, and delete, which first shows a page that names the
//! backup and asks for its database's name to be typed, as `backups:delete --confirm` does.

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect};
use axum::{Extension, Form};
use serde::Deserialize;

use crate::catalog::{Origin, TransferId, TransferRecord, VerifyMode};
use crate::server::extract::Path;
use crate::team::Principal;

use super::views::{self, Layout};
use super::{AppState, PageError, PageResult, blocking, html, layout, parse_id};

/// Where to go back to after an action on a backup: its database's page, or (a backup of a
/// URL that is not registered) the backup's own page.
fn back_to(rec: &TransferRecord) -> String {
    if rec.database.contains("://") {
        format!("/transfers/{}", rec.id)
    } else {
        format!("/databases/{}#backups", rec.database)
    }
}

/// `POST /backups/{id}/pin`.
pub(super) async fn pin(State(s): State<AppState>, Path(id): Path<String>) -> PageResult {
    set_pinned(&s, &id, true).await
}

/// `POST /backups/{id}/unpin`.
pub(super) async fn unpin(State(s): State<AppState>, Path(id): Path<String>) -> PageResult {
    set_pinned(&s, &id, false).await
}

async fn set_pinned(s: &AppState, id: &str, pinned: bool) -> PageResult {
    let id = parse_id(id)?;
    let e = s.engine.clone();
    let rec = blocking(move || e.set_pinned(id, pinned)).await?;
    Ok(Redirect::to(&back_to(&rec)).into_response())
}

#[derive(Deserialize)]
pub(super) struct VerifyForm {
    /// `checksum` or `restore`.
    mode: String,
}

/// `POST /backups/{id}/verify`: starts the verification and shows it.
pub(super) async fn verify(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Form(f): Form<VerifyForm>,
) -> PageResult {
    let id = parse_id(&id)?;
    let mode = match f.mode.as_str() {
        "checksum" => VerifyMode::Checksum,
        "restore" => VerifyMode::Restore,
        other => {
            return Err(PageError::new(
                StatusCode::BAD_REQUEST,
                format!("a verification is `checksum` or `restore`, not `{other}`"),
            ));
        }
    };
    let e = s.engine.clone();
    let rec = blocking(move || e.start_verify(Some(id), mode, None, Origin::Manual)).await?;
    Ok(Redirect::to(&format!("/transfers/{}", rec.id)).into_response())
}

#[derive(Template)]
#[template(path = "link.html")]
struct LinkPage {
    layout: Layout,
    id: String,
    url: String,
    expires: String,
    back: String,
}

/// `POST /backups/{id}/link`: a download link valid for an hour, as `backups:url` makes it,
/// shown once with a button that copies it.
pub(super) async fn link(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> PageResult {
    let id = parse_id(&id)?;
    let (l, e, base) = (s.links.clone(), s.engine.clone(), s.public_url.clone());
    let (url, rec) = blocking(move || {
        let url = l.backup_url(
            Some(id),
            std::time::Duration::from_secs(crate::api::DEFAULT_LINK_SECS),
            false,
            &base,
        )?;
        Ok((url, e.transfer(id)?))
    })
    .await?;
    Ok(html(&LinkPage {
        layout: layout(&p),
        id: url.id.to_string(),
        url: url.url,
        expires: crate::format::time(url.expires_at),
        back: back_to(&rec),
    }))
}

#[derive(Template)]
#[template(path = "delete.html")]
struct DeletePage {
    layout: Layout,
    id: String,
    database: String,
    word: String,
    status: String,
    size: String,
    created: String,
    pinned: bool,
}

/// `GET /backups/{id}/delete`: what is about to be deleted, and the name to type.
pub(super) async fn confirm_delete(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> PageResult {
    let id = parse_id(&id)?;
    delete_page(&s, &p, id, None, StatusCode::OK).await
}

async fn delete_page(
    s: &AppState,
    p: &Principal,
    id: TransferId,
    flash: Option<String>,
    status: StatusCode,
) -> PageResult {
    let e = s.engine.clone();
    let rec = blocking(move || e.transfer(id)).await?;
    let mut layout = layout(p);
    layout.flash = flash;
    let row = views::backup_row(&rec);
    let page = DeletePage {
        layout,
        id: rec.id.to_string(),
        word: crate::registry::confirm_word(&rec.database),
        database: rec.database.clone(),
        status: row.status,
        size: row.size,
        created: row.created,
        pinned: rec.pinned,
    };
    Ok((status, html(&page)).into_response())
}

#[derive(Deserialize)]
pub(super) struct DeleteForm {
    #[serde(default)]
    confirm: String,
}

/// `POST /backups/{id}/delete`: deletes the backup's object and record once the typed name
/// matches; otherwise the confirmation page again, saying why.
pub(super) async fn delete(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    Form(f): Form<DeleteForm>,
) -> PageResult {
    let id = parse_id(&id)?;
    let e = s.engine.clone();
    let rec = {
        let e = e.clone();
        blocking(move || e.transfer(id)).await?
    };
    let confirm = f.confirm.trim().to_string();
    match blocking(move || e.delete_backup(id, Some(&confirm))).await {
        Ok(()) => Ok(Redirect::to(&back_to(&rec)).into_response()),
        Err(err) => {
            let why = match err.confirm() {
                Some(expected) => format!(
                    "Not deleted: the name typed does not match. Type {expected} to delete backup {id}."
                ),
                None => err.message().to_string(),
            };
            delete_page(&s, &p, id, Some(why), err.status()).await
        }
    }
}
