//! The web dashboard, used as a person uses it: in a real headless Chromium (tests/common/browser.rs)
//! against a real service and a real PostgreSQL cluster. The first tests prove the harness
//! itself (the browser reaches the service, a failing test leaves a screenshot and the page's
//! HTML in target/browser-failures); the others are what issue 14 asks the pages to show:
//! logins refused and limited, the overview after a CLI capture, a capture from the page
//! followed live, a restore that needs the name typed, roles, CSRF, the audit log, and no
//! secret in any page.

mod common;

use std::time::Duration;

use common::browser::Browser;
use common::{Cluster, PASSWORD, Service};

const PNG_MAGIC: &[u8] = b"\x89PNG\r\n\x1a\n";

#[test]
fn the_browser_reads_the_health_check_of_a_real_service() {
    let svc = Service::start();
    let b = Browser::new();
    b.goto(&format!("{}/healthz", svc.url));
    b.wait_for("body", Duration::from_secs(10));
    assert_eq!(b.text("body").trim(), "ok", "{}", b.source());
    assert!(b.url().ends_with("/healthz"), "{}", b.url());
}

#[test]
fn a_screenshot_is_a_png() {
    let svc = Service::start();
    let b = Browser::new();
    b.goto(&format!("{}/healthz", svc.url));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("healthz.png");
    b.screenshot(&path);
    let png = std::fs::read(&path).unwrap();
    assert!(png.starts_with(PNG_MAGIC), "not a PNG: {:?}", &png[..16]);
    // The IHDR chunk: the window's width (1280) as big-endian u32 at offset 16.
    let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
    assert_eq!(width, 1280, "the viewport is 1280 px wide");
}

#[test]
fn a_test_that_panics_with_a_browser_open_leaves_a_screenshot_and_the_html() {
    let svc = Service::start();
    let url = format!("{}/healthz", svc.url);
    // A thread named like a test, as libtest names each test's thread.
    let probe = std::thread::Builder::new()
        .name("dashboard_failure_probe".to_string())
        .spawn(move || {
            let b = Browser::new();
            b.goto(&url);
            let path = b.failure_screenshot_path();
            let _ = std::fs::remove_file(&path);
            let _ = std::fs::remove_file(path.with_extension("html"));
            b.wait_for("#no-such-element", Duration::from_millis(300));
        })
        .unwrap();
    let panic = probe
        .join()
        .expect_err("waiting for a missing element panics");
    let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        message.contains("#no-such-element") && message.contains("/healthz"),
        "the panic names the selector and the page: {message}"
    );
    let path = common::browser::failure_dir().join("dashboard_failure_probe.png");
    let png = std::fs::read(&path)
        .unwrap_or_else(|e| panic!("no failure screenshot at {}: {e}", path.display()));
    assert!(png.starts_with(PNG_MAGIC), "not a PNG: {}", path.display());
    let html = std::fs::read_to_string(path.with_extension("html")).unwrap();
    assert!(html.contains("ok"), "{html}");
}

#[test]
fn the_page_can_send_forged_requests_and_holds_cookies() {
    let svc = Service::start();
    let b = Browser::new();
    b.goto(&format!("{}/healthz", svc.url));
    // Without the token the API refuses; with it (a Bearer header from the page) it answers.
    let refused = b.fetch("GET", "/api/databases", &[], None);
    assert_eq!(refused.status, 401, "{refused:?}");
    let auth = format!("Bearer {}", svc.token());
    let listed = b.fetch("GET", "/api/databases", &[("Authorization", &auth)], None);
    assert_eq!(listed.status, 200, "{listed:?}");
    assert!(listed.body.trim_start().starts_with('['), "{listed:?}");
    b.set_cookie("probe", "v1");
    let cookies = b.cookies();
    let probe = cookies.iter().find(|c| c.name == "probe").unwrap();
    assert_eq!(probe.value, "v1");
    assert_eq!(probe.path.as_deref(), Some("/"));
}

// ---- the pages ----

/// A password good enough for the rules (12 characters at least).
const USER_PASSWORD: &str = "correct horse battery staple";

/// Adds user `name` with `role`; the password goes on standard input, as a script gives it.
fn add_user(svc: &Service, name: &str, role: &str) {
    let out = svc.cli_with_stdin(&["users:add", name, "--role", role], USER_PASSWORD);
    assert!(out.status.success(), "{}", common::text(&out));
}

/// Logs `b` in as `name` through the login form; waits until it lands on a page of the service.
fn log_in(b: &Browser, svc: &Service, name: &str, password: &str) {
    b.goto(&format!("{}/login", svc.url));
    b.fill("#name", name);
    b.fill("#password", password);
    b.click("#login button[type=submit]");
}

fn logged_in(b: &Browser, svc: &Service, name: &str) {
    log_in(b, svc, name, USER_PASSWORD);
    b.wait_until(
        "the overview after logging in",
        Duration::from_secs(10),
        |b| b.exists("#overview") || b.exists("h1"),
    );
    assert!(
        !b.url().contains("/login"),
        "still on the login page: {}",
        b.source()
    );
}

/// A cluster with a table of 70 rows in `app`, and a service with `app` registered as `main`.
fn with_database() -> (Cluster, Service) {
    let pg = Cluster::start();
    pg.create_db("app");
    pg.psql(
        "app",
        "CREATE TABLE t AS SELECT g FROM generate_series(1, 70) g",
    );
    let svc = Service::start();
    let out = svc.cli_with_stdin(&["databases:add", "main", "-"], &pg.url("app"));
    assert!(out.status.success(), "{}", common::text(&out));
    (pg, svc)
}

/// The dashboard's state word of backup `id` in the database page's table.
fn backup_state(b: &Browser, id: &str) -> Option<String> {
    b.attr(&format!("tr[data-backup={id}] .state"), "data-state")
}

#[test]
fn a_wrong_password_is_refused_and_five_failures_lock_the_user_out_for_a_while() {
    let svc = Service::start();
    add_user(&svc, "alice", "operator");
    let b = Browser::new();
    for attempt in 1..=5 {
        log_in(&b, &svc, "alice", "not the password at all");
        b.wait_for("#error", Duration::from_secs(10));
        assert_eq!(
            b.text("#error"),
            "Wrong user name or password.",
            "attempt {attempt}"
        );
    }
    // Limited now: even the right password is refused until the window passes.
    log_in(&b, &svc, "alice", USER_PASSWORD);
    b.wait_for("#error", Duration::from_secs(10));
    let said = b.text("#error");
    assert!(said.starts_with("Too many failed logins"), "{said}");
    assert!(b.url().contains("/login"), "{}", b.url());
    assert!(!b.cookies().iter().any(|c| c.name == "pgbackups_session"));
    // The audit log has every attempt, the refusals with their statuses.
    let audit = svc.ok(&["audit", "--json"]);
    let entries: Vec<serde_json::Value> = serde_json::from_str(&audit).unwrap();
    let logins: Vec<u64> = entries
        .iter()
        .filter(|e| e["action"] == "login" && e["actor"] == "alice")
        .map(|e| e["status"].as_u64().unwrap())
        .collect();
    assert_eq!(logins, [429, 401, 401, 401, 401, 401], "{audit}");
}

#[test]
fn the_overview_shows_a_database_and_its_last_backup_after_a_capture_from_the_cli() {
    let (_pg, svc) = with_database();
    svc.ok(&["backups:capture", "main"]);
    add_user(&svc, "vera", "viewer");
    let b = Browser::new();
    logged_in(&b, &svc, "vera");
    b.goto(&format!("{}/", svc.url));
    let row = "#databases tr[data-database=main]";
    b.wait_for(row, Duration::from_secs(10));
    let text = b.text(row);
    assert!(text.contains("b001"), "{text}");
    assert!(text.contains("Completed"), "{text}");
    assert!(text.contains("no schedule"), "{text}");
    // The session cookie is what the issue asks of it.
    let cookie = b
        .cookies()
        .into_iter()
        .find(|c| c.name == "pgbackups_session")
        .expect("a session cookie");
    assert!(cookie.http_only, "{cookie:?}");
    assert_eq!(cookie.same_site.as_deref(), Some("Strict"), "{cookie:?}");
}

#[test]
fn a_capture_started_from_the_page_shows_its_progress_and_completes_without_a_reload() {
    let pg = Cluster::start();
    pg.create_db("app");
    pg.psql(
        "app",
        "CREATE TABLE t AS SELECT g, md5(g::text) AS h FROM generate_series(1, 20000) g",
    );
    let dir = tempfile::tempdir().unwrap();
    // The capture pauses five seconds before its commit: running, all its bytes counted.
    let svc = Service::start_in_with(
        dir.path().join("data"),
        &[("PGBACKUPS_TEST_HOLD", "before-commit")],
    );
    let out = svc.cli_with_stdin(&["databases:add", "main", "-"], &pg.url("app"));
    assert!(out.status.success(), "{}", common::text(&out));
    add_user(&svc, "olga", "operator");
    let b = Browser::new();
    logged_in(&b, &svc, "olga");
    b.goto(&format!("{}/databases/main", svc.url));
    b.wait_for("#capture", Duration::from_secs(10));
    // A mark that a reload would wipe out.
    b.execute("window.pgbackupsNotReloaded = true;", &[]);
    b.click("#capture");
    b.wait_for("#running li#live-b001", Duration::from_secs(10));
    b.wait_until(
        "the capture running with its progress",
        Duration::from_secs(20),
        |b| {
            b.attr("#live-b001 .state", "data-state").as_deref() == Some("running")
                && b.exists("#live-b001 progress")
        },
    );
    let progress = b.text("#live-b001 .progress-text");
    assert!(
        progress.contains("of about") && progress.contains("/s"),
        "{progress}"
    );
    b.wait_until("the capture completed", Duration::from_secs(60), |b| {
        b.attr("#live-b001 .state", "data-state").as_deref() == Some("succeeded")
    });
    assert!(b.text("#live-b001").contains("Completed"), "{}", b.source());
    assert!(!b.exists("#nothing-running"));
    let kept = b.execute("return window.pgbackupsNotReloaded === true;", &[]);
    assert_eq!(kept, serde_json::Value::Bool(true), "the page was reloaded");
    // The CLI agrees.
    let listed = svc.ok(&["backups"]);
    assert!(
        listed.contains("b001") && listed.contains("Completed"),
        "{listed}"
    );
}

#[test]
fn a_restore_with_a_wrong_name_typed_is_refused_and_with_the_right_one_restores() {
    let (pg, svc) = with_database();
    svc.ok(&["backups:capture", "main"]);
    pg.psql("app", "DELETE FROM t WHERE g > 10");
    add_user(&svc, "olga", "operator");
    let b = Browser::new();
    logged_in(&b, &svc, "olga");
    b.goto(&format!("{}/databases/main", svc.url));
    b.wait_for("#restore", Duration::from_secs(10));
    assert_eq!(backup_state(&b, "b001").as_deref(), Some("succeeded"));
    b.fill("#confirm", "mian");
    b.click("#restore-button");
    b.wait_for("#error", Duration::from_secs(10));
    let said = b.text("#error");
    assert!(
        said.contains("does not match") && said.contains("main"),
        "{said}"
    );
    assert_eq!(pg.psql("app", "SELECT count(*) FROM t").trim(), "10");
    b.fill("#confirm", "main");
    b.click("#restore-button");
    b.wait_until("the restore's page", Duration::from_secs(10), |b| {
        b.url().contains("/transfers/r001")
    });
    b.wait_until("the restore completed", Duration::from_secs(60), |b| {
        b.attr("#state", "data-state").as_deref() == Some("succeeded")
    });
    assert_eq!(pg.psql("app", "SELECT count(*) FROM t").trim(), "70");
    assert!(
        b.text("#log").contains("r001 Completed"),
        "{}",
        b.text("#log")
    );
}

#[test]
fn a_viewer_sees_no_capture_button_and_a_forged_post_as_a_viewer_is_refused() {
    let (_pg, svc) = with_database();
    svc.ok(&["backups:capture", "main"]);
    add_user(&svc, "vera", "viewer");
    let b = Browser::new();
    logged_in(&b, &svc, "vera");
    b.goto(&format!("{}/databases/main", svc.url));
    b.wait_for("#backups", Duration::from_secs(10));
    assert!(!b.exists("#capture"), "a viewer has a capture button");
    assert!(!b.exists("#restore"), "a viewer has a restore form");
    assert!(!b.exists("details.actions"), "a viewer has backup actions");
    // The same request the button would send, with the viewer's own CSRF token.
    let csrf = b
        .attr("form[action='/logout'] input[name=csrf]", "value")
        .unwrap_or_default();
    assert!(!csrf.is_empty(), "no CSRF token on the page");
    let body = format!("csrf={csrf}");
    let forged = b.fetch(
        "POST",
        "/databases/main/capture",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        Some(&body),
    );
    assert_eq!(forged.status, 403, "{forged:?}");
    assert!(
        forged
            .body
            .contains("this needs the operator role; vera is a viewer"),
        "{}",
        forged.body
    );
    let api = b.fetch(
        "POST",
        "/api/captures",
        &[
            ("Content-Type", "application/json"),
            ("X-CSRF-Token", &csrf),
        ],
        Some(r#"{"database":"main"}"#),
    );
    assert_eq!(api.status, 403, "{api:?}");
    assert!(!svc.ok(&["backups"]).contains("b002"), "a capture started");
}

#[test]
fn a_post_without_the_csrf_token_is_refused() {
    let (_pg, svc) = with_database();
    add_user(&svc, "olga", "operator");
    let b = Browser::new();
    logged_in(&b, &svc, "olga");
    b.goto(&format!("{}/databases/main", svc.url));
    b.wait_for("#capture", Duration::from_secs(10));
    for body in ["", "csrf=0123456789abcdef"] {
        let forged = b.fetch(
            "POST",
            "/databases/main/capture",
            &[("Content-Type", "application/x-www-form-urlencoded")],
            Some(body),
        );
        assert_eq!(forged.status, 403, "{forged:?}");
        assert!(forged.body.contains("CSRF"), "{}", forged.body);
    }
    assert!(
        svc.ok(&["backups"]).contains("No backups"),
        "a capture started"
    );
}

#[test]
fn the_audit_log_lists_who_did_what_and_no_page_holds_a_secret() {
    let (_pg, svc) = with_database();
    add_user(&svc, "olga", "operator");
    add_user(&svc, "vera", "viewer");
    add_user(&svc, "ada", "admin");
    let token = svc.ok(&["tokens:create", "--user", "olga", "--label", "laptop"]);
    let personal = token
        .split_whitespace()
        .find(|w| w.starts_with("pgb_"))
        .unwrap_or_else(|| panic!("no token in {token}"))
        .to_string();

    // The operator captures from the page; the viewer tries to.
    let olga = Browser::new();
    logged_in(&olga, &svc, "olga");
    olga.goto(&format!("{}/databases/main", svc.url));
    olga.click("#capture");
    olga.wait_for("#live-b001", Duration::from_secs(10));
    olga.wait_until("the capture completed", Duration::from_secs(60), |b| {
        b.attr("#live-b001 .state", "data-state").as_deref() == Some("succeeded")
    });
    let vera = Browser::new();
    logged_in(&vera, &svc, "vera");
    let refused = vera.fetch(
        "POST",
        "/databases/main/capture",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        Some("csrf=x"),
    );
    assert_eq!(refused.status, 403);

    let ada = Browser::new();
    logged_in(&ada, &svc, "ada");
    ada.goto(&format!("{}/audit", svc.url));
    ada.wait_for("#audit", Duration::from_secs(10));
    assert!(ada.exists("#audit tr[data-actor=olga][data-action=capture]"));
    assert!(ada.exists("#audit tr[data-actor=olga][data-action=login]"));
    assert!(ada.exists("#audit tr[data-actor=vera][data-action=capture]"));
    let row = ada.text("#audit tr[data-actor=olga][data-action=capture]");
    assert!(row.contains("b001 (main)") && row.contains("done"), "{row}");
    let refusal = ada.text("#audit tr[data-actor=vera][data-action=capture]");
    assert!(refusal.contains("refused"), "{refusal}");
    // A viewer may not read it.
    vera.goto(&format!("{}/audit", svc.url));
    assert!(
        vera.source().contains("needs the admin role"),
        "{}",
        vera.source()
    );

    // Every page, as each role sees it: no password, token or session anywhere in its HTML.
    let session = |b: &Browser| {
        b.cookies()
            .into_iter()
            .find(|c| c.name == "pgbackups_session")
            .map(|c| c.value)
            .unwrap_or_default()
    };
    let secrets = [
        PASSWORD.to_string(),
        USER_PASSWORD.to_string(),
        svc.token(),
        personal,
        session(&olga),
        session(&vera),
        session(&ada),
    ];
    let pages = [
        "/",
        "/databases/main",
        "/transfers/b001",
        "/audit",
        "/backups/b001/delete",
        "/login",
        "/databases/nope",
    ];
    for b in [&olga, &vera, &ada] {
        for page in pages {
            b.goto(&format!("{}{page}", svc.url));
            let html = b.source();
            for secret in &secrets {
                assert!(
                    !secret.is_empty() && !html.contains(secret.as_str()),
                    "{page} holds a secret"
                );
            }
        }
    }
}
