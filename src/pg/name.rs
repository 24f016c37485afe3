//! The names users give databases, checked once where they come in: [`DbName`] (a registered
//! name) and [`DbRef`] (what a user may type for a database: a registered name or a
//! `postgres://` URL).

use std::fmt;
use std::str::FromStr;

use super::{PgUrl, PgUrlError, redact};

/// A registered database name: 1 to 63 letters, digits, `_` or `-`, starting with a letter,
/// digit or `_` (so it is never taken for an option, and is safe in object keys and file
/// names).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DbName(String);

/// Text that is not a database name (its password redacted, should it hold one).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{0}` is not a valid database name: use 1 to 63 letters, digits, `_` or `-`, starting with a letter, digit or `_` (or pass a postgres:// URL)"
)]
pub struct BadDbName(pub String);

/// Why text is neither a database name nor a PostgreSQL URL.
#[derive(Debug, thiserror::Error)]
pub enum DbRefError {
    #[error(transparent)]
    Name(#[from] BadDbName),
    /// It was meant as a URL (it has a scheme), and is not a valid one.
    #[error(transparent)]
    Url(#[from] PgUrlError),
}

impl DbName {
    /// Checks a database name. What was meant as a URL is answered as one: with the accepted
    /// schemes, and without echoing its password (`postgress://u:pw@h/db`, `http://...`).
    pub fn parse(name: &str) -> Result<DbName, DbRefError> {
        if name.contains("://") {
            return Err(PgUrlError::Scheme(redact(name)).into());
        }
        let first_ok = name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_');
        let ok = first_ok
            && name.len() <= 63
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if ok {
            Ok(DbName(name.to_string()))
        } else {
            Err(BadDbName(redact(name)).into())
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DbName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for DbName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl FromStr for DbName {
    type Err = DbRefError;

    fn from_str(s: &str) -> Result<DbName, DbRefError> {
        DbName::parse(s)
    }
}

impl serde::Serialize for DbName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for DbName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<DbName, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        DbName::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// What a user may type for a database: a registered name or a PostgreSQL URL.
#[derive(Clone, Debug)]
pub enum DbRef {
    Name(DbName),
    Url(PgUrl),
}

impl DbRef {
    /// Reads a reference: `postgres://` and `postgresql://` are URLs, anything else must be a
    /// database name. Surrounding whitespace is ignored.
    pub fn parse(text: &str) -> Result<DbRef, DbRefError> {
        let text = text.trim();
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            Ok(DbRef::Url(PgUrl::parse(text)?))
        } else {
            Ok(DbRef::Name(DbName::parse(text)?))
        }
    }

    /// [`DbRef::parse`] for an optional argument: missing or blank is `None` (the caller
    /// decides what that means, such as "the only registered database").
    pub fn parse_optional(text: Option<&str>) -> Result<Option<DbRef>, DbRefError> {
        match text.map(str::trim).filter(|t| !t.is_empty()) {
            Some(t) => DbRef::parse(t).map(Some),
            None => Ok(None),
        }
    }
}

impl FromStr for DbRef {
    type Err = DbRefError;

    fn from_str(s: &str) -> Result<DbRef, DbRefError> {
        DbRef::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_names_are_checked_with_the_message_users_see() {
        for ok in ["DATABASE_URL", "_x-1", "main", "9lives", &"a".repeat(63)] {
            let name = DbName::parse(ok).unwrap();
            assert_eq!(name.as_str(), ok);
            assert_eq!(name.to_string(), ok);
        }
        for bad in ["bad name", "", "-rf", "--help", "a.b", &"a".repeat(64)] {
            let err = DbName::parse(bad).unwrap_err();
            assert!(matches!(err, DbRefError::Name(_)), "{bad}");
            assert_eq!(
                err.to_string(),
                format!(
                    "`{bad}` is not a valid database name: use 1 to 63 letters, digits, `_` or `-`, starting with a letter, digit or `_` (or pass a postgres:// URL)"
                )
            );
        }
        // Meant as a URL: answered as one, the password not echoed.
        let err = DbName::parse("postgress://u:pw@h/db").unwrap_err();
        assert!(matches!(err, DbRefError::Url(PgUrlError::Scheme(_))));
        assert!(!err.to_string().contains("pw"), "{err}");
        assert!(err.to_string().contains("postgres://"), "{err}");
    }

    #[test]
    fn names_round_trip_through_json_and_are_checked_there_too() {
        let name = DbName::parse("main").unwrap();
        let json = serde_json::to_string(&name).unwrap();
        assert_eq!(json, "\"main\"");
        assert_eq!(serde_json::from_str::<DbName>(&json).unwrap(), name);
        assert!(serde_json::from_str::<DbName>("\"-rf\"").is_err());
    }

    #[test]
    fn a_reference_is_a_name_or_a_url() {
        assert!(matches!(DbRef::parse(" main "), Ok(DbRef::Name(n)) if n.as_str() == "main"));
        match DbRef::parse("postgres://u:secret@h:5432/db") {
            Ok(DbRef::Url(url)) => assert!(!url.to_string().contains("secret")),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            DbRef::parse("postgresql://h"),
            Err(DbRefError::Url(PgUrlError::NoDatabase))
        ));
        assert!(matches!(DbRef::parse("bad name"), Err(DbRefError::Name(_))));
        assert!(DbRef::parse_optional(Some("  ")).unwrap().is_none());
        assert!(DbRef::parse_optional(None).unwrap().is_none());
        assert!(DbRef::parse_optional(Some("main")).unwrap().is_some());
    }
}
