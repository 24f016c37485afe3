//! The SQLite catalog's tests of transfers, databases and protections.

use super::*;
use crate::catalog::{Origin, TransferState};

#[test]
fn allocates_ids_per_prefix_and_round_trips_transfers() {
    let c = SqliteCatalog::open_in_memory().unwrap();
    assert_eq!(c.claim_transfer_id('b').unwrap().to_string(), "b001");
    assert_eq!(c.claim_transfer_id('b').unwrap().to_string(), "b002");
    assert_eq!(c.claim_transfer_id('r').unwrap().to_string(), "r001");
    let now = Timestamp::now();
    let mut t = TransferRecord::new(
        "b002".parse().unwrap(),
        TransferKind::Capture,
        Origin::Manual,
        "main".into(),
        now,
    );
    t.sha256 = Some("ab".into());
    c.save_transfer(&t).unwrap();
    c.set_layout(t.id, "{}").unwrap();
    t.state = TransferState::Running;
    c.save_transfer(&t).unwrap();
    assert_eq!(c.layout(t.id).unwrap().as_deref(), Some("{}"));
    c.set_progress(t.id, 42).unwrap();
    let back = c.transfer(t.id).unwrap().unwrap();
    assert_eq!(back.state, TransferState::Running);
    assert_eq!(back.bytes_processed, 42);
    assert_eq!(back.sha256.as_deref(), Some("ab"));
    assert_eq!(c.unfinished_transfers().unwrap().len(), 1);
    c.append_logs(t.id, &[(now, "one".into()), (now, "two".into())])
        .unwrap();
    c.append_logs(t.id, &[(now, "three".into())]).unwrap();
    let logs = c.logs(t.id, 1).unwrap();
    assert_eq!(
        logs.iter().map(|l| l.line.as_str()).collect::<Vec<_>>(),
        ["two", "three"]
    );
    c.delete_transfer(t.id).unwrap();
    assert!(c.transfer(t.id).unwrap().is_none());
    assert!(c.logs(t.id, 0).unwrap().is_empty());
}

#[test]
fn a_rebuilt_backup_is_added_whole_or_not_at_all() {
    let c = SqliteCatalog::open_in_memory().unwrap();
    let now = Timestamp::now();
    let t = TransferRecord::new(
        "b007".parse().unwrap(),
        TransferKind::Capture,
        Origin::Manual,
        "main".into(),
        now,
    );
    assert!(
        c.insert_rebuilt_backup(&t, Some("{}"), (now, "rebuilt".into()))
            .unwrap()
    );
    assert_eq!(c.layout(t.id).unwrap().as_deref(), Some("{}"));
    assert_eq!(c.logs(t.id, 0).unwrap().len(), 1);
    // A second time (another node got there first): nothing changes.
    assert!(
        !c.insert_rebuilt_backup(&t, None, (now, "again".into()))
            .unwrap()
    );
    assert_eq!(c.logs(t.id, 0).unwrap().len(), 1);
}

#[test]
fn refuses_a_second_database_of_the_same_name() {
    let c = SqliteCatalog::open_in_memory().unwrap();
    c.add_database("main", b"x", "postgres://u:***@h/db", Timestamp::now())
        .unwrap();
    assert!(matches!(
        c.add_database("main", b"y", "r", Timestamp::now()),
        Err(CatalogError::DatabaseExists(_))
    ));
    assert!(c.remove_database("main").unwrap());
    assert!(!c.remove_database("main").unwrap());
}

#[test]
fn a_protection_never_outlives_its_database() {
    let c = SqliteCatalog::open_in_memory().unwrap();
    let p = ProtectionRecord {
        database: "main".into(),
        slot: "pgbackups_main".into(),
        base_every_secs: 86_400,
        keep_base: 7,
        created_at: Timestamp::now(),
    };
    // `protect` racing `databases:remove`: the database went first.
    assert!(matches!(
        c.set_protection(&p),
        Err(CatalogError::NotRegistered(_))
    ));
    assert!(c.protections().unwrap().is_empty());
    c.add_database("main", b"x", "postgres://u:***@h/db", Timestamp::now())
        .unwrap();
    c.set_protection(&p).unwrap();
    c.set_protection(&ProtectionRecord {
        keep_base: 3,
        ..p.clone()
    })
    .unwrap();
    assert_eq!(c.protections().unwrap()[0].keep_base, 3);
    // The protection went first: the removal is refused and nothing changes.
    let err = c.remove_database("main").unwrap_err();
    assert!(matches!(err, CatalogError::Protected(_)));
    assert_eq!(
        err.to_string(),
        "main is protected: stop that first with `pgbackups unprotect main`"
    );
    assert!(c.database_url_sealed("main").unwrap().is_some());
    assert_eq!(c.protections().unwrap().len(), 1);
    assert!(c.remove_protection("main").unwrap());
    assert!(c.remove_database("main").unwrap());
}
