//! Rolling a cluster back to a moment: the newest base backup before the target is unpacked
//! into a new data directory, and PostgreSQL is configured to replay the archived WAL
//! (`restore_command` = `pgbackups wal-fetch`) up to the target, then promote.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

use jiff::Timestamp;

use super::end::{Timeline, archive_end};
use super::unpack::UnpackError;
use super::{BaseBackup, base_backups, parse_lsn};
use crate::pg::wal_names::Lsn;
use crate::storage::{Storage, StorageError};

/// Why a rollback was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum RollbackError {
    #[error(
        "{0} has no base backups in the store: take one with `pgbackups base-backup --name {0}`"
    )]
    NoBaseBackups(String),
    /// The target cannot be reached from what the archive holds (outside the window, past
    /// its end, across a gap, an unknown base backup): the message says what to do instead.
    #[error("{0}")]
    Unreachable(String),
    #[error("{0} is not empty: give a new directory for the rolled-back cluster")]
    NotEmpty(std::path::PathBuf),
    #[error(transparent)]
    Store(#[from] StorageError),
    /// Reading where the archive ends failed.
    #[error(transparent)]
    ArchiveEnd(#[from] super::end::ArchiveEndError),
    #[error(transparent)]
    Unpack(#[from] UnpackError),
    /// A file of the new data directory could not be written.
    #[error("cannot {what}: {source}")]
    Local {
        what: String,
        #[source]
        source: io::Error,
    },
}

/// A [`RollbackError::Local`] for doing `what` (such as `write /x/postgresql.auto.conf`).
fn local(what: String) -> impl FnOnce(io::Error) -> RollbackError {
    move |source| RollbackError::Local { what, source }
}

/// Where recovery stops.
#[derive(Clone, Debug)]
pub enum RecoveryTarget {
    /// Just after this moment (`recovery_target_time`, inclusive).
    Time(Timestamp),
    /// Just after this WAL position (`recovery_target_lsn`).
    Lsn(Lsn),
    /// Just after this transaction commits (`recovery_target_xid`).
    Xid(u64),
    /// At the restore point of this name (`pg_create_restore_point`; `recovery_target_name`):
    /// the first one of that name after the oldest base backup.
    RestorePoint(String),
    /// As soon as a base backup is consistent (`recovery_target = 'immediate'`): exactly what
    /// the base backup holds.
    Immediate,
    /// The end of the archive (a fork).
    Latest,
}

/// Which timeline recovery follows (`recovery_target_timeline`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimelineChoice {
    /// The newest in the archive (the default, as PostgreSQL's).
    Latest,
    /// The base backup's own.
    Current,
    Id(u32),
}

/// Where recovery goes: the target, the timeline, and for `--immediate` the base backup.
#[derive(Clone, Debug)]
pub struct Recovery {
    pub target: RecoveryTarget,
    pub timeline: TimelineChoice,
    /// The base backup to start from (its id); only with [`RecoveryTarget::Immediate`].
    pub base_backup: Option<String>,
    /// Every installed `pg_waldump`, to read where the archive ends before unpacking.
    pub waldumps: Vec<std::path::PathBuf>,
}

/// What a rollback did.
#[derive(Debug)]
pub struct RollbackPlan {
    pub base: BaseBackup,
    /// The lines added to `postgresql.auto.conf`.
    pub settings: Vec<String>,
}

/// Unpacks the right base backup of `name` into `data_dir` (which must not exist or be empty)
/// and configures recovery to `target`, with `restore_command` (the `wal-fetch` command
/// without `%f %p`) fetching WAL.
pub fn rollback(
    storage: &dyn Storage,
    name: &str,
    recovery: &Recovery,
    data_dir: &Path,
    restore_command: &str,
    port: Option<u16>,
) -> Result<RollbackPlan, RollbackError> {
    let all = base_backups(storage, name)?;
    let (Some(oldest), Some(newest)) = (all.first(), all.last()) else {
        return Err(RollbackError::NoBaseBackups(name.to_string()));
    };
    let window = format!(
        "{name} can be rolled back to moments from {} (the end of its oldest base backup) to the end of its archived WAL",
        oldest.finished_at
    );
    let target = &recovery.target;
    let base = match target {
        RecoveryTarget::Time(t) => all
            .iter()
            .rev()
            .find(|b| b.finished_at <= *t)
            .ok_or_else(|| {
                RollbackError::Unreachable(format!("{t} is outside the window: {window}"))
            })?,
        RecoveryTarget::Lsn(want) => all
            .iter()
            .rev()
            .find(|b| b.stop_lsn <= *want)
            .ok_or_else(|| {
                RollbackError::Unreachable(format!(
                    "LSN {want} is before the end of the oldest base backup ({}): {window}",
                    oldest.stop_lsn
                ))
            })?,
        // Which base backup a transaction follows is not recorded: replay from the oldest.
        RecoveryTarget::Xid(_) => oldest,
        // Where a restore point lies is not recorded either; recovery from the oldest base
        // backup meets every restore point after it.
        RecoveryTarget::RestorePoint(_) => oldest,
        RecoveryTarget::Immediate => match &recovery.base_backup {
            None => newest,
            Some(id) => all.iter().find(|b| &b.id == id).ok_or_else(|| {
                RollbackError::Unreachable(format!(
                    "{name} has no base backup {id}: its base backups are {} (`pgbackups protection:info --name {name}` lists them)",
                    all.iter().map(|b| b.id.as_str()).collect::<Vec<_>>().join(", ")
                ))
            })?,
        },
        RecoveryTarget::Latest => newest,
    };
    refuse_past_the_end(storage, name, recovery, base)?;
    // Recovery stops at the first missing segment and, without a target past it, promotes
    // there as if the archive ended: refuse rather than hand back a silently shorter history.
    let gaps = super::gaps_after(storage, base)?;
    if let Some((from, to)) = gaps.first() {
        return Err(RollbackError::Unreachable(format!(
            "the WAL archive of {name} has a gap after base backup {}: {from} .. {to} are missing, so recovery would stop there and promote early; put the missing files back into the archive, or take a new base backup (rollbacks from it start after the gap)",
            base.id
        )));
    }
    prepare_dir(data_dir)?;
    let unpacked = super::unpack::unpack(storage, base, data_dir);
    if let Err(e) = unpacked {
        clear_dir(data_dir);
        return Err(e.into());
    }
    let settings = recovery_settings(recovery, restore_command, port, base);
    let auto = data_dir.join("postgresql.auto.conf");
    let mut conf = fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(&auto)
        .map_err(local(format!("write {}", auto.display())))?;
    let mut text = String::from("\n");
    for line in &settings {
        text.push_str(line);
        text.push('\n');
    }
    // No fsync here or of the unpacked files: the base backup's control file says the
    // cluster was not shut down cleanly, so PostgreSQL syncs the whole data directory before
    // recovery starts (an fsync here would only wait for gigabytes of tar's writes).
    conf.write_all(text.as_bytes())
        .map_err(local(format!("write {}", auto.display())))?;
    let _ = fs::remove_file(data_dir.join("standby.signal"));
    fs::write(data_dir.join("recovery.signal"), b"")
        .map_err(local("write recovery.signal".to_string()))?;
    Ok(RollbackPlan {
        base: base.clone(),
        settings,
    })
}

/// Refuses a time or LSN target after the end of the archive (see `end.rs`): recovery would
/// replay everything, then stop with "recovery ended before configured recovery target was
/// reached".
fn refuse_past_the_end(
    storage: &dyn Storage,
    name: &str,
    recovery: &Recovery,
    base: &BaseBackup,
) -> Result<(), RollbackError> {
    if !matches!(
        recovery.target,
        RecoveryTarget::Time(_) | RecoveryTarget::Lsn(_)
    ) {
        return Ok(());
    }
    let timeline = match recovery.timeline {
        TimelineChoice::Latest => Timeline::Latest,
        TimelineChoice::Current => Timeline::Id(base.timeline),
        TimelineChoice::Id(t) => Timeline::Id(t),
    };
    let Some(end) = archive_end(storage, name, timeline, &recovery.waldumps)
        .map_err(RollbackError::ArchiveEnd)?
    else {
        return Ok(());
    };
    let last_xact = end
        .last_xact
        .as_ref()
        .map(|(t, lsn)| format!("its last transaction ended at {t} (LSN {lsn})"));
    let fork = format!("or fork (`pgbackups fork {name}`) to recover everything the archive holds");
    match &recovery.target {
        RecoveryTarget::Time(t) => match &end.last_xact {
            Some((last, _)) if t >= last => Err(RollbackError::Unreachable(format!(
                "{t} is past the end of the archive of {name}: {}, and its last WAL record starts at LSN {} (segment {}). Recovery stops at a moment only when it meets a transaction that ended after it, so it could never reach {t}. Give a moment before {last}, {fork}",
                last_xact.unwrap_or_default(),
                end.last_lsn,
                end.segment
            ))),
            _ => Ok(()),
        },
        RecoveryTarget::Lsn(l) => match parse_lsn(&end.last_lsn) {
            Some(last) if l.0 > last => Err(RollbackError::Unreachable(format!(
                "LSN {l} is past the end of the archive of {name}: its last WAL record starts at LSN {} (segment {}){}, so recovery could never reach {l}. Give an LSN up to {}, {fork}",
                end.last_lsn,
                end.segment,
                last_xact.map(|x| format!("; {x}")).unwrap_or_default(),
                end.last_lsn
            ))),
            _ => Ok(()),
        },
        _ => Ok(()),
    }
}

/// The `postgresql.auto.conf` lines of `recovery`.
fn recovery_settings(
    recovery: &Recovery,
    restore_command: &str,
    port: Option<u16>,
    base: &BaseBackup,
) -> Vec<String> {
    let target = &recovery.target;
    // A quoted value of the configuration file: `\` escaped and `'` doubled.
    let lit = |s: &str| format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"));
    let mut out = vec![
        format!(
            "# pgbackups: recovery from base backup {} of {}",
            base.id, base.name
        ),
        format!(
            "restore_command = {}",
            lit(&format!(
                "{restore_command} --segment-size {} %f %p",
                base.wal_segment_size
            ))
        ),
        // What wal-fetch prefetched and recovery did not use.
        format!(
            "recovery_end_command = {}",
            lit(&format!("rm -rf pg_wal/{}", crate::wal::PREFETCH_DIR))
        ),
    ];
    match target {
        RecoveryTarget::Time(t) => {
            // PostgreSQL's own timestamp form: it refuses RFC 3339's `T…Z` here.
            let pg_time = format!(
                "{}.{:06}+00",
                t.strftime("%Y-%m-%d %H:%M:%S"),
                t.subsec_microsecond()
            );
            out.push(format!("recovery_target_time = {}", lit(&pg_time)));
        }
        RecoveryTarget::Lsn(l) => {
            out.push(format!("recovery_target_lsn = {}", lit(&l.to_string())))
        }
        RecoveryTarget::Xid(x) => {
            out.push(format!("recovery_target_xid = {}", lit(&x.to_string())))
        }
        RecoveryTarget::RestorePoint(n) => out.push(format!("recovery_target_name = {}", lit(n))),
        RecoveryTarget::Immediate => out.push("recovery_target = 'immediate'".into()),
        RecoveryTarget::Latest => {}
    }
    if !matches!(target, RecoveryTarget::Latest) {
        out.push("recovery_target_action = 'promote'".into());
    }
    let timeline = match recovery.timeline {
        TimelineChoice::Latest => "latest".to_string(),
        TimelineChoice::Current => "current".to_string(),
        TimelineChoice::Id(t) => t.to_string(),
    };
    out.push(format!("recovery_target_timeline = {}", lit(&timeline)));
    if let Some(p) = port {
        out.push(format!("port = {p}"));
    }
    // The restored configuration may archive into the same name; a rolled-back copy must not
    // push its own, diverging WAL there.
    out.push("archive_mode = off".into());
    out
}

fn prepare_dir(dir: &Path) -> Result<(), RollbackError> {
    match fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(RollbackError::NotEmpty(dir.to_path_buf()));
            }
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
                .map_err(local(format!("make {} private", dir.display())))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(local(format!("create {}", dir.display()))),
        Err(e) => Err(local(format!("read {}", dir.display()))(e)),
    }
}

fn clear_dir(dir: &Path) {
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            let _ = if p.is_dir() {
                fs::remove_dir_all(&p)
            } else {
                fs::remove_file(&p)
            };
        }
    }
}
