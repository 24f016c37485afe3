//! Every error the API gives is `{"error": "..."}` (docs/API.md). axum's own extractors answer
//! a malformed request in plain text, and its router answers an unknown route or a wrong method
//! with an empty body: the extractors here turn their rejections into API errors with the same
//! status and a message that says what to send, and [`json_errors`] rewrites whatever error
//! answer is still not JSON.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

use super::routes::ApiError;

/// A JSON body, as `axum::Json`, whose rejections are API errors: 400 for text that is not
/// JSON, 422 for JSON that does not fit (a missing field, a wrong type), 415 without
/// `Content-Type: application/json`, 413 for a body past the limit.
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Json(v)),
            Err(r) => Err(json_rejection(&r)),
        }
    }
}

fn json_rejection(r: &JsonRejection) -> ApiError {
    // serde's messages quote what was sent (`invalid type: string "postgres://u:pw@..."`).
    let detail = crate::pg::redact(&r.body_text());
    let message = match r {
        JsonRejection::JsonSyntaxError(_) => format!(
            "the request body is not valid JSON ({detail}); send a JSON object as docs/API.md describes"
        ),
        JsonRejection::JsonDataError(_) => format!(
            "the JSON body does not fit this route ({detail}); docs/API.md lists its fields and their types"
        ),
        JsonRejection::MissingJsonContentType(_) => {
            "send the request body as JSON, with the header `Content-Type: application/json`"
                .to_string()
        }
        _ if r.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            "the request body is larger than this route takes (2 MiB); a dump file goes to POST /api/restores/upload".to_string()
        }
        _ => format!("the request body could not be read ({detail}); send it again"),
    };
    ApiError::new(client_status(r.status()), message)
}

/// Path parameters, as `axum::extract::Path`, whose rejections are API errors (400: a
/// parameter that is not valid percent-encoded UTF-8).
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(Path(v)),
            Err(r) => Err(path_rejection(&r)),
        }
    }
}

fn path_rejection(r: &PathRejection) -> ApiError {
    let detail = crate::pg::redact(&r.body_text());
    ApiError::new(
        client_status(r.status()),
        format!(
            "the request path cannot be read ({detail}); percent-encode names and IDs as UTF-8"
        ),
    )
}

/// A query string, as `axum::extract::Query`, whose rejections are API errors (400).
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(Query(v)),
            Err(r) => Err(query_rejection(&r)),
        }
    }
}

fn query_rejection(r: &QueryRejection) -> ApiError {
    let detail = crate::pg::redact(&r.body_text());
    ApiError::new(
        StatusCode::BAD_REQUEST,
        format!(
            "the query string does not fit this route ({detail}); docs/API.md lists its parameters"
        ),
    )
}

/// A rejection's status, but never a 5xx: what a client sent is never the service's fault.
fn client_status(status: StatusCode) -> StatusCode {
    if status.is_client_error() {
        status
    } else {
        StatusCode::BAD_REQUEST
    }
}

/// Rewrites an error answer that is not JSON (axum's 404 for an unknown route, 405 for a
/// method a route does not take, anything a layer answered on its own) as an API error with
/// the same status. Answers that are JSON or HTML already, and successes, pass unchanged.
pub async fn json_errors(resp: Response) -> Response {
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    // JSON already, or a page's own HTML answer (a refusal page says why itself).
    let keep = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json") || v.starts_with("text/html"));
    if keep {
        return resp;
    }
    let allow = resp.headers().get(header::ALLOW).cloned();
    let message = match status {
        StatusCode::NOT_FOUND => "no such route; docs/API.md lists them".to_string(),
        StatusCode::METHOD_NOT_ALLOWED => format!(
            "this route does not take that method; it takes {}",
            allow
                .as_ref()
                .and_then(|v| v.to_str().ok())
                .filter(|v| !v.is_empty())
                .unwrap_or("those in docs/API.md")
        ),
        StatusCode::PAYLOAD_TOO_LARGE => "the request body is larger than this route takes".into(),
        _ => "the request was refused; docs/API.md describes what each route takes".into(),
    };
    let mut out = ApiError::new(status, message).into_response();
    if let Some(allow) = allow {
        out.headers_mut().insert(header::ALLOW, allow);
    }
    out
}
