//! Claims: the one place that decides which transfer may write a database and which backups
//! may be deleted.
//!
//! - **Targets.** A database being written (restore, copy, pull, push, the swap of an atomic
//!   restore) is held by one transfer at a time. The hold is taken when the request is
//!   accepted, under a key read off the URL (so a registered name and a URL spelling of the
//!   same database meet: `localhost` and `127.0.0.1`, a default port written out or not), and
//!   again, before the target is touched, under the identity the server itself reports (so
//!   two host names of one server meet too). A second writer is refused at once, naming the
//!   first.
//! - **Backups.** A backup being read (restored, downloaded, verified) cannot be deleted, and
//!   a backup being deleted cannot start being read; two deletes of one backup cannot both
//!   succeed. Both sides ask here, under one lock, so no interleaving slips between a check
//!   and its act.
//!
//! Holds are RAII guards: dropping one releases it, however the transfer or request ended.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::catalog::TransferId;
use crate::pg::PgUrl;

/// Why a claim was refused.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    #[error(
        "database {target} is already being written by {by}; two transfers into one database would mix their data. Wait for {by} to end (`pgbackups backups:info {by}`) or cancel it (`pgbackups backups:cancel {by}`), then try again"
    )]
    TargetBusy { target: String, by: String },
    #[error(
        "backup {backup} is being read by {by}; wait for it to end or cancel it, then delete the backup"
    )]
    BackupInUse { backup: TransferId, by: String },
    #[error("backup {0} is being deleted; pick another backup")]
    BackupDeleting(TransferId),
}

#[derive(Default)]
struct State {
    /// Target key → the holder's hold number and its name for messages.
    targets: HashMap<String, (u64, String)>,
    /// Backup → who reads it (hold number and name).
    readers: HashMap<TransferId, Vec<(u64, String)>>,
    /// Backups being deleted.
    deleting: Vec<TransferId>,
    next: u64,
}

/// The claims of one service.
#[derive(Clone, Default)]
pub struct Claims {
    state: Arc<Mutex<State>>,
}

/// A hold on one or more target keys; released when dropped.
pub struct TargetHold {
    claims: Claims,
    number: u64,
    keys: Vec<String>,
}

/// A read of a backup (a restore, download or verification); released when dropped.
pub struct BackupRead {
    claims: Claims,
    number: u64,
    backup: TransferId,
}

/// A delete in progress; released when dropped.
pub struct BackupDelete {
    claims: Claims,
    backup: TransferId,
}

impl Claims {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Holds the database `url` names for a writer called `by` (a transfer ID, or a
    /// description while it has none yet).
    pub fn hold_target(&self, url: &PgUrl, by: &str) -> Result<TargetHold, ClaimError> {
        let mut state = self.lock();
        let key = url_key(url);
        if let Some((_, holder)) = state.targets.get(&key) {
            return Err(ClaimError::TargetBusy {
                target: target_name(url),
                by: holder.clone(),
            });
        }
        state.next += 1;
        let number = state.next;
        state.targets.insert(key.clone(), (number, by.to_string()));
        Ok(TargetHold {
            claims: self.clone(),
            number,
            keys: vec![key],
        })
    }

    /// Holds a backup for reading by `by`; refused while it is being deleted.
    pub fn read_backup(&self, backup: TransferId, by: &str) -> Result<BackupRead, ClaimError> {
        let mut state = self.lock();
        if state.deleting.contains(&backup) {
            return Err(ClaimError::BackupDeleting(backup));
        }
        state.next += 1;
        let number = state.next;
        state
            .readers
            .entry(backup)
            .or_default()
            .push((number, by.to_string()));
        Ok(BackupRead {
            claims: self.clone(),
            number,
            backup,
        })
    }

    /// Claims a backup for deletion; refused while anything reads it or another delete runs.
    pub fn delete_backup(&self, backup: TransferId) -> Result<BackupDelete, ClaimError> {
        let mut state = self.lock();
        if let Some((_, by)) = state.readers.get(&backup).and_then(|r| r.first()) {
            return Err(ClaimError::BackupInUse {
                backup,
                by: by.clone(),
            });
        }
        if state.deleting.contains(&backup) {
            return Err(ClaimError::BackupDeleting(backup));
        }
        state.deleting.push(backup);
        Ok(BackupDelete {
            claims: self.clone(),
            backup,
        })
    }
}

impl TargetHold {
    /// Names the holder in later refusals (once the transfer has its ID).
    pub fn name(&self, by: &str) {
        let mut state = self.claims.lock();
        for key in &self.keys {
            if let Some(entry) = state.targets.get_mut(key)
                && entry.0 == self.number
            {
                entry.1 = by.to_string();
            }
        }
    }

    /// Adds the identity the server reported for the target (`identity` is unique per
    /// database of a running server). Refused when another writer holds it.
    pub fn also_identity(&mut self, identity: &str, shown: &str) -> Result<(), ClaimError> {
        let key = format!("server:{identity}");
        let mut state = self.claims.lock();
        match state.targets.get(&key) {
            Some((number, _)) if *number == self.number => Ok(()),
            Some((_, holder)) => Err(ClaimError::TargetBusy {
                target: shown.to_string(),
                by: holder.clone(),
            }),
            None => {
                let by = self
                    .keys
                    .first()
                    .and_then(|k| state.targets.get(k))
                    .map(|(_, by)| by.clone())
                    .unwrap_or_default();
                state.targets.insert(key.clone(), (self.number, by));
                drop(state);
                self.keys.push(key);
                Ok(())
            }
        }
    }
}

impl BackupRead {
    /// Names the reader in later refusals (once the transfer has its ID).
    pub fn name(&self, by: &str) {
        let mut state = self.claims.lock();
        if let Some(readers) = state.readers.get_mut(&self.backup) {
            for r in readers.iter_mut().filter(|r| r.0 == self.number) {
                r.1 = by.to_string();
            }
        }
    }
}

impl Drop for TargetHold {
    fn drop(&mut self) {
        let mut state = self.claims.lock();
        for key in &self.keys {
            if state
                .targets
                .get(key)
                .is_some_and(|(n, _)| *n == self.number)
            {
                state.targets.remove(key);
            }
        }
    }
}

impl Drop for BackupRead {
    fn drop(&mut self) {
        let mut state = self.claims.lock();
        if let Some(readers) = state.readers.get_mut(&self.backup) {
            readers.retain(|(n, _)| *n != self.number);
            if readers.is_empty() {
                state.readers.remove(&self.backup);
            }
        }
    }
}

impl Drop for BackupDelete {
    fn drop(&mut self) {
        self.claims.lock().deleting.retain(|b| *b != self.backup);
    }
}

/// `dbname on host:port` for messages.
pub(crate) fn target_name(url: &PgUrl) -> String {
    format!("{} on {}", url.dbname(), url.host_port())
}

/// The key of the database a URL names: the host as the server sees it (the loopback names
/// are one; a socket directory is its own host), the port (5432 when not written) and the
/// database name.
pub(crate) fn url_key(url: &PgUrl) -> String {
    let (hosts, port) = url.hosts_and_port();
    let hosts: Vec<String> = hosts
        .iter()
        .map(|h| {
            let h = h
                .trim_matches(|c| c == '[' || c == ']')
                .to_ascii_lowercase();
            match h.as_str() {
                "localhost" | "127.0.0.1" | "::1" | "0:0:0:0:0:0:0:1" | "" => "loopback".into(),
                _ => h,
            }
        })
        .collect();
    format!("{}:{}/{}", hosts.join(","), port, url.dbname())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> PgUrl {
        PgUrl::parse(s).unwrap()
    }

    #[test]
    fn every_spelling_of_one_database_meets_in_one_hold() {
        let claims = Claims::default();
        let _first = claims
            .hold_target(&url("postgres://u:pw@localhost/app"), "r001")
            .unwrap();
        for other in [
            "postgres://u@127.0.0.1:5432/app",
            "postgresql://v:x@LOCALHOST:5432/app",
            "postgres://u@[::1]/app",
            "postgres://u@localhost/app?sslmode=disable",
        ] {
            let err = claims.hold_target(&url(other), "r002").err().unwrap();
            assert!(err.to_string().contains("r001"), "{other}: {err}");
        }
        assert!(
            claims
                .hold_target(&url("postgres://u@localhost/other"), "r003")
                .is_ok()
        );
        assert!(
            claims
                .hold_target(&url("postgres://u@localhost:5433/app"), "r004")
                .is_ok()
        );
    }

    #[test]
    fn a_hold_ends_when_dropped_and_an_identity_joins_it() {
        let claims = Claims::default();
        let mut a = claims
            .hold_target(&url("postgres://u@db-a/app"), "c001")
            .unwrap();
        a.also_identity("app:16384:t0", "app").unwrap();
        let mut b = claims
            .hold_target(&url("postgres://u@db-alias/app"), "c002")
            .unwrap();
        let err = b.also_identity("app:16384:t0", "app").unwrap_err();
        assert!(err.to_string().contains("c001"));
        drop(a);
        b.also_identity("app:16384:t0", "app").unwrap();
        assert!(
            claims
                .hold_target(&url("postgres://u@db-a/app"), "c003")
                .is_ok()
        );
    }

    #[test]
    fn a_backup_read_and_a_delete_exclude_each_other() {
        let claims = Claims::default();
        let b1: TransferId = "b001".parse().unwrap();
        let read = claims.read_backup(b1, "r001").unwrap();
        assert!(matches!(
            claims.delete_backup(b1),
            Err(ClaimError::BackupInUse { .. })
        ));
        drop(read);
        let del = claims.delete_backup(b1).unwrap();
        assert!(matches!(
            claims.delete_backup(b1),
            Err(ClaimError::BackupDeleting(_))
        ));
        assert!(matches!(
            claims.read_backup(b1, "r002"),
            Err(ClaimError::BackupDeleting(_))
        ));
        drop(del);
        assert!(claims.read_backup(b1, "r003").is_ok());
    }
}
