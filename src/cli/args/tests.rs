//! Unit tests of args.rs.
use clap::Parser;

use super::wal::DATA_DIR_DEPRECATED;

use super::{BackupCommand, Cli, ClusterCommand, Command, TargetDir, TransferCommand};

fn target_dir(args: &[&str]) -> TargetDir {
    let cli = Cli::try_parse_from(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
    match cli.command {
        Command::Cluster(ClusterCommand::Rollback { target_dir, .. })
        | Command::Cluster(ClusterCommand::Fork { target_dir, .. }) => target_dir,
        other => panic!("{args:?} parsed as {other:?}"),
    }
}

#[test]
fn target_dir_and_the_old_data_dir_name_the_same_directory() {
    for command in [
        &["pgbackups", "rollback", "main", "--lsn", "0/3000000"][..],
        &["pgbackups", "fork", "main"][..],
    ] {
        let new = target_dir(&[command, &["--target-dir", "/tmp/new"]].concat());
        let old = target_dir(&[command, &["--data-dir", "/tmp/new"]].concat());
        assert_eq!(new.dir(), ("/tmp/new".into(), None));
        assert_eq!(old.dir(), ("/tmp/new".into(), Some(DATA_DIR_DEPRECATED)));
        assert_eq!(
            DATA_DIR_DEPRECATED,
            "--data-dir for rollback/fork is deprecated; use --target-dir"
        );
        // One of them is needed, and not both.
        assert!(Cli::try_parse_from(command).is_err());
        assert!(
            Cli::try_parse_from([command, &["--target-dir", "/a", "--data-dir", "/b"]].concat())
                .is_err()
        );
    }
}

fn parse(args: &[&str]) -> Command {
    Cli::try_parse_from(args)
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
        .command
}

/// Heroku's capture, restore and copy take `--wait-interval N` (seconds between polls):
/// a script that passes it runs here too, told on stderr that the flag does nothing.
#[test]
fn wait_interval_is_accepted_on_capture_restore_and_copy_as_on_heroku() {
    let note = "note: --wait-interval is ignored: the service reports a transfer's end as it happens, so there is no polling interval to set; drop the flag to silence this note";
    let capture = parse(&[
        "pgbackups",
        "backups:capture",
        "main",
        "--wait-interval",
        "3",
    ]);
    let Command::Backup(BackupCommand::Capture { wait_interval, .. }) = capture else {
        panic!("{capture:?}");
    };
    assert_eq!(wait_interval.note().as_deref(), Some(note));
    let restore = parse(&[
        "pgbackups",
        "backups:restore",
        "b001",
        "main",
        "--wait-interval=5",
    ]);
    let Command::Transfer(TransferCommand::Restore { wait_interval, .. }) = restore else {
        panic!("{restore:?}");
    };
    assert_eq!(wait_interval.note().as_deref(), Some(note));
    let copy = parse(&["pgbackups", "copy", "a", "b", "--wait-interval", "10"]);
    let Command::Transfer(TransferCommand::Copy { wait_interval, .. }) = copy else {
        panic!("{copy:?}");
    };
    assert_eq!(wait_interval.note().as_deref(), Some(note));
    // Without it, no note.
    let plain = parse(&["pgbackups", "backups:capture", "main"]);
    let Command::Backup(BackupCommand::Capture { wait_interval, .. }) = plain else {
        panic!("{plain:?}");
    };
    assert_eq!(wait_interval.note(), None);
    // Heroku's pull and push have no --wait-interval; neither do ours.
    assert!(Cli::try_parse_from(["pgbackups", "pull", "a", "b", "--wait-interval", "3"]).is_err());
}

/// Heroku's `pg:backups` accepts hidden -v, -c, -o, --wait-interval, --at and -q and
/// ignores them; `backups` does the same and says so.
#[test]
fn the_listing_accepts_and_ignores_heroku_pg_backups_hidden_flags() {
    let note = |args: &[&str]| {
        let all = [&["pgbackups", "backups"][..], args].concat();
        match parse(&all) {
            Command::Backup(BackupCommand::Backups { heroku, .. }) => heroku.note(),
            other => panic!("{all:?} parsed as {other:?}"),
        }
    };
    assert_eq!(note(&[]), None);
    assert_eq!(note(&["--json"]), None);
    assert_eq!(
        note(&["-v"]).as_deref(),
        Some(
            "note: --verbose is ignored: `heroku pg:backups` accepts it and does nothing with it either; drop it to silence this note"
        )
    );
    assert_eq!(
        note(&[
            "-v",
            "-c",
            "myapp",
            "-o",
            "x.dump",
            "--wait-interval",
            "3",
            "--at",
            "02:00 UTC",
            "-q",
            "--json"
        ])
        .as_deref(),
        Some(
            "note: --verbose, --confirm, --output, --wait-interval, --at and --quiet are ignored: `heroku pg:backups` accepts them and does nothing with them either; drop them to silence this note"
        )
    );
    assert!(
        note(&["--quiet", "--at", "x"])
            .is_some_and(|n| n.starts_with("note: --at and --quiet are ignored: "))
    );
    // Hidden: `backups --help` does not offer them.
    let help = {
        use clap::CommandFactory;
        let mut cmd = Cli::command();
        cmd.find_subcommand_mut("backups")
            .map(|c| c.render_help().to_string())
            .unwrap_or_default()
    };
    assert!(help.contains("--json"), "{help}");
    for flag in [
        "--verbose",
        "--quiet",
        "--at",
        "--wait-interval",
        "--output",
        "--confirm",
    ] {
        assert!(!help.contains(flag), "{flag} shown: {help}");
    }
}

/// Heroku's `pg:backups:restore` and `pg:backups:delete` take `-c` for `--confirm`; so do
/// ours, and where we give -v and -o a meaning, it stays.
#[test]
fn dash_c_confirms_restore_and_delete_and_our_own_short_flags_keep_their_meaning() {
    let restore = parse(&["pgbackups", "backups:restore", "b001", "main", "-c", "main"]);
    let Command::Transfer(TransferCommand::Restore { confirm, .. }) = restore else {
        panic!("{restore:?}");
    };
    assert_eq!(confirm.as_deref(), Some("main"));
    let delete = parse(&["pgbackups", "backups:delete", "b001", "-c", "main"]);
    let Command::Backup(BackupCommand::Delete { confirm, .. }) = delete else {
        panic!("{delete:?}");
    };
    assert_eq!(confirm.as_deref(), Some("main"));
    let capture = parse(&["pgbackups", "backups:capture", "main", "-v"]);
    let Command::Backup(BackupCommand::Capture { verbose, .. }) = capture else {
        panic!("{capture:?}");
    };
    assert!(verbose);
    let download = parse(&["pgbackups", "backups:download", "-o", "x.dump"]);
    let Command::Backup(BackupCommand::Download { output, .. }) = download else {
        panic!("{download:?}");
    };
    assert_eq!(output, std::path::PathBuf::from("x.dump"));
}

#[test]
fn the_command_line_is_consistent() {
    use clap::CommandFactory;
    Cli::command().debug_assert();
}
