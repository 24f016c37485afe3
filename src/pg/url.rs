//! `PgUrl`: a parsed `postgres://` URL whose `Display` and `Debug` never show the password.

use std::fmt;

use url::Url;

/// A PostgreSQL connection URL (`postgres://user:password@host:port/dbname?params`).
///
/// The password is a secret: it is reachable only through [`PgUrl::password`] (to hand to a
/// child process through its environment) and [`PgUrl::expose`] (to encrypt it at rest).
/// Everything else (`Display`, `Debug`, [`PgUrl::redacted`], [`PgUrl::without_password`])
/// leaves it out.
#[derive(Clone, PartialEq, Eq)]
pub struct PgUrl {
    /// The URL with any `password=` query parameter folded into the userinfo part, so that
    /// there is exactly one place where the password lives.
    url: Url,
}

/// Why a string is not a usable PostgreSQL URL.
#[derive(Debug, thiserror::Error)]
pub enum PgUrlError {
    /// The input, passwords redacted, is kept to show which scheme was typed.
    #[error(
        "`{0}` is not a PostgreSQL URL: the accepted schemes are postgres:// and postgresql:// (for example postgres://user:password@db.example.com:5432/mydb)"
    )]
    Scheme(String),
    #[error(
        "malformed PostgreSQL URL ({0}); the expected form is postgres://user:password@host:5432/dbname, with special characters in the password percent-encoded"
    )]
    Malformed(String),
    #[error(
        "the PostgreSQL URL names no database; add it as the path, as in postgres://user@host:5432/dbname"
    )]
    NoDatabase,
    #[error(
        "the PostgreSQL URL cannot be read as user:password@host: percent-encode special characters in the user name and password (`/` as %2F, `@` as %40, `#` as %23, `?` as %3F, `:` as %3A)"
    )]
    SpecialCharacters,
}

impl PgUrl {
    /// Parses a `postgres://` or `postgresql://` URL. The database name is required: a backup
    /// of "whatever database libpq picks by default" is a surprise nobody wants.
    pub fn parse(s: &str) -> Result<Self, PgUrlError> {
        let s = s.trim();
        if !(s.starts_with("postgres://") || s.starts_with("postgresql://")) {
            return Err(PgUrlError::Scheme(redact(s)));
        }
        // Never echo the input in the error: it may contain the password.
        let mut url = Url::parse(s).map_err(|e| PgUrlError::Malformed(e.to_string()))?;
        // `postgres://app:/x9@db/app` parses as host `app` and path `/x9@db/app`: a password
        // with an unencoded `/`, `?` or `#` would end up shown as a path. Refuse it.
        let userinfo_lost = url.username().is_empty()
            && url.password().is_none()
            && s.split_once("://")
                .is_some_and(|(_, rest)| rest.contains('@'));
        if userinfo_lost || url.fragment().is_some() {
            return Err(PgUrlError::SpecialCharacters);
        }
        let query_password = url
            .query_pairs()
            .find(|(k, _)| k == "password")
            .map(|(_, v)| v.into_owned());
        if let Some(password) = query_password {
            let rest: Vec<(String, String)> = url
                .query_pairs()
                .filter(|(k, _)| k != "password")
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            if rest.is_empty() {
                url.set_query(None);
            } else {
                url.query_pairs_mut().clear().extend_pairs(rest);
            }
            url.set_password(Some(&password))
                .map_err(|()| PgUrlError::Malformed("a password needs a host".into()))?;
        }
        let parsed = PgUrl { url };
        if parsed.dbname().is_empty() {
            return Err(PgUrlError::NoDatabase);
        }
        Ok(parsed)
    }

    /// The database name (percent-decoded).
    pub fn dbname(&self) -> String {
        let path = self.url.path().trim_start_matches('/');
        decode(path)
    }

    /// The user name, if the URL has one (percent-decoded).
    pub fn user(&self) -> Option<String> {
        let u = self.url.username();
        (!u.is_empty()).then(|| decode(u))
    }

    /// `host:port` as written in the URL, for messages.
    pub fn host_port(&self) -> String {
        let host = self.url.host_str().map(decode).unwrap_or_default();
        let host = if host.is_empty() {
            "local socket".to_string()
        } else {
            host
        };
        match self.url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host,
        }
    }

    /// The password, percent-decoded; only for a child process's environment.
    pub fn password(&self) -> Option<String> {
        self.url.password().map(decode)
    }

    /// The URL with the password removed: safe for argv and logs, and enough for libpq when
    /// the password travels in `PGPASSWORD`.
    pub fn without_password(&self) -> String {
        let mut u = self.url.clone();
        // Cannot fail: the URL has a host whenever it has a password.
        let _ = u.set_password(None);
        u.to_string()
    }

    /// The URL with the password replaced by `***`, for display.
    pub fn redacted(&self) -> String {
        let mut u = self.url.clone();
        if u.password().is_some() {
            let _ = u.set_password(Some("***"));
        }
        u.to_string().replacen(":%2A%2A%2A@", ":***@", 1)
    }

    /// The same server and credentials, another database.
    pub fn with_dbname(&self, dbname: &str) -> PgUrl {
        let mut u = self.url.clone();
        u.set_path(&format!("/{}", encode_path(dbname)));
        PgUrl { url: u }
    }

    /// The same URL with connection parameter `key` set to `value` (such as
    /// `replication=true`), replacing any value it had.
    pub fn with_param(&self, key: &str, value: &str) -> PgUrl {
        let mut u = self.url.clone();
        let rest: Vec<(String, String)> = u
            .query_pairs()
            .filter(|(k, _)| k != key)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        u.query_pairs_mut()
            .clear()
            .extend_pairs(rest)
            .append_pair(key, value);
        PgUrl { url: u }
    }

    /// The hosts libpq will try (a `host=` parameter wins over the URL's host; an empty host
    /// is the default socket) and the port (a `port=` parameter wins; 5432 when unset).
    pub fn hosts_and_port(&self) -> (Vec<String>, u16) {
        let param = |key: &str| {
            self.url
                .query_pairs()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.into_owned())
        };
        let hosts = match param("host") {
            Some(h) => h.split(',').map(str::to_string).collect(),
            None => vec![self.url.host_str().map(decode).unwrap_or_default()],
        };
        let port = param("port")
            .and_then(|p| p.split(',').next().and_then(|p| p.parse().ok()))
            .or(self.url.port())
            .unwrap_or(5432);
        (hosts, port)
    }

    /// The full URL including the password. Only for sealing it in the catalog.
    pub fn expose(&self) -> &str {
        self.url.as_str()
    }
}

impl fmt::Display for PgUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Debug for PgUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PgUrl({})", self.redacted())
    }
}

/// `text` with every password it may hold replaced by `***`: what follows the `:` of a
/// `user:password@` (after any scheme, mistyped or not, or none) and the value of each
/// `password=` (a connection string or URL parameter, any case).
///
/// Every message that echoes what a user typed passes it through this: a URL with a
/// mistyped scheme (`postgress://`, `postgresql+psycopg2://`, `http://`) is not a [`PgUrl`],
/// so nothing else would hide its password. Erring towards hiding too much: a `:` and an `@`
/// in the same stretch of text are enough.
pub fn redact(text: &str) -> String {
    let mut hide: Vec<(usize, usize)> = Vec::new();
    for (at, _) in text.match_indices('@') {
        let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
        let line = &text[line_start..at];
        // After a scheme, the user information runs from `://` to the `@` (a password typed
        // with a space or quote in it included); without one, from the start of the word.
        let start = match line.rfind("://") {
            Some(i) => line_start + i + 3,
            None => {
                line_start
                    + line
                        .char_indices()
                        .rev()
                        .find(|(_, c)| c.is_whitespace() || matches!(c, '`' | '"' | '\''))
                        .map_or(0, |(i, c)| i + c.len_utf8())
            }
        };
        let userinfo = &text[start..at];
        // The example in our own hints (`postgres://user:password@host`) is no secret.
        if userinfo == "user:password" {
            continue;
        }
        if let Some(colon) = userinfo.find(':') {
            hide.push((start + colon + 1, at));
        }
    }
    // ASCII lowercasing keeps every byte offset.
    let lower = text.to_ascii_lowercase();
    for (i, key) in lower.match_indices("password=") {
        let from = i + key.len();
        let rest = &text[from..];
        let len = match rest.chars().next() {
            Some(q @ ('\'' | '"')) => rest[1..].find(q).map_or(rest.len(), |e| e + 2),
            _ => rest
                .find(|c: char| c.is_whitespace() || matches!(c, '&' | '`'))
                .unwrap_or(rest.len()),
        };
        if len > 0 {
            hide.push((from, from + len));
        }
    }
    if hide.is_empty() {
        return text.to_string();
    }
    hide.sort_unstable();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    for (from, to) in hide {
        if to <= copied {
            continue;
        }
        if from >= copied {
            out.push_str(&text[copied..from]);
            out.push_str("***");
        }
        // An overlapping range extends the one already hidden.
        copied = to;
    }
    out.push_str(&text[copied..]);
    out
}

fn decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

fn encode_path(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_the_password_everywhere() {
        let u = PgUrl::parse("postgres://alice:s3cr%40t@db.example.com:5433/app").unwrap();
        assert_eq!(u.redacted(), "postgres://alice:***@db.example.com:5433/app");
        assert_eq!(u.to_string(), u.redacted());
        assert!(!format!("{u:?}").contains("s3cr"));
        assert_eq!(u.password().as_deref(), Some("s3cr@t"));
        assert_eq!(
            u.without_password(),
            "postgres://alice@db.example.com:5433/app"
        );
        assert_eq!(u.dbname(), "app");
        assert_eq!(u.user().as_deref(), Some("alice"));
        assert_eq!(u.host_port(), "db.example.com:5433");
    }

    #[test]
    fn folds_a_query_password_into_the_userinfo() {
        let u = PgUrl::parse("postgresql://bob@h/db?sslmode=require&password=pw%2B1").unwrap();
        assert_eq!(u.password().as_deref(), Some("pw+1"));
        assert!(!u.without_password().contains("pw"));
        assert!(u.without_password().contains("sslmode=require"));
        assert_eq!(u.redacted(), "postgresql://bob:***@h/db?sslmode=require");
    }

    #[test]
    fn rejects_what_is_not_a_postgres_url_without_echoing_it() {
        assert!(matches!(
            PgUrl::parse("mysql://u:hunter2@h/db"),
            Err(PgUrlError::Scheme(_))
        ));
        assert!(matches!(
            PgUrl::parse("postgres://u:hunter2@h"),
            Err(PgUrlError::NoDatabase)
        ));
        let err = PgUrl::parse("postgres://u:hunter2@h:notaport/db").unwrap_err();
        assert!(!err.to_string().contains("hunter2"));
        for unencoded in ["postgres://app:/x9Q@db/app", "postgres://app:p#w@db/app"] {
            let err = PgUrl::parse(unencoded).unwrap_err().to_string();
            assert!(err.contains("percent-encode"), "{unencoded}: {err}");
            assert!(!err.contains("x9Q") && !err.contains("p#w"));
        }
        let encoded = PgUrl::parse("postgres://app:%2Fx9Q@db/app").unwrap();
        assert_eq!(encoded.password().as_deref(), Some("/x9Q"));
    }

    #[test]
    fn redact_hides_passwords_in_anything_that_looks_like_a_url_or_connection_string() {
        for (input, secret) in [
            ("postgresql+psycopg2://u:pw1x@h/db", "pw1x"),
            ("postgress://u:pw2x@h:5432/db", "pw2x"),
            ("http://u:pw3x@h/db", "pw3x"),
            ("postgres:/u:pw4x@h/db", "pw4x"),
            ("u:pw5x@h/db", "pw5x"),
            ("postgress://u:my pw6x@h/db", "pw6x"),
            ("postgress://u:p@ss7x@h/db", "ss7x"),
            (
                "postgress://u@h/db?sslmode=require&password=pw8x&x=1",
                "pw8x",
            ),
            ("host=h user=u PASSWORD=pw9x dbname=db", "pw9x"),
            ("host=h password='p wAx' dbname=db", "wAx"),
            (
                "`postgress://u:pwBx@h/db` is not a valid database name",
                "pwBx",
            ),
        ] {
            let shown = redact(input);
            assert!(!shown.contains(secret), "{input} -> {shown}");
            assert!(shown.contains("***"), "{input} -> {shown}");
        }
        assert_eq!(redact("postgress://u:pw@h/db"), "postgress://u:***@h/db");
        assert_eq!(redact("main"), "main");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact("a@b: `@` as %40"), "a@b: `@` as %40");
        let hint = PgUrlError::Scheme(redact("x://u:pw@h")).to_string();
        assert!(
            hint.contains("postgres://user:password@db.example.com"),
            "{hint}"
        );
        assert!(hint.contains("x://u:***@h"), "{hint}");
        assert_eq!(
            redact(&redact("postgress://u:pw@h/db")),
            "postgress://u:***@h/db"
        );
    }

    #[test]
    fn swaps_the_database() {
        let u = PgUrl::parse("postgres://u:p@h:1/a").unwrap();
        let v = u.with_dbname("my db");
        assert_eq!(v.dbname(), "my db");
        assert_eq!(v.password().as_deref(), Some("p"));
    }
}
