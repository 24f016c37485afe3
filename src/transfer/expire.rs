//! Retention runs: after a capture succeeds, the backups of its database and kind that the
//! policy (`schedule::retention`) no longer keeps are deleted — never a pinned one, the new
//! one, or one being read.

use super::claims::Claims;
use super::work::Job;
use super::{Engine, TransferError, manifest};
use crate::catalog::{Catalog, Origin, TransferId, TransferKind, TransferRecord};
use crate::schedule::retention;
use crate::storage::Storage;

impl Engine {
    /// Expires what the database's retention policy no longer keeps, among the backups of
    /// the kind the job just made (manual or scheduled). Problems are logged, never fatal: the
    /// capture itself succeeded.
    pub(super) async fn apply_retention(&self, job: &Job) {
        let (catalog, storage) = (self.catalog.clone(), self.storage.clone());
        let current = job.rec.clone();
        let claims = self.claims.clone();
        let result = tokio::task::spawn_blocking(move || {
            expire(catalog.as_ref(), storage.as_ref(), &claims, &current)
        })
        .await;
        match result {
            Ok(Ok(expired)) => {
                for (id, why) in expired {
                    job.log(&format!("Expired backup {id} ({why})"));
                }
            }
            Ok(Err(e)) => job.log(&format!("Retention could not run: {e}")),
            Err(e) => job.log(&format!("Retention could not run: {e}")),
        }
    }
}

/// Deletes the backups of `current`'s database and kind that its policy no longer keeps
/// (never `current`, a pinned one, or one being restored). Returns what it expired and why.
fn expire(
    catalog: &dyn Catalog,
    storage: &dyn Storage,
    claims: &Claims,
    current: &TransferRecord,
) -> Result<Vec<(TransferId, String)>, TransferError> {
    // Partial captures are not what a policy counts: they neither expire nor get expired.
    if !current.filter.is_empty() {
        return Ok(Vec::new());
    }
    let policy = catalog.retention(&current.database)?.unwrap_or_default();
    let tz = catalog
        .schedules()?
        .iter()
        .find(|s| s.database == current.database)
        .and_then(|s| crate::schedule::spec_of(s).ok())
        .map(|spec| spec.time_zone().clone())
        .unwrap_or(jiff::tz::TimeZone::UTC);
    let in_use: Vec<TransferId> = catalog
        .unfinished_transfers()?
        .iter()
        .filter_map(|t| t.backup_id)
        .collect();
    let mut candidates: Vec<retention::Candidate> = catalog
        .transfers(Some(TransferKind::Capture))?
        .into_iter()
        .filter(|t| {
            t.database == current.database
                && t.is_completed_backup()
                && t.id != current.id
                && t.filter.is_empty()
        })
        .map(|t| retention::Candidate {
            id: t.id,
            origin: t.origin,
            captured_at: t.started_at.unwrap_or(t.created_at),
            pinned: t.pinned || in_use.contains(&t.id),
        })
        .collect();
    candidates.push(retention::Candidate {
        id: current.id,
        origin: current.origin,
        captured_at: current.started_at.unwrap_or(current.created_at),
        pinned: true,
    });
    let why = match current.origin {
        Origin::Manual => format!(
            "retention keeps the newest {} manual backups",
            policy.manual
        ),
        Origin::Scheduled => format!(
            "retention keeps {} daily, {} weekly and {} monthly scheduled backups",
            policy.daily, policy.weekly, policy.monthly
        ),
    };
    let mut expired = Vec::new();
    for id in retention::expired(&candidates, &policy, &tz) {
        let Some(t) = catalog.transfer(id)? else {
            continue;
        };
        if t.origin != current.origin {
            continue;
        }
        // A backup that started being read since the policy was applied stays; one that a
        // user deleted meanwhile is gone; one a user pinned meanwhile stays.
        let Ok(_deleting) = claims.delete_backup(id) else {
            continue;
        };
        if catalog.transfer(id)?.is_none_or(|now| now.pinned) {
            continue;
        }
        if let Some(key) = &t.object_key {
            manifest::delete_backup(storage, key)?;
        }
        catalog.delete_transfer(id)?;
        expired.push((id, why.clone()));
    }
    Ok(expired)
}
