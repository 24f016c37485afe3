//! Routes of Continuous Protection (protect, the protections' state, unprotect) and of WAL
//! for recovering servers (a token for one archive, and the WAL files it opens).

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::api::{
    ArchiveView, BaseBackupView, LiveView, ProtectRequest, ProtectionView, ReceiverState,
    Unprotected, WalToken,
};
use crate::server::extract::{Json as JsonBody, Path};

use super::{ApiError, ApiResult, AppState};
use crate::server::auth::{AuditTarget, bearer};

/// `POST /api/protections`: protects a database, or changes its settings.
pub(super) async fn protect(
    State(s): State<AppState>,
    JsonBody(req): JsonBody<ProtectRequest>,
) -> ApiResult<(
    StatusCode,
    axum::Extension<AuditTarget>,
    Json<ProtectionView>,
)> {
    let target = AuditTarget(req.database.clone());
    let view = s
        .protector
        .protect(
            &req.database,
            req.base_every_secs.map(std::time::Duration::from_secs),
            req.keep,
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        axum::Extension(target),
        Json(protection_view(view)),
    ))
}

/// `GET /api/protections`: every protection with its live state (no store reads).
pub(super) async fn list_protections(
    State(s): State<AppState>,
) -> ApiResult<Json<Vec<ProtectionView>>> {
    let views = s.protector.list().await?;
    Ok(Json(views.into_iter().map(protection_view).collect()))
}

/// `GET /api/protections/{database}`: one, with its archive read from the store.
pub(super) async fn show_protection(
    State(s): State<AppState>,
    Path(database): Path<String>,
) -> ApiResult<Json<ProtectionView>> {
    Ok(Json(protection_view(s.protector.info(&database).await?)))
}

/// `DELETE /api/protections/{database}`.
pub(super) async fn unprotect(
    State(s): State<AppState>,
    Path(database): Path<String>,
) -> ApiResult<Json<Unprotected>> {
    let warning = s.protector.unprotect(&database).await?;
    Ok(Json(Unprotected {
        unprotected: database,
        warning,
    }))
}

/// The protector's view as the API shows it.
pub(in crate::server) fn protection_view(v: crate::protect::ProtectionView) -> ProtectionView {
    ProtectionView {
        database: v.database,
        protected: v.protected,
        slot: v.slot,
        base_every_secs: v.base_every_secs,
        keep_base: v.keep_base,
        since: v.since,
        live: v.live.map(live_view),
        archive: v.archive.map(archive_view),
        problems: v.problems,
    }
}

fn live_view(l: crate::protect::Live) -> LiveView {
    use crate::protect::ReceiverState as R;
    LiveView {
        receiver: match l.receiver {
            R::Starting => ReceiverState::Starting,
            R::Streaming => ReceiverState::Streaming,
            R::Failing => ReceiverState::Failing,
            R::Stopped => ReceiverState::Stopped,
        },
        receiver_error: l.receiver_error,
        receiver_restarts: l.receiver_restarts,
        server_lsn: l.server_lsn,
        slot_lsn: l.slot_lsn,
        received_lsn: l.received_lsn,
        stored_lsn: l.stored_lsn,
        stored_at: l.stored_at,
        lag_bytes: l.lag_bytes,
        lag_seconds: l.lag_seconds,
        slot_retained_bytes: l.slot_retained_bytes,
        slot_wal_status: l.slot_wal_status,
        store_error: l.store_error,
        slot_recreated_at: l.slot_recreated_at,
        base_backup_running: l.base_backup_running,
        base_backup_error: l.base_backup_error,
        next_base_backup_at: l.next_base_backup_at,
        earliest: l.earliest,
        base_backups: l.base_backups,
        last_base_backup: l.last_base_backup.map(base_backup_view),
        gaps: l.gaps,
        wal_bytes_per_day: l.wal_bytes_per_day,
        lag_history: l.lag_history,
    }
}

fn archive_view(a: crate::pitr::ArchiveInfo) -> ArchiveView {
    ArchiveView {
        name: a.name,
        base_backups: a.base_backups.into_iter().map(base_backup_view).collect(),
        earliest: a.earliest,
        latest_segment: a.latest_segment,
        segments: a.segments,
        histories: a.histories,
        gaps: a.gaps,
    }
}

fn base_backup_view(b: crate::pitr::BaseBackup) -> BaseBackupView {
    BaseBackupView {
        name: b.name,
        id: b.id,
        started_at: b.started_at,
        finished_at: b.finished_at,
        start_lsn: b.start_lsn,
        stop_lsn: b.stop_lsn,
        timeline: b.timeline,
        wal_segment_size: b.wal_segment_size,
        tar_bytes: b.tar_bytes,
        stored_bytes: b.stored_bytes,
        sha256: b.sha256,
        frames: b.frames,
    }
}

/// What a WAL token for archive `name` signs: it opens that archive's WAL and nothing else.
fn wal_token_message(name: &str) -> String {
    format!("wal-fetch:{name}")
}

/// `POST /api/wal/{name}/token`: mints the token with which a server recovering from archive
/// `name` fetches its WAL (`rollback --through-service`): its restore_command then needs no
/// access to the store.
pub(super) async fn wal_token(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<WalToken>> {
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
    Ok(Json(WalToken { name, token }))
}

/// `GET /wal/{name}/{file}`: one archived WAL file of `name`, as stored (zstd), for
/// `wal-fetch --service`; 404 when the archive has no such file (the normal end of recovery).
pub(super) async fn wal_file(
    State(s): State<AppState>,
    Path((name, file)): Path<(String, String)>,
    headers: axum::http::HeaderMap,
) -> Response {
    let presented = bearer(&headers).unwrap_or("");
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

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> crate::pitr::BaseBackup {
        crate::pitr::BaseBackup {
            name: "main".into(),
            id: "20261125T052400Z".into(),
            started_at: jiff::Timestamp::UNIX_EPOCH,
            finished_at: jiff::Timestamp::UNIX_EPOCH,
            start_lsn: crate::pg::wal_names::Lsn(0x2000028),
            stop_lsn: crate::pg::wal_names::Lsn(0x2000100),
            timeline: 1,
            wal_segment_size: 16 << 20,
            tar_bytes: 10,
            stored_bytes: 5,
            sha256: "ab".into(),
            frames: vec![(0, 0), (8, 4)],
        }
    }

    /// The API view says everything the protector's view says, in the same JSON: a field
    /// added to the protector's state and not to the API fails here, instead of vanishing.
    #[test]
    fn protection_views_keep_every_field() {
        let live = crate::protect::Live {
            receiver: crate::protect::ReceiverState::Failing,
            receiver_error: Some("x".into()),
            receiver_restarts: 2,
            server_lsn: Some("0/3000000".into()),
            stored_at: Some(jiff::Timestamp::UNIX_EPOCH),
            lag_bytes: Some(1),
            slot_wal_status: Some("reserved".into()),
            base_backups: 1,
            last_base_backup: Some(base()),
            gaps: vec![("a".into(), "b".into())],
            wal_bytes_per_day: Some(3),
            lag_history: vec![(jiff::Timestamp::UNIX_EPOCH, 4)],
            ..crate::protect::Live::default()
        };
        let archive = crate::pitr::ArchiveInfo {
            name: "main".into(),
            base_backups: vec![base()],
            earliest: Some(jiff::Timestamp::UNIX_EPOCH),
            latest_segment: Some("000000010000000000000003".into()),
            segments: 3,
            histories: 1,
            gaps: Vec::new(),
        };
        let engine = crate::protect::ProtectionView {
            database: "main".into(),
            protected: true,
            slot: Some("s".into()),
            base_every_secs: Some(60),
            keep_base: Some(2),
            since: None,
            live: Some(live),
            archive: Some(archive),
            problems: vec!["WAL receiver failing: x".into()],
        };
        let expected = serde_json::to_value(&engine).expect("serializes");
        let api = serde_json::to_value(protection_view(engine)).expect("serializes");
        assert_eq!(api, expected);
    }
}
