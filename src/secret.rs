//! The service's own secrets, kept in its data directory with mode 0600: the API token and the
//! key that seals database URLs in the catalog.

use std::io;
use std::path::Path;

use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};

use crate::durable;

/// File name of the bearer token inside the data directory.
pub const TOKEN_FILE: &str = "token";
/// File name of the catalog sealing key inside the data directory.
pub const KEY_FILE: &str = "catalog.key";

/// The API token and the sealing key.
pub struct Secrets {
    token: String,
    cipher: ChaCha20Poly1305,
    /// Key of the HMAC that signs download links (derived from the catalog key, so that
    /// links stay valid across restarts and die with the key).
    link_key: [u8; 32],
}

/// A sealed value that cannot be opened: a different key, or a damaged catalog.
#[derive(Debug, thiserror::Error)]
#[error(
    "a sealed database URL cannot be decrypted: the catalog key ({KEY_FILE} in the data directory) does not match the catalog; restore the original key file or add the database again"
)]
pub struct UnsealError;

impl Secrets {
    /// Reads the token and key from `data_dir`, creating them (random, mode 0600) on first start.
    pub fn load_or_create(data_dir: &Path) -> io::Result<Secrets> {
        let token_path = data_dir.join(TOKEN_FILE);
        let token = match std::fs::read_to_string(&token_path) {
            Ok(t) => t.trim().to_string(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let t = random_hex(32)?;
                durable::write_file(&token_path, format!("{t}\n").as_bytes(), 0o600)?;
                t
            }
            Err(e) => return Err(e),
        };
        let key_path = data_dir.join(KEY_FILE);
        let key_hex = match std::fs::read_to_string(&key_path) {
            Ok(k) => k.trim().to_string(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let k = random_hex(32)?;
                durable::write_file(&key_path, format!("{k}\n").as_bytes(), 0o600)?;
                k
            }
            Err(e) => return Err(e),
        };
        let key_bytes = hex::decode(&key_hex)
            .ok()
            .filter(|b| b.len() == 32)
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{} is not a 64-digit hex key; restore it from a copy",
                        key_path.display()
                    ),
                )
            })?;
        let link_key = {
            use sha2::Digest;
            let mut h = sha2::Sha256::new();
            h.update(b"pgbackups download-link key v1\0");
            h.update(&key_bytes);
            h.finalize().into()
        };
        Ok(Secrets {
            token,
            cipher: ChaCha20Poly1305::new(Key::from_slice(&key_bytes)),
            link_key,
        })
    }

    /// The bearer token clients must present.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Whether `presented` is the token, compared in constant time.
    pub fn token_matches(&self, presented: &str) -> bool {
        let (a, b) = (self.token.as_bytes(), presented.as_bytes());
        if a.len() != b.len() {
            return false;
        }
        a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }

    /// The HMAC-SHA256 of `message` under the link key, hex.
    pub fn sign_link(&self, message: &str) -> String {
        use hmac::Mac;
        let mut mac = <hmac::Hmac<sha2::Sha256> as hmac::Mac>::new_from_slice(&self.link_key)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(message.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// Whether `signature` is [`Secrets::sign_link`] of `message`, compared in constant time.
    pub fn link_signature_matches(&self, message: &str, signature: &str) -> bool {
        use hmac::Mac;
        let Ok(sig) = hex::decode(signature) else {
            return false;
        };
        let Ok(mut mac) = <hmac::Hmac<sha2::Sha256> as hmac::Mac>::new_from_slice(&self.link_key)
        else {
            return false;
        };
        mac.update(message.as_bytes());
        mac.verify_slice(&sig).is_ok()
    }

    /// Encrypts `plaintext` with a fresh random nonce: `nonce || ciphertext+tag`.
    pub fn seal(&self, plaintext: &str) -> io::Result<Vec<u8>> {
        let mut nonce = [0u8; 12];
        getrandom::fill(&mut nonce).map_err(io::Error::other)?;
        let ct = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), plaintext.as_bytes())
            .map_err(|_| io::Error::other("encryption failed"))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// Decrypts what [`Secrets::seal`] produced.
    pub fn unseal(&self, sealed: &[u8]) -> Result<String, UnsealError> {
        if sealed.len() < 12 {
            return Err(UnsealError);
        }
        let (nonce, ct) = sealed.split_at(12);
        let pt = self
            .cipher
            .decrypt(Nonce::from_slice(nonce), ct)
            .map_err(|_| UnsealError)?;
        String::from_utf8(pt).map_err(|_| UnsealError)
    }
}

/// `n` random bytes as lowercase hex.
pub fn random_hex(n: usize) -> io::Result<String> {
    let mut buf = vec![0u8; n];
    getrandom::fill(&mut buf).map_err(io::Error::other)?;
    Ok(hex::encode(buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_and_unseals_and_keeps_its_files_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let s = Secrets::load_or_create(dir.path()).unwrap();
        let sealed = s.seal("postgres://u:pw@h/db").unwrap();
        assert!(!String::from_utf8_lossy(&sealed).contains("pw@"));
        assert_eq!(s.unseal(&sealed).unwrap(), "postgres://u:pw@h/db");
        let again = Secrets::load_or_create(dir.path()).unwrap();
        assert_eq!(again.token(), s.token());
        assert_eq!(again.unseal(&sealed).unwrap(), "postgres://u:pw@h/db");
        assert!(s.token_matches(s.token()));
        assert!(!s.token_matches("nope"));
        for f in [TOKEN_FILE, KEY_FILE] {
            let mode = std::fs::metadata(dir.path().join(f))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
