//! Start-up recovery: transfers that were running when the service last stopped are recorded
//! as interrupted, what they left in storage and scratch space is removed, and the scratch
//! databases of verifications and atomic restores are dropped.

use super::{Engine, TransferError, atomic, blocking, manifest, verify};
use crate::catalog::{TransferId, TransferKind, TransferRecord, TransferState};

/// How a transfer that was running when the service stopped is recorded at the next start.
pub(super) const INTERRUPTED: &str = "interrupted: the service stopped (it crashed or was killed) while this transfer was running; start it again";

impl Engine {
    /// Runs once at start-up, before any new transfer: marks transfers that were running when
    /// the service last stopped as Failed (interrupted), removes what they left in storage,
    /// and empties the scratch directory. Returns the IDs it marked. Blocks on the catalog and
    /// the store: call it off the async threads.
    pub fn recover_interrupted(&self) -> Result<Vec<TransferId>, TransferError> {
        let now = self.clock.now();
        let mut marked = Vec::new();
        for mut t in self.catalog.unfinished_transfers()? {
            if t.kind == TransferKind::Capture
                && let Some(key) = &t.object_key
            {
                manifest::delete_backup(self.storage.as_ref(), key)?;
            }
            let mut msg = INTERRUPTED.to_string();
            if t.kind == TransferKind::Verify {
                msg.push_str(". Its scratch database is dropped at start when the server is known");
            } else if let Some(stage) = atomic::Stage::parse(t.detail.as_deref()) {
                msg.push_str(&format!(". {}", stage.interrupted()));
            } else if t.kind != TransferKind::Capture {
                msg.push_str(". The target database may have been emptied and only partially restored: restore again");
            }
            t.state = TransferState::Failed;
            t.finished_at = Some(now);
            t.error = Some(msg.clone());
            self.catalog.save_transfer(&t)?;
            self.catalog.append_logs(t.id, &[(now, msg)])?;
            marked.push(t.id);
        }
        let collected = self.storage.collect_partial()?;
        if collected > 0 {
            tracing::info!("removed {collected} partial object(s) left by an interrupted run");
        }
        if let Ok(entries) = std::fs::read_dir(&self.tmp_dir) {
            for e in entries.flatten() {
                let path = e.path();
                let _ = if path.is_dir() {
                    std::fs::remove_dir_all(&path)
                } else {
                    std::fs::remove_file(&path)
                };
            }
        }
        std::fs::create_dir_all(&self.tmp_dir).map_err(|e| {
            TransferError::Internal(format!(
                "cannot create scratch directory {}: {e}",
                self.tmp_dir.display()
            ))
        })?;
        Ok(marked)
    }

    /// Drops the scratch databases of verifications, and the fresh databases of atomic
    /// restores, that were running when the service stopped (`recover_interrupted` returned
    /// their IDs).
    pub async fn drop_stale_scratch(&self, interrupted: &[TransferId]) {
        for id in interrupted {
            let (catalog, id) = (self.catalog.clone(), *id);
            let Ok(Some(t)) = blocking(move || Ok(catalog.transfer(id)?)).await else {
                continue;
            };
            if let Some(stage) = atomic::Stage::parse(t.detail.as_deref()) {
                let (outcome, swapped) = atomic::recover(self, &t, &stage).await;
                // A swap that committed finished the restore's work: only its record is missing.
                let lead = if swapped {
                    "interrupted: the service stopped (it crashed or was killed) before it recorded how this restore ended"
                } else {
                    INTERRUPTED
                };
                self.record_recovery(t, lead, outcome).await;
                continue;
            }
            let Some(server) = t.source.filter(|_| t.kind == TransferKind::Verify) else {
                continue;
            };
            let name = verify::scratch_name(t.id);
            let (registry, reference) = (self.registry.clone(), server.clone());
            match blocking(move || Ok(registry.resolve(Some(&reference))?)).await {
                Ok((_, url)) => {
                    let admin = url.with_dbname("postgres");
                    match verify::drop_scratch(&self.tools, &admin, &name).await {
                        Ok(()) => tracing::info!("dropped {name}, left by interrupted {id}"),
                        Err(e) => tracing::warn!("could not drop {name} (left by {id}): {e}"),
                    }
                }
                Err(_) => tracing::warn!(
                    "{id} was interrupted; its scratch database {name} on {server} may remain: drop it"
                ),
            }
        }
    }

    /// Completes an interrupted transfer's error with what start-up recovery found and did.
    async fn record_recovery(&self, mut t: TransferRecord, lead: &str, outcome: String) {
        let now = self.clock.now();
        t.error = Some(format!("{lead}. {outcome}"));
        let (catalog, id) = (self.catalog.clone(), t.id);
        let saved = blocking(move || {
            catalog.save_transfer(&t)?;
            Ok(catalog.append_logs(t.id, &[(now, outcome)])?)
        })
        .await;
        if let Err(e) = saved {
            tracing::error!("could not record the recovery of {id}: {e}");
        }
    }
}
