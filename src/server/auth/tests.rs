//! The middleware against a router of stand-in routes (a page, a page's form, an API route),
//! served on a local port and called over HTTP as a browser and the CLI would.

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};

use super::*;
use crate::api::AuditQuery;
use crate::clock::SystemClock;

const PW: &str = "correct horse battery";

struct Fixture {
    base: String,
    team: Arc<Team>,
    token: String,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

async fn start() -> Fixture {
    crate::install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let secrets = Arc::new(Secrets::load_or_create(dir.path()).unwrap());
    let team = Arc::new(Team::new(
        crate::catalog::open_in_memory().unwrap(),
        Arc::new(SystemClock),
    ));
    let auth = Auth {
        team: team.clone(),
        secrets: secrets.clone(),
    };
    let app = Router::new()
        .route("/login", get(|| async { "the login page" }))
        .route("/page", get(|| async { "a page" }))
        .route(
            "/databases/{name}/capture",
            post(
                |axum::Extension(p): axum::Extension<Principal>, body: String| async move {
                    format!("{} captured; body {body}", p.user)
                },
            ),
        )
        .route("/api/transfers", get(|| async { "[]" }))
        .route("/api/captures", post(|| async { "started" }))
        .route_layer(axum::middleware::from_fn_with_state(auth, authenticate));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Fixture {
        base,
        team,
        token: secrets.token().to_string(),
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        _dir: dir,
    }
}

impl Fixture {
    /// A user of `role` with a browser session: (cookie header, csrf).
    async fn session(&self, name: &str, role: Role) -> (String, String) {
        let team = self.team.clone();
        let name = name.to_string();
        let s = tokio::task::spawn_blocking(move || {
            team.add_user(&name, role, PW).unwrap();
            team.login(&name, PW, "127.0.0.1".parse().unwrap()).unwrap()
        })
        .await
        .unwrap();
        (format!("{SESSION_COOKIE}={}", s.cookie), s.csrf)
    }

    async fn audit(&self) -> Vec<(String, String, String, u16)> {
        let team = self.team.clone();
        tokio::task::spawn_blocking(move || team.audit_log(&AuditQuery::default()).unwrap())
            .await
            .unwrap()
            .into_iter()
            .map(|e| (e.actor, e.action, e.target, e.status))
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nobody_is_sent_to_log_in_from_a_page_and_refused_on_the_api() {
    let f = start().await;
    let r = f
        .http
        .get(format!("{}/page?x=1", f.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/login?next=%2Fpage%3Fx%3D1");
    let r = f
        .http
        .get(format!("{}/login", f.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the login page is open");
    let r = f
        .http
        .get(format!("{}/api/transfers", f.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.text().await.unwrap().contains("this API needs a token"));
    // An ended or made-up session is nobody.
    let r = f
        .http
        .get(format!("{}/page", f.base))
        .header("cookie", format!("{SESSION_COOKIE}=deadbeef"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    // A live part polling after the session ended: the whole page goes to the login and
    // back to the page it was on, not the login page swapped into the part.
    let r = f
        .http
        .get(format!("{}/page", f.base))
        .header("hx-request", "true")
        .header("hx-current-url", format!("{}/databases/main?at=x", f.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.headers()["hx-redirect"],
        "/login?next=%2Fdatabases%2Fmain%3Fat%3Dx"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_needs_its_csrf_token_for_a_form_post() {
    let f = start().await;
    let (cookie, csrf) = f.session("olga", Role::Operator).await;
    let url = format!("{}/databases/main/capture", f.base);
    let form = |body: String| {
        f.http
            .post(&url)
            .header("cookie", &cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
    };
    // No token, a wrong one: refused, and audited as refused.
    let r = form("x=1".into()).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains(CSRF_REFUSAL));
    let r = form(format!("csrf={}x", csrf)).send().await.unwrap();
    assert_eq!(r.status(), 403);
    // The form field: the handler still gets the whole body.
    let r = form(format!("x=1&csrf={csrf}")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.text().await.unwrap(),
        format!("olga captured; body x=1&csrf={csrf}")
    );
    // The header, with any body.
    let r = f
        .http
        .post(&url)
        .header("cookie", &cookie)
        .header(CSRF_HEADER, &csrf)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // The page it is on is a GET: no token needed.
    let r = f
        .http
        .get(format!("{}/page", f.base))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let audit = f.audit().await;
    let statuses: Vec<u16> = audit.iter().rev().map(|a| a.3).collect();
    assert_eq!(statuses, [403, 403, 200, 200]);
    assert!(
        audit
            .iter()
            .all(|a| a.0 == "olga" && a.1 == "capture" && a.2 == "main")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_is_refused_with_the_role_named_and_the_refusal_audited() {
    let f = start().await;
    let (cookie, csrf) = f.session("vera", Role::Viewer).await;
    let r = f
        .http
        .post(format!("{}/databases/main/capture", f.base))
        .header("cookie", &cookie)
        .header(CSRF_HEADER, &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let page = r.text().await.unwrap();
    assert!(
        page.contains("this needs the operator role; vera is a viewer"),
        "{page}"
    );
    let r = f
        .http
        .post(format!("{}/api/captures", f.base))
        .header("cookie", &cookie)
        .header(CSRF_HEADER, &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        body["error"],
        "this needs the operator role; vera is a viewer"
    );
    assert_eq!(
        f.audit().await,
        [
            ("vera".into(), "capture".into(), "".into(), 403),
            ("vera".into(), "capture".into(), "main".into(), 403)
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_tokens_need_no_csrf_and_a_wrong_one_is_401() {
    let f = start().await;
    let r = f
        .http
        .post(format!("{}/api/captures", f.base))
        .bearer_auth(&f.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = f
        .http
        .get(format!("{}/page", f.base))
        .bearer_auth("pgb_nope")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.text().await.unwrap().contains("unknown or was revoked"));
    let r = f
        .http
        .get(format!("{}/api/transfers", f.base))
        .bearer_auth("nope")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.text().await.unwrap().contains("the API token is wrong"));
    assert_eq!(
        f.audit().await,
        [("service-token".into(), "capture".into(), "".into(), 200)]
    );
}
