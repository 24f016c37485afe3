//! Links to backups that work without the API token until they expire: presigned links to
//! the stored object where the store can make them, else links to this service signed with
//! the service's key ([`Links::backup_url`]), and the check of those ([`Links::check_link`]).

use std::sync::Arc;

use super::{Engine, TransferError};
use crate::catalog::{TransferId, TransferRecord};
use crate::clock::Clock;
use crate::secret::Secrets;
use crate::storage::Storage;

/// A link to a backup, from [`Links::backup_url`].
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct BackupUrl {
    pub id: TransferId,
    pub url: String,
    pub expires_at: jiff::Timestamp,
    /// `dump` (a plain custom-format dump) or `zstd` (the stored object: the dump compressed
    /// with zstd).
    pub content: String,
}

/// Why a download link is refused (answered with 403).
#[derive(Clone, Debug)]
pub struct LinkRefused(pub &'static str);

/// What a service link's signature covers: the backup, its content, the expiry, and for a
/// link to the stored object, that form (a link to the dump cannot be turned into one).
fn link_message(backup: &TransferRecord, expiry: i64, stored: bool) -> String {
    format!(
        "GET\n{}\n{}\n{expiry}{}",
        backup.id,
        backup.sha256.as_deref().unwrap_or(""),
        if stored { "\nzstd" } else { "" }
    )
}

/// Makes and checks the links of one service.
pub struct Links {
    /// Where completed backups are looked up (with the ends not yet recorded).
    engine: Arc<Engine>,
    storage: Arc<dyn Storage>,
    secrets: Arc<Secrets>,
    clock: Arc<dyn Clock>,
}

impl Links {
    /// Links to the backups `engine` knows, in `storage`, signed with `secrets`.
    pub fn new(
        engine: Arc<Engine>,
        storage: Arc<dyn Storage>,
        secrets: Arc<Secrets>,
        clock: Arc<dyn Clock>,
    ) -> Links {
        Links {
            engine,
            storage,
            secrets,
            clock,
        }
    }

    /// A link that fetches a completed backup without the API token until `expires` has
    /// passed, whose body is the compressed custom-format dump the stock `pg_restore` reads
    /// (as Heroku's links do): on a store that presigns (S3, GCS, Azure), for a backup that is
    /// not encrypted, a presigned link to the backup's export (made on the first request, see
    /// [`Engine::export`]); else a link to this service, signed with HMAC-SHA256, that
    /// rewrites the dump as it streams.
    /// With `raw`, the link fetches the stored object as it is (the dump compressed with
    /// zstd): presigned by the store where it can (S3, GCS, Azure, for a backup the service
    /// does not encrypt), so the service need not be reachable; else through this service.
    /// `base` is the service's public URL.
    pub fn backup_url(
        &self,
        id: Option<TransferId>,
        expires: std::time::Duration,
        raw: bool,
        base: &str,
    ) -> Result<BackupUrl, TransferError> {
        let backup = match id {
            Some(id) => self.engine.completed_backup(id)?,
            None => self.engine.latest_backup()?,
        };
        let expires_at = self
            .clock
            .now()
            .checked_add(jiff::SignedDuration::from_secs(expires.as_secs() as i64))
            .map_err(|e| TransferError::Internal(e.to_string()))?;
        // On a store that presigns, and for an object it would presign (not encrypted): the
        // dump pg_restore reads, written once beside the backup, then presigned, so that the
        // link works without the service.
        if !raw
            && !self.storage.encrypts_new_objects()
            && let Some(key) = &backup.object_key
            && matches!(self.storage.signed_url(key, expires), Ok(Some(_)))
        {
            let presigned = self
                .engine
                .export(backup.id)
                .and_then(|export| Ok(self.storage.signed_url(&export, expires)?));
            match presigned {
                Ok(Some(url)) => {
                    return Ok(BackupUrl {
                        id: backup.id,
                        url,
                        expires_at,
                        content: "dump".into(),
                    });
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(
                    "cannot make the dump of {} for a presigned link; giving a service link instead: {e}",
                    backup.id
                ),
            }
        }
        if raw && let Some(key) = &backup.object_key {
            match self.storage.signed_url(key, expires) {
                Ok(Some(url)) => {
                    return Ok(BackupUrl {
                        id: backup.id,
                        url,
                        expires_at,
                        content: "zstd".into(),
                    });
                }
                Ok(None) => {}
                // Credentials that cannot presign (a GCS login without a key, say): the
                // service's own link still works.
                Err(e) => tracing::warn!(
                    "cannot presign a link to {}; giving a service link instead: {e}",
                    backup.id
                ),
            }
        }
        let expiry = expires_at.as_second();
        let sig = self.secrets.sign_link(&link_message(&backup, expiry, raw));
        Ok(BackupUrl {
            id: backup.id,
            url: format!(
                "{}/links/{}?expires={expiry}&sig={sig}{}",
                base.trim_end_matches('/'),
                backup.id,
                if raw { "&form=zstd" } else { "" }
            ),
            expires_at,
            content: if raw { "zstd" } else { "dump" }.into(),
        })
    }

    /// The backup a service link names, if its signature is right and it has not expired.
    pub fn check_link(
        &self,
        id: TransferId,
        expiry: i64,
        stored: bool,
        sig: &str,
    ) -> Result<TransferRecord, LinkRefused> {
        // One answer for an unknown backup and a bad signature: a link must not tell which
        // backups exist.
        let invalid = LinkRefused(
            "this link is not valid: it was altered, or its backup was deleted or replaced",
        );
        let backup = self
            .engine
            .completed_backup(id)
            .map_err(|_| invalid.clone())?;
        if !self
            .secrets
            .link_signature_matches(&link_message(&backup, expiry, stored), sig)
        {
            return Err(invalid);
        }
        if self.clock.now().as_second() > expiry {
            return Err(LinkRefused(
                "the link has expired: ask for a new one with `pgbackups backups:url`",
            ));
        }
        Ok(backup)
    }
}
