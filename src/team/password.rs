//! Passwords and user names: the rules a new one must meet, and argon2id hashing.
//!
//! Hashing and verifying are slow on purpose (argon2id with OWASP's parameters: 19 MiB, two
//! passes), so they block: call them off the async threads.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

/// The shortest password taken, in characters.
pub const MIN_PASSWORD_CHARS: usize = 12;
/// The longest password taken, in bytes (so that a request cannot make the hash work long).
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// What is wrong with a new password or user name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    #[error(
        "the password is too short: use at least {MIN_PASSWORD_CHARS} characters (a few words make a good one)"
    )]
    TooShort,
    #[error("the password is too long: use at most {MAX_PASSWORD_BYTES} bytes")]
    TooLong,
    #[error("the password holds a control character (a line break, a tab): type it on one line")]
    Control,
    #[error(
        "`{0}` is not a user name: use 1 to 63 letters, digits, `_`, `-` or `.`, starting with a letter or digit"
    )]
    BadName(String),
    #[error("`{0}` is reserved for the service's own API token; pick another user name")]
    Reserved(String),
}

/// The actor the audit log names for requests made with the service's own API token; no
/// user may take the name.
pub const SERVICE_TOKEN_USER: &str = "service-token";

/// Checks a new password: at least [`MIN_PASSWORD_CHARS`] characters, no control characters.
/// The error never quotes the password.
pub fn check_password(password: &str) -> Result<(), RuleError> {
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(RuleError::TooLong);
    }
    if password.chars().any(char::is_control) {
        return Err(RuleError::Control);
    }
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(RuleError::TooShort);
    }
    Ok(())
}

/// Checks a user name: like a database name, 1 to 63 of letters, digits, `_`, `-`, `.`,
/// starting with a letter or digit; not the service token's name.
pub fn check_name(name: &str) -> Result<(), RuleError> {
    let ok = (1..=63).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if !ok {
        // A name may be anything a request sent: shown only when it is short and printable.
        let shown = if name.len() <= 63 && !name.chars().any(char::is_control) {
            name.to_string()
        } else {
            format!(
                "{}...",
                name.chars()
                    .take(20)
                    .filter(|c| !c.is_control())
                    .collect::<String>()
            )
        };
        return Err(RuleError::BadName(shown));
    }
    if name == SERVICE_TOKEN_USER {
        return Err(RuleError::Reserved(name.to_string()));
    }
    Ok(())
}

/// A hashing failure (a salt the OS could not give, a stored hash that is not one).
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("cannot get random bytes for a password salt: {0}")]
    Random(#[source] getrandom::Error),
    #[error("argon2 failed: {0}")]
    Argon2(argon2::password_hash::Error),
}

fn argon2() -> Argon2<'static> {
    // OWASP's argon2id parameters: 19 MiB, 2 passes, 1 lane. Written out so that a change of
    // the crate's defaults does not change ours.
    let params = Params::new(19 * 1024, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// The argon2id hash of `password` with a fresh random salt, in PHC form. Blocks (tens of
/// milliseconds).
pub fn hash(password: &str) -> Result<String, HashError> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(HashError::Random)?;
    let salt = SaltString::encode_b64(&salt).map_err(HashError::Argon2)?;
    Ok(argon2()
        .hash_password(password.as_bytes(), &salt)
        .map_err(HashError::Argon2)?
        .to_string())
}

/// Whether `password` matches the PHC hash `stored`. A stored value that is not a hash
/// matches nothing. Blocks as long as [`hash`] does.
pub fn verify(password: &str, stored: &str) -> bool {
    match PasswordHash::new(stored) {
        Ok(h) => argon2().verify_password(password.as_bytes(), &h).is_ok(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_need_twelve_characters_on_one_line() {
        assert_eq!(check_password("short"), Err(RuleError::TooShort));
        assert_eq!(check_password("elevenchars"), Err(RuleError::TooShort));
        assert_eq!(check_password("twelve chars"), Ok(()));
        // Characters, not bytes: twelve accented letters are enough, eleven are not.
        assert_eq!(check_password("ééééééééééé"), Err(RuleError::TooShort));
        assert_eq!(check_password("éééééééééééé"), Ok(()));
        assert_eq!(
            check_password("line one\nline two"),
            Err(RuleError::Control)
        );
        assert_eq!(check_password(&"x".repeat(2000)), Err(RuleError::TooLong));
        let e = check_password("hunter2").unwrap_err().to_string();
        assert!(e.contains("at least 12") && !e.contains("hunter2"), "{e}");
    }

    #[test]
    fn user_names_are_like_database_names() {
        for ok in ["alice", "a", "bob.smith", "ops_1", "x-y", &"a".repeat(63)] {
            assert_eq!(check_name(ok), Ok(()), "{ok}");
        }
        for bad in ["", "-alice", ".x", "a b", "al/ice", "ä", &"a".repeat(64)] {
            assert!(
                matches!(check_name(bad), Err(RuleError::BadName(_))),
                "{bad}"
            );
        }
        assert_eq!(
            check_name("service-token"),
            Err(RuleError::Reserved("service-token".into()))
        );
    }

    #[test]
    fn hashes_are_argon2id_salted_and_verify() {
        let a = hash("correct horse battery").unwrap();
        let b = hash("correct horse battery").unwrap();
        assert!(a.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{a}");
        assert_ne!(a, b, "each hash has its own salt");
        assert!(!a.contains("correct horse"));
        assert!(verify("correct horse battery", &a));
        assert!(!verify("correct horse batterY", &a));
        assert!(!verify("anything", "not a hash"));
    }
}
