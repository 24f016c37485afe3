//! Routes of transfers and backups: start captures, restores (from a backup, a URL or an
//! upload or a push), copies and verifications; list, follow and cancel transfers;
//! delete a backup; rebuild the catalog from the store.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::api::{
    CaptureRequest, CopyRequest, DeleteBackupQuery, LogLine, LogQuery, MAX_WAIT_MS, RebuildReport,
    RefusedRestore, RestoreRequest, ServerCaptureRequest, SetRestoreRequest, SetRestoreStarted,
    ShowTransferQuery, TransferCancelled, TransferKindQuery, TransferView, UploadQuery,
    VerifyRequest,
};
use crate::catalog::Origin;
use crate::server::auth::AuditTarget;
use crate::server::extract::{Json as JsonBody, Path, Query};
use crate::transfer::atomic::AtomicSwap;

use super::{ApiError, ApiResult, AppState, blocking, parse_id, parse_optional_id};

/// What a route that starts a transfer answers: its status and the new transfer, which the
/// audit log names by its ID and database.
pub(super) struct Started(StatusCode, TransferView);

impl IntoResponse for Started {
    fn into_response(self) -> Response {
        let target = AuditTarget(format!("{} ({})", self.1.id, self.1.database));
        (self.0, axum::Extension(target), Json(self.1)).into_response()
    }
}

/// `GET /api/transfers[?kind=...]`.
pub(super) async fn list_transfers(
    State(s): State<AppState>,
    Query(q): Query<TransferKindQuery>,
) -> ApiResult<Json<Vec<TransferView>>> {
    let e = s.engine.clone();
    Ok(Json(blocking(move || e.transfers(q.kind)).await?))
}

/// `GET /api/transfers/{id}[?wait_ms=N]`.
pub(super) async fn show_transfer(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<ShowTransferQuery>,
) -> ApiResult<Json<TransferView>> {
    let id = parse_id(&id)?;
    let wait = std::time::Duration::from_millis(q.wait_ms.unwrap_or(0).min(MAX_WAIT_MS));
    Ok(Json(s.engine.transfer_after(id, wait).await?))
}

/// `GET /api/transfers/{id}/logs[?after=SEQ]`.
pub(super) async fn transfer_logs(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<LogQuery>,
) -> ApiResult<Json<Vec<LogLine>>> {
    let id = parse_id(&id)?;
    let (e, c) = (s.engine.clone(), s.catalog.clone());
    let logs = blocking(move || {
        e.transfer(id)?;
        Ok(c.logs(id, q.after.unwrap_or(0))?)
    })
    .await?;
    Ok(Json(logs))
}

/// `POST /api/transfers/{id}/cancel`.
pub(super) async fn cancel_transfer(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<TransferCancelled>)> {
    let id = parse_id(&id)?;
    let e = s.engine.clone();
    let id = blocking(move || e.cancel(Some(id))).await?;
    Ok((StatusCode::ACCEPTED, Json(TransferCancelled { id })))
}

/// `POST /api/transfers/cancel`: the newest running transfer.
pub(super) async fn cancel_newest(
    State(s): State<AppState>,
) -> ApiResult<(StatusCode, Json<TransferCancelled>)> {
    let e = s.engine.clone();
    let id = blocking(move || e.cancel(None)).await?;
    Ok((StatusCode::ACCEPTED, Json(TransferCancelled { id })))
}

/// `POST /api/captures`.
pub(super) async fn start_capture(
    State(s): State<AppState>,
    JsonBody(body): JsonBody<CaptureRequest>,
) -> ApiResult<Started> {
    let e = s.engine.clone();
    let rec = blocking(move || {
        e.start_partial_capture(body.database.as_deref(), Origin::Manual, body.filter)
    })
    .await?;
    Ok(Started(StatusCode::CREATED, rec))
}

/// `POST /api/server-captures`: one capture of every database of a server, in one set.
pub(super) async fn start_server_capture(
    State(s): State<AppState>,
    JsonBody(body): JsonBody<ServerCaptureRequest>,
) -> ApiResult<(StatusCode, Json<Vec<TransferView>>)> {
    let recs = s.engine.start_server_capture(&body.server).await?;
    Ok((StatusCode::CREATED, Json(recs)))
}

/// `POST /api/set-restores`: every backup of a set into the same-named databases of a
/// server. Answers once the first restore (which creates the roles) has ended and the others
/// have started.
pub(super) async fn start_set_restore(
    State(s): State<AppState>,
    JsonBody(body): JsonBody<SetRestoreRequest>,
) -> ApiResult<(StatusCode, Json<SetRestoreStarted>)> {
    let r = s
        .engine
        .start_set_restore(&body.set, &body.server, body.confirm.as_deref())
        .await?;
    let answer = SetRestoreStarted {
        started: r.started,
        refused: r
            .refused
            .into_iter()
            .map(|(database, error)| RefusedRestore { database, error })
            .collect(),
    };
    Ok((StatusCode::CREATED, Json(answer)))
}

/// `POST /api/restores`: from a backup, or from a dump at an http(s) URL.
pub(super) async fn start_restore(
    State(s): State<AppState>,
    JsonBody(body): JsonBody<RestoreRequest>,
) -> ApiResult<Started> {
    let atomic = body.atomic.then_some(AtomicSwap {
        drop_old: body.drop_old,
    });
    let e = s.engine.clone();
    if body.url.is_some() && body.roles {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "roles are kept only with backups; a dump at a URL carries none: restore it without --roles",
        ));
    }
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
        return Ok(Started(StatusCode::CREATED, rec));
    }
    let backup = parse_optional_id(body.backup.as_deref())?;
    let rec = blocking(move || {
        e.start_restore_with(
            backup,
            body.database.as_deref(),
            body.confirm.as_deref(),
            body.jobs.unwrap_or(1),
            atomic,
            crate::transfer::RestoreExtras {
                extensions: body.extensions,
                roles: body.roles,
            },
        )
    })
    .await?;
    Ok(Started(StatusCode::CREATED, rec))
}

/// `POST /api/restores/upload?...`: the body is the dump file itself, streamed.
pub(super) async fn start_restore_upload(
    State(s): State<AppState>,
    Query(q): Query<UploadQuery>,
    body: Body,
) -> ApiResult<axum::response::Response> {
    use futures_util::StreamExt;
    let stream = body
        .into_data_stream()
        .map(|r| r.map_err(std::io::Error::other));
    let atomic = q.atomic.then_some(AtomicSwap {
        drop_old: q.drop_old,
    });
    let upload = crate::transfer::Upload {
        name: q.name.as_deref().unwrap_or("dump"),
        push: q.push,
        zstd: q.zstd,
    };
    if q.check {
        s.engine
            .check_upload(upload, q.database.as_deref(), q.confirm.as_deref())
            .await?;
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let rec = s
        .engine
        .start_restore_from_upload(
            upload,
            q.database.as_deref(),
            q.confirm.as_deref(),
            q.jobs.unwrap_or(1),
            atomic,
            Box::pin(stream),
        )
        .await?;
    Ok(Started(StatusCode::CREATED, rec).into_response())
}

/// `POST /api/copies`.
pub(super) async fn start_copy(
    State(s): State<AppState>,
    JsonBody(body): JsonBody<CopyRequest>,
) -> ApiResult<Started> {
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
    Ok(Started(StatusCode::CREATED, rec))
}

/// `DELETE /api/backups/{id}?confirm=DATABASE`.
pub(super) async fn delete_backup(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<DeleteBackupQuery>,
) -> ApiResult<StatusCode> {
    let id = parse_id(&id)?;
    let e = s.engine.clone();
    blocking(move || e.delete_backup(id, q.confirm.as_deref())).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/backups/{id|latest}/verify`: starts a verification transfer.
pub(super) async fn verify_backup(
    State(s): State<AppState>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<VerifyRequest>,
) -> ApiResult<Started> {
    let id = parse_optional_id(Some(&id))?;
    let e = s.engine.clone();
    let rec =
        blocking(move || e.start_verify(id, body.mode, body.target.as_deref(), Origin::Manual))
            .await?;
    Ok(Started(StatusCode::ACCEPTED, rec))
}

/// `POST /api/catalog/rebuild`.
pub(super) async fn rebuild_catalog(State(s): State<AppState>) -> ApiResult<Json<RebuildReport>> {
    let (c, st, clock) = (s.catalog.clone(), s.storage.clone(), s.clock.clone());
    let report =
        blocking(move || crate::transfer::rebuild_catalog(c.as_ref(), st.as_ref(), clock.as_ref()))
            .await?;
    Ok(Json(rebuild_report(report)))
}

/// The engine's rebuild report as the API shows it.
fn rebuild_report(r: crate::transfer::RebuildReport) -> RebuildReport {
    RebuildReport {
        added: r.added,
        present: r.present,
        unreadable: r.unreadable,
        orphaned: r.orphaned,
        conflicts: r.conflicts,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The API's report is the engine's, in the same JSON.
    #[test]
    fn rebuild_reports_keep_every_field() {
        let id = |s: &str| s.parse().expect("a valid ID");
        let engine = crate::transfer::RebuildReport {
            added: vec![id("b002")],
            present: vec![id("b001")],
            unreadable: vec![("k".into(), "why".into())],
            orphaned: vec!["o".into()],
            conflicts: vec![(id("b001"), "c".into())],
        };
        let expected = serde_json::to_value(&engine).expect("serializes");
        let api = serde_json::to_value(rebuild_report(engine)).expect("serializes");
        assert_eq!(api, expected);
    }
}
