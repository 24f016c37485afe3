//! The shared behaviour of the team's records: users, sessions, tokens and the audit log.

use jiff::ToSpan;

use super::{at, now};
use crate::catalog::{AuditRecord, Catalog, CatalogError, SessionRecord, TokenRecord, UserRecord};

fn user(name: &str) -> UserRecord {
    UserRecord {
        name: name.into(),
        role: "viewer".into(),
        password_hash: "$argon2id$x".into(),
        created_at: at(0),
    }
}

pub fn removing_a_user_removes_their_sessions_and_tokens(c: &dyn Catalog) {
    let now = now();
    c.add_user(&user("alice")).unwrap();
    c.add_user(&user("bob")).unwrap();
    assert!(matches!(
        c.add_user(&user("alice")),
        Err(CatalogError::UserExists(_))
    ));
    assert_eq!(c.user("alice").unwrap().unwrap(), user("alice"));
    assert_eq!(c.users().unwrap().len(), 2);
    let s = SessionRecord {
        hash: "s1".into(),
        user: "alice".into(),
        created_at: now,
        expires_at: now + 1.hour(),
    };
    c.add_session(&s, now).unwrap();
    let t = TokenRecord {
        id: "t1".into(),
        hash: "h1".into(),
        user: "alice".into(),
        label: Some("ci".into()),
        created_at: now,
    };
    assert!(c.add_token(&t).unwrap());
    assert_eq!(c.token("t1").unwrap().unwrap(), t);
    // Its ID is taken: nothing changes.
    assert!(
        !c.add_token(&TokenRecord {
            hash: "h2".into(),
            ..t.clone()
        })
        .unwrap()
    );
    assert!(
        c.add_token(&TokenRecord {
            id: "t2".into(),
            hash: "h2".into(),
            user: "bob".into(),
            ..t.clone()
        })
        .unwrap()
    );
    assert_eq!(c.tokens(Some("bob")).unwrap().len(), 1);
    assert_eq!(
        c.session("s1", now).unwrap().unwrap(),
        (s.clone(), "viewer".to_string())
    );
    assert!(c.set_user_role("alice", "admin").unwrap());
    assert!(!c.set_user_role("nobody", "admin").unwrap());
    assert_eq!(c.token_by_hash("h1").unwrap().unwrap().1, "admin");
    // Expired at `now + 2h`.
    assert!(c.session("s1", now + 2.hours()).unwrap().is_none());

    assert!(c.remove_user("alice").unwrap());
    assert!(c.session("s1", now).unwrap().is_none());
    assert!(c.token_by_hash("h1").unwrap().is_none());
    assert_eq!(c.tokens(None).unwrap().len(), 1);
    assert!(!c.remove_user("alice").unwrap());
    // Nothing can be given to a user who is gone.
    assert!(matches!(
        c.add_session(&s, now),
        Err(CatalogError::NoSuchUser(_))
    ));
    assert!(matches!(c.add_token(&t), Err(CatalogError::NoSuchUser(_))));
    assert!(c.remove_token("t2").unwrap());
    assert!(!c.remove_token("t2").unwrap());
}

pub fn a_new_password_ends_the_users_sessions(c: &dyn Catalog) {
    let now = now();
    c.add_user(&user("alice")).unwrap();
    let s = SessionRecord {
        hash: "s1".into(),
        user: "alice".into(),
        created_at: now,
        expires_at: now + 1.hour(),
    };
    c.add_session(&s, now).unwrap();
    assert!(c.set_password_hash("alice", "$argon2id$y").unwrap());
    assert!(c.session("s1", now).unwrap().is_none());
    assert_eq!(
        c.user("alice").unwrap().unwrap().password_hash,
        "$argon2id$y"
    );
    assert!(!c.set_password_hash("nobody", "x").unwrap());
    // A new session forgets the expired ones.
    c.add_session(&s, now).unwrap();
    let later = SessionRecord {
        hash: "s2".into(),
        created_at: now + 3.hours(),
        expires_at: now + 4.hours(),
        ..s.clone()
    };
    c.add_session(&later, now + 3.hours()).unwrap();
    assert!(!c.remove_session("s1").unwrap());
    assert!(c.remove_session("s2").unwrap());
}

pub fn the_audit_log_pages_back_newest_first(c: &dyn Catalog) {
    for i in 0..5 {
        let seq = c
            .append_audit(&AuditRecord {
                seq: 0,
                at: at(i),
                actor: "alice".into(),
                action: format!("a{i}"),
                target: "main".into(),
                status: 200 + i as u16,
            })
            .unwrap();
        assert_eq!(seq, i + 1);
    }
    let page = c.audit(2, None).unwrap();
    assert_eq!(page.iter().map(|e| e.seq).collect::<Vec<_>>(), [5, 4]);
    let page = c.audit(10, Some(4)).unwrap();
    assert_eq!(page.iter().map(|e| e.seq).collect::<Vec<_>>(), [3, 2, 1]);
    assert_eq!(page[0].action, "a2");
    assert_eq!((page[0].at, page[0].status), (at(2), 202));
}
