//! Routes that hand out a backup: the token-protected download, links to it (signed by this
//! service, or presigned by the store), and the signed link's own route, which needs no token.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::api::{
    BACKUP_HEADER, BackupLink, DEFAULT_LINK_SECS, DownloadQuery, DumpForm, LinkQuery,
    MAX_LINK_SECS, SHA256_HEADER, UrlRequest,
};
use crate::catalog::TransferId;
use crate::server::extract::{Json as JsonBody, Path, Query};
use crate::storage::StorageError;
use crate::transfer::TransferError;

use super::error::missing_object;
use super::{ApiError, ApiResult, AppState, blocking, parse_optional_id};

/// `POST /api/backups/{id|latest}/url`.
pub(super) async fn backup_url(
    State(s): State<AppState>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<UrlRequest>,
) -> ApiResult<Json<BackupLink>> {
    let id = parse_optional_id(Some(&id))?;
    let secs = body.expires_secs.unwrap_or(DEFAULT_LINK_SECS);
    if secs == 0 || secs > MAX_LINK_SECS {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("--expires must be between 1 s and 7 days (S3's limit), not {secs} s"),
        ));
    }
    let (e, base) = (s.links.clone(), s.public_url.clone());
    let url =
        blocking(move || e.backup_url(id, std::time::Duration::from_secs(secs), body.raw, &base))
            .await?;
    Ok(Json(backup_link(url)))
}

/// The engine's link as the API shows it.
fn backup_link(u: crate::transfer::BackupUrl) -> BackupLink {
    BackupLink {
        id: u.id,
        url: u.url,
        expires_at: u.expires_at,
        content: u.content,
    }
}

/// `GET /links/{id}?expires=UNIX&sig=HEX`: the signature is the credential.
pub(super) async fn signed_download(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<LinkQuery>,
) -> Response {
    let refused = |why: &str| ApiError::new(StatusCode::FORBIDDEN, why).into_response();
    let (Ok(id), Some(expires), Some(sig)) = (id.parse::<TransferId>(), q.expires, q.sig) else {
        return refused("this is not a complete pgbackups download link");
    };
    // A link serves the dump, or the stored object when its signed form says so.
    let form = match q.form {
        DumpForm::Zstd => DumpForm::Zstd,
        DumpForm::Dump | DumpForm::Plain => DumpForm::Dump,
    };
    let e = s.links.clone();
    let stored = form == DumpForm::Zstd;
    let checked =
        tokio::task::spawn_blocking(move || e.check_link(id, expires, stored, &sig)).await;
    match checked {
        Ok(Ok(backup)) => stream_dump(&s, Some(backup.id), form)
            .await
            .unwrap_or_else(|e| e.into_response()),
        Ok(Err(why)) => refused(why.0),
        Err(_) => refused("the link could not be checked"),
    }
}

/// `GET /api/backups/{id|latest}/download?form=dump|plain|zstd`.
pub(super) async fn download(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<DownloadQuery>,
) -> ApiResult<Response> {
    let id = parse_optional_id(Some(&id))?;
    stream_dump(&s, id, q.form).await
}

/// A backup in `form`, streamed.
async fn stream_dump(s: &AppState, id: Option<TransferId>, form: DumpForm) -> ApiResult<Response> {
    let engine_form = match form {
        DumpForm::Dump => crate::transfer::DumpForm::Compressed,
        DumpForm::Plain => crate::transfer::DumpForm::Plain,
        DumpForm::Zstd => crate::transfer::DumpForm::Zstd,
    };
    let e = s.engine.clone();
    let download = blocking(move || {
        // The ID (`latest` resolved) names the backup in a "missing from the store" answer.
        let id = match id {
            Some(id) => id,
            None => e.latest_backup()?.id,
        };
        Ok(e.download(Some(id), engine_form).map_err(|err| (id, err)))
    })
    .await?
    .map_err(|(id, err)| match err {
        TransferError::Storage(StorageError::NotFound(key)) => {
            ApiError::new(StatusCode::GONE, missing_object(Some(id), &key))
        }
        other => other.into(),
    })?;
    let backup = download.backup;
    let mut resp = Body::from_stream(download.stream).into_response();
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    let file = match form {
        DumpForm::Zstd => format!("{}.dump.zst", backup.id),
        DumpForm::Dump | DumpForm::Plain => format!("{}.dump", backup.id),
    };
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{file}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    if let Some(size) = download.size {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    }
    if form == DumpForm::Zstd
        && let Some(sha) = backup
            .sha256
            .as_deref()
            .and_then(|v| HeaderValue::from_str(v).ok())
    {
        headers.insert(SHA256_HEADER, sha);
    }
    if let Ok(v) = HeaderValue::from_str(&backup.id.to_string()) {
        headers.insert(BACKUP_HEADER, v);
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The API's link is the engine's, in the same JSON.
    #[test]
    fn links_keep_every_field() {
        let engine = crate::transfer::BackupUrl {
            id: "b001".parse().expect("a valid ID"),
            url: "https://svc/links/b001".into(),
            expires_at: jiff::Timestamp::UNIX_EPOCH,
            content: "dump".into(),
        };
        let expected = serde_json::to_value(&engine).expect("serializes");
        let api = serde_json::to_value(backup_link(engine)).expect("serializes");
        assert_eq!(api, expected);
    }
}
