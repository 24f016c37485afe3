//! Object storage, links, encryption, verification and catalog rebuilds, against a real
//! S3-compatible server (SeaweedFS on 127.0.0.1), real PostgreSQL clusters, the stock
//! `pg_restore` and the stock `age` tool.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use age::secrecy::ExposeSecret;
use common::s3::S3Server;
use common::{Cluster, PASSWORD, Service, text, transfer_id, wait_until};

/// A small database with a few tables, rows and a sequence.
const SAMPLE: &str = r#"
CREATE TABLE accounts (id serial PRIMARY KEY, name text NOT NULL, balance numeric(12,2));
INSERT INTO accounts (name, balance) SELECT 'account ' || g, g * 3.5 FROM generate_series(1, 5000) g;
CREATE SCHEMA audit;
CREATE TABLE audit.events (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, at timestamptz, what text);
INSERT INTO audit.events (at, what) SELECT now() - g * interval '1 minute', md5(g::text) FROM generate_series(1, 20000) g;
CREATE INDEX ON audit.events (at);
"#;

fn service_env(s3: &S3Server) -> Vec<(&'static str, String)> {
    s3.env()
}

fn start_on_s3(s3: &S3Server, data_dir: &Path, extra: &[&str]) -> Service {
    let storage = format!("s3://{}/prod", s3.bucket);
    let mut args = vec!["--storage", storage.as_str()];
    args.extend_from_slice(extra);
    let env = service_env(s3);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Service::try_start(data_dir.to_path_buf(), &args, &env).unwrap_or_else(|e| panic!("{e}"))
}

/// GET an absolute http:// URL with curl, as a user does: status and body bytes.
fn fetch(url: &str) -> (u16, Vec<u8>) {
    let body = tempfile::NamedTempFile::new().unwrap();
    let out = Command::new("curl")
        .args(["-s", "-o"])
        .arg(body.path())
        .args(["-w", "%{http_code}", url])
        .output()
        .unwrap();
    let status = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    (status, std::fs::read(body.path()).unwrap())
}

fn pg_restore_lists(file: &Path) {
    let out = Command::new(Path::new(common::PG_BIN).join("pg_restore"))
        .arg("--list")
        .arg(file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "stock pg_restore cannot read {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn capture(svc: &Service, db: &str) -> String {
    let out = svc.cli(&["backups:capture", db]);
    assert!(out.status.success(), "capture: {}", text(&out));
    let id = transfer_id(&out);
    let v = svc.wait_state(&id, &["succeeded", "failed", "cancelled"]);
    assert_eq!(v["state"], "succeeded", "{v:#}");
    id
}

#[test]
fn backups_live_in_s3_with_presigned_links_verification_and_a_rebuildable_catalog() {
    let s3 = S3Server::start("backups");
    let pg = Cluster::start();
    pg.create_db("app");
    pg.psql("app", SAMPLE);
    let work = tempfile::tempdir().unwrap();
    let mut svc = start_on_s3(&s3, &work.path().join("data1"), &[]);
    assert!(
        svc.log().contains("object store s3://backups/prod"),
        "{}",
        svc.log()
    );
    svc.ok(&["databases:add", "app", &pg.url("app")]);

    // Capture: the object and its manifest are in the bucket, nothing in the data directory.
    let b1 = capture(&svc, "app");
    let stored = s3.objects("prod/backups/");
    assert!(
        stored
            .iter()
            .any(|k| k.starts_with(&b1) && k.ends_with(".dump.zst"))
            && stored
                .iter()
                .any(|k| k.ends_with(".dump.zst.manifest.json")),
        "{stored:?}"
    );
    assert!(svc.stored_files().is_empty());
    assert_eq!(s3.pending_uploads(), 0);

    // Download: a plain dump that the stock pg_restore reads.
    let dump = work.path().join("b.dump");
    svc.ok(&["backups:download", &b1, "--output", dump.to_str().unwrap()]);
    pg_restore_lists(&dump);

    // Restore from S3 (ranged reads of the object).
    pg.create_db("copy1");
    svc.ok(&[
        "backups:restore",
        &b1,
        &pg.url("copy1"),
        "--confirm",
        "copy1",
    ]);
    assert_eq!(pg.row_counts("copy1"), pg.row_counts("app"));

    // Heroku: `curl -o latest.dump "$(heroku pg:backups:url)" && pg_restore latest.dump`.
    // The default link's body is a custom-format dump the stock pg_restore reads; on S3 it is
    // presigned, like Heroku's: the dump (gzip-compressed as pg_dump -Fc writes it) is written
    // once beside the backup, under exports/, so the link works without the service.
    let link = svc.ok(&["backups:url", &b1]);
    assert!(
        link.contains("X-Amz-Signature") && link.contains("/exports/"),
        "{link}"
    );
    let exports = s3.objects("prod/exports/");
    assert!(
        exports.len() == 1 && exports[0].contains(&b1),
        "{exports:?}"
    );
    // Asked again: the same export, not a second one.
    svc.ok(&["backups:url", &b1]);
    assert_eq!(s3.objects("prod/exports/"), exports);
    let (status, body) = fetch(link.trim());
    assert_eq!(status, 200);
    let curled = work.path().join("curled.dump");
    std::fs::write(&curled, &body).unwrap();
    pg_restore_lists(&curled);
    let info = svc.info(&b1);
    assert!(
        (body.len() as u64) < info["dump_size"].as_u64().unwrap(),
        "the link's dump is not compressed: {} bytes",
        body.len()
    );

    // --raw: a presigned link to the stored object, fetched by a plain HTTP client without the
    // service: the stored zstd stream of the dump.
    let url = svc.ok(&["backups:url", &b1, "--raw", "--expires", "10m"]);
    let url = url.trim();
    assert!(url.contains("X-Amz-Signature"), "{url}");
    let (status, body) = fetch(url);
    assert_eq!(status, 200);
    let plain = zstd::decode_all(&body[..]).unwrap();
    assert_eq!(&plain[..5], b"PGDMP");
    assert_eq!(plain.len() as u64, info["dump_size"].as_u64().unwrap());
    // Tampered: refused by the store.
    let (status, _) = fetch(&url.replace("X-Amz-Signature=", "X-Amz-Signature=0"));
    assert_eq!(status, 403);
    // The link as a restore source, as Heroku users do with `pg:backups:url`.
    pg.create_db("copy2");
    svc.ok(&[
        "backups:restore",
        url,
        &pg.url("copy2"),
        "--confirm",
        "copy2",
    ]);
    assert_eq!(pg.row_counts("copy2"), pg.row_counts("app"));
    assert!(
        !svc.log().contains("X-Amz-Signature"),
        "a signature reached the log"
    );

    // Verification: checksum and listing, then a full restore test.
    let out = svc.ok(&["backups:verify", &b1]);
    assert!(out.contains("checksum OK"), "{out}");
    let out = svc.ok(&["backups:verify", &b1, "--restore"]);
    assert!(
        out.contains("restored into a scratch database: 2 tables, 25000 rows"),
        "{out}"
    );
    let info = svc.ok(&["backups:info", &b1]);
    assert!(info.contains("Verified") && info.contains("OK"), "{info}");
    let dbs = pg.psql(
        "postgres",
        "SELECT string_agg(datname, ',') FROM pg_database",
    );
    assert!(
        !dbs.contains("pgbackups_verify"),
        "scratch database left: {dbs}"
    );

    // The service's disk is lost: a new data directory, the same bucket.
    let b2 = capture(&svc, "app");
    assert!(svc.terminate());
    // The presigned link to the dump works with the service gone.
    let (status, body) = fetch(link.trim());
    assert_eq!((status, &body[..5]), (200, &b"PGDMP"[..]));
    let mut svc2 = start_on_s3(&s3, &work.path().join("data2"), &[]);
    assert!(svc2.ok(&["backups"]).contains("No backups"));
    let out = svc2.ok(&["catalog:rebuild"]);
    assert!(out.contains("Recreated 2 backup(s)"), "{out}");
    let listing = svc2.ok(&["backups"]);
    assert!(listing.contains(&b1) && listing.contains(&b2), "{listing}");
    let again = svc2.ok(&["catalog:rebuild"]);
    assert!(
        again.contains("Recreated 0") && again.contains("Already in the catalog"),
        "{again}"
    );
    // New IDs continue after the rebuilt ones; the rebuilt backups restore.
    svc2.ok(&["databases:add", "app", &pg.url("app")]);
    let b3 = capture(&svc2, "app");
    assert_eq!(b3, "b003");
    pg.create_db("copy3");
    svc2.ok(&[
        "backups:restore",
        &b2,
        &pg.url("copy3"),
        "--confirm",
        "copy3",
    ]);
    assert_eq!(pg.row_counts("copy3"), pg.row_counts("app"));

    // Deleting removes the object, its manifest and its export.
    svc2.ok(&["backups:delete", &b1, "--confirm", "app"]);
    let stored = s3.objects("prod/backups/");
    assert!(!stored.iter().any(|k| k.starts_with(&b1)), "{stored:?}");
    assert!(s3.objects("prod/exports/").is_empty());
    svc2.terminate();
    svc.terminate();
}

/// A cluster with `big` (about 150 MB of incompressible data, so that an upload takes many
/// 5 MiB parts and outlasts the moment a test stops the store) and a service that stores in
/// `s3`, retrying store operations for `retry_secs`; `big` is registered.
fn big_database_on(s3: &S3Server, retry_secs: u64) -> (Cluster, tempfile::TempDir, Service) {
    let pg = Cluster::start();
    pg.create_db("big");
    pg.psql(
        "big",
        "CREATE TABLE blobs (id int, data bytea);
         INSERT INTO blobs SELECT g, decode(string_agg(md5(g::text || random()::text), ''), 'hex')
         FROM generate_series(1, 40000) g, generate_series(1, 250) r GROUP BY g;",
    );
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(
        data.join("pgbackups.toml"),
        format!(
            "[storage]\nurl = \"s3://{}/prod\"\npart_size_mib = 5\nretry_timeout_secs = {retry_secs}\n",
            s3.bucket
        ),
    )
    .unwrap();
    let env = s3.env();
    let mut env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    env.push(("PGBACKUPS_STORAGE_SWEEP_SECS", "1"));
    let svc = Service::try_start(data, &[], &env).unwrap_or_else(|e| panic!("{e}"));
    svc.ok(&["databases:add", "big", &pg.url("big")]);
    (pg, work, svc)
}

#[test]
fn a_store_outage_mid_upload_fails_the_backup_and_leaves_no_parts() {
    let mut s3 = S3Server::start("backups");
    let (_pg, _work, svc) = big_database_on(&s3, 3);

    // A cancelled capture aborts its upload at once.
    let id = transfer_id(&svc.cli(&["backups:capture", "big", "--no-wait"]));
    wait_until(
        60,
        || s3.pending_uploads() > 0,
        || "no upload started".into(),
    );
    svc.ok(&["backups:cancel"]);
    let v = svc.wait_state(&id, &["succeeded", "failed", "cancelled"]);
    assert_eq!(v["state"], "cancelled", "{v:#}");
    wait_until(
        15,
        || s3.pending_uploads() == 0,
        || format!("parts left by a cancel\n{}", svc.log()),
    );
    assert!(s3.objects("prod/backups/").is_empty());

    let id = transfer_id(&svc.cli(&["backups:capture", "big", "--no-wait"]));

    // Stop the store once parts are going up.
    wait_until(
        60,
        || s3.pending_uploads() > 0,
        || "no upload started".into(),
    );
    s3.stop();
    let v = svc.wait_state(&id, &["succeeded", "failed", "cancelled"]);
    assert_eq!(v["state"], "failed", "{v:#}");
    let error = v["error"].as_str().unwrap();
    assert!(
        error.contains("could not store the dump") && error.contains("upload"),
        "{error}"
    );

    // When the store comes back, the abandoned upload is aborted: no parts, no object.
    s3.restart();
    wait_until(
        60,
        || s3.pending_uploads() == 0,
        || format!("parts left behind:\n{}", svc.log()),
    );
    assert!(s3.objects("prod/backups/").is_empty());
    // And the next capture works.
    let next = capture(&svc, "big");
    assert_eq!(svc.info(&next)["state"], "succeeded");
}

#[test]
fn a_store_outage_shorter_than_the_retry_window_is_ridden_out_and_logged() {
    let mut s3 = S3Server::start("backups");
    let (_pg, _work, svc) = big_database_on(&s3, 60);

    let id = transfer_id(&svc.cli(&["backups:capture", "big", "--no-wait"]));
    wait_until(
        60,
        || s3.pending_uploads() > 0,
        || "no upload started".into(),
    );
    // Six seconds without a store, well inside the 60 s window.
    s3.stop();
    std::thread::sleep(Duration::from_secs(6));
    s3.restart();
    let v = svc.wait_state(&id, &["succeeded", "failed", "cancelled"]);
    assert_eq!(v["state"], "succeeded", "{v:#}\n{}", svc.log());
    let log = svc.log();
    assert!(
        log.contains("retrying for up to 60 s") && log.contains("the object store answers again"),
        "{log}"
    );
    // What was stored is whole: a verification re-reads it against its checksum.
    let out = svc.cli(&["backups:verify", &id]);
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn a_wrong_bucket_or_key_fails_at_start_with_the_reason() {
    let s3 = S3Server::start("backups");
    let work = tempfile::tempdir().unwrap();
    let env = s3.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let err = Service::try_start(
        work.path().join("a"),
        &["--storage", "s3://no-such-bucket/x"],
        &env,
    )
    .err()
    .expect("a missing bucket must stop the start");
    assert!(
        err.contains("cannot open storage") && err.contains("bucket"),
        "{err}"
    );

    let mut bad = env.clone();
    bad.retain(|(k, _)| *k != "AWS_SECRET_ACCESS_KEY");
    bad.push(("AWS_SECRET_ACCESS_KEY", "not-the-secret"));
    let err = Service::try_start(
        work.path().join("b"),
        &["--storage", "s3://backups/x"],
        &bad,
    )
    .err()
    .expect("bad credentials must stop the start");
    assert!(err.contains("credentials"), "{err}");
    assert!(
        !err.contains("not-the-secret"),
        "the secret reached the log"
    );

    let err = Service::try_start(work.path().join("c"), &["--storage", "ftp://x/y"], &[])
        .err()
        .expect("an unknown scheme must stop the start");
    assert!(err.contains("unknown storage scheme"), "{err}");
}

#[test]
fn service_links_expire_and_refuse_tampering() {
    let pg = Cluster::start();
    pg.create_db("app");
    pg.psql("app", SAMPLE);
    let svc = Service::start();
    svc.ok(&["databases:add", "app", &pg.url("app")]);
    let b1 = capture(&svc, "app");
    let url = svc.ok(&["backups:url", &b1]);
    let url = url.trim();
    assert!(
        url.starts_with(&svc.url) && url.contains("/links/b001?"),
        "{url}"
    );
    let (status, body) = fetch(url);
    assert_eq!(status, 200);
    assert_eq!(&body[..5], b"PGDMP");
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &body).unwrap();
    pg_restore_lists(file.path());

    let tampered = url.replace("sig=", "sig=00");
    assert_eq!(fetch(&tampered).0, 403);
    let longer = url.replace("expires=", "expires=9");
    assert_eq!(fetch(&longer).0, 403);
    let other = url.replace("/links/b001", "/links/b002");
    assert_eq!(fetch(&other).0, 403);
    // The form is signed too: a link to the dump does not become one to the stored object.
    assert_eq!(fetch(&format!("{url}&form=zstd")).0, 403);

    let short = svc.ok(&["backups:url", &b1, "--expires", "1s"]);
    std::thread::sleep(Duration::from_millis(2100));
    let (status, body) = fetch(short.trim());
    assert_eq!(status, 403);
    assert!(String::from_utf8_lossy(&body).contains("expired"));

    let out = svc.cli(&["backups:url", &b1, "--expires", "30d"]);
    assert!(
        !out.status.success() && text(&out).contains("7 days"),
        "{}",
        text(&out)
    );
    let out = svc.cli(&["backups:url", &b1, "--expires", "soon"]);
    assert!(!out.status.success() && text(&out).contains("not a duration"));
}

#[test]
fn encrypted_backups_round_trip_and_refuse_a_wrong_key() {
    let pg = Cluster::start();
    pg.create_db("app");
    pg.psql("app", SAMPLE);
    let work = tempfile::tempdir().unwrap();
    let key = age::x25519::Identity::generate();
    let key_file = work.path().join("key.txt");
    std::fs::write(&key_file, format!("{}\n", key.to_string().expose_secret())).unwrap();
    let recipient = key.to_public().to_string();
    let data = work.path().join("data");
    let svc = Service::try_start(
        data.clone(),
        &[
            "--encrypt-to",
            &recipient,
            "--identity-file",
            key_file.to_str().unwrap(),
        ],
        &[],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    svc.ok(&["databases:add", "app", &pg.url("app")]);
    let b1 = capture(&svc, "app");
    assert_eq!(svc.info(&b1)["encryption"], "age");

    // At rest: an age file, which the stock `age` tool decrypts to the zstd-compressed dump.
    let object = std::fs::read_dir(data.join("storage/backups"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".dump.zst"))
        .unwrap();
    let stored = std::fs::read(&object).unwrap();
    assert!(stored.starts_with(b"age-encryption.org/v1\n"));
    let out = Command::new("age")
        .args(["--decrypt", "-i", key_file.to_str().unwrap()])
        .arg(&object)
        .output()
        .expect("the stock age tool (scripts/test installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(&zstd::decode_all(&out.stdout[..]).unwrap()[..5], b"PGDMP");

    // Download, URL and restore hand out the plain dump.
    let dump = work.path().join("b.dump");
    svc.ok(&["backups:download", &b1, "--output", dump.to_str().unwrap()]);
    pg_restore_lists(&dump);
    let (status, body) = fetch(svc.ok(&["backups:url", &b1]).trim());
    assert_eq!((status, &body[..5]), (200, &b"PGDMP"[..]));
    pg.create_db("copy");
    svc.ok(&["backups:restore", &b1, &pg.url("copy"), "--confirm", "copy"]);
    assert_eq!(pg.row_counts("copy"), pg.row_counts("app"));
    assert!(svc.ok(&["backups:verify", &b1]).contains("checksum OK"));
    let secret = key.to_string().expose_secret().to_string();
    assert!(
        !svc.log().contains(&secret[15..]),
        "the key reached the log"
    );
    drop(svc);

    // With another key, the backup is refused before the target is touched.
    let other = age::x25519::Identity::generate();
    let other_file = work.path().join("other.txt");
    std::fs::write(
        &other_file,
        format!("{}\n", other.to_string().expose_secret()),
    )
    .unwrap();
    let svc = Service::try_start(
        data.clone(),
        &["--identity-file", other_file.to_str().unwrap()],
        &[],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    pg.psql("copy", "CREATE TABLE untouched (x int)");
    let out = svc.cli(&["backups:restore", &b1, &pg.url("copy"), "--confirm", "copy"]);
    let id = transfer_id(&out);
    let v = svc.wait_state(&id, &["succeeded", "failed"]);
    assert_eq!(v["state"], "failed");
    let error = v["error"].as_str().unwrap();
    assert!(
        error.contains("none of the configured keys opens it"),
        "{error}"
    );
    assert!(error.contains("not changed"), "{error}");
    assert_eq!(
        pg.psql("copy", "SELECT count(*) FROM untouched").trim(),
        "0"
    );
    drop(svc);

    // A passphrase instead of keys.
    let pass_file = work.path().join("pass.txt");
    std::fs::write(&pass_file, "correct horse battery staple\n").unwrap();
    let svc = Service::try_start(
        work.path().join("data-pass"),
        &["--passphrase-file", pass_file.to_str().unwrap()],
        &[],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    svc.ok(&["databases:add", "app", &pg.url("app")]);
    let b = capture(&svc, "app");
    pg.create_db("copy_pass");
    svc.ok(&[
        "backups:restore",
        &b,
        &pg.url("copy_pass"),
        "--confirm",
        "copy_pass",
    ]);
    assert_eq!(pg.row_counts("copy_pass"), pg.row_counts("app"));
    assert!(
        !svc.log().contains("battery"),
        "the passphrase reached the log"
    );
    let _ = PASSWORD;
}

#[test]
fn encrypted_backups_on_s3_restore_through_ranged_reads() {
    let s3 = S3Server::start("backups");
    let pg = Cluster::start();
    pg.create_db("app");
    pg.psql("app", SAMPLE);
    let work = tempfile::tempdir().unwrap();
    let key = age::x25519::Identity::generate();
    let key_file = work.path().join("key.txt");
    std::fs::write(&key_file, format!("{}\n", key.to_string().expose_secret())).unwrap();
    let recipient = key.to_public().to_string();
    let svc = start_on_s3(
        &s3,
        &work.path().join("data"),
        &[
            "--encrypt-to",
            &recipient,
            "--identity-file",
            key_file.to_str().unwrap(),
        ],
    );
    svc.ok(&["databases:add", "app", &pg.url("app")]);
    let b1 = capture(&svc, "app");
    // No presigned link for ciphertext, even with --raw: the link goes through the service,
    // which decrypts.
    let url = svc.ok(&["backups:url", &b1]);
    assert!(url.trim().starts_with(&svc.url), "{url}");
    let (status, body) = fetch(url.trim());
    assert_eq!((status, &body[..5]), (200, &b"PGDMP"[..]));
    let raw = svc.ok(&["backups:url", &b1, "--raw"]);
    assert!(raw.trim().starts_with(&svc.url), "{raw}");
    let (status, body) = fetch(raw.trim());
    assert_eq!(status, 200);
    assert_eq!(&zstd::decode_all(&body[..]).unwrap()[..5], b"PGDMP");
    pg.create_db("copy");
    svc.ok(&[
        "backups:restore",
        &b1,
        &pg.url("copy"),
        "--confirm",
        "copy",
        "--jobs",
        "2",
    ]);
    assert_eq!(pg.row_counts("copy"), pg.row_counts("app"));
    assert!(
        svc.ok(&["backups:verify", &b1, "--restore"])
            .contains("2 tables")
    );
}

#[test]
fn a_protected_database_streams_its_wal_to_s3_and_a_fork_reads_it_back() {
    let s3 = S3Server::start("walstream");
    let (dir, _store, cli_dir) = common::archive_dirs();
    // The fork's restore_command runs as the server's user, with the server's environment:
    // the store and its credentials come from a configuration file that user can read.
    let config = dir.path().join("pgbackups.toml");
    std::fs::write(
        &config,
        format!(
            "[storage]\nurl = \"s3://{}/pg\"\nendpoint = \"{}\"\nregion = \"us-east-1\"\n\n[storage.options]\naws_access_key_id = \"{}\"\naws_secret_access_key = \"{}\"\n",
            s3.bucket,
            s3.endpoint(),
            common::s3::ACCESS_KEY,
            common::s3::SECRET_KEY
        ),
    )
    .unwrap();
    std::fs::set_permissions(&config, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    common::give_to_server_user(&config);
    let config_s = config.to_str().unwrap();

    let pg = Cluster::start();
    pg.psql("postgres", "CREATE TABLE marks (v text PRIMARY KEY)");
    let svc = Service::try_start(
        dir.path().join("service"),
        &["--config", config_s],
        &[("PGBACKUPS_PARTIAL_SECS", "1")],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    svc.cli_with_stdin(&["databases:add", "main"], &pg.url("postgres"));
    svc.ok(&["protect", "main"]);
    let info = || -> serde_json::Value {
        let out = svc.cli(&["protection:info", "main", "--json"]);
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)))
    };
    wait_until(
        90,
        || info()["live"]["base_backups"].as_u64() == Some(1),
        || format!("no base backup on S3: {}\n{}", info(), svc.log()),
    );
    pg.psql("postgres", "INSERT INTO marks VALUES ('a')");
    pg.psql(
        "postgres",
        "CREATE TABLE filler AS SELECT md5(g::text) AS t FROM generate_series(1, 300000) g",
    );
    pg.psql("postgres", "INSERT INTO marks VALUES ('b')");
    let end = common::lsn(&pg.psql("postgres", "SELECT pg_current_wal_insert_lsn()"));
    wait_until(
        90,
        || {
            info()["live"]["stored_lsn"]
                .as_str()
                .is_some_and(|l| common::lsn(l) >= end)
        },
        || format!("WAL not stored on S3 up to {end:X}: {}", info()),
    );
    assert_eq!(info()["problems"], serde_json::json!([]), "{}", info());
    // Whole segments and the filling one are objects in the bucket.
    let objects = s3.objects("pg/wal/main/");
    assert!(
        objects.iter().any(|o| o.ends_with(".partial.zst")),
        "{objects:?}"
    );
    assert!(
        objects
            .iter()
            .filter(|o| o.len() > 20 && !o.contains("partial"))
            .count()
            >= 2,
        "{objects:?}"
    );

    // A fork from the bucket alone (no service), with the latest rows.
    let fork = common::restore(
        &["fork", "main"],
        &["--config", config_s],
        &[("PGBACKUPS_DATA_DIR", cli_dir.as_str())],
        &[],
    );
    assert_eq!(common::marks(&fork), ["a", "b"]);
    svc.ok(&["unprotect", "main"]);
}

/// The first presigned link to a backup writes its dump to the bucket. Meanwhile (forced by a
/// test hold, not timed): a second link does not write it again (it gets the service's link at
/// once), and the backup cannot be deleted from under it.
#[test]
fn while_a_links_dump_is_written_a_second_link_and_a_delete_do_not_race_it() {
    let s3 = S3Server::start("backups");
    let pg = Cluster::start();
    pg.create_db("app");
    pg.psql("app", SAMPLE);
    let work = tempfile::tempdir().unwrap();
    let storage = format!("s3://{}/prod", s3.bucket);
    let mut env = service_env(&s3);
    env.push(("PGBACKUPS_TEST_HOLD", "export".into()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let svc = Service::try_start(work.path().join("data"), &["--storage", &storage], &env)
        .unwrap_or_else(|e| panic!("{e}"));
    svc.ok(&["databases:add", "app", &pg.url("app")]);
    let b1 = capture(&svc, "app");

    let first = std::thread::scope(|scope| {
        let first = scope.spawn(|| svc.ok(&["backups:url", &b1]));
        wait_until(30, || svc.log().contains("Test hold: export"), || svc.log());
        let second = svc.ok(&["backups:url", &b1]);
        assert!(
            second.trim().starts_with(&svc.url),
            "a second export was started: {second}"
        );
        let refused = svc.cli(&["backups:delete", &b1, "--confirm", "app"]);
        assert!(!refused.status.success(), "{}", text(&refused));
        assert!(
            text(&refused).contains("a link being prepared"),
            "{}",
            text(&refused)
        );
        first.join().unwrap()
    });
    assert!(first.contains("X-Amz-Signature"), "{first}");
    assert_eq!(s3.objects("prod/exports/").len(), 1);
    let (status, body) = fetch(first.trim());
    assert_eq!((status, &body[..5]), (200, &b"PGDMP"[..]));
}
