//! The team over an in-memory catalog: users, logins and their limit, sessions, tokens, audit.

use std::net::IpAddr;
use std::sync::Arc;

use super::*;
use crate::clock::SystemClock;

const PW: &str = "correct horse battery";

fn team() -> Team {
    Team::new(
        crate::catalog::open_in_memory().unwrap(),
        Arc::new(SystemClock),
    )
}

fn addr() -> IpAddr {
    "192.0.2.1".parse().unwrap()
}

#[test]
fn a_user_logs_in_and_the_session_carries_their_current_role() {
    let t = team();
    t.add_user("alice", Role::Viewer, PW).unwrap();
    let s = t.login("alice", PW, addr()).unwrap();
    assert_eq!(s.cookie.len(), 64);
    let p = t.session(&s.cookie).unwrap();
    assert_eq!(p.user, "alice");
    assert_eq!(p.role, Role::Viewer);
    assert_eq!(p.csrf.as_deref(), Some(s.csrf.as_str()));
    assert_ne!(s.csrf, s.cookie);
    t.set_role("alice", Role::Operator).unwrap();
    assert_eq!(t.session(&s.cookie).unwrap().role, Role::Operator);
    assert!(t.session("not a cookie").is_none());
    t.logout(&s.cookie).unwrap();
    assert!(t.session(&s.cookie).is_none());
}

#[test]
fn a_wrong_password_or_unknown_user_is_the_same_refusal() {
    let t = team();
    t.add_user("alice", Role::Viewer, PW).unwrap();
    assert!(matches!(
        t.login("alice", "wrong password!", addr()),
        Err(LoginError::Wrong)
    ));
    assert!(matches!(
        t.login("mallory", PW, addr()),
        Err(LoginError::Wrong)
    ));
    assert_eq!(LoginError::Wrong.to_string(), "wrong user name or password");
}

#[test]
fn login_is_limited_after_five_wrong_passwords_even_with_the_right_one() {
    let t = team();
    t.add_user("alice", Role::Admin, PW).unwrap();
    for _ in 0..5 {
        assert!(matches!(
            t.login("alice", "not the password", addr()),
            Err(LoginError::Wrong)
        ));
    }
    match t.login("alice", PW, addr()) {
        Err(LoginError::Limited { retry_after }) => {
            assert!(retry_after <= limiter::WINDOW && retry_after.as_secs() > 800);
            let msg = LoginError::Limited { retry_after }.to_string();
            assert!(msg.contains("try again in 15 minute(s)"), "{msg}");
        }
        other => panic!("expected a limit, got {other:?}"),
    }
    // Another user from the same address is not locked out.
    t.add_user("bob", Role::Viewer, PW).unwrap();
    assert!(t.login("bob", PW, addr()).is_ok());
}

#[test]
fn a_password_reset_ends_sessions_and_the_rules_apply() {
    let t = team();
    t.add_user("alice", Role::Viewer, PW).unwrap();
    let s = t.login("alice", PW, addr()).unwrap();
    assert!(matches!(
        t.set_password("alice", "short"),
        Err(TeamError::Rule(RuleError::TooShort))
    ));
    t.set_password("alice", "another good password").unwrap();
    assert!(t.session(&s.cookie).is_none());
    assert!(t.login("alice", "another good password", addr()).is_ok());
    assert!(matches!(
        t.set_password("nobody", "another good password"),
        Err(TeamError::NoSuchUser(_))
    ));
    assert!(matches!(
        t.add_user("alice", Role::Viewer, PW),
        Err(TeamError::Catalog(CatalogError::UserExists(_)))
    ));
    assert!(matches!(
        t.add_user("service-token", Role::Viewer, PW),
        Err(TeamError::Rule(RuleError::Reserved(_)))
    ));
}

#[test]
fn tokens_are_shown_once_stored_hashed_and_die_with_revocation_or_their_user() {
    let t = team();
    t.add_user("alice", Role::Operator, PW).unwrap();
    let made = t.create_token("alice", Some("laptop")).unwrap();
    assert!(made.token.starts_with("pgb_") && made.token.len() == 4 + 64);
    assert_eq!(made.role, Role::Operator);
    let p = t.token(&made.token).unwrap();
    assert_eq!(
        (p.user.as_str(), p.role, p.csrf),
        ("alice", Role::Operator, None)
    );
    let listed = t.tokens(Some("alice")).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, made.id);
    assert_eq!(listed[0].label.as_deref(), Some("laptop"));
    assert!(t.token("pgb_0000").is_none());
    assert!(t.token("not even ours").is_none());
    t.revoke_token(&made.id).unwrap();
    assert!(t.token(&made.token).is_none());
    assert!(matches!(
        t.revoke_token(&made.id),
        Err(TeamError::NoSuchToken(_))
    ));

    let again = t.create_token("alice", None).unwrap();
    let s = t.login("alice", PW, addr()).unwrap();
    t.remove_user("alice").unwrap();
    assert!(t.token(&again.token).is_none());
    assert!(t.session(&s.cookie).is_none());
    assert!(matches!(
        t.create_token("alice", None),
        Err(TeamError::NoSuchUser(_))
    ));
}

#[test]
fn the_audit_log_names_who_did_what_newest_first() {
    let t = team();
    let svc = Principal::service_token();
    t.audit(&svc, "add user", "alice", 201).unwrap();
    let alice = Principal {
        user: "alice".into(),
        role: Role::Viewer,
        csrf: None,
    };
    t.audit(&alice, "capture", "main", 403).unwrap();
    let log = t.audit_log(&AuditQuery::default()).unwrap();
    assert_eq!(log.len(), 2);
    assert_eq!(
        (log[0].actor.as_str(), log[0].action.as_str(), log[0].status),
        ("alice", "capture", 403)
    );
    assert_eq!(log[1].actor, "service-token");
    let one = t
        .audit_log(&AuditQuery {
            limit: Some(1),
            before: Some(log[0].seq),
        })
        .unwrap();
    assert_eq!(one[0].action, "add user");
}

#[test]
fn cookies_are_http_only_strict_and_secure_when_asked() {
    let exp = Timestamp::now() + 12.hours();
    let c = session_cookie("abc", exp, true);
    assert!(c.starts_with("pgbackups_session=abc; Max-Age=43"), "{c}");
    assert!(
        c.ends_with("; Path=/; HttpOnly; SameSite=Strict; Secure"),
        "{c}"
    );
    assert!(!session_cookie("abc", exp, false).contains("Secure"));
    assert_eq!(
        clear_session_cookie(false),
        "pgbackups_session=; Max-Age=0; Path=/; HttpOnly; SameSite=Strict"
    );
    assert!(
        secrets_match("abc", "abc") && !secrets_match("abc", "abd") && !secrets_match("a", "ab")
    );
}
