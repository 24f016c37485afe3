//! The web dashboard, used as a person uses it: in a real headless Chromium (tests/common/browser.rs)
//! against a real service. These first tests prove the harness itself: the browser reaches the
//! service, and a failing test leaves a screenshot behind.

mod common;

use std::time::Duration;

use common::Service;
use common::browser::Browser;

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
