//! Starting transfers: each `start_*` checks the request (names, confirmation, `--jobs`),
//! claims what the transfer will write or read, records it Pending with a new ID, and hands it
//! to the engine to run.

use std::sync::Arc;

use super::claims::TargetHold;
use super::work::Held;
use super::{Engine, TransferError, Work, atomic, check_confirm, restore_url};
use crate::catalog::{Origin, TransferId, TransferKind, TransferRecord, VerifyMode};
use crate::pg::DumpFilter;
use crate::registry::RegistryError;

impl Engine {
    /// Starts a capture of `database` (a name, a URL, or the only registered database).
    pub fn start_capture(
        self: &Arc<Self>,
        database: Option<&str>,
        origin: Origin,
    ) -> Result<TransferRecord, TransferError> {
        self.start_partial_capture(database, origin, DumpFilter::default())
    }

    /// Starts a capture of the schemas and tables `filter` selects (all when it is empty).
    pub fn start_partial_capture(
        self: &Arc<Self>,
        database: Option<&str>,
        origin: Origin,
        filter: DumpFilter,
    ) -> Result<TransferRecord, TransferError> {
        filter.validate()?;
        let (label, url) = self.registry.resolve(database)?;
        self.capture_url(label, url, origin, filter, None)
    }

    /// Records and launches a capture of `url`, shown as `label`, in the backup set `set`
    /// (a whole-server capture) if any; an empty `set` starts a new one named after this
    /// capture's ID.
    pub(super) fn capture_url(
        self: &Arc<Self>,
        label: String,
        url: crate::pg::PgUrl,
        origin: Origin,
        filter: DumpFilter,
        set: Option<String>,
    ) -> Result<TransferRecord, TransferError> {
        let prefix = match origin {
            Origin::Manual => 'b',
            Origin::Scheduled => 'a',
        };
        let mut rec = self.new_transfer(prefix, TransferKind::Capture, origin, label)?;
        if !filter.is_empty() || set.is_some() {
            rec.filter = filter;
            rec.set = set.map(|s| if s.is_empty() { rec.id.to_string() } else { s });
            self.catalog.save_transfer(&rec)?;
        }
        self.launch(rec.clone(), Held::default(), Work::Capture { url });
        Ok(rec)
    }

    /// Starts a restore of `backup` (the newest completed backup when `None`) into `database`,
    /// after checking the confirmation against the target's name.
    pub fn start_restore(
        self: &Arc<Self>,
        backup: Option<TransferId>,
        database: Option<&str>,
        confirm: Option<&str>,
        jobs: u32,
        atomic: Option<atomic::AtomicSwap>,
    ) -> Result<TransferRecord, TransferError> {
        self.start_restore_with(
            backup,
            database,
            confirm,
            jobs,
            atomic,
            RestoreExtras::default(),
        )
    }

    /// [`Self::start_restore`] with what Heroku's `backups:restore` does beyond pg_restore:
    /// `extensions` created in the target after it is emptied and before pg_restore, and (with
    /// `roles`) the roles the backup carries that the target's server lacks, created first.
    pub fn start_restore_with(
        self: &Arc<Self>,
        backup: Option<TransferId>,
        database: Option<&str>,
        confirm: Option<&str>,
        jobs: u32,
        atomic: Option<atomic::AtomicSwap>,
        extras: RestoreExtras,
    ) -> Result<TransferRecord, TransferError> {
        check_jobs(jobs)?;
        let extensions: Vec<String> = extras
            .extensions
            .iter()
            .map(|e| e.trim().to_string())
            .filter(|e| !e.is_empty())
            .collect();
        let backup = match backup {
            Some(id) => self.completed_backup(id)?,
            None => self.latest_backup()?,
        };
        let (label, url) = self.registry.resolve(database)?;
        check_confirm(&label, confirm)?;
        let held = Held {
            target: Some(self.claims.hold_target(&url, "a restore being started")?),
            backup: Some(
                self.claims
                    .read_backup(backup.id, "a restore being started")?,
            ),
        };
        // A delete that ended between the lookup and the claim has removed it.
        let backup = self.completed_backup(backup.id)?;
        let mut rec = self.new_transfer('r', TransferKind::Restore, Origin::Manual, label)?;
        rec.backup_id = Some(backup.id);
        self.catalog.save_transfer(&rec)?;
        self.launch(
            rec.clone(),
            held,
            Work::Restore {
                backup: Box::new(backup),
                url,
                jobs,
                atomic,
                extensions,
                roles: extras.roles,
            },
        );
        Ok(rec)
    }

    /// Starts a verification of a completed backup (the newest without `id`). A restore test
    /// (`mode` Restore) needs a server for its scratch database: `target` (a registered name
    /// or URL), else the server of the backup's own database.
    pub fn start_verify(
        self: &Arc<Self>,
        id: Option<TransferId>,
        mode: VerifyMode,
        target: Option<&str>,
        origin: Origin,
    ) -> Result<TransferRecord, TransferError> {
        let backup = match id {
            Some(id) => self.completed_backup(id)?,
            None => self.latest_backup()?,
        };
        let mode = if mode == VerifyMode::Off {
            VerifyMode::Checksum
        } else {
            mode
        };
        // The server of a restore test's scratch database: its label (a registered name, or a
        // redacted URL) and URL.
        let server = match (mode, target) {
            (VerifyMode::Restore, Some(t)) => Some(self.registry.resolve(Some(t))?),
            (VerifyMode::Restore, None) => match self.registry.resolve(Some(&backup.database)) {
                Ok(found) => Some(found),
                Err(RegistryError::UnknownDatabase(_) | RegistryError::BadUrl(_)) => {
                    return Err(TransferError::VerifyTarget(backup.database.clone()));
                }
                Err(e) => return Err(e.into()),
            },
            _ => None,
        };
        let held = Held {
            target: None,
            backup: Some(
                self.claims
                    .read_backup(backup.id, "a verification being started")?,
            ),
        };
        let backup = self.completed_backup(backup.id)?;
        let mut rec =
            self.new_transfer('v', TransferKind::Verify, origin, backup.database.clone())?;
        rec.backup_id = Some(backup.id);
        // Where the scratch database goes, so that start-up recovery can drop it after a
        // crash (a registered name; a URL is recorded redacted and cannot be).
        rec.source = server.as_ref().map(|(label, _)| label.clone());
        self.catalog.save_transfer(&rec)?;
        self.launch(
            rec.clone(),
            held,
            Work::Verify {
                backup: Box::new(backup),
                mode,
                target: server.map(|(_, url)| url),
            },
        );
        Ok(rec)
    }

    /// After a scheduled capture: starts its verification when the database's schedule asks
    /// for one (automatic restore tests).
    pub(super) fn verify_if_scheduled(self: &Arc<Self>, backup: TransferId, database: &str) {
        let mode = match self.catalog.schedules() {
            Ok(all) => all
                .into_iter()
                .find(|s| s.database == database)
                .map(|s| s.verify)
                .unwrap_or_default(),
            Err(e) => {
                tracing::error!("cannot read the schedule of {database}: {e}");
                return;
            }
        };
        if mode == VerifyMode::Off {
            return;
        }
        match self.start_verify(Some(backup), mode, None, Origin::Scheduled) {
            Ok(v) => tracing::info!("verifying scheduled backup {backup} as {}", v.id),
            Err(e) => tracing::error!("could not start the verification of {backup}: {e}"),
        }
    }

    /// Starts a restore of the dump at an http(s) URL into `database`, after checking the
    /// confirmation against the target's name.
    pub fn start_restore_from_url(
        self: &Arc<Self>,
        source: &str,
        database: Option<&str>,
        confirm: Option<&str>,
        jobs: u32,
        atomic: Option<atomic::AtomicSwap>,
    ) -> Result<TransferRecord, TransferError> {
        check_jobs(jobs)?;
        let parsed = url::Url::parse(source)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"));
        if parsed.is_none() {
            return Err(TransferError::BadSourceUrl);
        }
        let (label, url) = self.registry.resolve(database)?;
        check_confirm(&label, confirm)?;
        let held = Held::target(self.claims.hold_target(&url, "a restore being started")?);
        let mut rec = self.new_transfer('r', TransferKind::Restore, Origin::Manual, label)?;
        rec.source = Some(restore_url::shown_url(source));
        self.catalog.save_transfer(&rec)?;
        self.launch(
            rec.clone(),
            held,
            Work::RestoreUrl {
                source: restore_url::DumpSource::Url(source.to_string()),
                url,
                jobs,
                atomic,
            },
        );
        Ok(rec)
    }

    /// Starts a copy of `source` into `target` (names or URLs), after checking the
    /// confirmation against the target's name. The target's objects are dropped first.
    pub fn start_copy(
        self: &Arc<Self>,
        source: &str,
        target: &str,
        confirm: Option<&str>,
        filter: DumpFilter,
    ) -> Result<TransferRecord, TransferError> {
        let (_, target_url) = self.registry.resolve(Some(target))?;
        let mut hold = Some(
            self.claims
                .hold_target(&target_url, "a copy being started")?,
        );
        self.start_copy_held(source, target, confirm, filter, &mut hold)
    }

    /// [`Engine::start_copy`] for a caller that already holds the target (pull and push,
    /// which look at it before they copy).
    pub(super) fn start_copy_held(
        self: &Arc<Self>,
        source: &str,
        target: &str,
        confirm: Option<&str>,
        filter: DumpFilter,
        hold: &mut Option<TargetHold>,
    ) -> Result<TransferRecord, TransferError> {
        filter.validate()?;
        let (source_label, source_url) = self.registry.resolve(Some(source))?;
        let (target_label, target_url) = self.registry.resolve(Some(target))?;
        check_confirm(&target_label, confirm)?;
        if source_url.host_port() == target_url.host_port()
            && source_url.dbname() == target_url.dbname()
        {
            return Err(TransferError::SameDatabase);
        }
        let mut rec = self.new_transfer('c', TransferKind::Copy, Origin::Manual, target_label)?;
        rec.source = Some(source_label);
        rec.filter = filter;
        self.catalog.save_transfer(&rec)?;
        // Taken only now: a caller that fails before here keeps it while it cleans up.
        let Some(hold) = hold.take() else {
            return Err(TransferError::Internal(
                "the copy's target is not held".into(),
            ));
        };
        self.launch(
            rec.clone(),
            Held::target(hold),
            Work::Copy {
                source: source_url,
                target: target_url,
            },
        );
        Ok(rec)
    }

    pub(super) fn new_transfer(
        &self,
        prefix: char,
        kind: TransferKind,
        origin: Origin,
        label: String,
    ) -> Result<TransferRecord, TransferError> {
        if self.tasks.is_closed() {
            return Err(TransferError::ShuttingDown);
        }
        let id = self.catalog.claim_transfer_id(prefix)?;
        let rec = TransferRecord::new(id, kind, origin, label, self.clock.now());
        self.catalog.save_transfer(&rec)?;
        Ok(rec)
    }
}

/// `--jobs` between 1 and 64.
pub(super) fn check_jobs(jobs: u32) -> Result<(), TransferError> {
    if (1..=64).contains(&jobs) {
        Ok(())
    } else {
        Err(TransferError::BadJobs(jobs))
    }
}

/// A due scheduled run starts its capture through the engine.
impl crate::schedule::Starter for Arc<Engine> {
    fn start(&self, database: &str) -> Result<TransferId, crate::schedule::StartError> {
        Ok(self.start_capture(Some(database), Origin::Scheduled)?.id)
    }
}

/// What a backup restore does beyond pg_restore, as Heroku's `backups:restore` flags ask.
#[derive(Clone, Debug, Default)]
pub struct RestoreExtras {
    /// `--extensions`: created in the emptied target before pg_restore.
    pub extensions: Vec<String>,
    /// `--roles`: the roles the backup carries that the target's server lacks, created first.
    pub roles: bool,
}
