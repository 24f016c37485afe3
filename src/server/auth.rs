//! Who is asking, may they, and the audit log: one middleware ([`authenticate`]) on every
//! route of the app, API and pages.
//!
//! 1. Open routes ([`roles::open`]) pass untouched.
//! 2. Credentials, in order: `Authorization: Bearer` — the service's own token (an admin named
//!    `service-token`), else a personal token (`pgb_...`); a wrong one is 401. Without a
//!    bearer token, the session cookie. Nobody: 401 JSON under `/api`, else a 303 to
//!    `/login?next=PATH`.
//! 3. A request on a session cookie with an unsafe method must carry the session's CSRF token,
//!    in `X-CSRF-Token` or as the form field `csrf` of a urlencoded body (buffered, up to
//!    1 MiB, and handed on whole). Bearer requests need none: no browser sends them by itself.
//! 4. The role the route needs ([`roles::action`]); a refusal says which and why (403).
//! 5. The [`Principal`] goes into the request's extensions for the handlers; every unsafe
//!    request that got this far is written to the audit log once answered, refusals included.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{FromRequestParts, MatchedPath, RawPathParams, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::roles::{self, Action};
use super::routes::ApiError;
use crate::api::Role;
use crate::secret::Secrets;
use crate::team::{Principal, SESSION_COOKIE, Team, secrets_match};

/// The header a browser's script sends the session's CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// The form field a plain HTML form sends the session's CSRF token in.
pub const CSRF_FIELD: &str = "csrf";
/// The largest urlencoded form body read for its CSRF field.
const MAX_FORM_BYTES: usize = 1 << 20;

/// What a refused CSRF check says.
pub const CSRF_REFUSAL: &str = "missing or wrong CSRF token: reload the page and try again";

/// A handler's better name for what an unsafe request acted on (the new backup's ID, say),
/// put in the response's extensions; the audit log uses it instead of the path's parameters.
#[derive(Clone, Debug)]
pub struct AuditTarget(pub String);

/// What the middleware needs: the team and the service's own token.
#[derive(Clone)]
pub struct Auth {
    pub team: Arc<Team>,
    pub secrets: Arc<Secrets>,
}

/// The middleware: see the module's documentation.
pub async fn authenticate(State(auth): State<Auth>, req: Request, next: Next) -> Response {
    let matched = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| req.uri().path().to_string());
    if roles::open(&matched) {
        return next.run(req).await;
    }
    let api = req.uri().path() == "/api" || req.uri().path().starts_with("/api/");
    let principal = match who(&auth, req.headers()).await {
        Ok(p) => p,
        Err(Refused::Unauthorized(message)) if api => {
            return ApiError::new(StatusCode::UNAUTHORIZED, message).into_response();
        }
        Err(Refused::Unauthorized(_)) => return to_login(&req),
        Err(Refused::Wrong(message)) => {
            return ApiError::new(StatusCode::UNAUTHORIZED, message).into_response();
        }
    };
    let method = req.method().clone();
    let action = roles::action(&method, &matched);
    let (mut parts, body) = req.into_parts();
    let target = RawPathParams::from_request_parts(&mut parts, &())
        .await
        .map(|p| p.iter().map(|(_, v)| v).collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    let mut req = Request::from_parts(parts, body);

    if principal.csrf.is_some() && !roles::is_safe(&method) {
        let (checked, ok) = check_csrf(req, &principal).await;
        req = match checked {
            Ok(r) if ok => r,
            Ok(_) => {
                let resp = refuse(api, StatusCode::FORBIDDEN, CSRF_REFUSAL);
                record(&auth, &principal, action, &target, &resp).await;
                return resp;
            }
            Err(resp) => return resp,
        };
    }
    if principal.role < action.role {
        let why = roles::refusal(action.role, &principal.user, principal.role);
        let resp = refuse(api, StatusCode::FORBIDDEN, &why);
        if !roles::is_safe(&method) {
            record(&auth, &principal, action, &target, &resp).await;
        }
        return resp;
    }
    req.extensions_mut().insert(principal.clone());
    let resp = next.run(req).await;
    if !roles::is_safe(&method) {
        record(&auth, &principal, action, &target, &resp).await;
    }
    resp
}

/// Why a request has no principal.
enum Refused {
    /// No credential (or an ended session): asked to log in.
    Unauthorized(&'static str),
    /// A bearer token that is not one: 401 wherever it was sent.
    Wrong(&'static str),
}

/// The principal of a request's credentials.
async fn who(auth: &Auth, headers: &HeaderMap) -> Result<Principal, Refused> {
    if let Some(token) = bearer(headers) {
        if auth.secrets.token_matches(token) {
            return Ok(Principal::service_token());
        }
        let team = auth.team.clone();
        let token = token.to_string();
        let personal = crate::team::TOKEN_PREFIX;
        let is_personal = token.starts_with(personal);
        return match tokio::task::spawn_blocking(move || team.token(&token)).await {
            Ok(Some(p)) => Ok(p),
            _ if is_personal => Err(Refused::Wrong(
                "this personal API token is unknown or was revoked; create another with `pgbackups tokens:create`",
            )),
            _ => Err(Refused::Wrong(
                "the API token is wrong; use the token in the service's data directory (file `token`) as PGBACKUPS_TOKEN",
            )),
        };
    }
    let Some(cookie) = session_cookie(headers) else {
        return Err(Refused::Unauthorized(
            "this API needs a token: send `Authorization: Bearer <token>` (the token is in the service's data directory, file `token`)",
        ));
    };
    let team = auth.team.clone();
    match tokio::task::spawn_blocking(move || team.session(&cookie)).await {
        Ok(Some(p)) => Ok(p),
        _ => Err(Refused::Unauthorized(
            "the session has ended (expired, logged out, or the password was changed): log in again",
        )),
    }
}

/// The bearer token a request presents, if any.
pub(in crate::server) fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

/// The value of the session cookie, if the request carries one.
pub(in crate::server) fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, v)| *k == SESSION_COOKIE && !v.is_empty())
        .map(|(_, v)| v.to_string())
}

/// Checks the CSRF token of an unsafe request on a session: the header, else the `csrf` field
/// of a urlencoded body. Gives the request back (its body rebuilt when it was read) and
/// whether the token matched; an unreadable or too large body is the answer itself.
async fn check_csrf(req: Request, principal: &Principal) -> (Result<Request, Response>, bool) {
    let expected = principal.csrf.as_deref().unwrap_or_default();
    if let Some(sent) = req.headers().get(CSRF_HEADER).and_then(|v| v.to_str().ok()) {
        let ok = secrets_match(sent.trim(), expected);
        return (Ok(req), ok);
    }
    let is_form = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !is_form {
        return (Ok(req), false);
    }
    let (parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_FORM_BYTES).await {
        Ok(b) => b,
        Err(_) => {
            let api = parts.uri.path().starts_with("/api/");
            return (
                Err(refuse(
                    api,
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "the form is larger than 1 MiB, or could not be read; send it again",
                )),
                false,
            );
        }
    };
    let ok = url::form_urlencoded::parse(&bytes)
        .find(|(k, _)| k == CSRF_FIELD)
        .is_some_and(|(_, v)| secrets_match(&v, expected));
    (Ok(Request::from_parts(parts, Body::from(bytes))), ok)
}

/// A refusal: JSON under `/api`, a small HTML page elsewhere.
fn refuse(api: bool, status: StatusCode, message: &str) -> Response {
    if api {
        ApiError::new(status, message).into_response()
    } else {
        refusal_page(status, message)
    }
}

/// The HTML page of a refused page request: the dashboard's error page.
pub fn refusal_page(status: StatusCode, message: &str) -> Response {
    super::pages::error_page(status, message)
}

/// 303 to the login page, coming back to this page (path and query) after. To htmx (a live
/// part polling after the session ended) a 401 whose `HX-Redirect` sends the whole page to
/// the login, and back to the page it was on, instead of the login page swapped into a part.
fn to_login(req: &Request) -> Response {
    let htmx = req.headers().contains_key("hx-request");
    let current = req
        .headers()
        .get("hx-current-url")
        .and_then(|v| v.to_str().ok())
        .and_then(|u| url::Url::parse(u).ok())
        .map(|u| match u.query() {
            Some(q) => format!("{}?{q}", u.path()),
            None => u.path().to_string(),
        })
        .filter(|_| htmx);
    let back = current.unwrap_or_else(|| {
        req.uri()
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".to_string())
    });
    let next: String = url::form_urlencoded::byte_serialize(back.as_bytes()).collect();
    let location = format!("/login?next={next}");
    let (mut resp, name) = if htmx {
        (
            refusal_page(
                StatusCode::UNAUTHORIZED,
                "Your session has ended: log in again.",
            ),
            header::HeaderName::from_static("hx-redirect"),
        )
    } else {
        (StatusCode::SEE_OTHER.into_response(), header::LOCATION)
    };
    if let Ok(v) = HeaderValue::from_str(&location) {
        resp.headers_mut().insert(name, v);
    }
    resp
}

/// Writes one audit line: who, the action's name, the target (the handler's
/// [`AuditTarget`], else the path's parameters), the status answered. A failure to write is
/// logged; the answer stands.
fn record(
    auth: &Auth,
    who: &Principal,
    action: Action,
    target: &str,
    resp: &Response,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let target = resp
        .extensions()
        .get::<AuditTarget>()
        .map(|t| t.0.clone())
        .unwrap_or_else(|| target.to_string());
    let status = resp.status().as_u16();
    write_audit(auth.team.clone(), who.clone(), action.name, target, status)
}

async fn write_audit(
    team: Arc<Team>,
    who: Principal,
    name: &'static str,
    target: String,
    status: u16,
) {
    let done = tokio::task::spawn_blocking(move || team.audit(&who, name, &target, status)).await;
    match done {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::error!("cannot write the audit log: {e}"),
        Err(e) => tracing::error!("cannot write the audit log: {e}"),
    }
}

/// For handlers that decide more than the table can (another user's tokens): 403 unless
/// `who` has `role`, in the table's words.
pub fn require(who: &Principal, role: Role) -> Result<(), ApiError> {
    if who.role >= role {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        roles::refusal(role, &who.user, who.role),
    ))
}

/// The principal the middleware put in a request, for handlers: `Extension<Principal>` with
/// the failure an API error (it cannot happen behind the middleware).
pub struct Caller(pub Principal);

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Caller, ApiError> {
        parts
            .extensions
            .get::<Principal>()
            .cloned()
            .map(Caller)
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "this route needs a user: log in or send a token",
                )
            })
    }
}

#[cfg(test)]
mod tests;
