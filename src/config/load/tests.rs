//! Tests of the layering (defaults < file < environment < flags) and of the load errors.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

use super::{Flags, load_with};
use crate::config::{ConfigError, DEFAULT_LISTEN, ServiceConfig, Tuning};

/// Loads with the data directory `dir`, the environment `vars` and `flags`.
fn load_in(dir: &Path, vars: &[(&str, &str)], flags: Flags) -> Result<ServiceConfig, ConfigError> {
    let vars: HashMap<String, OsString> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), OsString::from(v)))
        .collect();
    let flags = Flags {
        data_dir: Some(dir.to_path_buf()),
        ..flags
    };
    load_with(flags, &|name| vars.get(name).cloned())
}

fn write_file(dir: &Path, text: &str) {
    std::fs::write(dir.join("pgbackups.toml"), text).unwrap();
}

#[test]
fn defaults_without_file_environment_or_flags() {
    let dir = tempfile::tempdir().unwrap();
    let c = load_in(dir.path(), &[], Flags::default()).unwrap();
    assert_eq!(c.data_dir, dir.path());
    assert_eq!(c.listen, DEFAULT_LISTEN);
    assert_eq!(c.max_running, 4);
    assert_eq!(c.tuning, Tuning::default());
    assert!(c.pg_bin_dirs.is_empty());
    assert!(c.storage.url.is_none() && c.storage.endpoint.is_none());
    assert!(c.test_clock.is_none() && c.test_holds.is_empty());
    assert_eq!(c.download_limits.max_bytes, 1 << 40);
}

#[test]
fn the_file_overrides_the_defaults_and_flags_override_the_file() {
    let dir = tempfile::tempdir().unwrap();
    write_file(
        dir.path(),
        r#"
listen = "127.0.0.1:1"
max_running = 9
notify_url = "http://hook"
[storage]
url = "s3://file-bucket"
region = "file-region"
[encryption]
recipients = ["age1file"]
identity_file = "/file/key"
"#,
    );
    let c = load_in(dir.path(), &[], Flags::default()).unwrap();
    assert_eq!(c.listen, "127.0.0.1:1");
    assert_eq!(c.max_running, 9);
    assert_eq!(c.notify_url.as_deref(), Some("http://hook"));
    assert_eq!(c.storage.url.as_deref(), Some("s3://file-bucket"));
    assert_eq!(c.storage.region.as_deref(), Some("file-region"));
    assert_eq!(
        c.encryption.identity_file.as_deref(),
        Some(Path::new("/file/key"))
    );

    let flags = Flags {
        listen: Some("127.0.0.1:2".into()),
        max_running: Some(1),
        storage: Some("file:///flag".into()),
        storage_region: Some("flag-region".into()),
        encrypt_to: vec!["age1flag".into()],
        identity_file: Some("/flag/key".into()),
        ..Flags::default()
    };
    let c = load_in(dir.path(), &[], flags).unwrap();
    assert_eq!(c.listen, "127.0.0.1:2");
    assert_eq!(c.max_running, 1);
    assert_eq!(c.notify_url.as_deref(), Some("http://hook"));
    assert_eq!(c.storage.url.as_deref(), Some("file:///flag"));
    assert_eq!(c.storage.region.as_deref(), Some("flag-region"));
    // Recipients add up; a single file is replaced.
    assert_eq!(c.encryption.recipients, ["age1file", "age1flag"]);
    assert_eq!(
        c.encryption.identity_file.as_deref(),
        Some(Path::new("/flag/key"))
    );
}

#[test]
fn the_environment_overrides_the_file_for_tuning_knobs() {
    let dir = tempfile::tempdir().unwrap();
    write_file(
        dir.path(),
        r#"
pg_bin = ["/file/bin"]
[tuning]
lag_limit_secs = 10
base_retry_secs = 11
partial_secs = 12
base_wal_wait_secs = 13
storage_sweep_secs = 14
url_max_bytes = 15
url_read_timeout_secs = 16
"#,
    );
    let c = load_in(dir.path(), &[], Flags::default()).unwrap();
    let s = Duration::from_secs;
    assert_eq!(
        c.tuning,
        Tuning {
            lag_limit: s(10),
            base_retry: s(11),
            partial_every: s(12),
            base_wal_wait: s(13),
            storage_sweep: s(14),
        }
    );
    assert_eq!(c.download_limits.max_bytes, 15);
    assert_eq!(c.download_limits.read_timeout, s(16));
    assert_eq!(c.pg_bin_dirs, [Path::new("/file/bin")]);

    let env = [
        ("PGBACKUPS_LAG_LIMIT_SECS", "20"),
        ("PGBACKUPS_BASE_RETRY_SECS", " 21 "),
        ("PGBACKUPS_PARTIAL_SECS", "22"),
        ("PGBACKUPS_BASE_WAL_WAIT_SECS", "23"),
        ("PGBACKUPS_STORAGE_SWEEP_SECS", "24"),
        ("PGBACKUPS_URL_MAX_BYTES", "25"),
        ("PGBACKUPS_URL_READ_TIMEOUT", "26"),
        ("PGBACKUPS_PG_BIN", "/env/a:/env/b"),
    ];
    let c = load_in(dir.path(), &env, Flags::default()).unwrap();
    assert_eq!(
        c.tuning,
        Tuning {
            lag_limit: s(20),
            base_retry: s(21),
            partial_every: s(22),
            base_wal_wait: s(23),
            storage_sweep: s(24),
        }
    );
    assert_eq!(c.download_limits.max_bytes, 25);
    assert_eq!(c.download_limits.read_timeout, s(26));
    assert_eq!(c.pg_bin_dirs, [Path::new("/env/a"), Path::new("/env/b")]);
}

#[test]
fn a_value_that_is_not_a_number_falls_through_to_the_layer_below() {
    let dir = tempfile::tempdir().unwrap();
    let env = [("PGBACKUPS_LAG_LIMIT_SECS", "soon")];
    let c = load_in(dir.path(), &env, Flags::default()).unwrap();
    assert_eq!(c.tuning.lag_limit, Duration::from_secs(300));
    write_file(dir.path(), "[tuning]\nlag_limit_secs = 7\n");
    let c = load_in(dir.path(), &env, Flags::default()).unwrap();
    assert_eq!(c.tuning.lag_limit, Duration::from_secs(7));
}

#[test]
fn knobs_keep_their_floors() {
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("PGBACKUPS_PARTIAL_SECS", "0"),
        ("PGBACKUPS_STORAGE_SWEEP_SECS", "0"),
        ("PGBACKUPS_URL_READ_TIMEOUT", "0"),
        ("PGBACKUPS_BASE_WAL_WAIT_SECS", "0"),
    ];
    let c = load_in(dir.path(), &env, Flags::default()).unwrap();
    assert_eq!(c.tuning.partial_every, Duration::from_secs(1));
    assert_eq!(c.tuning.storage_sweep, Duration::from_secs(60));
    assert_eq!(c.download_limits.read_timeout, Duration::from_secs(30));
    assert_eq!(c.tuning.base_wal_wait, Duration::ZERO);
}

#[test]
fn aws_endpoint_variables_are_a_default_below_the_file_and_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let env = [("AWS_ENDPOINT", "http://aws-endpoint")];
    let c = load_in(dir.path(), &env, Flags::default()).unwrap();
    assert_eq!(c.storage.endpoint.as_deref(), Some("http://aws-endpoint"));
    let env = [
        ("AWS_ENDPOINT_URL", "http://aws-endpoint-url"),
        ("AWS_ENDPOINT", "http://aws-endpoint"),
    ];
    let c = load_in(dir.path(), &env, Flags::default()).unwrap();
    assert_eq!(
        c.storage.endpoint.as_deref(),
        Some("http://aws-endpoint-url")
    );
    write_file(dir.path(), "[storage]\nendpoint = \"http://file\"\n");
    let c = load_in(dir.path(), &env, Flags::default()).unwrap();
    assert_eq!(c.storage.endpoint.as_deref(), Some("http://file"));
    let flags = Flags {
        storage_endpoint: Some("http://flag".into()),
        ..Flags::default()
    };
    let c = load_in(dir.path(), &env, flags).unwrap();
    assert_eq!(c.storage.endpoint.as_deref(), Some("http://flag"));
}

#[test]
fn test_hooks_are_read_with_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("PGBACKUPS_TEST_CLOCK", "2026-03-08T09:59:00Z,60"),
        ("PGBACKUPS_TEST_HOLD", " delete, ,before-empty "),
    ];
    let c = load_in(dir.path(), &env, Flags::default()).unwrap();
    assert_eq!(c.test_clock.as_deref(), Some("2026-03-08T09:59:00Z,60"));
    if cfg!(debug_assertions) {
        assert_eq!(c.test_holds, ["delete", "before-empty"]);
    } else {
        assert!(c.test_holds.is_empty());
    }
    let c = load_in(
        dir.path(),
        &[("PGBACKUPS_TEST_CLOCK", "")],
        Flags::default(),
    )
    .unwrap();
    assert!(c.test_clock.is_none());
}

#[test]
fn the_data_directory_defaults_from_the_environment() {
    let dir = |vars: &[(&str, &str)]| {
        let vars: HashMap<&str, OsString> = vars.iter().map(|(k, v)| (*k, v.into())).collect();
        super::data_dir_from(&|name| vars.get(name).cloned())
    };
    assert_eq!(
        dir(&[("PGBACKUPS_DATA_DIR", "/d"), ("HOME", "/h")]),
        Path::new("/d")
    );
    assert_eq!(
        dir(&[
            ("PGBACKUPS_DATA_DIR", ""),
            ("XDG_DATA_HOME", "/x"),
            ("HOME", "/h")
        ]),
        Path::new("/x/pgbackups")
    );
    assert_eq!(
        dir(&[("HOME", "/h")]),
        Path::new("/h/.local/share/pgbackups")
    );
}

#[test]
fn a_named_file_must_exist_the_default_one_need_not() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.toml");
    let flags = Flags {
        config: Some(missing.clone()),
        ..Flags::default()
    };
    let e = load_in(dir.path(), &[], flags).unwrap_err();
    match &e {
        ConfigError::Read { path, source } => {
            assert_eq!(path, &missing);
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        other => panic!("expected a read error, got {other:?}"),
    }
    assert!(e.to_string().starts_with("cannot read configuration file "));
    assert!(std::error::Error::source(&e).is_some());
    assert!(load_in(dir.path(), &[], Flags::default()).is_ok());
}

#[test]
fn an_invalid_file_names_itself_and_keeps_the_parse_error() {
    let dir = tempfile::tempdir().unwrap();
    for text in [
        "listen = ",
        "lisen = \"x\"",
        "[tuning]\nlag_limit = 3\n",
        "max_running = \"4\"",
    ] {
        write_file(dir.path(), text);
        let e = load_in(dir.path(), &[], Flags::default()).unwrap_err();
        let ConfigError::Invalid { path, .. } = &e else {
            panic!("expected an invalid-file error for {text:?}, got {e:?}");
        };
        assert_eq!(path, &dir.path().join("pgbackups.toml"));
        assert!(e.to_string().contains("is not valid"), "{text:?}: {e}");
        assert!(std::error::Error::source(&e).is_some());
    }
}

#[test]
fn an_invalid_file_never_quotes_its_lines() {
    // The file may hold store credentials: a typo on such a line must not print the secret.
    let dir = tempfile::tempdir().unwrap();
    write_file(
        dir.path(),
        "[storage.options]\naws_secret_access_key = \"s3cr3tVALUE\n",
    );
    let e = load_in(dir.path(), &[], Flags::default()).unwrap_err();
    let mut shown = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        shown.push_str(&format!("\n{s} {s:?}"));
        source = s.source();
    }
    assert!(!shown.contains("s3cr3t"), "{shown}");
    assert!(shown.contains("line 2"), "{shown}");
}
