//! The PostgreSQL catalog against a real server: the same behaviour tests the SQLite catalog
//! passes (`catalog/conformance.rs`), claims raced by threads on separate connections and
//! separate "nodes", migrations at open (concurrent, and refused for a newer schema), and a
//! service that keeps its catalog there.

mod common;

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use common::{Cluster, PASSWORD, Service};
use pgbackups::catalog::{Catalog, CatalogError, PgCatalog, PgTarget, conformance};

/// The catalog in database `db` of `cluster`, the password given apart from the URL.
fn target(cluster: &Cluster, db: &str) -> PgTarget {
    PgTarget::new(
        format!("postgres://postgres@127.0.0.1:{}/{db}", cluster.port),
        Some(PASSWORD.to_string()),
    )
}

#[test]
fn the_shared_catalog_behaviours_hold_on_postgresql() {
    let cluster = Cluster::start();
    let mut failed = Vec::new();
    for (i, (name, behaviour)) in conformance::ALL.iter().enumerate() {
        let db = format!("behaviour{i}");
        cluster.create_db(&db);
        let catalog = PgCatalog::open(&target(&cluster, &db)).unwrap();
        if std::panic::catch_unwind(AssertUnwindSafe(|| behaviour(&catalog))).is_err() {
            failed.push(*name);
        }
    }
    assert!(failed.is_empty(), "failed on PostgreSQL: {failed:?}");
}

#[test]
fn ids_and_runs_claimed_by_threads_on_three_nodes_are_never_given_twice() {
    let cluster = Cluster::start();
    cluster.create_db("shared");
    // Three nodes, each with its own pool: eight threads claim at once.
    let nodes: Vec<Arc<dyn Catalog>> = (0..3)
        .map(|_| {
            let mut t = target(&cluster, "shared");
            t.pool_size = 3;
            Arc::new(PgCatalog::open(&t).unwrap()) as Arc<dyn Catalog>
        })
        .collect();
    conformance::claims_are_race_free(&nodes, 8);
}

#[test]
fn nodes_starting_together_migrate_once_and_a_newer_schema_is_refused() {
    let cluster = Cluster::start();
    cluster.create_db("fresh");
    let t = target(&cluster, "fresh");
    let opened: Vec<_> = (0..4)
        .map(|_| {
            let t = t.clone();
            std::thread::spawn(move || PgCatalog::open(&t).map(|c| c.schema_version().unwrap()))
        })
        .collect();
    for h in opened {
        assert_eq!(h.join().unwrap().unwrap(), 1);
    }
    // A newer pgbackups migrated it further: this one refuses it, naming both versions.
    PgCatalog::open_with_extra_migrations(&t, &["CREATE TABLE from_the_future (x int);"]).unwrap();
    let err = PgCatalog::open(&t).err().unwrap();
    assert!(
        matches!(err, CatalogError::Newer { found: 2, known: 1 }),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("schema is version 2, newer than this pgbackups knows (1)"),
        "{err}"
    );
}

#[test]
fn a_wrong_password_is_named_without_showing_it() {
    let cluster = Cluster::start();
    let mut t = target(&cluster, "postgres");
    t.password = Some("not-the-Password-42".into());
    let err = PgCatalog::open(&t).err().unwrap();
    let text = err.to_string();
    assert!(matches!(err, CatalogError::Unreachable { .. }), "{err:?}");
    assert!(
        text.contains("cannot connect to the catalog postgres://postgres@127.0.0.1"),
        "{text}"
    );
    assert!(text.contains("password"), "{text}");
    assert!(!text.contains("not-the-Password-42"), "{text}");
    assert!(!format!("{t:?}").contains("not-the-Password-42"));
}

#[test]
fn the_catalog_is_usable_and_dropped_on_a_runtimes_threads() {
    let cluster = Cluster::start();
    cluster.create_db("rt");
    let t = target(&cluster, "rt");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        // Called (and dropped) inside a runtime, as start-up code may: no nested-runtime panic.
        let catalog = PgCatalog::open(&t).unwrap();
        assert_eq!(catalog.claim_transfer_id('b').unwrap().to_string(), "b001");
        drop(catalog);
    });
}

#[test]
fn serve_keeps_its_catalog_in_postgresql_and_captures_a_backup() {
    let cluster = Cluster::start();
    cluster.create_db("catalog");
    cluster.create_db("app");
    cluster.psql(
        "app",
        "CREATE TABLE t (id int); INSERT INTO t SELECT generate_series(1, 100);",
    );
    let dir = tempfile::tempdir().unwrap();
    let catalog_url = format!("postgres://postgres@127.0.0.1:{}/catalog", cluster.port);
    let svc = Service::try_start(
        dir.path().join("data"),
        &["--catalog", &catalog_url],
        &[("PGPASSWORD", PASSWORD)],
    )
    .unwrap();
    svc.ok(&["databases:add", "app", &cluster.url("app")]);
    let out = svc.ok(&["backups:capture", "app"]);
    assert!(out.contains("b001"), "{out}");
    svc.wait_state("b001", &["succeeded"]);
    let list = svc.ok(&["backups"]);
    assert!(list.contains("b001"), "{list}");
    // It is all in the PostgreSQL catalog, and no SQLite catalog was made.
    assert_eq!(
        cluster
            .psql("catalog", "SELECT state FROM transfers WHERE id = 'b001'")
            .trim(),
        "succeeded"
    );
    assert_eq!(
        cluster.psql("catalog", "SELECT name FROM databases").trim(),
        "app"
    );
    assert!(!svc.data_dir.join("catalog.db").exists());
    // The service's own log names the catalog, never its password.
    drop(svc);
    let log = std::fs::read_to_string(dir.path().join("data.stderr.log")).unwrap();
    assert!(log.contains("PostgreSQL catalog"), "{log}");
    assert!(!log.contains(PASSWORD), "{log}");
}

#[test]
fn a_password_in_the_catalog_flag_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let err = Service::try_start(
        dir.path().join("data"),
        &[
            "--catalog",
            "postgres://postgres:Flag-pw-123@127.0.0.1:1/catalog",
        ],
        &[],
    )
    .err()
    .unwrap();
    assert!(err.contains("PGPASSWORD"), "{err}");
    assert!(!err.contains("Flag-pw-123"), "{err}");
}

#[test]
fn the_configuration_files_catalog_url_may_hold_the_password_and_the_log_never_shows_it() {
    let cluster = Cluster::start();
    cluster.create_db("catalog");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let config = data.join("pgbackups.toml");
    std::fs::write(
        &config,
        format!("catalog = \"{}\"\n", cluster.url("catalog")),
    )
    .unwrap();
    let svc = Service::try_start(data, &[], &[]).unwrap();
    svc.ok(&["databases:add", "main", &cluster.url("postgres")]);
    assert_eq!(
        cluster.psql("catalog", "SELECT name FROM databases").trim(),
        "main"
    );
    let listed = svc.ok(&["databases"]);
    assert!(!listed.contains(PASSWORD), "{listed}");
    drop(svc);
    let log = std::fs::read_to_string(dir.path().join("data.stderr.log")).unwrap();
    assert!(
        log.contains("PostgreSQL catalog: postgres://postgres:***@127.0.0.1"),
        "{log}"
    );
    assert!(!log.contains(PASSWORD), "{log}");
}

#[test]
fn a_one_node_sqlite_catalog_moves_into_postgresql_and_the_service_goes_on_there() {
    let cluster = Cluster::start();
    cluster.create_db("catalog");
    cluster.create_db("app");
    cluster.psql(
        "app",
        "CREATE TABLE t (id int); INSERT INTO t SELECT generate_series(1, 10);",
    );
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let svc = Service::start_in(data.clone());
    svc.ok(&["databases:add", "app", &cluster.url("app")]);
    svc.ok(&["backups:capture", "app"]);
    svc.wait_state("b001", &["succeeded"]);
    drop(svc);

    let catalog_url = format!("postgres://postgres@127.0.0.1:{}/catalog", cluster.port);
    let sqlite = data.join("catalog.db");
    let migrate = |extra: &[&str]| {
        std::process::Command::new(common::binary())
            .args(["catalog:migrate", "--from-sqlite", sqlite.to_str().unwrap()])
            .args([
                "--data-dir",
                data.to_str().unwrap(),
                "--catalog",
                &catalog_url,
            ])
            .args(extra)
            .env("PGPASSWORD", PASSWORD)
            .output()
            .unwrap()
    };
    let out = migrate(&[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("Copied 1 databases, 1 transfers"),
        "{stdout}"
    );
    // Twice is refused: the target is no longer empty.
    let again = migrate(&[]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already holds"));

    // The same data directory (its key opens the sealed URL) on the PostgreSQL catalog.
    let svc = Service::try_start(
        data.clone(),
        &["--catalog", &catalog_url],
        &[("PGPASSWORD", PASSWORD)],
    )
    .unwrap();
    assert!(svc.ok(&["backups"]).contains("b001"));
    let out = svc.ok(&["backups:capture", "app"]);
    assert!(out.contains("b002"), "{out}");
    svc.wait_state("b002", &["succeeded"]);
    assert_eq!(
        cluster
            .psql(
                "catalog",
                "SELECT count(*) FROM transfers WHERE state = 'succeeded'"
            )
            .trim(),
        "2"
    );
}

#[test]
fn connections_lost_to_a_server_restart_are_replaced() {
    let cluster = Cluster::start();
    cluster.create_db("restarted");
    let catalog = PgCatalog::open(&target(&cluster, "restarted")).unwrap();
    assert_eq!(catalog.claim_transfer_id('b').unwrap().to_string(), "b001");
    cluster.restart();
    // The pooled connection died with the server: the next call opens a new one.
    assert_eq!(catalog.claim_transfer_id('b').unwrap().to_string(), "b002");
    assert_eq!(catalog.claim_transfer_id('b').unwrap().to_string(), "b003");
}

/// A certificate authority and a server certificate it signed for 127.0.0.1, made with the
/// openssl tool in `dir` (readable by the server's OS user); returns the CA's PEM path and
/// the server's `postgresql.conf` lines.
fn tls_files(dir: &std::path::Path) -> (std::path::PathBuf, Vec<String>) {
    use std::os::unix::fs::PermissionsExt;
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    run(&[
        &["req", "-x509"],
        &ec[..],
        &[
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-subj",
            "/CN=pgbackups test CA",
            "-days",
            "2",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    ]
    .concat());
    run(&[
        &["req"],
        &ec[..],
        &[
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    ]
    .concat());
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    for f in ["server.crt", "server.key"] {
        common::give_to_server_user(&dir.join(f));
    }
    std::fs::set_permissions(
        dir.join("server.key"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let conf = vec![
        "ssl = on".to_string(),
        format!("ssl_cert_file = '{}'", dir.join("server.crt").display()),
        format!("ssl_key_file = '{}'", dir.join("server.key").display()),
    ];
    (dir.join("ca.crt"), conf)
}

#[test]
fn tls_to_the_catalog_follows_sslmode_as_libpq_does() {
    let certs = tempfile::tempdir().unwrap();
    let (ca, conf) = tls_files(certs.path());
    let conf: Vec<&str> = conf.iter().map(String::as_str).collect();
    let cluster = Cluster::start_with(&conf);
    cluster.create_db("tls");
    let at = |host: &str, query: &str| {
        PgTarget::new(
            format!("postgres://postgres@{host}:{}/tls?{query}", cluster.port),
            Some(PASSWORD.to_string()),
        )
    };
    let ca = ca.display().to_string();
    // The chain and the name checked: connected, and encrypted.
    let full = PgCatalog::open(&at(
        "127.0.0.1",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    ))
    .unwrap();
    assert_eq!(full.claim_transfer_id('b').unwrap().to_string(), "b001");
    let encrypted = cluster.psql(
        "postgres",
        "SELECT bool_and(s.ssl) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.application_name = 'pgbackups'",
    );
    assert_eq!(encrypted.trim(), "t");
    // Another name than the certificate's: verify-full refuses, verify-ca does not check it.
    let err = PgCatalog::open(&at(
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    ))
    .err()
    .unwrap();
    assert!(matches!(err, CatalogError::Unreachable { .. }), "{err:?}");
    PgCatalog::open(&at(
        "localhost",
        &format!("sslmode=verify-ca&sslrootcert={ca}"),
    ))
    .unwrap();
    // Another authority: refused.
    let other = tempfile::tempdir().unwrap();
    let (other_ca, _) = tls_files(other.path());
    let err = PgCatalog::open(&at(
        "127.0.0.1",
        &format!("sslmode=verify-ca&sslrootcert={}", other_ca.display()),
    ))
    .err()
    .unwrap();
    assert!(err.to_string().contains("certificate"), "{err}");
    // require: encrypted without checking, as libpq; verify-* without a root: told what to add.
    PgCatalog::open(&at("localhost", "sslmode=require")).unwrap();
    let err = PgCatalog::open(&at("127.0.0.1", "sslmode=verify-full"))
        .err()
        .unwrap();
    assert!(err.to_string().contains("sslrootcert"), "{err}");
    let err = PgCatalog::open(&at("127.0.0.1", "sslmode=sometimes"))
        .err()
        .unwrap();
    assert!(err.to_string().contains("verify-full"), "{err}");
}

#[test]
fn require_fails_against_a_server_without_tls_and_prefer_goes_on_without() {
    let cluster = Cluster::start();
    let at = |query: &str| {
        PgTarget::new(
            format!(
                "postgres://postgres@127.0.0.1:{}/postgres?{query}",
                cluster.port
            ),
            Some(PASSWORD.to_string()),
        )
    };
    assert!(PgCatalog::open(&at("sslmode=require")).is_err());
    PgCatalog::open(&at("sslmode=prefer&application_name=x")).unwrap();
    PgCatalog::open(&at("sslmode=disable")).unwrap();
}
