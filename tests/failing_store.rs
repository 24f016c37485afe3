//! A store that breaks under the engine. A capture whose create, write, commit or manifest
//! write fails leaves no object and no backup. A restore whose read comes up short or fails
//! refuses before the target is touched (or, once it was, says so); a verification or a
//! download fails rather than pass a short object, and a read that failed is named as the
//! store's, not as a damaged backup. A delete or a retention run the store refuses keeps the
//! backup whole. `catalog:rebuild` skips manifests whose object is gone or cannot be read, and
//! reports them.
//!
//! These run the engine in the test process (no binary, no HTTP) with an in-memory catalog
//! and a fault-injecting local store (`common/faulty.rs`), against a real PostgreSQL.

mod common;

use futures_util::StreamExt;
use pgbackups::catalog::{
    Origin, TransferId, TransferKind, TransferRecord, TransferState, VerifyMode,
};
use pgbackups::transfer::{DumpForm, TransferError, confirm_word};

use common::Cluster;
use common::engine::{InProcess, rebuild, wait_for};
use common::faulty::Faults;

/// A cluster with `src` (a table of a few MiB, so that a capture makes many writes) and `tgt`
/// (a marker table a failed restore must leave alone), both registered with `engine`.
fn databases(t: &InProcess) -> Cluster {
    let cluster = Cluster::start();
    cluster.create_db("src");
    cluster.psql(
        "src",
        "CREATE TABLE t AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 100000) g",
    );
    cluster.create_db("tgt");
    cluster.psql(
        "tgt",
        "CREATE TABLE marker (note text); INSERT INTO marker VALUES ('untouched')",
    );
    t.add_database("src", &cluster.url("src"));
    t.add_database("tgt", &cluster.url("tgt"));
    cluster
}

/// Captures `src` with the store as it is set; returns how the capture ended.
async fn capture(t: &InProcess) -> TransferRecord {
    let rec = t.engine.start_capture(Some("src"), Origin::Manual).unwrap();
    t.wait(rec.id).await
}

/// A capture of `src` that must succeed.
async fn good_backup(t: &InProcess) -> TransferRecord {
    let done = capture(t).await;
    assert_eq!(
        done.state,
        TransferState::Succeeded,
        "{done:?}\n{}",
        t.log(done.id)
    );
    done
}

/// Restores `backup` into `tgt`; returns how the restore ended.
async fn restore_into_tgt(t: &InProcess, backup: TransferId) -> TransferRecord {
    let rec = t
        .engine
        .start_restore(
            Some(backup),
            Some("tgt"),
            Some(&confirm_word("tgt")),
            2,
            None,
        )
        .unwrap();
    t.wait(rec.id).await
}

/// The marker row is there, and nothing of the backup is.
fn assert_target_untouched(cluster: &Cluster) {
    assert_eq!(
        cluster.psql("tgt", "SELECT note FROM marker").trim(),
        "untouched"
    );
    assert_eq!(
        cluster
            .psql(
                "tgt",
                "SELECT count(*) FROM pg_tables WHERE tablename = 't'"
            )
            .trim(),
        "0"
    );
}

/// A capture that failed: recorded Failed with `words` in its error, nothing in the store
/// (no object, no manifest, no partial file), and no completed backup.
fn assert_failed_capture_left_nothing(t: &InProcess, done: &TransferRecord, words: &[&str]) {
    assert_eq!(done.state, TransferState::Failed, "{done:?}");
    let error = done.error.clone().unwrap_or_default();
    for w in words {
        assert!(error.contains(w), "`{w}` not in the error: {error}");
    }
    assert_eq!(t.stored(), (vec![], vec![]), "the store is not empty");
    assert!(matches!(
        t.engine.latest_backup(),
        Err(TransferError::NoBackups)
    ));
    assert!(matches!(
        t.engine.completed_backup(done.id),
        Err(TransferError::NotCompleted { .. })
    ));
    let captures = t.engine.transfers(Some(TransferKind::Capture)).unwrap();
    assert!(
        captures.iter().all(|c| c.state == TransferState::Failed),
        "{captures:?}"
    );
    assert_eq!(
        t.service.catalog.layout(done.id).unwrap(),
        None,
        "a failed capture has a recorded layout"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capture_whose_store_write_fails_midway_fails_and_leaves_no_object_and_no_backup() {
    let t = InProcess::start();
    let _cluster = databases(&t);
    t.store.set(Faults {
        key_contains: Some(".dump.zst".into()),
        fail_write: Some(3),
        ..Faults::default()
    });
    let done = capture(&t).await;
    let fired = t.store.counts().fired;
    assert_eq!(fired.len(), 1, "{fired:?}");
    assert_failed_capture_left_nothing(
        &t,
        &done,
        &[
            "could not store the dump",
            "injected fault: write #3 to backups/",
        ],
    );
    assert!(
        t.log(done.id).contains("injected fault: write #3"),
        "{}",
        t.log(done.id)
    );

    // The store works again: the next capture succeeds, and takes more than three writes
    // (the failed one broke off mid-way, not at the end).
    t.store.set(Faults::default());
    let next = good_backup(&t).await;
    assert_eq!(t.engine.latest_backup().unwrap().id, next.id);
    let writes = t.store.counts().writes;
    assert!(writes > 3, "a whole capture took only {writes} writes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capture_whose_object_the_store_cannot_create_fails_and_leaves_nothing() {
    let t = InProcess::start();
    let _cluster = databases(&t);
    t.store.set(Faults {
        key_contains: Some(".dump.zst".into()),
        fail_create: true,
        ..Faults::default()
    });
    let done = capture(&t).await;
    assert_eq!(t.store.counts().writes, 0);
    assert_failed_capture_left_nothing(
        &t,
        &done,
        &[
            "storage: could not create backups/",
            "injected fault: create of",
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capture_succeeds_when_retention_cannot_delete_an_old_backup_which_stays_whole() {
    let t = InProcess::start();
    let _cluster = databases(&t);
    let keep_one = pgbackups::schedule::retention::Policy {
        manual: 1,
        ..Default::default()
    };
    t.service.catalog.set_retention("src", &keep_one).unwrap();
    let old = good_backup(&t).await;
    let old_key = old.object_key.clone().unwrap();
    t.store.set(Faults {
        key_contains: Some(old_key.clone()),
        fail_delete: Some(1),
        ..Faults::default()
    });
    let new = good_backup(&t).await;
    let log = t.log(new.id);
    assert!(
        log.contains("Retention could not run") && log.contains("injected fault: delete #1"),
        "{log}"
    );
    // The old backup was not expired: listed, and its object and manifest are there.
    assert_eq!(
        t.engine.completed_backup(old.id).unwrap().sha256,
        old.sha256
    );
    let keys = t.stored().0;
    assert!(
        keys.contains(&old_key) && keys.contains(&format!("{old_key}.manifest.json")),
        "{keys:?}"
    );

    // With the store healthy, the next capture expires both older ones.
    t.store.clear();
    let newest = good_backup(&t).await;
    let key = newest.object_key.clone().unwrap();
    let mut expected = vec![
        key.clone(),
        format!("{key}.manifest.json"),
        pgbackups::transfer::manifest::globals_key_for(&key),
    ];
    expected.sort();
    let mut stored = t.stored().0;
    stored.sort();
    assert_eq!(stored, expected);
    for id in [old.id, new.id] {
        assert!(matches!(
            t.engine.transfer(id),
            Err(TransferError::NotFound(_))
        ));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capture_whose_commit_fails_leaves_no_object_and_no_backup() {
    let t = InProcess::start();
    let _cluster = databases(&t);
    t.store.set(Faults {
        key_contains: Some(".dump.zst".into()),
        fail_commit: Some(1),
        ..Faults::default()
    });
    let done = capture(&t).await;
    assert!(t.store.counts().writes > 0);
    assert_failed_capture_left_nothing(
        &t,
        &done,
        &[
            "could not store the dump",
            "injected fault: commit #1 of backups/",
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capture_whose_manifest_cannot_be_stored_removes_its_committed_object() {
    let t = InProcess::start();
    let _cluster = databases(&t);
    t.store.set(Faults {
        key_contains: Some(".manifest.json".into()),
        fail_write: Some(1),
        ..Faults::default()
    });
    let done = capture(&t).await;
    assert_failed_capture_left_nothing(
        &t,
        &done,
        &["could not store the backup's manifest", "injected fault"],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capture_whose_manifest_fails_and_whose_object_cannot_be_removed_says_so() {
    let t = InProcess::start();
    let _cluster = databases(&t);
    // Commit 1 is the object's, 2 the manifest's; delete 1 the manifest's, 2 the object's.
    t.store.set(Faults {
        key_contains: Some(".dump.zst".into()),
        fail_commit: Some(2),
        fail_delete: Some(2),
        ..Faults::default()
    });
    let done = capture(&t).await;
    assert_eq!(t.store.counts().fired.len(), 2, "{:?}", t.store.counts());
    assert_eq!(done.state, TransferState::Failed, "{done:?}");
    let error = done.error.clone().unwrap_or_default();
    assert!(
        error.contains("could not store the backup's manifest"),
        "{error}"
    );
    // No backup, and no manifest that could bring one back; the object that could not be
    // removed is named in the log (nothing removes it later: it stays in the store).
    assert!(matches!(
        t.engine.latest_backup(),
        Err(TransferError::NoBackups)
    ));
    let key = done.object_key.clone().unwrap();
    assert_eq!(t.stored().0, vec![key]);
    let log = t.log(done.id);
    assert!(
        log.contains("could not remove the unfinished object")
            && log.contains("injected fault: delete #2"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_whose_read_comes_up_short_refuses_before_the_target_is_touched() {
    let t = InProcess::start();
    let cluster = databases(&t);
    let backup = good_backup(&t).await;
    t.store.set(Faults {
        key_contains: Some(".dump.zst".into()),
        short_read: Some(4096),
        ..Faults::default()
    });
    let done = restore_into_tgt(&t, backup.id).await;
    assert!(
        !t.store.counts().fired.is_empty(),
        "the short read never happened"
    );
    assert_eq!(done.state, TransferState::Failed, "{done:?}");
    let error = done.error.clone().unwrap_or_default();
    assert!(
        error.contains(&format!(
            "the stored object of backup {} is damaged",
            backup.id
        )) && error.contains("4096 bytes")
            && error.contains("The target database was not changed"),
        "{error}"
    );
    assert_target_untouched(&cluster);
    // The backup itself is still whole: with the store healthy again it restores.
    t.store.clear();
    let again = restore_into_tgt(&t, backup.id).await;
    assert_eq!(again.state, TransferState::Succeeded, "{again:?}");
    assert_eq!(
        cluster.psql("tgt", "SELECT count(*) FROM t").trim(),
        "100000"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_whose_read_fails_while_proving_the_backup_leaves_the_target_alone() {
    let t = InProcess::start();
    let cluster = databases(&t);
    let backup = good_backup(&t).await;
    t.store.set(Faults {
        key_contains: Some(".dump.zst".into()),
        fail_read: Some(2),
        ..Faults::default()
    });
    let done = restore_into_tgt(&t, backup.id).await;
    assert_eq!(done.state, TransferState::Failed, "{done:?}");
    let error = done.error.clone().unwrap_or_default();
    assert!(
        error.contains("storage: could not read backups/")
            && error.contains("injected fault: read #2 of backups/")
            && error.contains("The target database was not changed"),
        "{error}"
    );
    assert_target_untouched(&cluster);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_whose_read_fails_while_loading_data_says_the_target_was_emptied() {
    let t = InProcess::start();
    let cluster = databases(&t);
    let backup = good_backup(&t).await;
    // Opens 1 and 2 prove the object and extract its TOC; 3 on feed the table data.
    t.store.set(Faults {
        key_contains: Some(".dump.zst".into()),
        fail_read: Some(1),
        from_open: 3,
        ..Faults::default()
    });
    let done = restore_into_tgt(&t, backup.id).await;
    let fired = t.store.counts().fired;
    assert_eq!(fired.len(), 1, "{fired:?}");
    assert_eq!(done.state, TransferState::Failed, "{done:?}");
    let error = done.error.clone().unwrap_or_default();
    assert!(
        error.contains("could not read the backup")
            && error.contains("injected fault: read #1 of backups/")
            && error.contains("The target database was emptied before the restore began"),
        "{error}"
    );
    // The target was emptied (the marker is gone) and the table's data did not arrive.
    assert_eq!(
        cluster
            .psql(
                "tgt",
                "SELECT count(*) FROM pg_tables WHERE tablename = 'marker'"
            )
            .trim(),
        "0"
    );
    assert_eq!(cluster.psql("tgt", "SELECT count(*) FROM t").trim(), "0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_whose_read_comes_up_short_while_loading_data_fails_and_says_so() {
    let t = InProcess::start();
    let cluster = databases(&t);
    let backup = good_backup(&t).await;
    // The object is proven whole (opens 1 and 2); then the reads feeding the table data end
    // early, as a store that drops a ranged read without an error would.
    t.store.set(Faults {
        key_contains: Some(".dump.zst".into()),
        short_read: Some(4096),
        from_open: 3,
        ..Faults::default()
    });
    let done = restore_into_tgt(&t, backup.id).await;
    assert!(
        !t.store.counts().fired.is_empty(),
        "the short read never happened"
    );
    assert_eq!(done.state, TransferState::Failed, "{done:?}");
    let error = done.error.clone().unwrap_or_default();
    assert!(
        error.contains("could not read the backup")
            && error.contains("The target database was emptied before the restore began"),
        "{error}"
    );
    assert_eq!(cluster.psql("tgt", "SELECT count(*) FROM t").trim(), "0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spooled_restore_whose_read_comes_up_short_or_fails_refuses_before_the_target_is_touched()
{
    let t = InProcess::start();
    let cluster = databases(&t);
    let backup = good_backup(&t).await;
    // Without a recorded layout (a backup of an older version) the restore spools the dump.
    t.service.catalog.set_layout(backup.id, "null").unwrap();

    // A short read is a damaged object: what was read is not what was recorded.
    t.store.set(Faults {
        key_contains: Some(".dump.zst".into()),
        short_read: Some(64 << 10),
        ..Faults::default()
    });
    let done = restore_into_tgt(&t, backup.id).await;
    assert!(
        !t.store.counts().fired.is_empty(),
        "the short read never happened"
    );
    assert!(
        !t.log(done.id).contains("Dump verified"),
        "{}",
        t.log(done.id)
    );
    assert_eq!(done.state, TransferState::Failed, "{done:?}");
    let error = done.error.clone().unwrap_or_default();
    assert!(
        error.contains(&format!(
            "the stored object of backup {} is damaged",
            backup.id
        )) && error.contains("The target database was not changed"),
        "{error}"
    );
    assert_target_untouched(&cluster);

    // A read that fails is the store's failure, named as such: the backup is not called
    // damaged (a user could delete a good backup over a passing outage).
    t.store.set(Faults {
        key_contains: Some(".dump.zst".into()),
        fail_read: Some(2),
        ..Faults::default()
    });
    let done = restore_into_tgt(&t, backup.id).await;
    assert_eq!(done.state, TransferState::Failed, "{done:?}");
    let error = done.error.clone().unwrap_or_default();
    assert!(
        error.contains("storage: could not read backups/")
            && error.contains("injected fault: read #2")
            && !error.contains("damaged")
            && error.contains("The target database was not changed"),
        "{error}"
    );
    assert_target_untouched(&cluster);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verification_whose_read_comes_up_short_or_fails_fails_and_says_which() {
    let t = InProcess::start();
    let _cluster = databases(&t);
    let backup = good_backup(&t).await;
    t.store.set(Faults {
        key_contains: Some(".dump.zst".into()),
        short_read: Some(4096),
        ..Faults::default()
    });
    let rec = t
        .engine
        .start_verify(Some(backup.id), VerifyMode::Checksum, None, Origin::Manual)
        .unwrap();
    let done = t.wait(rec.id).await;
    assert_eq!(done.state, TransferState::Failed, "{done:?}");
    let error = done.error.clone().unwrap_or_default();
    assert!(
        error.contains(&format!(
            "the stored object of backup {} is damaged",
            backup.id
        )),
        "{error}"
    );

    // A read that fails is the store's, not a damaged backup.
    t.store.set(Faults {
        key_contains: Some(".dump.zst".into()),
        fail_read: Some(2),
        ..Faults::default()
    });
    let rec = t
        .engine
        .start_verify(Some(backup.id), VerifyMode::Checksum, None, Origin::Manual)
        .unwrap();
    let done = t.wait(rec.id).await;
    assert_eq!(done.state, TransferState::Failed, "{done:?}");
    let error = done.error.clone().unwrap_or_default();
    assert!(
        error.contains(&format!(
            "could not verify backup {}: storage: could not read backups/",
            backup.id
        )) && error.contains("injected fault: read #2")
            && !error.contains("damaged"),
        "{error}"
    );
}

/// Downloads `id` in `form` with the store as it is set; the last item of the stream.
async fn download_end(
    t: &InProcess,
    id: TransferId,
    form: DumpForm,
) -> std::io::Result<bytes::Bytes> {
    let download = t.engine.download(Some(id), form).unwrap();
    let items: Vec<_> = download.stream.collect().await;
    items.into_iter().last().expect("an empty download")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_whose_read_comes_up_short_or_fails_ends_with_an_error_that_says_which() {
    let t = InProcess::start();
    let _cluster = databases(&t);
    let backup = good_backup(&t).await;

    // Every form a download takes: the dump pg_restore reads, the plain dump, the stored object.
    for form in [DumpForm::Compressed, DumpForm::Plain, DumpForm::Zstd] {
        t.store.set(Faults {
            key_contains: Some(".dump.zst".into()),
            short_read: Some(64 << 10),
            ..Faults::default()
        });
        let err = download_end(&t, backup.id, form)
            .await
            .expect_err("a short download ended without an error");
        assert!(
            !t.store.counts().fired.is_empty(),
            "the short read never happened"
        );
        assert!(err.to_string().contains("is damaged"), "{form:?}: {err}");

        t.store.set(Faults {
            key_contains: Some(".dump.zst".into()),
            fail_read: Some(2),
            ..Faults::default()
        });
        let err = download_end(&t, backup.id, form)
            .await
            .expect_err("a download whose read failed ended without an error");
        let err = err.to_string();
        assert!(
            err.contains("storage: could not read backups/")
                && err.contains("injected fault: read #2")
                && !err.contains("damaged"),
            "{form:?}: {err}"
        );
        t.store.clear();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_the_store_refuses_keeps_the_backup_and_can_be_retried() {
    let t = InProcess::start();
    let _cluster = databases(&t);
    let backup = good_backup(&t).await;
    let key = backup.object_key.clone().unwrap();
    let manifest = format!("{key}.manifest.json");
    let confirm = confirm_word("src");

    // The manifest goes first; when that fails, nothing has changed.
    t.store.set(Faults {
        key_contains: Some(".dump.zst".into()),
        fail_delete: Some(1),
        ..Faults::default()
    });
    let err = t
        .engine
        .delete_backup(backup.id, Some(&confirm))
        .expect_err("a delete the store refused succeeded");
    assert!(
        err.to_string().contains("injected fault: delete #1"),
        "{err}"
    );
    // The backup's roles sit beside it.
    let globals = pgbackups::transfer::manifest::globals_key_for(&key);
    let mut stored = t.stored().0;
    stored.sort();
    assert_eq!(stored, vec![key.clone(), manifest.clone(), globals]);
    assert_eq!(
        t.engine.completed_backup(backup.id).unwrap().sha256,
        backup.sha256
    );

    // Then the object: when that fails, the backup is still listed and whole (never a
    // record without its object), and its manifest and roles are gone (never a manifest
    // without it).
    t.store.set(Faults {
        key_contains: Some(".dump.zst".into()),
        fail_delete: Some(2),
        ..Faults::default()
    });
    let err = t
        .engine
        .delete_backup(backup.id, Some(&confirm))
        .expect_err("a delete the store refused succeeded");
    assert!(
        err.to_string().contains("injected fault: delete #2"),
        "{err}"
    );
    assert_eq!(t.stored().0, vec![key.clone()]);
    assert_eq!(
        t.engine.completed_backup(backup.id).unwrap().sha256,
        backup.sha256
    );

    // Once the store takes deletes again, the retry removes both.
    t.store.clear();
    t.engine.delete_backup(backup.id, Some(&confirm)).unwrap();
    assert_eq!(t.stored(), (vec![], vec![]));
    assert!(matches!(
        t.engine.transfer(backup.id),
        Err(TransferError::NotFound(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_rebuild_skips_and_reports_manifests_whose_object_is_gone_or_unreadable() {
    let t = InProcess::start();
    let cluster = databases(&t);
    let gone = good_backup(&t).await;
    let kept = good_backup(&t).await;
    let gone_key = gone.object_key.clone().unwrap();
    let kept_key = kept.object_key.clone().unwrap();
    // Deleted outside pgbackups: its manifest stays behind.
    t.store.inner().delete(&gone_key).unwrap();
    let gone_manifest = format!("{gone_key}.manifest.json");
    let kept_manifest = format!("{kept_key}.manifest.json");

    // A service whose disk was lost, while the store fails to read the good manifest.
    let fresh = t.with_new_catalog();
    t.store.set(Faults {
        key_contains: Some(kept_manifest.clone()),
        fail_read: Some(1),
        ..Faults::default()
    });
    let report = rebuild(&fresh).unwrap();
    assert!(report.added.is_empty(), "{report:?}");
    assert_eq!(report.orphaned, vec![gone_manifest.clone()], "{report:?}");
    assert_eq!(report.unreadable.len(), 1, "{report:?}");
    assert_eq!(report.unreadable[0].0, kept_manifest);
    assert!(
        report.unreadable[0].1.contains("injected fault: read #1"),
        "{report:?}"
    );
    assert!(matches!(
        fresh.engine.latest_backup(),
        Err(TransferError::NoBackups)
    ));

    // Once the store reads again, the good backup comes back; the one whose object is gone
    // never does.
    t.store.clear();
    let report = rebuild(&fresh).unwrap();
    assert_eq!(report.added, vec![kept.id], "{report:?}");
    assert_eq!(report.orphaned, vec![gone_manifest], "{report:?}");
    assert!(report.unreadable.is_empty(), "{report:?}");
    assert!(matches!(
        fresh.engine.transfer(gone.id),
        Err(TransferError::NotFound(_))
    ));
    let back = fresh.engine.completed_backup(kept.id).unwrap();
    assert_eq!(back.sha256, kept.sha256);
    assert_eq!(back.object_key, kept.object_key);
    // New backups never reuse an ID the store shows, even the one whose object is gone.
    fresh.registry.add("src", &cluster.url("src")).unwrap();
    let rec = fresh
        .engine
        .start_capture(Some("src"), Origin::Manual)
        .unwrap();
    assert!(rec.id != gone.id && rec.id != kept.id, "{} reused", rec.id);
    let next = wait_for(&fresh.engine, rec.id).await;
    assert_eq!(next.state, TransferState::Succeeded, "{next:?}");
}
