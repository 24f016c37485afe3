//! What a user meets when they type something wrong: mistyped URLs never echo a password,
//! URLs need not be on the command line, every API error is JSON with a fitting status, and
//! IDs, names and zones are read strictly, with messages that show the accepted form.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};

use common::{Cluster, PASSWORD, Service, binary, text, transfer_id};
use serde_json::Value;

/// A password that appears nowhere else, so that finding it anywhere is a leak.
const LEAKY: &str = "Xy9-leaky-secret";

#[test]
fn a_url_with_a_mistyped_scheme_is_refused_without_echoing_its_password() {
    let svc = Service::start();
    let bad_urls = [
        format!("postgresql+psycopg2://u:{LEAKY}@h/db"),
        format!("postgress://u:{LEAKY}@h:5432/db"),
        format!("http://u:{LEAKY}@h/db"),
        format!("postgres:/u:{LEAKY}@h/db"),
        format!("postgress://u@h/db?sslmode=require&password={LEAKY}"),
        format!("mysql://app:{LEAKY}@db.example.com/app"),
    ];
    for url in &bad_urls {
        let url = url.as_str();
        let runs: Vec<(Vec<&str>, &str)> = vec![
            (vec!["backups:capture", url], ""),
            (vec!["copy", url, "main", "--confirm", "main"], ""),
            (vec!["copy", "main", url, "--confirm", "db"], ""),
            (vec!["pull", url, "postgres://me@127.0.0.1:1/new"], ""),
            (vec!["push", url, "main"], ""),
            (vec!["backups:restore", url], ""),
            (vec!["backups:restore", "b001", url, "--confirm", "db"], ""),
            (vec!["backups:info", url], ""),
            (vec!["backups:schedule", url, "--at", "02:00 UTC"], ""),
            (vec!["backups:retention", url, "--daily", "3"], ""),
            (vec!["protect", url], ""),
            (vec!["databases:add", "main", url], ""),
            (vec!["databases:add", "main"], url),
            // clap quotes an argument it cannot place.
            (vec!["backups:capture", "main", url], ""),
        ];
        for (args, stdin) in runs {
            let out = svc.cli_with_stdin(&args, stdin);
            let shown = text(&out);
            assert!(!out.status.success(), "{args:?} succeeded: {shown}");
            assert!(
                !shown.contains(LEAKY),
                "{args:?} echoed the password: {shown}"
            );
        }
        // A URL where a database is expected is answered as a URL, with the schemes that work.
        let out = svc.cli(&["backups:capture", url]);
        if url.contains("://") {
            assert!(
                text(&out).contains("the accepted schemes are postgres:// and postgresql://"),
                "{url}: {}",
                text(&out)
            );
        }
        // And through the API, where a wrongly typed field is quoted by the JSON decoder.
        for (path, body) in [
            ("/api/captures", serde_json::json!({ "database": url })),
            (
                "/api/databases",
                serde_json::json!({ "name": url, "url": url }),
            ),
            (
                "/api/databases",
                serde_json::json!({ "name": "x", "url": url }),
            ),
            ("/api/retention/main", serde_json::json!({ "daily": url })),
            (
                "/api/schedules",
                serde_json::json!({ "database": url, "at": url }),
            ),
            (
                "/api/copies",
                serde_json::json!({ "source": url, "target": url }),
            ),
        ] {
            let method = if path.starts_with("/api/retention") {
                "PUT"
            } else {
                "POST"
            };
            let (status, body) = http(&svc, method, path, Some(&svc.token()), &body.to_string());
            assert!((400..500).contains(&status), "{path}: {status} {body}");
            assert!(!body.contains(LEAKY), "{path} echoed the password: {body}");
        }
    }
    assert!(
        !svc.log().contains(LEAKY),
        "the service log has the password"
    );
}

#[test]
fn copy_pull_push_and_restore_take_urls_from_the_environment_or_standard_input() {
    let pg = Cluster::start();
    pg.create_db("app");
    pg.psql(
        "app",
        "CREATE TABLE t (id int PRIMARY KEY, v text); \
         INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 500) g",
    );
    pg.create_db("staging");
    let svc = Service::start();
    let count = |db: &str| pg.psql(db, "SELECT count(*) FROM t").trim().to_string();

    // copy - -: the source from the environment, the target from standard input.
    let out = cli_watching_argv(
        &svc,
        &["copy", "-", "-", "--confirm", "staging"],
        &[("PGBACKUPS_SOURCE_URL", &pg.url("app"))],
        &format!("{}\n", pg.url("staging")),
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains("warning"), "{}", text(&out));
    assert_eq!(count("staging"), "500");

    // pull app -: the local target's URL from standard input (pull and push name the
    // service's side by its registered name, whose credentials stay on the service).
    svc.ok(&["databases:add", "app", &pg.url("app")]);
    let out = cli_watching_argv(
        &svc,
        &["pull", "app", "-"],
        &[],
        &format!("{}\n", pg.url("pulled")),
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(count("pulled"), "500");

    // push - pushed: the local source's URL from the environment.
    pg.create_db("pushed");
    svc.ok(&["databases:add", "pushed", &pg.url("pushed")]);
    let out = cli_watching_argv(
        &svc,
        &["push", "-", "pushed"],
        &[("PGBACKUPS_SOURCE_URL", &pg.url("app"))],
        "",
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(count("pushed"), "500");

    // A capture of `-`, and a restore of it into `-`.
    let out = cli_watching_argv(
        &svc,
        &["backups:capture", "-"],
        &[("PGBACKUPS_SOURCE_URL", &pg.url("app"))],
        "",
    );
    assert!(out.status.success(), "{}", text(&out));
    let backup = transfer_id(&out);
    pg.create_db("restored");
    let out = cli_watching_argv(
        &svc,
        &["backups:restore", &backup, "-", "--confirm", "restored"],
        &[],
        &format!("{}\n", pg.url("restored")),
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(count("restored"), "500");

    // `-` with neither: says where the URL was looked for.
    let out = svc.cli(&["copy", "-", "staging", "--confirm", "staging"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("no source URL") && text(&out).contains("PGBACKUPS_SOURCE_URL"),
        "{}",
        text(&out)
    );

    // A password on the command line still works, with a warning that says what to do.
    let out = svc.cli(&[
        "copy",
        &pg.url("app"),
        &pg.url("staging"),
        "--confirm",
        "staging",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("visible to other users")
            && stderr.contains("PGBACKUPS_SOURCE_URL")
            && stderr.contains("PGBACKUPS_TARGET_URL"),
        "{stderr}"
    );
    let out = svc.cli_with_stdin(&["databases:add", "main", &pg.url("app")], "");
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("standard input"),
        "{}",
        text(&out)
    );
}

/// A malformed request: method, path, token, JSON body, and the statuses that fit it.
type Probe<'a> = (&'a str, &'a str, Option<&'a str>, &'a str, &'a [u16]);

#[test]
fn malformed_api_requests_are_answered_with_json_errors_and_never_a_500() {
    let pg = Cluster::start();
    pg.create_db("app");
    pg.psql("app", "CREATE TABLE t (id int); INSERT INTO t VALUES (1)");
    let svc = Service::start();
    let out = svc.cli_with_stdin(&["databases:add", "main"], &pg.url("app"));
    assert!(out.status.success(), "{}", text(&out));
    let out = svc.cli(&["backups:capture", "main"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(transfer_id(&out), "b001");

    let token = svc.token();
    let t = Some(token.as_str());
    let huge = format!("{{\"name\": \"{}\"}}", "x".repeat(3 << 20));
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let battery: Vec<Probe> = vec![
        // Bodies that are not JSON, or not the JSON a route takes.
        ("POST", "/api/captures", t, "{", &[400]),
        ("POST", "/api/captures", t, "{\"database\": 5}", &[422]),
        ("POST", "/api/captures", t, "[1, 2]", &[422]),
        ("POST", "/api/captures", t, "\"main\"", &[422]),
        (
            "POST",
            "/api/captures",
            t,
            "{\"database\": \"main\", \"schema\": [1]}",
            &[422],
        ),
        ("POST", "/api/captures", t, &deep, &[400, 422]),
        (
            "POST",
            "/api/captures",
            t,
            "{\"database\": \"\u{fffd}\u{0}\"}",
            &[400, 404],
        ),
        ("POST", "/api/databases", t, "{}", &[422]),
        ("POST", "/api/databases", t, "{\"name\": \"x\"}", &[422]),
        (
            "POST",
            "/api/databases",
            t,
            "{\"name\": 1, \"url\": 2}",
            &[422],
        ),
        (
            "POST",
            "/api/databases",
            t,
            "{\"name\": \"-rf\", \"url\": \"postgres://u@h/db\"}",
            &[400],
        ),
        (
            "POST",
            "/api/databases",
            t,
            "{\"name\": \"main\", \"url\": \"postgres://u@h/db\"}",
            &[409],
        ),
        ("POST", "/api/databases", t, &huge, &[413]),
        ("POST", "/api/restores", t, "{\"backup\": \"B001\"}", &[400]),
        ("POST", "/api/restores", t, "{\"jobs\": -1}", &[422]),
        ("POST", "/api/restores", t, "{\"jobs\": 1e99}", &[422]),
        ("POST", "/api/restores", t, "{\"jobs\": 1000}", &[400]),
        ("POST", "/api/restores", t, "{\"atomic\": \"yes\"}", &[422]),
        (
            "POST",
            "/api/restores",
            t,
            "{\"url\": \"ftp://x/y\", \"database\": \"main\", \"confirm\": \"main\"}",
            &[400],
        ),
        ("POST", "/api/schedules", t, "{\"at\": 5}", &[422]),
        ("POST", "/api/schedules", t, "{\"at\": \"25:00\"}", &[400]),
        (
            "POST",
            "/api/schedules",
            t,
            "{\"at\": \"02:00 localtime\", \"database\": \"main\"}",
            &[400],
        ),
        (
            "POST",
            "/api/schedules",
            t,
            "{\"at\": \"02:00 UTC\", \"verify\": \"sometimes\"}",
            &[422],
        ),
        ("PUT", "/api/retention/main", t, "{\"daily\": -1}", &[422]),
        (
            "PUT",
            "/api/retention/main",
            t,
            "{\"daily\": 99999}",
            &[400],
        ),
        ("PUT", "/api/retention/nosuch", t, "{\"daily\": 1}", &[404]),
        ("POST", "/api/copies", t, "{\"source\": \"main\"}", &[422]),
        (
            "POST",
            "/api/copies",
            t,
            "{\"source\": \"main\", \"target\": \"main\", \"confirm\": \"main\"}",
            &[400],
        ),
        ("POST", "/api/databases/-rf/dump", t, "{}", &[400]),
        ("POST", "/api/databases/nosuch/dump", t, "{}", &[404]),
        (
            "POST",
            "/api/databases/nosuch/dump",
            t,
            "{\"exclude_table_data\": \"t\"}",
            &[422],
        ),
        ("GET", "/api/databases/nosuch/extensions", t, "", &[404]),
        ("POST", "/api/protections", t, "{}", &[422]),
        (
            "POST",
            "/api/protections",
            t,
            "{\"database\": \"-rf\"}",
            &[400],
        ),
        (
            "POST",
            "/api/protections",
            t,
            "{\"database\": \"nosuch\", \"base_every_secs\": 18446744073709551615}",
            &[400, 404],
        ),
        (
            "POST",
            "/api/backups/b001/url",
            t,
            "{\"expires_secs\": 0}",
            &[400],
        ),
        (
            "POST",
            "/api/backups/b001/url",
            t,
            "{\"expires_secs\": \"soon\"}",
            &[422],
        ),
        (
            "POST",
            "/api/backups/latest/verify",
            t,
            "{\"mode\": \"bogus\"}",
            &[422],
        ),
        ("POST", "/api/backups/B001/verify", t, "{}", &[400]),
        // Bad IDs and names in paths.
        ("GET", "/api/transfers/B001", t, "", &[400]),
        ("GET", "/api/transfers/b1", t, "", &[400]),
        ("GET", "/api/transfers/zzz", t, "", &[400]),
        ("GET", "/api/transfers/b999", t, "", &[404]),
        ("GET", "/api/transfers/%FF%FE", t, "", &[400]),
        ("GET", "/api/transfers/b001%20", t, "", &[400]),
        (
            "GET",
            "/api/transfers/b00000000000000000000001",
            t,
            "",
            &[400],
        ),
        ("GET", "/api/transfers/b001/logs?after=-5", t, "", &[400]),
        ("DELETE", "/api/backups/B001?confirm=main", t, "", &[400]),
        ("DELETE", "/api/backups/b0001?confirm=main", t, "", &[400]),
        ("DELETE", "/api/backups/b001", t, "", &[400]),
        ("POST", "/api/backups/b1/pin", t, "", &[400]),
        ("POST", "/api/transfers/b001/cancel", t, "", &[409]),
        ("POST", "/api/transfers/cancel", t, "", &[409]),
        ("GET", "/api/retention/nosuch", t, "", &[404]),
        ("GET", "/api/retention/-rf", t, "", &[400]),
        ("GET", "/api/protections/nosuch", t, "", &[404, 400]),
        ("DELETE", "/api/schedules/main", t, "", &[404]),
        ("DELETE", "/api/databases/%FF", t, "", &[400]),
        ("DELETE", "/api/databases/nosuch", t, "", &[404]),
        // Bad query strings.
        ("GET", "/api/transfers?kind=bogus", t, "", &[400]),
        ("GET", "/api/transfers/b001?wait_ms=abc", t, "", &[400]),
        (
            "GET",
            "/api/transfers/b001?wait_ms=99999999999999999999999",
            t,
            "",
            &[400],
        ),
        ("POST", "/api/restores/upload?jobs=abc", t, "PGDMP", &[400]),
        (
            "POST",
            "/api/restores/upload?database=main&confirm=main",
            t,
            "not a dump",
            &[400],
        ),
        ("GET", "/links/b001", None, "", &[403]),
        ("GET", "/links/b001?expires=soon&sig=00", None, "", &[400]),
        ("GET", "/links/B001?expires=1&sig=00", None, "", &[403]),
        // Unknown routes and wrong methods.
        ("GET", "/api/nonexistent", t, "", &[404]),
        ("GET", "/api/nonexistent", None, "", &[404]),
        ("GET", "/nonexistent", None, "", &[404]),
        ("GET", "/no-such-page", None, "", &[404]),
        ("DELETE", "/api/transfers", t, "", &[405]),
        ("PUT", "/api/captures", t, "{}", &[405]),
        ("GET", "/api/captures", t, "", &[405]),
        ("PATCH", "/api/databases", t, "", &[405]),
        ("GET", "/api/catalog/rebuild", t, "", &[405]),
        ("POST", "/healthz", None, "", &[405]),
        // Without the token, or with a wrong one.
        ("GET", "/api/transfers", None, "", &[401]),
        ("GET", "/api/transfers", Some("wrong"), "", &[401]),
        ("POST", "/api/captures", None, "{", &[401]),
        ("DELETE", "/api/backups/B001", None, "", &[401]),
    ];
    let mut failures = Vec::new();
    for (method, path, token, body, expected) in &battery {
        let (status, answer) = http(&svc, method, path, *token, body);
        let error = serde_json::from_str::<Value>(&answer)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned));
        if !expected.contains(&status) || error.is_none() {
            failures.push(format!("{method} {path}: {status} {answer:.300}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} answers were wrong:\n{}",
        failures.len(),
        battery.len(),
        failures.join("\n")
    );
    // A second look at one of each kind: the message says what to send.
    let (_, a) = http(&svc, "POST", "/api/captures", t, "{");
    assert!(a.contains("not valid JSON"), "{a}");
    let (_, a) = http(&svc, "DELETE", "/api/transfers", t, "");
    assert!(a.contains("it takes GET"), "{a}");
    // The backup the battery tried to delete and pin with wrong spellings is untouched.
    assert_eq!(svc.info("b001")["state"], "succeeded");
    assert!(!svc.log().contains("panicked"), "{}", svc.log());
}

#[test]
fn downloading_a_backup_whose_object_was_removed_from_the_store_says_it_is_gone_and_what_to_do() {
    let pg = Cluster::start();
    pg.create_db("app");
    pg.psql("app", "CREATE TABLE t (id int); INSERT INTO t VALUES (1)");
    let svc = Service::start();
    let out = svc.cli_with_stdin(&["databases:add", "main"], &pg.url("app"));
    assert!(out.status.success(), "{}", text(&out));
    let out = svc.cli(&["backups:capture", "main"]);
    assert!(out.status.success(), "{}", text(&out));
    let key = svc.info("b001")["object_key"].as_str().unwrap().to_string();
    std::fs::remove_file(svc.data_dir.join("storage").join(&key)).unwrap();

    for path in ["/api/backups/b001/download", "/api/backups/latest/download"] {
        let (status, answer) = http(&svc, "GET", path, Some(&svc.token()), "");
        assert_eq!(status, 410, "{path}: {answer}");
        let error: Value = serde_json::from_str(&answer).unwrap();
        let error = error["error"].as_str().unwrap();
        assert!(
            error.contains("b001")
                && error.contains("missing from the store")
                && error.contains("backups:delete b001")
                && error.contains("catalog:rebuild"),
            "{error}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("b001.dump");
    let out = svc.cli(&[
        "backups:download",
        "b001",
        "--output",
        output.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("missing from the store"),
        "{}",
        text(&out)
    );
    assert!(!output.exists());
}

#[test]
fn lenient_spellings_of_ids_names_and_zones_are_refused_with_the_accepted_form() {
    let pg = Cluster::start();
    pg.create_db("app");
    pg.psql("app", "CREATE TABLE t (id int); INSERT INTO t VALUES (1)");
    let svc = Service::start();
    let out = svc.cli_with_stdin(&["databases:add", "main"], &pg.url("app"));
    assert!(out.status.success(), "{}", text(&out));
    let out = svc.cli(&["backups:capture", "main"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(transfer_id(&out), "b001");

    // IDs: one spelling each, as `pgbackups backups` prints them.
    for id in ["B001", "b1", "b0000001", "b001 ", "b01"] {
        for args in [
            vec!["backups:info", id],
            vec!["backups:delete", id, "--confirm", "main"],
            vec!["backups:download", id],
        ] {
            let out = svc.cli(&args);
            assert!(!out.status.success(), "{args:?} succeeded");
            assert!(
                text(&out).contains("a lowercase letter and at least three digits")
                    && text(&out).contains("b001"),
                "{args:?}: {}",
                text(&out)
            );
        }
        let path = format!("/api/backups/{}?confirm=main", id.replace(' ', "%20"));
        let (status, answer) = http(&svc, "DELETE", &path, Some(&svc.token()), "");
        assert_eq!(status, 400, "{path}: {answer}");
    }
    assert_eq!(svc.info("b001")["state"], "succeeded");

    // Database names: never an option.
    for name in ["-rf", "--help", "-"] {
        let body = serde_json::json!({ "name": name, "url": pg.url("app") }).to_string();
        let (status, answer) = http(&svc, "POST", "/api/databases", Some(&svc.token()), &body);
        assert_eq!(status, 400, "{name}: {answer}");
        assert!(
            answer.contains("starting with a letter, digit or `_`"),
            "{answer}"
        );
        assert!(!answer.contains(PASSWORD), "{answer}");
    }
    let out = svc.cli_with_stdin(&["databases:add", "--", "-rf"], &pg.url("app"));
    assert!(!out.status.success());
    assert!(
        text(&out).contains("not a valid database name"),
        "{}",
        text(&out)
    );
    let dbs = svc.ok(&["databases", "--json"]);
    assert!(!dbs.contains("-rf"), "{dbs}");

    // Zones: the tz database's Area/Location names and the documented abbreviations.
    for zone in [
        "localtime",
        "posixrules",
        "Factory",
        "posix/Europe/Paris",
        "EST5EDT",
    ] {
        let at = format!("02:00 {zone}");
        let out = svc.cli(&["backups:schedule", "main", "--at", &at]);
        assert!(!out.status.success(), "{zone} was accepted");
        assert!(
            text(&out).contains("Area/Location") && text(&out).contains("America/Los_Angeles"),
            "{zone}: {}",
            text(&out)
        );
    }
    let listed = svc.ok(&["backups:schedules", "--json"]);
    assert_eq!(listed.trim(), "[]");
    for at in ["02:00 Europe/Paris", "02:00 pst", "02:00 Etc/UTC"] {
        svc.ok(&["backups:schedule", "main", "--at", at]);
    }

    // Retention of a database that is not registered: 404, not a default policy.
    let (status, answer) = http(&svc, "GET", "/api/retention/nosuch", Some(&svc.token()), "");
    assert_eq!(status, 404, "{answer}");
    assert!(answer.contains("databases:add"), "{answer}");
    let out = svc.cli(&["backups:retention", "nosuch"]);
    assert!(!out.status.success());
    let (status, answer) = http(&svc, "GET", "/api/retention/main", Some(&svc.token()), "");
    assert_eq!(status, 200, "{answer}");
}

/// One raw HTTP request (no client library to tidy it up); returns the status and the body.
/// The body is written from its own thread, so that an answer the service gives before it
/// has read the whole body (413) is read all the same.
fn http(svc: &Service, method: &str, path: &str, token: Option<&str>, body: &str) -> (u16, String) {
    let addr = svc.url.trim_start_matches("http://").to_string();
    let mut s = TcpStream::connect(&addr).unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
    if let Some(t) = token {
        head.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    if !body.is_empty() && !path.contains("/upload") {
        head.push_str("Content-Type: application/json\r\n");
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut request = head.into_bytes();
    request.extend_from_slice(body.as_bytes());
    let mut writer = s.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        let _ = writer.write_all(&request);
    });
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let _ = sender.join();
    let resp = String::from_utf8_lossy(&raw).into_owned();
    let status = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// Runs the CLI with `env` and `stdin` and, while it runs, checks that neither it nor the
/// service nor any process the service started (pg_dump, pg_restore, psql) shows the
/// cluster's password in its arguments, as `ps` would.
fn cli_watching_argv(
    svc: &Service,
    args: &[&str],
    env: &[(&str, &str)],
    stdin: &str,
) -> std::process::Output {
    let mut child = Command::new(binary())
        .args(args)
        .env("PGBACKUPS_URL", &svc.url)
        .env("PGBACKUPS_TOKEN", svc.token())
        .env_remove("PGBACKUPS_SOURCE_URL")
        .env_remove("PGBACKUPS_TARGET_URL")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let (cli, service) = (child.id(), svc.pid());
    let watcher = std::thread::spawn(move || {
        let mut seen = Vec::new();
        while std::path::Path::new(&format!("/proc/{cli}")).exists() {
            for entry in std::fs::read_dir("/proc").unwrap().flatten() {
                let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                    continue;
                };
                // Only ours: the CLI, the service and its children (other tests on this
                // machine use the same password).
                let parent = std::fs::read_to_string(entry.path().join("stat"))
                    .ok()
                    .and_then(|s| {
                        let after = s.rsplit_once(')')?.1.to_string();
                        after.split_whitespace().nth(1)?.parse::<u32>().ok()
                    });
                let ours = pid == cli || pid == service || parent == Some(service);
                if !ours {
                    continue;
                }
                if let Ok(argv) = std::fs::read(entry.path().join("cmdline")) {
                    let argv = String::from_utf8_lossy(&argv).replace('\0', " ");
                    if argv.contains(PASSWORD) {
                        seen.push(argv);
                    }
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        seen
    });
    let out = child.wait_with_output().unwrap();
    let seen = watcher.join().unwrap();
    assert!(
        seen.is_empty(),
        "the password was in the arguments of {seen:?}"
    );
    out
}
