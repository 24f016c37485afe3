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
use crate::team::{LoginError, Principal, clear_session_cookie, password, session_cookie};

use super::{AppState, PageError, html};

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

/// Password checks at once, at most: each holds about 19 MiB of argon2 memory and a blocking
/// thread, so a flood of logins neither exhausts memory nor starves the service's other
/// blocking work; one over the limit is answered 503 at once.
static VERIFYING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(4);

/// The largest login form the service reads: a name and a password, not megabytes.
pub(super) const MAX_FORM_BYTES: usize = 16 * 1024;

/// `POST /login`.
///
/// What is written to the audit log is bounded by what costs an attacker a password check: a
/// name that cannot be a user's (the name rules) is refused at once and not recorded, and an
/// attempt the limiter refuses (429) is not recorded either; each of those could otherwise be
/// sent as fast as the network allows.
pub(super) async fn submit(
    State(s): State<AppState>,
    headers: HeaderMap,
    extensions: Extensions,
    Form(f): Form<LoginForm>,
) -> Response {
    let peer = extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
    let forwarded: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let addr = crate::config::client_address(peer, &forwarded, &s.trusted_proxies);
    let name = f.name.trim().to_string();
    let next = local_path(Some(&f.next));
    let page = |status: StatusCode, error: String, name: &str| {
        let page = LoginPage {
            error: Some(error),
            next,
            name,
        };
        (status, html(&page)).into_response()
    };
    if is_cross_site(&s, &headers) {
        // Login CSRF: another site's form would log this browser into someone else's account.
        return page(
            StatusCode::FORBIDDEN,
            "This login did not come from this service's own page: open the login page and log in there.".to_string(),
            "",
        );
    }
    let wrong = || "Wrong user name or password.".to_string();
    if password::check_name(&name).is_err() || f.password.len() > password::MAX_PASSWORD_BYTES {
        // No user has such a name (or such a password): no check, nothing recorded.
        return page(StatusCode::UNAUTHORIZED, wrong(), "");
    }
    let Ok(_permit) = VERIFYING.try_acquire() else {
        let mut out = page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Too many logins at once: try again in a second.".to_string(),
            &name,
        );
        out.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return out;
    };
    let (team, who) = (s.team.clone(), name.clone());
    // Password hashing is slow on purpose: off the async threads.
    let outcome = tokio::task::spawn_blocking(move || team.login(&who, &f.password, addr)).await;
    let answer = match outcome {
        Ok(Ok(session)) => {
            let cookie = session_cookie(&session.cookie, session.expires, is_secure(&s, &headers));
            let mut out = Redirect::to(next).into_response();
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                out.headers_mut().insert(header::SET_COOKIE, v);
            }
            out
        }
        Ok(Err(LoginError::Wrong)) => page(StatusCode::UNAUTHORIZED, wrong(), &name),
        Ok(Err(LoginError::Limited { retry_after })) => {
            let minutes = retry_after.as_secs().div_ceil(60).max(1);
            let mut out = page(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "Too many failed logins for this user or from this address: try again in {minutes} minute(s), or ask an admin to reset the password with `pgbackups users:password NAME`."
                ),
                &name,
            );
            if let Ok(v) = HeaderValue::from_str(&retry_after.as_secs().max(1).to_string()) {
                out.headers_mut().insert(header::RETRY_AFTER, v);
            }
            return out;
        }
        Ok(Err(LoginError::Failed(e))) => {
            tracing::error!("a login could not be checked: {e}");
            page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "The login could not be checked; the service's log says why.".to_string(),
                &name,
            )
        }
        Err(_) => page(
            StatusCode::INTERNAL_SERVER_ERROR,
            "The login could not be checked; the service's log says why.".to_string(),
            &name,
        ),
    };
    // Every login that was checked, refused ones too, in the audit log under the name typed.
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

/// Whether a login was posted from another site: the browser says so (`Sec-Fetch-Site:
/// cross-site`), or its `Origin` is not this service's (the public URL's, or the `Host` it
/// was sent to).
fn is_cross_site(s: &AppState, headers: &HeaderMap) -> bool {
    let get = |h: &str| headers.get(h).and_then(|v| v.to_str().ok());
    if get("sec-fetch-site") == Some("cross-site") {
        return true;
    }
    let Some(origin) = get("origin").filter(|o| *o != "null") else {
        return false;
    };
    let public = url::Url::parse(&s.public_url)
        .ok()
        .map(|u| u.origin().ascii_serialization());
    let same_host = get("host").is_some_and(|h| {
        origin
            .split_once("://")
            .is_some_and(|(_, rest)| rest.eq_ignore_ascii_case(h))
    });
    !(public.as_deref() == Some(origin) || same_host)
}

/// `POST /logout`: the session is forgotten by the service, the cookie cleared.
pub(super) async fn logout(State(s): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(value) = crate::server::auth::session_cookie(&headers) {
        let team = s.team.clone();
        let ended = tokio::task::spawn_blocking(move || team.logout(&value)).await;
        if !matches!(ended, Ok(Ok(_))) {
            tracing::error!("a logout could not end its session in the catalog");
            return PageError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "The session could not be ended; the service's log says why. Try again.",
            )
            .into_response();
        }
    }
    let mut out = Redirect::to("/login").into_response();
    if let Ok(v) = HeaderValue::from_str(&clear_session_cookie(is_secure(&s, &headers))) {
        out.headers_mut().insert(header::SET_COOKIE, v);
    }
    out
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
