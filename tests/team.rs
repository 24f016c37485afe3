//! A team using one service: an admin (the service's token) adds users from the CLI, each
//! gets a personal token with their role, and what each may do, is refused, and did ends up
//! in the audit log, without a password anywhere it could be read.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use std::net::IpAddr;
use std::sync::Arc;

use common::{Cluster, Service, binary, text};
use pgbackups::api::Role;
use pgbackups::clock::SystemClock;
use pgbackups::team::{LoginError, Team};
use serde_json::Value;

const VERA_PW: &str = "vera's own long passphrase";
const OLGA_PW: &str = "olga-Operates-2026!";

/// The token `tokens:create` printed: the line that starts with `pgb_`.
fn token_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.starts_with("pgb_"))
        .unwrap_or_else(|| panic!("no token in: {}", text(out)))
        .to_string()
}

/// The ID of a token `tokens:create` printed: `Created token ID for ...`.
fn token_id_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(2)
        .unwrap_or_default()
        .to_string()
}

/// The CLI as someone holding `token`.
fn as_user(svc: &Service, token: &str, args: &[&str]) -> std::process::Output {
    svc.cli_env(args, &[("PGBACKUPS_TOKEN", token)])
}

/// `users:add` as a script runs it: the password on standard input, which arrives only after
/// the process's command line was read from /proc (what `ps` shows), so the check sees the
/// process as it waits.
fn add_user_watching_argv(svc: &Service, name: &str, role: &str, password: &str) -> String {
    let mut child = Command::new(binary())
        .args(["users:add", name, "--role", role])
        .env("PGBACKUPS_URL", &svc.url)
        .env("PGBACKUPS_TOKEN", svc.token())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", child.id())).unwrap_or_default();
    let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
    assert!(cmdline.contains("users:add"), "{cmdline}");
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "{password}").unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    cmdline
}

#[test]
fn each_user_does_what_their_role_allows_and_the_audit_log_says_who_did_what() {
    let pg = Cluster::start();
    pg.create_db("app");
    pg.psql("app", "CREATE TABLE t (id int); INSERT INTO t VALUES (1)");
    let svc = Service::start();
    let out = svc.cli_with_stdin(&["databases:add", "main"], &pg.url("app"));
    assert!(out.status.success(), "{}", text(&out));

    // The admin adds a viewer and an operator; the passwords never reach argv.
    for (name, role, pw) in [("vera", "viewer", VERA_PW), ("olga", "operator", OLGA_PW)] {
        let argv = add_user_watching_argv(&svc, name, role, pw);
        assert!(!argv.contains(pw), "{argv}");
    }
    let users = svc.ok(&["users"]);
    assert!(users.contains("vera  viewer"), "{users}");
    assert!(users.contains("olga  operator"), "{users}");
    // A short password is refused with the rule, not echoed.
    let out = svc.cli_with_stdin(&["users:add", "sam", "--role", "viewer"], "short\n");
    assert!(!out.status.success());
    assert!(
        text(&out).contains("at least 12 characters"),
        "{}",
        text(&out)
    );

    // Personal tokens, made by the admin for each.
    let out = svc.cli(&["tokens:create", "--user", "vera", "--label", "laptop"]);
    assert!(out.status.success(), "{}", text(&out));
    let (vera, vera_id) = (token_of(&out), token_id_of(&out));
    let out = svc.cli(&["tokens:create", "--user", "olga"]);
    assert!(out.status.success(), "{}", text(&out));
    let olga = token_of(&out);

    // The viewer lists, but may not capture: told the role needed.
    let out = as_user(&svc, &vera, &["backups"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = as_user(&svc, &vera, &["backups:capture", "main", "--no-wait"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("this needs the operator role; vera is a viewer"),
        "{}",
        text(&out)
    );
    // The operator captures, but may not manage databases.
    let out = as_user(&svc, &olga, &["backups:capture", "main"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(svc.info("b001")["state"], "succeeded");
    let out = as_user(&svc, &olga, &["databases:remove", "main"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("this needs the admin role; olga is an operator"),
        "{}",
        text(&out)
    );
    // A viewer may make a token for themselves, not for another user.
    let out = as_user(&svc, &vera, &["tokens:create", "--user", "olga"]);
    assert!(
        text(&out).contains("this needs the admin role"),
        "{}",
        text(&out)
    );
    let out = as_user(&svc, &vera, &["tokens"]);
    assert!(text(&out).contains(&vera_id), "{}", text(&out));

    // A wrong token is 401; a revoked one too.
    let out = as_user(&svc, "pgb_0123", &["backups"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("unknown or was revoked"),
        "{}",
        text(&out)
    );
    svc.ok(&["tokens:revoke", &vera_id]);
    let out = as_user(&svc, &vera, &["backups"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("unknown or was revoked"),
        "{}",
        text(&out)
    );

    // The audit log: who, what, to what, and the answer; refusals included.
    let log: Value = serde_json::from_str(&svc.ok(&["audit", "--json"])).unwrap();
    let entries: Vec<(String, String, String, u64)> = log
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .map(|e| {
            (
                e["actor"].as_str().unwrap().to_string(),
                e["action"].as_str().unwrap().to_string(),
                e["target"].as_str().unwrap().to_string(),
                e["status"].as_u64().unwrap(),
            )
        })
        .collect();
    let has = |actor: &str, action: &str, status: u64| {
        entries
            .iter()
            .any(|e| e.0 == actor && e.1 == action && e.3 == status)
    };
    assert!(has("service-token", "add database", 201), "{entries:?}");
    assert!(has("service-token", "add user", 201), "{entries:?}");
    assert!(has("service-token", "add user", 400), "{entries:?}");
    assert!(has("vera", "capture", 403), "{entries:?}");
    assert!(has("olga", "capture", 201), "{entries:?}");
    assert!(has("olga", "remove database", 403), "{entries:?}");
    assert!(has("vera", "create token", 403), "{entries:?}");
    assert!(has("service-token", "revoke token", 204), "{entries:?}");
    let capture = entries.iter().find(|e| e.0 == "olga" && e.1 == "capture");
    assert_eq!(capture.unwrap().2, "b001 (main)");
    let added = entries.iter().find(|e| e.1 == "add database");
    assert_eq!(added.unwrap().2, "main");
    let refused = entries.iter().find(|e| e.1 == "remove database");
    assert_eq!(refused.unwrap().2, "main");
    let listing = svc.ok(&["audit", "--limit", "3"]);
    assert!(listing.starts_with("=== Audit Log"), "{listing}");
    assert_eq!(listing.lines().count(), 3 + 3, "{listing}");

    // No password anywhere it could be read: API answers, the audit log, the service's log.
    let answers = [
        svc.ok_http("/api/users"),
        svc.ok_http("/api/audit?limit=1000"),
        svc.ok_http("/api/tokens"),
        svc.log(),
    ];
    for a in &answers {
        for pw in [VERA_PW, OLGA_PW, "short"] {
            assert!(!a.contains(pw), "a password shows: {a}");
        }
        assert!(!a.contains("$argon2"), "a hash shows: {a}");
        assert!(!a.contains(&olga), "a token shows: {a}");
    }
}

#[test]
fn removing_a_user_needs_their_name_and_ends_their_tokens_and_a_new_role_applies_at_once() {
    let svc = Service::start();
    let out = svc.cli_with_stdin(
        &["users:add", "olga", "--role", "viewer"],
        &format!("{OLGA_PW}\n"),
    );
    assert!(out.status.success(), "{}", text(&out));
    let out = svc.cli(&["tokens:create", "--user", "olga"]);
    let olga = token_of(&out);
    // A new role applies to the token she holds at once.
    let out = as_user(&svc, &olga, &["users"]);
    assert!(text(&out).contains("this needs the admin role; olga is a viewer"));
    svc.ok(&["users:role", "olga", "admin"]);
    let out = as_user(&svc, &olga, &["users"]);
    assert!(out.status.success(), "{}", text(&out));
    // The service token is not a user: it must name whose token it makes.
    let out = svc.cli(&["tokens:create"]);
    assert!(
        text(&out).contains("name the user the token is for"),
        "{}",
        text(&out)
    );

    // users:remove without the name (no terminal here) is refused and says what to type.
    let out = svc.cli(&["users:remove", "olga"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("--confirm olga"), "{}", text(&out));
    let out = svc.cli(&["users:remove", "olga", "--confirm", "vera"]);
    assert!(!out.status.success());
    svc.ok(&["users:remove", "olga", "--confirm", "olga"]);
    let started = Instant::now();
    let out = as_user(&svc, &olga, &["backups"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(svc.ok(&["users"]).starts_with("No users."));

    // users:password on a user that is gone: said so.
    let out = svc.cli_with_stdin(&["users:password", "olga"], "a new long password\n");
    assert!(
        text(&out).contains("no user named `olga`"),
        "{}",
        text(&out)
    );
}

#[test]
fn a_password_set_from_the_cli_logs_in_and_five_wrong_ones_lock_the_name() {
    let svc = Service::start();
    let out = svc.cli_with_stdin(
        &["users:add", "vera", "--role", "viewer"],
        &format!("{VERA_PW}\n"),
    );
    assert!(out.status.success(), "{}", text(&out));
    // The dashboard's login, through the team over the service's own catalog file (SQLite
    // in WAL mode takes a second process).
    let catalog = pgbackups::catalog::open(&svc.data_dir.join("catalog.db")).unwrap();
    let team = Team::new(catalog, Arc::new(SystemClock));
    let addr: IpAddr = "203.0.113.9".parse().unwrap();
    let session = team.login("vera", VERA_PW, addr).unwrap();
    let me = team.session(&session.cookie).unwrap();
    assert_eq!((me.user.as_str(), me.role), ("vera", Role::Viewer));
    for _ in 0..5 {
        assert!(matches!(
            team.login("vera", "a wrong guess!!", addr),
            Err(LoginError::Wrong)
        ));
    }
    // The sixth is refused before the password is looked at: the right one too.
    assert!(matches!(
        team.login("vera", VERA_PW, addr),
        Err(LoginError::Limited { .. })
    ));
    // A new password from the CLI ends the session.
    let out = svc.cli_with_stdin(&["users:password", "vera"], "another long passphrase\n");
    assert!(out.status.success(), "{}", text(&out));
    assert!(team.session(&session.cookie).is_none());
}
