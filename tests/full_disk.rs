//! A disk that fills up under the service: what a user sees when the catalog's disk is full
//! at the end of a capture, and when the store's disk fills during one. The disks are real
//! (small tmpfs mounts), so these tests need root; they say so and pass vacuously otherwise.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Cluster, Service, text, transfer_id};

/// A tmpfs of `mb` MiB mounted on a fresh directory, unmounted when dropped.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(mb: u32) -> Option<SmallDisk> {
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("skipped: mounting a small disk needs root");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mb}m"), "tmpfs"])
            .arg(dir.path())
            .status()
            .unwrap()
            .success();
        assert!(ok, "could not mount a tmpfs on {}", dir.path().display());
        Some(SmallDisk { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills the disk to the last byte with a file `filler`.
    fn fill(&self) {
        let _ = Command::new("dd")
            .args(["if=/dev/zero", "bs=64k"])
            .arg(format!("of={}", self.path().join("filler").display()))
            .stderr(std::process::Stdio::null())
            .status();
    }

    fn free(&self) {
        std::fs::remove_file(self.path().join("filler")).unwrap();
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

#[test]
fn a_capture_whose_end_the_full_catalog_disk_cannot_record_is_shown_truthfully_and_recorded_later()
{
    let Some(disk) = SmallDisk::mount(64) else {
        return;
    };
    let pg = Cluster::start();
    pg.create_db("app");
    pg.psql(
        "app",
        "CREATE TABLE t AS SELECT g FROM generate_series(1, 10000) g",
    );
    let store = tempfile::tempdir().unwrap();
    let store_url = format!("file://{}", store.path().display());
    let data = disk.path().join("data");
    let svc = Service::try_start(
        data.clone(),
        &["--storage", &store_url],
        &[("PGBACKUPS_TEST_HOLD", "before-record-end")],
    )
    .unwrap();
    let out = svc.cli_with_stdin(&["databases:add", "app"], &pg.url("app"));
    assert!(out.status.success(), "{}", text(&out));

    // A user watches the capture; just before its end is recorded, the disk fills up.
    let watcher = {
        let (url, token) = (svc.url.clone(), svc.token());
        std::thread::spawn(move || {
            common::cli(
                &["backups:capture", "app"],
                &[("PGBACKUPS_URL", &url), ("PGBACKUPS_TOKEN", &token)],
            )
        })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !svc.log().contains("Test hold: before-record-end") {
        assert!(Instant::now() < deadline, "{}", svc.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    disk.fill();

    // The watcher learns how it ended and stops; info shows it; cancel tells the truth.
    let watched = watcher.join().unwrap();
    assert!(watched.status.success(), "{}", text(&watched));
    let info = svc.info("b001");
    assert_eq!(info["state"], "succeeded", "{info}");
    let cancel = svc.cli(&["backups:cancel", "b001"]);
    assert!(!cancel.status.success());
    assert!(
        text(&cancel).contains("not running (it is succeeded)"),
        "{}",
        text(&cancel)
    );
    assert!(
        svc.log().contains("could not record how b001 ended"),
        "{}",
        svc.log()
    );
    // Deleting it now would be undone by the recording: refused, saying why.
    let delete = svc.cli(&["backups:delete", "b001", "--confirm", "app"]);
    assert!(!delete.status.success());
    assert!(text(&delete).contains("not yet taken"), "{}", text(&delete));

    // Space comes back: the end is recorded, and survives a restart.
    disk.free();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !svc.log().contains("recorded how b001 ended") {
        assert!(Instant::now() < deadline, "{}", svc.log());
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(svc);
    let svc = Service::try_start(data, &["--storage", &store_url], &[]).unwrap();
    let info = svc.info("b001");
    assert_eq!(info["state"], "succeeded", "{info}");
    let restored = svc.cli(&[
        "backups:restore",
        "b001",
        &pg.url("app"),
        "--confirm",
        "app",
    ]);
    assert!(restored.status.success(), "{}", text(&restored));
}

#[test]
fn a_store_whose_disk_fills_during_a_capture_fails_it_with_the_disks_own_error() {
    let Some(disk) = SmallDisk::mount(4) else {
        return;
    };
    let pg = Cluster::start();
    pg.create_db("app");
    // About 40 MB of incompressible rows: more than the 4 MiB store, across frame boundaries.
    pg.psql(
        "app",
        "CREATE TABLE noise AS SELECT g, md5(random()::text) || md5(random()::text) AS a, md5(random()::text) AS b FROM generate_series(1, 400000) g",
    );
    let store_url = format!("file://{}", disk.path().display());
    let data = tempfile::tempdir().unwrap();
    let svc =
        Service::try_start(data.path().join("data"), &["--storage", &store_url], &[]).unwrap();
    let out = svc.cli(&["backups:capture", &pg.url("app"), "--no-wait"]);
    assert!(out.status.success(), "{}", text(&out));
    let info = svc.wait_state(&transfer_id(&out), &["failed"]);
    let error = info["error"].as_str().unwrap();
    assert!(
        error.contains("No space left on device") && !error.contains("encoder failed"),
        "{info}"
    );
}
