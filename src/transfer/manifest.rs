//! The manifest written beside each backup (`<object key>.manifest.json`): everything the
//! catalog knows about the backup, so that `catalog:rebuild` can recreate the catalog from the
//! store alone after the service's disk is lost.
//!
//! Manifests are plain JSON even when backups are encrypted: they hold IDs, names, sizes,
//! checksums and the layout of the compressed frames, never data, URLs or keys.

use serde::{Deserialize, Serialize};

use crate::catalog::TransferRecord;
use crate::storage::{Storage, StorageError};
use crate::stream::framed::StoredLayout;

/// Identifies the manifest format, for readers of other versions.
pub const FORMAT: &str = "pgbackups-manifest/1";

/// Manifests are small; a larger object under a manifest name is not one of ours.
const MAX_MANIFEST: u64 = 64 << 20;

/// A backup's manifest.
#[derive(Debug, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    /// The backup as the catalog records it once succeeded.
    pub backup: TransferRecord,
    /// Where the zstd frames and the dump's data blocks are, for parallel restores.
    pub layout: Option<StoredLayout>,
}

/// The manifest's key for a backup object's key.
pub fn key_for(object_key: &str) -> String {
    format!("{object_key}.manifest.json")
}

/// The key of the server's roles kept beside a backup object (`pg_dumpall --globals-only`,
/// zstd-compressed, encrypted like the dump): `backups/b001-<time>.globals.sql.zst` beside
/// `backups/b001-<time>.dump.zst`.
pub fn globals_key_for(object_key: &str) -> String {
    let stem = object_key.strip_suffix(".dump.zst").unwrap_or(object_key);
    format!("{stem}.globals.sql.zst")
}

/// Writes the manifest of `backup` (whose object is already committed).
pub fn write(
    storage: &dyn Storage,
    backup: &TransferRecord,
    layout: &StoredLayout,
) -> Result<(), StorageError> {
    let Some(object_key) = &backup.object_key else {
        return Ok(());
    };
    let manifest = Manifest {
        format: FORMAT.to_string(),
        backup: backup.clone(),
        layout: Some(layout.clone()),
    };
    let json = serde_json::to_vec_pretty(&manifest).map_err(|e| StorageError::Io {
        op: "encode manifest for",
        key: object_key.clone(),
        source: std::io::Error::other(e),
    })?;
    storage.write_small(&key_for(object_key), &json)
}

/// The key of a backup's export: the dump the stock pg_restore reads (gzip-compressed as
/// `pg_dump -Fc` writes it), made once for a presigned `backups:url` link:
/// `exports/b001-<time>.dump` for `backups/b001-<time>.dump.zst`. Outside `backups/`, so that
/// a scan of the backups never takes it for one.
pub fn export_key_for(object_key: &str) -> String {
    let name = object_key.rsplit('/').next().unwrap_or(object_key);
    let stem = name.strip_suffix(".dump.zst").unwrap_or(name);
    format!("exports/{stem}.dump")
}

/// Deletes a backup's object, its manifest, its roles and its export, the manifest first: a
/// manifest must never outlive its object, or `catalog:rebuild` would bring back a backup
/// that is gone.
pub fn delete_backup(storage: &dyn Storage, object_key: &str) -> Result<(), StorageError> {
    storage.delete(&key_for(object_key))?;
    storage.delete(&globals_key_for(object_key))?;
    storage.delete(&export_key_for(object_key))?;
    storage.delete(object_key)
}

/// What a scan of the store found.
#[derive(Debug, Default)]
pub struct Found {
    pub manifests: Vec<Manifest>,
    /// Manifests that could not be read or parsed, with the reason.
    pub unreadable: Vec<(String, String)>,
    /// Manifests whose backup object is missing or of another size.
    pub orphaned: Vec<String>,
}

/// Why a manifest could not be read (reported per manifest by [`scan`]).
#[derive(Debug, thiserror::Error)]
enum Unreadable {
    #[error(transparent)]
    Store(#[from] StorageError),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}

/// Reads every manifest under `backups/` and checks that its object is there.
pub fn scan(storage: &dyn Storage) -> Result<Found, StorageError> {
    let mut found = Found::default();
    let keys = storage.list("backups/")?;
    let objects: std::collections::HashSet<&str> = keys.iter().map(String::as_str).collect();
    for key in keys.iter().filter(|k| k.ends_with(".manifest.json")) {
        let parsed = storage
            .read_small(key, MAX_MANIFEST)
            .map_err(Unreadable::from)
            .and_then(|bytes| Ok(serde_json::from_slice::<Manifest>(&bytes)?));
        let manifest = match parsed {
            Ok(m) if m.format == FORMAT => m,
            Ok(m) => {
                found
                    .unreadable
                    .push((key.clone(), format!("unknown format {}", m.format)));
                continue;
            }
            Err(e) => {
                found.unreadable.push((key.clone(), e.to_string()));
                continue;
            }
        };
        let object = key.trim_end_matches(".manifest.json");
        if manifest.backup.object_key.as_deref() != Some(object) || !objects.contains(object) {
            found.orphaned.push(key.clone());
            continue;
        }
        found.manifests.push(manifest);
    }
    Ok(found)
}
