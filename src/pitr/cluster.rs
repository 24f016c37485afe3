//! A new cluster from an archive (`rollback`, `fork`): the `restore_command` that fetches its
//! WAL (from the store, or through the service with a token for this archive), the unpacked
//! and configured data directory handed to the OS user that will run it, and starting it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::rollback::{Recovery, RecoveryTarget, RollbackPlan, TimelineChoice, rollback};
use super::start::{StartError, Started, start_and_wait};
use crate::storage::Storage;

/// Where the WAL token of a cluster that fetches through the service is kept, in its data
/// directory (never in the restore_command, which `ps` shows).
pub const WAL_TOKEN_FILE: &str = "pgbackups-wal-token";

/// Why a new cluster could not be made or started.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// Root asked for `--start`, but root owns the directory the cluster goes into.
    #[error(
        "--start runs the server as the owner of {data_dir} (PostgreSQL refuses to run as root), but root owns {owned}: create the data directory owned by the OS user the server should run as (for example `install -d -o postgres -m 700 {data_dir}`), then roll back again",
        data_dir = data_dir.display(),
        owned = owned.display()
    )]
    RootOwned { data_dir: PathBuf, owned: PathBuf },
    /// A local file could not be read or written.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// Unpacking the base backup or configuring recovery failed.
    #[error(transparent)]
    Rollback(Box<dyn std::error::Error + Send + Sync>),
    /// No `pg_ctl` to start it with.
    #[error(transparent)]
    Tools(Box<dyn std::error::Error + Send + Sync>),
    #[error(transparent)]
    Start(#[from] StartError),
}

fn io(context: String) -> impl FnOnce(std::io::Error) -> ClusterError {
    move |source| ClusterError::Io { context, source }
}

/// The OS user a server started by root runs as.
#[derive(Clone, Copy, Debug)]
pub struct Owner {
    pub uid: nix::unistd::Uid,
    pub gid: nix::unistd::Gid,
}

/// Where the new cluster's recovery reads its WAL.
#[derive(Clone, Debug)]
pub enum WalSource {
    /// The store, as `pgbackups wal-fetch` opens it: pgbackups' data directory and the flags
    /// that name the store (absolute paths).
    Store {
        data_dir: PathBuf,
        store_args: Vec<String>,
    },
    /// The service at `url`, with `token`: a WAL token that reads this archive and nothing else.
    Service { url: String, token: String },
}

/// A cluster to make from the archive of `name`.
#[derive(Clone, Debug)]
pub struct NewCluster {
    pub name: String,
    pub recovery: Recovery,
    /// Its data directory (absolute): must not exist, or be empty.
    pub data_dir: PathBuf,
    /// The port it listens on (default: the backed-up configuration's).
    pub port: Option<u16>,
    pub wal: WalSource,
    /// Who runs it, when root starts it.
    pub run_as: Option<Owner>,
    /// Where to look for `pg_ctl` first (`PGBACKUPS_PG_BIN`).
    pub pg_bin_dirs: Vec<PathBuf>,
}

/// What recovery is asked for, with every installed `pg_waldump` to find where the archive
/// ends before anything is unpacked.
pub fn recovery(
    target: RecoveryTarget,
    timeline: TimelineChoice,
    base_backup: Option<String>,
) -> Recovery {
    Recovery {
        target,
        timeline,
        base_backup,
        waldumps: crate::pg::PgTools::discover(&[]).all(crate::pg::PgTool::WalDump),
    }
}

/// Who runs a cluster in `data_dir` that is to be started: when root starts it, the owner
/// of `data_dir` (or of the directory it will be created in), since PostgreSQL refuses to
/// run as root. Checked before anything is unpacked.
pub fn owner_for_start(data_dir: &Path, start: bool) -> Result<Option<Owner>, ClusterError> {
    if start && nix::unistd::Uid::effective().is_root() {
        server_owner(data_dir).map(Some)
    } else {
        Ok(None)
    }
}

/// The owner of `data_dir`, or of the directory it will be created in; never root.
fn server_owner(data_dir: &Path) -> Result<Owner, ClusterError> {
    use std::os::unix::fs::MetadataExt;
    let existing = std::iter::successors(Some(data_dir), |p| p.parent())
        .find(|p| p.exists())
        .unwrap_or(data_dir);
    let meta =
        std::fs::metadata(existing).map_err(io(format!("cannot read {}", existing.display())))?;
    if meta.uid() == 0 {
        return Err(ClusterError::RootOwned {
            data_dir: data_dir.to_path_buf(),
            owned: existing.to_path_buf(),
        });
    }
    let uid = nix::unistd::Uid::from_raw(meta.uid());
    let gid = nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map(|u| u.gid)
        .unwrap_or(nix::unistd::Gid::from_raw(meta.gid()));
    Ok(Owner { uid, gid })
}

/// The restore_command of the new cluster, without `%f %p` (the rollback adds them, and the
/// segment size for prefetching): `exe wal-fetch --name NAME` and where the WAL comes from.
/// The server runs it as its own user, maybe with another HOME: every setting is spelled out,
/// with absolute paths; `%` is doubled, or the server would substitute it.
pub fn restore_command(exe: &Path, c: &NewCluster) -> String {
    let mut words = vec![
        exe.display().to_string(),
        "wal-fetch".into(),
        "--name".into(),
        c.name.clone(),
    ];
    match &c.wal {
        WalSource::Service { url, .. } => words.extend([
            "--service".into(),
            url.clone(),
            "--token-file".into(),
            c.data_dir.join(WAL_TOKEN_FILE).display().to_string(),
        ]),
        WalSource::Store {
            data_dir,
            store_args,
        } => {
            words.extend(["--data-dir".into(), data_dir.display().to_string()]);
            words.extend(store_args.iter().cloned());
        }
    }
    words
        .iter()
        .map(|w| sh_quote(&w.replace('%', "%%")))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A word for /bin/sh: `'it'"'"'s'`.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\"'\"'"))
}

/// Unpacks the right base backup into the new cluster's directory and configures recovery,
/// with `exe` (this program) as its restore_command.
pub fn unpack(
    storage: &dyn Storage,
    c: &NewCluster,
    exe: &Path,
) -> Result<RollbackPlan, ClusterError> {
    let command = restore_command(exe, c);
    rollback(storage, &c.name, &c.recovery, &c.data_dir, &command, c.port)
        .map_err(|e| ClusterError::Rollback(e.into()))
}

/// Finishes an unpacked cluster: its WAL token in place, and everything handed to the OS
/// user that will run it.
pub fn hand_over(c: &NewCluster) -> Result<(), ClusterError> {
    if let WalSource::Service { token, .. } = &c.wal {
        write_private(&c.data_dir.join(WAL_TOKEN_FILE), token.as_bytes())?;
    }
    if let Some(owner) = &c.run_as {
        give_to(&c.data_dir, owner)?;
    }
    Ok(())
}

/// Starts the cluster with the newest `pg_ctl` and waits up to `timeout` until recovery has
/// reached the target and it accepts writes (progress on stderr).
pub async fn start(c: &NewCluster, timeout: Duration) -> Result<Started, ClusterError> {
    let tools = crate::pg::PgTools::discover(&c.pg_bin_dirs);
    let pg_ctl = tools
        .newest(crate::pg::PgTool::Ctl)
        .map_err(|e| ClusterError::Tools(e.into()))?;
    let run_as = c.run_as.map(|o| (o.uid, o.gid));
    Ok(start_and_wait(&c.name, run_as, &pg_ctl, &c.data_dir, timeout).await?)
}

/// Hands the unpacked data directory to the server's OS user.
fn give_to(dir: &Path, owner: &Owner) -> Result<(), ClusterError> {
    fn walk(p: &Path, owner: &Owner) -> std::io::Result<()> {
        std::os::unix::fs::lchown(p, Some(owner.uid.as_raw()), Some(owner.gid.as_raw()))?;
        if std::fs::symlink_metadata(p)?.is_dir() {
            for e in std::fs::read_dir(p)? {
                walk(&e?.path(), owner)?;
            }
        }
        Ok(())
    }
    walk(dir, owner).map_err(io(format!(
        "cannot hand {} to the server's OS user",
        dir.display()
    )))
}

/// Writes a file only its owner may read, in place of one the base backup may have brought
/// (a cluster that was itself recovered through the service).
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), ClusterError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(io(format!("cannot replace {}", path.display()))(e));
        }
        _ => {}
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(bytes))
        .map_err(io(format!("cannot write {}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(wal: WalSource) -> NewCluster {
        NewCluster {
            name: "main".into(),
            recovery: Recovery {
                target: RecoveryTarget::Latest,
                timeline: TimelineChoice::Latest,
                base_backup: None,
                waldumps: vec![],
            },
            data_dir: "/srv/new 100%".into(),
            port: None,
            wal,
            run_as: None,
            pg_bin_dirs: vec![],
        }
    }

    #[test]
    fn restore_command_from_the_store() {
        let c = cluster(WalSource::Store {
            data_dir: "/var/lib/pgbackups".into(),
            store_args: vec!["--storage".into(), "s3://b/it's".into()],
        });
        assert_eq!(
            restore_command(Path::new("/usr/bin/pgbackups"), &c),
            "'/usr/bin/pgbackups' 'wal-fetch' '--name' 'main' '--data-dir' '/var/lib/pgbackups' '--storage' 's3://b/it'\"'\"'s'"
        );
    }

    #[test]
    fn restore_command_through_the_service_names_the_token_file_not_the_token() {
        let c = cluster(WalSource::Service {
            url: "http://127.0.0.1:7117".into(),
            token: "s3cret".into(),
        });
        let command = restore_command(Path::new("/usr/bin/pgbackups"), &c);
        assert_eq!(
            command,
            "'/usr/bin/pgbackups' 'wal-fetch' '--name' 'main' '--service' 'http://127.0.0.1:7117' '--token-file' '/srv/new 100%%/pgbackups-wal-token'"
        );
        assert!(!command.contains("s3cret"));
    }
}
