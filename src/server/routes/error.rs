//! The shared error mapping: every failure a handler meets becomes an [`ApiError`], a status
//! that tells the kind of failure and an [`crate::api::ErrorBody`] that says what to do.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::api::ErrorBody;
use crate::catalog::{CatalogError, TransferId};
use crate::protect::ProtectError;
use crate::storage::StorageError;
use crate::transfer::TransferError;

/// What a handler answers: its success, or an [`ApiError`].
pub(in crate::server) type ApiResult<T> = Result<T, ApiError>;

/// An error answer: `{"error": "..."}` with a status that tells the kind of failure.
pub struct ApiError {
    status: StatusCode,
    message: String,
    /// The name a destructive request's `confirm` must carry, when that is what is missing.
    confirm: Option<String>,
}

impl ApiError {
    /// An error answer. Its message goes through [`crate::pg::redact`]: whatever a message
    /// quotes of a request, a password in it is not sent back (nor written to a log).
    pub(in crate::server) fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: crate::pg::redact(&message.into()),
            confirm: None,
        }
    }

    /// 400 for a destructive request without its confirmation: `expected` is the name
    /// `confirm` must carry (a CLI on a terminal asks for it).
    pub(in crate::server) fn unconfirmed(message: impl Into<String>, expected: &str) -> ApiError {
        ApiError {
            confirm: Some(expected.to_string()),
            ..ApiError::new(StatusCode::BAD_REQUEST, message)
        }
    }
}

impl ApiError {
    /// The answer's status.
    pub(in crate::server) fn status(&self) -> StatusCode {
        self.status
    }

    /// What is wrong and what to do (already redacted).
    pub(in crate::server) fn message(&self) -> &str {
        &self.message
    }

    /// The name a destructive request must be confirmed with, when its confirmation was
    /// missing or wrong.
    pub(in crate::server) fn confirm(&self) -> Option<&str> {
        self.confirm.as_deref()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(ErrorBody {
                error: self.message,
                confirm: self.confirm,
            }),
        )
            .into_response()
    }
}

impl From<TransferError> for ApiError {
    fn from(e: TransferError) -> ApiError {
        use TransferError as E;
        let status = match &e {
            E::NotFound(_) | E::UnknownDatabase(_) | E::UnknownForPullPush(_) | E::NoBackups => {
                StatusCode::NOT_FOUND
            }
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
            E::Target(_) | E::NotEmpty { .. } => StatusCode::CONFLICT,
            E::NotCompleted { .. }
            | E::InUse { .. }
            | E::StillRunning(_)
            | E::NotRunning { .. }
            | E::NothingRunning
            | E::Claim(_)
            | E::Unrecorded(_) => StatusCode::CONFLICT,
            E::Catalog(CatalogError::DatabaseExists(_) | CatalogError::Protected(_)) => {
                StatusCode::CONFLICT
            }
            E::Catalog(CatalogError::NotRegistered(_)) => StatusCode::NOT_FOUND,
            // The shared catalog's server is down or saturated: try again later.
            E::Catalog(CatalogError::Unreachable { .. } | CatalogError::Busy(..)) => {
                tracing::error!("{}", crate::pg::redact(&e.to_string()));
                StatusCode::SERVICE_UNAVAILABLE
            }
            E::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            E::Source(_) => StatusCode::BAD_GATEWAY,
            E::Storage(StorageError::NotFound(key)) => {
                return ApiError::new(StatusCode::GONE, missing_object(None, key));
            }
            E::Catalog(_) | E::Storage(_) | E::Unseal(_) | E::Internal(_) => {
                tracing::error!("{}", crate::pg::redact(&e.to_string()));
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        let confirm = match &e {
            E::Confirm { expected, .. } | E::NotEmpty { expected, .. } => Some(expected.clone()),
            _ => None,
        };
        ApiError {
            confirm,
            ..ApiError::new(status, e.to_string())
        }
    }
}

/// What a user meets when a backup's stored object is gone (removed from the store by hand,
/// or a store that is not the one the catalog was written with): 410, and the two ways out.
pub(super) fn missing_object(id: Option<TransferId>, key: &str) -> String {
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
            // Answered as the same refusals from a transfer are.
            ProtectError::Registry(e) => TransferError::from(e).into(),
            ProtectError::Catalog(e) => TransferError::from(e).into(),
            ProtectError::NotFound(m) => ApiError::new(StatusCode::NOT_FOUND, m),
            ProtectError::Refused(m) => ApiError::new(StatusCode::BAD_REQUEST, m),
            ProtectError::Internal(m) => {
                tracing::error!("{}", crate::pg::redact(&m));
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, m)
            }
        }
    }
}
