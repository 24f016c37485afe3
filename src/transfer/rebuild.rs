//! `catalog:rebuild`: recreating the catalog's backups from the manifests beside them in the
//! store, after the service's disk was lost.

use super::{TransferError, manifest};
use crate::catalog::{Catalog, TransferId, TransferKind, TransferState};
use crate::clock::Clock;
use crate::storage::Storage;

/// What `catalog:rebuild` did.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct RebuildReport {
    /// Backups recreated from their manifests.
    pub added: Vec<TransferId>,
    /// Backups the catalog already had.
    pub present: Vec<TransferId>,
    /// Manifests that could not be read, with the reason.
    pub unreadable: Vec<(String, String)>,
    /// Manifests whose object is missing.
    pub orphaned: Vec<String>,
    /// Backups in the store whose ID the catalog already gives to another backup (one made
    /// on this service before the rebuild), with the stored object's key. They are not lost:
    /// the object and its manifest stay in the store.
    #[serde(default)]
    pub conflicts: Vec<(TransferId, String)>,
}

/// Recreates the catalog's backups from the manifests in the store (after the service's
/// disk was lost). Backups the catalog already has are left alone; ID counters move past
/// every ID found, so that new backups never reuse one.
pub fn rebuild_catalog(
    catalog: &dyn Catalog,
    storage: &dyn Storage,
    clock: &dyn Clock,
) -> Result<RebuildReport, TransferError> {
    let found = manifest::scan(storage)?;
    // Every ID the store shows, readable manifest or not, moves the counters past it.
    for key in found
        .orphaned
        .iter()
        .chain(found.unreadable.iter().map(|(k, _)| k))
    {
        let name = key.rsplit('/').next().unwrap_or("");
        if let Some(id) = name
            .split('-')
            .next()
            .and_then(|p| p.parse::<TransferId>().ok())
        {
            catalog.bump_id_counter(id)?;
        }
    }
    let mut report = RebuildReport {
        unreadable: found.unreadable,
        orphaned: found.orphaned,
        ..RebuildReport::default()
    };
    for m in found.manifests {
        let id = m.backup.id;
        catalog.bump_id_counter(id)?;
        if m.backup.kind != TransferKind::Capture || !id.is_backup() {
            continue;
        }
        let mut rec = m.backup;
        rec.state = TransferState::Succeeded;
        rec.pinned = false;
        let layout = match &m.layout {
            Some(layout) => Some(
                serde_json::to_string(layout)
                    .map_err(|e| TransferError::Internal(e.to_string()))?,
            ),
            None => None,
        };
        let note = (
            clock.now(),
            "Recreated from the manifest in the store by catalog:rebuild".to_string(),
        );
        if catalog.insert_rebuilt_backup(&rec, layout.as_deref(), note)? {
            report.added.push(id);
            continue;
        }
        let existing = catalog.transfer(id)?;
        if existing.is_some_and(|e| e.object_key == rec.object_key) {
            report.present.push(id);
        } else {
            // The ID was reused by a backup made before the rebuild.
            report
                .conflicts
                .push((id, rec.object_key.clone().unwrap_or_default()));
        }
    }
    Ok(report)
}
