//! The dashboard for everyone (issue 14: "labels and keyboard navigation that an accessibility
//! checker accepts; readable on a phone"): every kind of page checked by axe-core, the standard
//! accessibility checker, in a real headless Chromium (tests/common/browser.rs) on a desktop
//! and on a phone-sized viewport (with an error shown, a capture running, a database in
//! trouble, a protected database's timeline and rollback command); the page's own width on the phone; and the keyboard: the skip
//! link first, then the capture button and the restore form in reading order.
//!
//! axe-core is a test dependency only, never served: `scripts/test` installs it with npm into
//! `tests/axe/node_modules` (ignored by git), and its source is injected into each page with
//! WebDriver's script command, which the page's Content-Security-Policy does not govern.

mod common;

use std::time::Duration;

use serde_json::{Value, json};

use common::browser::{Browser, TAB};
use common::{Cluster, Service};

/// The desktop viewport the harness opens with (`--window-size`).
const DESKTOP: (u32, u32) = (1280, 900);
/// A phone held upright (an iPhone 12 to 15's CSS pixels).
const PHONE: (u32, u32) = (390, 844);

/// A password good enough for the rules (12 characters at least).
const USER_PASSWORD: &str = "correct horse battery staple";

/// The version `scripts/test` installs; the message of a missing install repeats it.
const AXE_VERSION: &str = "4.14.1";

/// axe-core's tags for WCAG 2.0 and 2.1, levels A and AA, and its best practices (landmarks,
/// heading order, regions): all of it is run; serious and critical findings fail the test.
const AXE_TAGS: &[&str] = &[
    "wcag2a",
    "wcag2aa",
    "wcag21a",
    "wcag21aa",
    "wcag22aa",
    "best-practice",
];

/// axe-core's source: `tests/axe/node_modules/axe-core/axe.min.js` (`PGBACKUPS_TEST_AXE`
/// overrides the path).
fn axe_source() -> String {
    let path = std::env::var_os("PGBACKUPS_TEST_AXE")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/axe/node_modules/axe-core/axe.min.js")
        });
    std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "axe-core is not installed ({}: {e}): run scripts/test, or \
             npm install --prefix tests/axe --no-save --no-package-lock axe-core@{AXE_VERSION}",
            path.display()
        )
    })
}

/// One finding of axe: a rule, how bad, and the elements it found.
#[derive(Debug, serde::Deserialize)]
struct Violation {
    id: String,
    impact: Option<String>,
    help: String,
    targets: Vec<String>,
}

impl Violation {
    fn is_serious(&self) -> bool {
        matches!(self.impact.as_deref(), Some("serious" | "critical"))
    }
}

/// Runs axe-core over the current page (injecting it first if the page has none yet).
fn axe(b: &Browser, source: &str) -> Vec<Violation> {
    let present = b.execute("return typeof window.axe === 'object';", &[]);
    if present != Value::Bool(true) {
        b.execute(source, &[]);
    }
    const RUN: &str = r#"
        const [tags, done] = arguments;
        axe.run(document, {runOnly: {type: 'tag', values: tags}, resultTypes: ['violations']})
          .then(r => done({passes: r.passes.length, violations: r.violations.map(v => ({
              id: v.id, impact: v.impact, help: v.help,
              targets: v.nodes.map(n => n.target.join(' ')),
          }))}))
          .catch(e => done({error: String(e)}));
    "#;
    let answer = b.execute_async(RUN, &[json!(AXE_TAGS)]);
    if let Some(error) = answer.get("error") {
        panic!("axe.run failed on {}: {error}", b.url());
    }
    // A checker that checked nothing would pass everything.
    assert!(
        answer["passes"].as_u64().unwrap_or(0) > 0,
        "axe ran no rule on {}: {answer}",
        b.url()
    );
    match serde_json::from_value(answer["violations"].clone()) {
        Ok(violations) => violations,
        Err(e) => panic!("axe answered in an unexpected shape ({e}): {answer}"),
    }
}

/// Adds user `name` with `role`; the password goes on standard input.
fn add_user(svc: &Service, name: &str, role: &str) {
    let out = svc.cli_with_stdin(&["users:add", name, "--role", role], USER_PASSWORD);
    assert!(out.status.success(), "{}", common::text(&out));
}

/// Logs `b` in as `name` through the login form and waits for the overview.
fn log_in(b: &Browser, svc: &Service, name: &str) {
    b.goto(&format!("{}/login", svc.url));
    b.fill("#name", name);
    b.fill("#password", USER_PASSWORD);
    b.click("#login button[type=submit]");
    b.wait_until(
        "the overview after logging in",
        Duration::from_secs(10),
        |b| b.exists("#overview"),
    );
}

/// A cluster with database `app`, registered as `main`, with one completed backup (b001) and
/// a daily schedule; `other`, registered but never backed up (a problem the overview shows in
/// red); and an admin, `ada`. The service runs with `env` in its environment, in `dir`.
fn with_a_backed_up_database(dir: &tempfile::TempDir, env: &[(&str, &str)]) -> (Cluster, Service) {
    let pg = Cluster::start();
    pg.create_db("app");
    pg.create_db("other");
    pg.psql(
        "app",
        "CREATE TABLE t AS SELECT g FROM generate_series(1, 70) g",
    );
    let svc = Service::start_in_with(dir.path().join("data"), env);
    for (name, db) in [("main", "app"), ("other", "other")] {
        let out = svc.cli_with_stdin(&["databases:add", name, "-"], &pg.url(db));
        assert!(out.status.success(), "{}", common::text(&out));
    }
    svc.ok(&["backups:capture", "main"]);
    svc.ok(&["backups:schedule", "main", "--at", "02:00 Europe/London"]);
    add_user(&svc, "ada", "admin");
    (pg, svc)
}

/// What the checks found on one page in one viewport.
struct Finding {
    page: String,
    viewport: (u32, u32),
    what: String,
}

/// Checks the page `b` shows: axe's serious and critical findings, and on a phone whether
/// the page is wider than the screen. Less severe findings are printed, not failed.
/// When `PGBACKUPS_TEST_A11Y_SHOTS` names a directory, each checked page's screenshot goes
/// there (to look at the pages on a phone by eye).
fn check_page(b: &Browser, axe_js: &str, page: &str, viewport: (u32, u32)) -> Vec<Finding> {
    if let Some(dir) = std::env::var_os("PGBACKUPS_TEST_A11Y_SHOTS") {
        let file: String = page
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let name = format!("{}x{}{file}.png", viewport.0, viewport.1);
        b.screenshot(&std::path::Path::new(&dir).join(name));
    }
    let mut found = Vec::new();
    for v in axe(b, axe_js) {
        let line = format!(
            "{} ({}): {} — {}",
            v.id,
            v.impact.as_deref().unwrap_or("no impact"),
            v.help,
            v.targets.join(", ")
        );
        if v.is_serious() {
            found.push(Finding {
                page: page.to_string(),
                viewport,
                what: line,
            });
        } else {
            eprintln!("axe, not failing: {page} at {viewport:?}: {line}");
        }
    }
    if viewport == PHONE {
        // The page's width, and the elements that stick out of the screen (not those inside a
        // box that scrolls sideways on its own, as a wide table's may).
        const WIDTH: &str = r#"
            const screen = window.innerWidth;
            const out = [];
            for (const e of document.body.querySelectorAll('*')) {
                if (e.getBoundingClientRect().right <= screen) continue;
                let p = e.parentElement, inScroller = false;
                while (p && p !== document.body) {
                    if (getComputedStyle(p).overflowX !== 'visible') { inScroller = true; break; }
                    p = p.parentElement;
                }
                if (inScroller) continue;
                out.push(e.tagName.toLowerCase() + (e.id ? '#' + e.id : '')
                         + (e.className && typeof e.className === 'string'
                            ? '.' + e.className.trim().split(/\s+/).join('.') : ''));
            }
            return {page: document.documentElement.scrollWidth, screen, out: out.slice(0, 8)};
        "#;
        let w = b.execute(WIDTH, &[]);
        let (page_width, screen) = (w["page"].as_u64(), w["screen"].as_u64());
        if page_width > screen {
            found.push(Finding {
                page: page.to_string(),
                viewport,
                what: format!(
                    "the page is {} px wide on a {} px screen (it scrolls sideways); sticking out: {}",
                    w["page"], w["screen"], w["out"]
                ),
            });
        }
    }
    found
}

#[test]
fn every_page_passes_the_accessibility_checker_on_a_desktop_and_on_a_phone() {
    let dir = tempfile::tempdir().unwrap();
    // Every capture waits five seconds before its commit: the page's live progress is there
    // long enough to be checked.
    let (_pg, svc) = with_a_backed_up_database(&dir, &[("PGBACKUPS_TEST_HOLD", "before-commit")]);
    let axe_js = axe_source();
    let b = Browser::new();

    // First, that the checker sees what it must: a field without a label is a critical finding.
    b.goto(&format!("{}/login", svc.url));
    b.execute(
        "document.body.insertAdjacentHTML('beforeend', '<input id=\"unlabelled\">');",
        &[],
    );
    let planted = axe(&b, &axe_js);
    assert!(
        planted
            .iter()
            .any(|v| v.id == "label" && v.is_serious() && v.targets == ["#unlabelled"]),
        "axe missed an input without a label: {planted:?}"
    );

    let mut found = Vec::new();
    for viewport in [DESKTOP, PHONE] {
        b.set_viewport(viewport.0, viewport.1);
        // Logged out: the login page, then with the error of a wrong password.
        b.goto(&format!("{}/login", svc.url));
        b.wait_for("#login", Duration::from_secs(10));
        found.extend(check_page(&b, &axe_js, "/login", viewport));
        b.fill("#name", "ada");
        b.fill("#password", "not the password at all");
        b.click("#login button[type=submit]");
        b.wait_for("#error", Duration::from_secs(10));
        found.extend(check_page(&b, &axe_js, "/login refused", viewport));
        log_in(&b, &svc, "ada");
        let pages = [
            ("/", "#databases tr[data-database=main]"),
            ("/databases/main", "#backups tr[data-backup=b001]"),
            ("/transfers/b001", "#log"),
            ("/audit", "#audit"),
            ("/backups/b001/delete", "#confirm"),
            ("/databases/nope", "#error"),
        ];
        for (page, ready) in pages {
            b.goto(&format!("{}{page}", svc.url));
            b.wait_for(ready, Duration::from_secs(10));
            found.extend(check_page(&b, &axe_js, page, viewport));
        }
        // A capture started from the page, with its live progress; then its own page.
        b.goto(&format!("{}/databases/main", svc.url));
        b.click("#capture");
        b.wait_for("#running li progress", Duration::from_secs(20));
        found.extend(check_page(
            &b,
            &axe_js,
            "/databases/main capturing",
            viewport,
        ));
        let live = b.attr("#running li", "id").unwrap_or_default();
        let id = live.trim_start_matches("live-");
        b.goto(&format!("{}/transfers/{id}", svc.url));
        b.wait_for("#state", Duration::from_secs(10));
        found.extend(check_page(
            &b,
            &axe_js,
            "a running capture's page",
            viewport,
        ));
        b.wait_until("the capture done", Duration::from_secs(60), |b| {
            // Read in the page: the element is replaced every second by the live update.
            let state = b.execute(
                "return document.getElementById('state')?.dataset.state;",
                &[],
            );
            state == json!("succeeded")
        });
        // The link page: the answer to the database page's "Get a link" button (a POST).
        b.goto(&format!("{}/databases/main", svc.url));
        b.click("tr[data-backup=b001] details.actions summary");
        b.click("form[action='/backups/b001/link'] button[type=submit]");
        b.wait_for("#link", Duration::from_secs(10));
        found.extend(check_page(&b, &axe_js, "the link to b001", viewport));
        // Log out, so that the next viewport starts from the login page again.
        b.click("#logout");
        b.wait_for("#login", Duration::from_secs(10));
    }
    let report: Vec<String> = found
        .iter()
        .map(|f| {
            format!(
                "{} at {}x{}: {}",
                f.page, f.viewport.0, f.viewport.1, f.what
            )
        })
        .collect();
    assert!(
        report.is_empty(),
        "{} accessibility problems:\n{}",
        report.len(),
        report.join("\n")
    );
}

/// A short name of the focused element: its id, or its tag and text.
fn focused(b: &Browser) -> String {
    let name = b.execute(
        "const e = document.activeElement; \
         return e.id || (e.tagName.toLowerCase() + ':' + (e.textContent || '').trim());",
        &[],
    );
    name.as_str().unwrap_or_default().to_string()
}

#[test]
fn the_keyboard_reaches_the_skip_link_first_then_capture_and_the_restore_form_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let (_pg, svc) = with_a_backed_up_database(&dir, &[]);
    let b = Browser::new();
    log_in(&b, &svc, "ada");
    b.goto(&format!("{}/databases/main", svc.url));
    b.wait_for("#restore", Duration::from_secs(10));

    // The first Tab lands on the skip link, which shows itself when focused.
    b.press(TAB, 1);
    assert_eq!(
        b.execute("return document.activeElement.className;", &[]),
        json!("skip"),
        "the first Tab reached {}",
        focused(&b)
    );
    let shown = b.execute(
        "const r = document.activeElement.getBoundingClientRect(); \
         return r.left >= 0 && r.top >= 0 && r.width > 0 && r.height > 0;",
        &[],
    );
    assert_eq!(shown, json!(true), "the focused skip link is off screen");

    // Following it moves the keyboard into the content: the next Tab is the capture button.
    b.press("\u{E007}", 1); // Enter
    b.press(TAB, 1);
    assert_eq!(focused(&b), "capture", "Tab after the skip link");

    // From there on, Tab by Tab: the restore form's fields come in reading order.
    let wanted = ["backup", "confirm", "jobs", "atomic", "restore-button"];
    let mut order = vec![focused(&b)];
    while order.len() < 60 && order.last().map(String::as_str) != Some("restore-button") {
        b.press(TAB, 1);
        order.push(focused(&b));
    }
    let reached: Vec<&str> = order
        .iter()
        .map(String::as_str)
        .filter(|id| wanted.contains(id))
        .collect();
    assert_eq!(reached, wanted, "the Tab order from #capture: {order:?}");
    // And the keyboard can type into the form it reached: the confirmation field.
    b.execute("document.getElementById('confirm').focus();", &[]);
    b.press("m", 1);
    let typed = b.execute("return document.getElementById('confirm').value;", &[]);
    assert_eq!(typed, json!("m"));
}

#[test]
fn a_protected_database_page_passes_the_checker_with_its_timeline_and_rollback_command() {
    let dir = tempfile::tempdir().unwrap();
    let (_pg, svc) = with_a_backed_up_database(&dir, &[]);
    let said = svc.ok(&["protect", "main"]);
    assert!(said.contains("pgbackups_main"), "{said}");
    let info = || -> Value {
        serde_json::from_str(&svc.ok(&["protection:info", "main", "--json"])).unwrap_or_default()
    };
    // The first base backup, taken as soon as the WAL streams: the window the timeline draws.
    common::wait_until(
        60,
        || info()["live"]["base_backups"].as_u64() == Some(1),
        || format!("no base backup: {}", info()),
    );
    let axe_js = axe_source();
    let b = Browser::new();
    log_in(&b, &svc, "ada");
    let mut found = Vec::new();
    for viewport in [DESKTOP, PHONE] {
        b.set_viewport(viewport.0, viewport.1);
        b.goto(&format!("{}/databases/main", svc.url));
        b.wait_for("#protection", Duration::from_secs(10));
        b.wait_until("the timeline", Duration::from_secs(30), |b| {
            if b.exists("#protection-heading ~ figure svg") {
                return true;
            }
            b.refresh();
            false
        });
        found.extend(check_page(
            &b,
            &axe_js,
            "/databases/main protected",
            viewport,
        ));
        // The command (or why there is none) for the latest moment the field allows, shown
        // in place. Set by script: typing into a datetime-local field depends on the locale.
        b.execute(
            "const m = document.getElementById('moment'); m.value = m.max;",
            &[],
        );
        b.click("#rollback-form button[type=submit]");
        b.wait_for(
            "#rollback-command pre, #rollback-command .error",
            Duration::from_secs(10),
        );
        found.extend(check_page(
            &b,
            &axe_js,
            "/databases/main rollback command",
            viewport,
        ));
    }
    let report: Vec<String> = found
        .iter()
        .map(|f| {
            format!(
                "{} at {}x{}: {}",
                f.page, f.viewport.0, f.viewport.1, f.what
            )
        })
        .collect();
    assert!(
        report.is_empty(),
        "{} accessibility problems:\n{}",
        report.len(),
        report.join("\n")
    );
}
