//! Logging in and out of the dashboard. A successful login sets the session cookie
//! (`HttpOnly`, `SameSite=Strict`, `Secure` when the service is reached over TLS) and goes on
//! to the page the user first asked for; repeated failures are limited per user name and per
//! address by [`crate::team::Team::login`], and said so with a 429 and `Retry-After`.

use std::net::SocketAddr;

use askama::Template;
use axum::Form;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{Extensions, HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use crate::api::Role;
use crate::team::{LoginError, Principal, SESSION_COOKIE, clear_session_cookie, session_cookie};

use super::{AppState, html};

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage<'a> {
    error: Option<String>,
    next: &'a str,
    name: &'a str,
}

#[derive(Deserialize)]
pub(super) struct NextQuery {
    next: Option<String>,
}

/// `GET /login[?next=/databases/main]`.
pub(super) async fn form(Query(q): Query<NextQuery>) -> Response {
    html(&LoginPage {
        error: None,
        next: local_path(q.next.as_deref()),
        name: "",
    })
}

#[derive(Deserialize)]
pub(super) struct LoginForm {
    name: String,
    password: String,
    #[serde(default)]
    next: String,
}

/// `POST /login`.
pub(super) async fn submit(
    State(s): State<AppState>,
    headers: HeaderMap,
    extensions: Extensions,
    Form(f): Form<LoginForm>,
) -> Response {
    let addr = extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
    let team = s.team.clone();
    let name = f.name.trim().to_string();
    let who = name.clone();
    // Password hashing is slow on purpose: off the async threads.
    let outcome = tokio::task::spawn_blocking(move || team.login(&who, &f.password, addr)).await;
    let next = local_path(Some(&f.next));
    let again = |status: StatusCode, error: String| {
        let page = LoginPage {
            error: Some(error),
            next,
            name: &name,
        };
        (status, html(&page)).into_response()
    };
    let answer = match outcome {
        Ok(Ok(session)) => {
            let cookie = session_cookie(&session.cookie, session.expires, is_secure(&s, &headers));
            let mut out = Redirect::to(next).into_response();
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                out.headers_mut().insert(header::SET_COOKIE, v);
            }
            out
        }
        Ok(Err(LoginError::Wrong)) => again(
            StatusCode::UNAUTHORIZED,
            "Wrong user name or password.".to_string(),
        ),
        Ok(Err(LoginError::Limited { retry_after })) => {
            let minutes = retry_after.as_secs().div_ceil(60).max(1);
            let mut out = again(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "Too many failed logins for this user or from this address: try again in {minutes} minute(s), or ask an admin to reset the password with `pgbackups users:password NAME`."
                ),
            );
            if let Ok(v) = HeaderValue::from_str(&retry_after.as_secs().max(1).to_string()) {
                out.headers_mut().insert(header::RETRY_AFTER, v);
            }
            out
        }
        Ok(Err(LoginError::Failed(e))) => {
            tracing::error!("a login could not be checked: {e}");
            again(
                StatusCode::INTERNAL_SERVER_ERROR,
                "The login could not be checked; the service's log says why.".to_string(),
            )
        }
        Err(_) => again(
            StatusCode::INTERNAL_SERVER_ERROR,
            "The login could not be checked; the service's log says why.".to_string(),
        ),
    };
    // Every login, refused ones too, in the audit log under the name typed.
    let who = Principal {
        user: name.clone(),
        role: Role::Viewer,
        csrf: None,
    };
    let (team, status) = (s.team.clone(), answer.status().as_u16());
    let audited =
        tokio::task::spawn_blocking(move || team.audit(&who, "login", &addr.to_string(), status))
            .await;
    if !matches!(audited, Ok(Ok(_))) {
        tracing::warn!("a login could not be written to the audit log");
    }
    answer
}

/// `POST /logout`: the session is forgotten by the service, the cookie cleared.
pub(super) async fn logout(State(s): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(value) = session_value(&headers) {
        let team = s.team.clone();
        let _ = tokio::task::spawn_blocking(move || team.logout(&value)).await;
    }
    let mut out = Redirect::to("/login").into_response();
    if let Ok(v) = HeaderValue::from_str(&clear_session_cookie(is_secure(&s, &headers))) {
        out.headers_mut().insert(header::SET_COOKIE, v);
    }
    out
}

/// The session cookie's value, if the request carries one.
fn session_value(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == SESSION_COOKIE)
        .map(|(_, v)| v.to_string())
}

/// Whether cookies must be `Secure`: the service's public URL is https, or a proxy in front
/// says the request came over TLS.
fn is_secure(s: &AppState, headers: &HeaderMap) -> bool {
    s.public_url.starts_with("https://")
        || headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

/// Where to go after logging in: a path on this service, never another site (`//evil`,
/// `https://...`, `/\evil`), else the overview.
fn local_path(next: Option<&str>) -> &str {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.contains('\\')
                && !n.chars().any(char::is_control) =>
        {
            n
        }
        _ => "/",
    }
}

#[cfg(test)]
mod tests {
    use super::local_path;

    #[test]
    fn after_login_only_a_path_on_this_service_is_followed() {
        assert_eq!(local_path(Some("/databases/main")), "/databases/main");
        assert_eq!(local_path(Some("//evil.example/x")), "/");
        assert_eq!(local_path(Some("https://evil.example/")), "/");
        assert_eq!(local_path(Some("/\\evil.example")), "/");
        assert_eq!(local_path(Some("/a\r\nSet-Cookie: x")), "/");
        assert_eq!(local_path(None), "/");
    }
}
