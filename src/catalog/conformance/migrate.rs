//! The shared behaviour of `catalog:migrate`: a one-node SQLite catalog copied whole into the
//! catalog under test.

use jiff::ToSpan;

use super::{at, save};
use crate::catalog::{
    AuditRecord, Catalog, CatalogError, ProtectionRecord, RetentionPolicy, ScheduleRecord,
    SessionRecord, SqliteCatalog, TokenRecord, TransferKind, TransferState, UserRecord, VerifyMode,
    copy_catalog,
};

pub fn a_sqlite_catalog_is_copied_whole(to: &dyn Catalog) {
    let from = SqliteCatalog::open_in_memory().unwrap();
    let sealed: Vec<u8> = (0..64).collect();
    from.add_database("main", &sealed, "postgres://u:***@h/main", at(0))
        .unwrap();
    from.add_database("other", b"x", "postgres://u:***@h/other", at(1))
        .unwrap();
    from.set_protection(&ProtectionRecord {
        database: "main".into(),
        slot: "pgbackups_main".into(),
        base_every_secs: 3600,
        keep_base: 2,
        created_at: at(2),
    })
    .unwrap();
    from.set_schedule(&ScheduleRecord {
        database: "main".into(),
        hour: 2,
        minute: 30,
        zone: "Europe/Paris".into(),
        created_at: at(3),
        verify: VerifyMode::Checksum,
    })
    .unwrap();
    from.set_retention(
        "main",
        &RetentionPolicy {
            daily: 3,
            weekly: 2,
            monthly: 1,
            manual: 5,
        },
    )
    .unwrap();
    let runs = [
        ("main".to_string(), "2027-01-01".to_string(), at(4)),
        ("main".to_string(), "2027-01-02".to_string(), at(5)),
    ];
    from.claim_runs(&runs, at(4)).unwrap();
    let b1 = from.claim_transfer_id('b').unwrap();
    from.set_run_transfers(&[("main".into(), "2027-01-01".into(), b1)])
        .unwrap();
    for _ in 0..4 {
        from.claim_transfer_id('b').unwrap();
    }
    let mut t = save(
        &from,
        &b1.to_string(),
        TransferKind::Capture,
        "main",
        TransferState::Succeeded,
        6,
    );
    t.sha256 = Some("ab".into());
    from.save_transfer(&t).unwrap();
    from.set_layout(t.id, "{\"frames\":[]}").unwrap();
    from.set_pinned(t.id, true).unwrap();
    let lines: Vec<_> = (0..2500).map(|i| (at(7), format!("line {i}"))).collect();
    from.append_logs(t.id, &lines).unwrap();
    save(
        &from,
        "r001",
        TransferKind::Restore,
        "other",
        TransferState::Failed,
        8,
    );
    let user = UserRecord {
        name: "alice".into(),
        role: "admin".into(),
        password_hash: "$argon2id$h".into(),
        created_at: at(9),
    };
    from.add_user(&user).unwrap();
    let token = TokenRecord {
        id: "t1".into(),
        hash: "th".into(),
        user: "alice".into(),
        label: None,
        created_at: at(10),
    };
    from.add_token(&token).unwrap();
    from.add_session(
        &SessionRecord {
            hash: "s".into(),
            user: "alice".into(),
            created_at: at(10),
            expires_at: at(10) + 1.hour(),
        },
        at(10),
    )
    .unwrap();
    for i in 0..3 {
        from.append_audit(&AuditRecord {
            seq: 0,
            at: at(11 + i),
            actor: "alice".into(),
            action: format!("a{i}"),
            target: "main".into(),
            status: 200,
        })
        .unwrap();
    }

    let copied = copy_catalog(&from, to).unwrap();
    assert_eq!(
        (
            copied.databases,
            copied.transfers,
            copied.log_lines,
            copied.users,
            copied.tokens,
            copied.audit_lines
        ),
        (2, 2, 2500, 1, 1, 3)
    );
    assert_eq!(to.database_url_sealed("main").unwrap().unwrap(), sealed);
    assert_eq!(
        format!("{:?}", to.list_databases().unwrap()),
        format!("{:?}", from.list_databases().unwrap())
    );
    assert_eq!(
        format!("{:?}", to.protections().unwrap()),
        format!("{:?}", from.protections().unwrap())
    );
    assert_eq!(
        format!("{:?}", to.schedules().unwrap()),
        format!("{:?}", from.schedules().unwrap())
    );
    assert_eq!(
        to.retention("main").unwrap(),
        from.retention("main").unwrap()
    );
    assert_eq!(to.scheduled_runs().unwrap(), from.scheduled_runs().unwrap());
    // A run claimed before the move is not claimed again after it.
    assert_eq!(to.claim_runs(&runs, at(20)).unwrap(), [false, false]);
    assert_eq!(
        format!("{:?}", to.transfers(None).unwrap()),
        format!("{:?}", from.transfers(None).unwrap())
    );
    assert_eq!(to.layout(t.id).unwrap(), from.layout(t.id).unwrap());
    assert_eq!(
        format!("{:?}", to.logs(t.id, 0).unwrap()),
        format!("{:?}", from.logs(t.id, 0).unwrap())
    );
    // The next ID follows the last one claimed, not the last one kept.
    assert_eq!(to.claim_transfer_id('b').unwrap().to_string(), "b006");
    assert_eq!(to.user("alice").unwrap().unwrap(), user);
    assert_eq!(
        to.token_by_hash("th").unwrap().unwrap(),
        (token, "admin".to_string())
    );
    // Sessions are not copied: users log in again.
    assert!(to.session("s", at(10)).unwrap().is_none());
    let audit = to.audit(10, None).unwrap();
    assert_eq!(
        audit.iter().map(|a| a.action.as_str()).collect::<Vec<_>>(),
        ["a2", "a1", "a0"]
    );
    assert_eq!(audit[0].at, at(13));
    // A second copy into the same catalog is refused, and changes nothing.
    let err = copy_catalog(&from, to).unwrap_err();
    assert!(matches!(err, CatalogError::NotEmpty(_)), "{err:?}");
    assert!(
        err.to_string()
            .contains("already holds registered databases"),
        "{err}"
    );
    assert_eq!(to.transfers(None).unwrap().len(), 2);
}
