//! Client-side encryption at rest with [age](https://age-encryption.org), the audited
//! streaming format that the stock `age` tool reads.
//!
//! Encryption is a layer over any store ([`EncryptedStorage`]): new objects are encrypted to
//! the configured recipients (X25519 public keys) or passphrase; objects are decrypted on
//! read when they start with age's header, so a store can hold plain and encrypted backups
//! side by side (turning encryption on does not strand older backups). Reads at an offset
//! (parallel restores) seek inside the age stream: it is made of independent 64 KiB chunks.
//!
//! The service keeps no key of its own: the identity file (or passphrase file) is the user's,
//! named in the configuration, and nothing of it reaches the store, the catalog or the logs.

use std::collections::HashMap;
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use age::secrecy::{ExposeSecret, SecretString};
use age_core::format::{FileKey, Stanza};
use serde::Deserialize;

use crate::storage::{ObjectWriter, Storage, StorageError};

/// The first bytes of every age file.
const AGE_MAGIC: &[u8] = b"age-encryption.org/v1\n";

/// The `[encryption]` section of the configuration file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncryptionConfig {
    /// age recipients (`age1...` public keys) that new backups are encrypted to.
    #[serde(default)]
    pub recipients: Vec<String>,
    /// A file of recipients, one per line, `#` comments allowed (as `age -R`).
    pub recipients_file: Option<PathBuf>,
    /// An age identity file (`AGE-SECRET-KEY-1...` lines, as `age -i`) to decrypt with.
    /// Without it, encrypted backups cannot be restored or downloaded by the service.
    pub identity_file: Option<PathBuf>,
    /// A file holding a passphrase: new backups are encrypted with it (age's scrypt mode)
    /// and read back with it. Cannot be combined with `recipients`.
    pub passphrase_file: Option<PathBuf>,
}

impl EncryptionConfig {
    /// Whether new backups are encrypted (recipients or a passphrase are configured; an
    /// identity alone only decrypts).
    pub fn encrypts_new_backups(&self) -> bool {
        !self.recipients.is_empty()
            || self.recipients_file.is_some()
            || self.passphrase_file.is_some()
    }

    pub fn is_empty(&self) -> bool {
        self.recipients.is_empty()
            && self.recipients_file.is_none()
            && self.identity_file.is_none()
            && self.passphrase_file.is_none()
    }
}

/// The loaded keys.
pub struct Keys {
    recipients: Vec<Box<dyn age::Recipient + Send + Sync>>,
    identities: CachingIdentity,
    /// For messages: `age (2 recipients)`, `age (passphrase)`.
    mode: String,
}

/// Why the configured keys could not be loaded: which file or key is wrong, never what a
/// secret contains.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read the {what} file {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "`{0}` is not an age recipient (an X25519 public key starting with age1; `age-keygen` makes one)"
    )]
    BadRecipient(String),
    /// An identity (a secret key) given where a recipient belongs: never quoted.
    #[error(
        "a recipient is an age secret key (AGE-SECRET-KEY-1...), not a public key: give its public key instead (`age-keygen -y KEYFILE` prints it), and keep the secret key in the identity file only"
    )]
    SecretKeyAsRecipient,
    #[error("the identity file {0} holds no usable age identity (AGE-SECRET-KEY-1... lines)")]
    BadIdentities(PathBuf),
    #[error("the identity file {0} holds no age identity")]
    NoIdentity(PathBuf),
    #[error(
        "age cannot encrypt to recipients and a passphrase at once: configure one of recipients or passphrase_file"
    )]
    RecipientsAndPassphrase,
    #[error("the passphrase file {0} is empty")]
    EmptyPassphrase(PathBuf),
}

impl Keys {
    /// Loads what the configuration names. Errors say which file or key is wrong, never
    /// what a secret contains.
    pub fn load(config: &EncryptionConfig) -> Result<Keys, KeyError> {
        let mut recipients: Vec<Box<dyn age::Recipient + Send + Sync>> = Vec::new();
        let mut identities: Vec<Box<dyn age::Identity + Send + Sync>> = Vec::new();
        let mut lines: Vec<String> = config.recipients.clone();
        if let Some(path) = &config.recipients_file {
            let text = std::fs::read_to_string(path).map_err(|source| KeyError::Read {
                what: "recipients",
                path: path.clone(),
                source,
            })?;
            lines.extend(
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(str::to_string),
            );
        }
        for line in &lines {
            let r = age::x25519::Recipient::from_str(line).map_err(|_| {
                // A secret key pasted as a recipient must not end up in a log.
                if line.to_ascii_uppercase().starts_with("AGE-SECRET-KEY-") {
                    KeyError::SecretKeyAsRecipient
                } else {
                    KeyError::BadRecipient(line.clone())
                }
            })?;
            recipients.push(Box::new(r));
        }
        if let Some(path) = &config.identity_file {
            let file =
                age::IdentityFile::from_file(path.display().to_string()).map_err(|source| {
                    KeyError::Read {
                        what: "identity",
                        path: path.clone(),
                        source,
                    }
                })?;
            let found = file
                .into_identities()
                .map_err(|_| KeyError::BadIdentities(path.clone()))?;
            if found.is_empty() {
                return Err(KeyError::NoIdentity(path.clone()));
            }
            identities.extend(found);
        }
        let mut mode = format!(
            "age, {} recipient{}",
            recipients.len(),
            if recipients.len() == 1 { "" } else { "s" }
        );
        if let Some(path) = &config.passphrase_file {
            if !recipients.is_empty() {
                return Err(KeyError::RecipientsAndPassphrase);
            }
            let text = std::fs::read_to_string(path).map_err(|source| KeyError::Read {
                what: "passphrase",
                path: path.clone(),
                source,
            })?;
            let pass = text.trim_end_matches(['\n', '\r']).to_string();
            if pass.is_empty() {
                return Err(KeyError::EmptyPassphrase(path.clone()));
            }
            recipients.push(Box::new(age::scrypt::Recipient::new(SecretString::from(
                pass.clone(),
            ))));
            identities.push(Box::new(age::scrypt::Identity::new(SecretString::from(
                pass,
            ))));
            mode = "age, passphrase".into();
        }
        Ok(Keys {
            recipients,
            identities: CachingIdentity {
                inner: identities,
                cache: Mutex::new(HashMap::new()),
            },
            mode,
        })
    }

    /// Whether new objects are encrypted.
    pub fn encrypts(&self) -> bool {
        !self.recipients.is_empty()
    }

    pub fn describe(&self) -> &str {
        &self.mode
    }
}

/// The configured identities, remembering the file keys they unwrapped: a passphrase costs
/// about a second of scrypt per unwrap, and a parallel restore opens the object once per
/// table. The cache holds file keys of objects read by this process only, in memory.
struct CachingIdentity {
    inner: Vec<Box<dyn age::Identity + Send + Sync>>,
    cache: Mutex<HashMap<Vec<u8>, [u8; 16]>>,
}

impl CachingIdentity {
    fn cache_key(stanzas: &[Stanza]) -> Vec<u8> {
        let mut k = Vec::new();
        for s in stanzas {
            k.extend_from_slice(s.tag.as_bytes());
            for a in &s.args {
                k.push(0);
                k.extend_from_slice(a.as_bytes());
            }
            k.push(1);
            k.extend_from_slice(&s.body);
            k.push(2);
        }
        k
    }
}

impl age::Identity for CachingIdentity {
    fn unwrap_stanza(&self, stanza: &Stanza) -> Option<Result<FileKey, age::DecryptError>> {
        self.unwrap_stanzas(std::slice::from_ref(stanza))
    }

    fn unwrap_stanzas(&self, stanzas: &[Stanza]) -> Option<Result<FileKey, age::DecryptError>> {
        let key = Self::cache_key(stanzas);
        let cache = |m: &Mutex<HashMap<Vec<u8>, [u8; 16]>>| {
            m.lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&key)
                .copied()
        };
        if let Some(bytes) = cache(&self.cache) {
            return Some(Ok(FileKey::new(Box::new(bytes))));
        }
        for identity in &self.inner {
            match identity.unwrap_stanzas(stanzas) {
                Some(Ok(file_key)) => {
                    let mut map = self.cache.lock().unwrap_or_else(|p| p.into_inner());
                    if map.len() >= 256 {
                        map.clear();
                    }
                    map.insert(key, *file_key.expose_secret());
                    return Some(Ok(file_key));
                }
                Some(Err(e)) => return Some(Err(e)),
                None => {}
            }
        }
        None
    }
}

/// Any store, with age encryption of what is written and decryption of what is read.
pub struct EncryptedStorage {
    inner: Arc<dyn Storage>,
    keys: Arc<Keys>,
    /// Whether each object read so far is an age file. Objects are immutable and keys are
    /// never reused, so the answer holds; it saves a read per ranged open on object stores.
    seen: Mutex<HashMap<String, bool>>,
}

impl EncryptedStorage {
    pub fn new(inner: Arc<dyn Storage>, keys: Keys) -> EncryptedStorage {
        EncryptedStorage {
            inner,
            keys: Arc::new(keys),
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Whether the stored object is an age file.
    fn is_encrypted(&self, key: &str) -> Result<bool, StorageError> {
        let seen = |m: &Mutex<HashMap<String, bool>>| {
            m.lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(key)
                .copied()
        };
        if let Some(known) = seen(&self.seen) {
            return Ok(known);
        }
        let answer = self.sniff(key)?;
        let mut map = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= 4096 {
            map.clear();
        }
        map.insert(key.to_string(), answer);
        Ok(answer)
    }

    fn sniff(&self, key: &str) -> Result<bool, StorageError> {
        let mut head = Vec::with_capacity(AGE_MAGIC.len());
        self.inner
            .open(key)?
            .take(AGE_MAGIC.len() as u64)
            .read_to_end(&mut head)
            .map_err(|source| StorageError::Io {
                op: "read",
                key: key.to_string(),
                source,
            })?;
        Ok(head == AGE_MAGIC)
    }
}

fn decrypt_error(key: &str, e: age::DecryptError) -> StorageError {
    let why = match e {
        age::DecryptError::NoMatchingKeys => {
            "it is encrypted, and none of the configured keys opens it (set [encryption] identity_file or passphrase_file to the key it was encrypted with)".to_string()
        }
        age::DecryptError::DecryptionFailed | age::DecryptError::KeyDecryptionFailed => {
            "it is encrypted, and the configured key does not open it (a wrong passphrase or key, or a damaged object)".to_string()
        }
        other => format!("it is encrypted, and could not be decrypted: {other}"),
    };
    StorageError::Io {
        op: "decrypt",
        key: key.to_string(),
        source: io::Error::new(io::ErrorKind::PermissionDenied, why),
    }
}

impl Storage for EncryptedStorage {
    fn encrypts_new_objects(&self) -> bool {
        self.keys.encrypts()
    }

    fn describe(&self) -> String {
        if self.keys.encrypts() {
            format!(
                "{} (encrypted: {})",
                self.inner.describe(),
                self.keys.describe()
            )
        } else {
            format!(
                "{} (decrypts with the configured age identity)",
                self.inner.describe()
            )
        }
    }

    fn create(&self, key: &str) -> Result<Box<dyn ObjectWriter>, StorageError> {
        let writer = self.inner.create(key)?;
        if !self.keys.encrypts() {
            return Ok(writer);
        }
        let io = |source| StorageError::Io {
            op: "encrypt",
            key: key.to_string(),
            source,
        };
        let encryptor = age::Encryptor::with_recipients(
            self.keys
                .recipients
                .iter()
                .map(|r| r.as_ref() as &dyn age::Recipient),
        )
        .map_err(|e| io(io::Error::other(e)))?;
        let counted = Counted {
            inner: writer,
            bytes: 0,
        };
        let stream = encryptor.wrap_output(counted).map_err(io)?;
        Ok(Box::new(AgeWriter {
            key: key.to_string(),
            stream: Some(stream),
            plain: 0,
        }))
    }

    fn open_at(&self, key: &str, offset: u64) -> Result<Box<dyn Read + Send>, StorageError> {
        if !self.is_encrypted(key)? {
            return self.inner.open_at(key, offset);
        }
        let object = BufReader::with_capacity(
            256 << 10,
            SeekableObject {
                storage: self.inner.clone(),
                key: key.to_string(),
                pos: 0,
                reader: None,
            },
        );
        let io = |source| StorageError::Io {
            op: "read",
            key: key.to_string(),
            source,
        };
        let decryptor = age::Decryptor::new_buffered(object).map_err(|e| decrypt_error(key, e))?;
        let mut reader = decryptor
            .decrypt(std::iter::once(&self.keys.identities as &dyn age::Identity))
            .map_err(|e| decrypt_error(key, e))?;
        if offset > 0 {
            reader.seek(SeekFrom::Start(offset)).map_err(io)?;
        }
        Ok(Box::new(reader))
    }

    fn size(&self, key: &str) -> Result<Option<u64>, StorageError> {
        self.inner.size(key)
    }

    fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
        self.inner.delete(key)
    }

    fn collect_partial(&self) -> Result<usize, StorageError> {
        self.inner.collect_partial()
    }

    fn retry_aborts(&self) -> Result<usize, StorageError> {
        self.inner.retry_aborts()
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        self.inner.list(prefix)
    }

    fn signed_url(&self, key: &str, expires: Duration) -> Result<Option<String>, StorageError> {
        // A presigned link would hand out ciphertext: encrypted objects go through the
        // service, which decrypts.
        if self.is_encrypted(key)? {
            return Ok(None);
        }
        self.inner.signed_url(key, expires)
    }

    fn write_small(&self, key: &str, data: &[u8]) -> Result<(), StorageError> {
        // Manifests stay readable without the key, so that the catalog can be rebuilt from
        // the store alone; they hold sizes, checksums and names, never data or secrets.
        self.inner.write_small(key, data)
    }

    fn read_small(&self, key: &str, limit: u64) -> Result<Vec<u8>, StorageError> {
        self.inner.read_small(key, limit)
    }
}

/// The store's writer, counting the ciphertext that goes into it.
struct Counted {
    inner: Box<dyn ObjectWriter>,
    bytes: u64,
}

impl Write for Counted {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// An object being encrypted on its way into the store.
struct AgeWriter {
    key: String,
    stream: Option<age::stream::StreamWriter<Counted>>,
    plain: u64,
}

impl Write for AgeWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let stream = self
            .stream
            .as_mut()
            .ok_or_else(|| io::Error::other("object already finished"))?;
        let n = stream.write(buf)?;
        self.plain += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.stream {
            Some(s) => s.flush(),
            None => Ok(()),
        }
    }
}

impl ObjectWriter for AgeWriter {
    /// Checks the stored size against the ciphertext written, then returns the plaintext
    /// size, which is what the caller wrote and checks.
    fn commit(mut self: Box<Self>) -> Result<u64, StorageError> {
        let key = self.key.clone();
        let stream = self.stream.take().ok_or_else(|| StorageError::Io {
            op: "commit",
            key: key.clone(),
            source: io::Error::other("object already finished"),
        })?;
        let counted = stream.finish().map_err(|source| StorageError::Io {
            op: "finish encrypting",
            key: key.clone(),
            source,
        })?;
        let written = counted.bytes;
        let stored = counted.inner.commit()?;
        if stored != written {
            return Err(StorageError::Io {
                op: "store",
                key,
                source: io::Error::other(format!(
                    "the store has {stored} bytes of the encrypted object, but {written} were written"
                )),
            });
        }
        Ok(self.plain)
    }

    fn abort(mut self: Box<Self>) {
        if let Some(stream) = self.stream.take() {
            // The inner writer discards itself when dropped uncommitted.
            drop(stream);
        }
    }
}

/// A stored object as `Read + Seek`: a seek only moves the position; the next read opens
/// the object there (a ranged GET on object stores).
struct SeekableObject {
    storage: Arc<dyn Storage>,
    key: String,
    pos: u64,
    reader: Option<Box<dyn Read + Send>>,
}

impl Read for SeekableObject {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.reader.is_none() {
            let r = self
                .storage
                .open_at(&self.key, self.pos)
                .map_err(io::Error::other)?;
            self.reader = Some(r);
        }
        let Some(r) = self.reader.as_mut() else {
            return Ok(0);
        };
        let n = r.read(buf)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for SeekableObject {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(n) => n,
            SeekFrom::Current(d) => self.pos.checked_add_signed(d).ok_or_else(bad_seek)?,
            SeekFrom::End(d) => {
                let size = self
                    .storage
                    .size(&self.key)
                    .map_err(io::Error::other)?
                    .ok_or_else(|| io::Error::other(format!("{} disappeared", self.key)))?;
                size.checked_add_signed(d).ok_or_else(bad_seek)?
            }
        };
        if target != self.pos {
            self.reader = None;
            self.pos = target;
        }
        Ok(self.pos)
    }
}

fn bad_seek() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, "seek out of range")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_key_given_as_a_recipient_is_refused_without_quoting_it() {
        let secret = "AGE-SECRET-KEY-1QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ";
        for given in [secret.to_string(), secret.to_lowercase()] {
            let config = EncryptionConfig {
                recipients: vec![given.clone()],
                ..EncryptionConfig::default()
            };
            let Err(e) = Keys::load(&config) else {
                panic!("a secret key was taken for a recipient");
            };
            assert!(matches!(e, KeyError::SecretKeyAsRecipient), "{e}");
            assert!(!e.to_string().contains(&given[15..]), "{e}");
        }
        // Anything else is quoted, to show what is wrong with it.
        let config = EncryptionConfig {
            recipients: vec!["age1nope".into()],
            ..EncryptionConfig::default()
        };
        let Err(e) = Keys::load(&config) else {
            panic!("a bad recipient was accepted");
        };
        assert!(
            e.to_string().contains("`age1nope` is not an age recipient"),
            "{e}"
        );
    }
}
