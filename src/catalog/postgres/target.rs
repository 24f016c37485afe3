//! Where a PostgreSQL catalog is, and how it is shown: its URL without the password.

/// How many connections one node opens to the catalog at most.
pub const DEFAULT_POOL_SIZE: usize = 8;

/// Where a PostgreSQL catalog is: a `postgres://` URL and, kept apart from it, the password
/// (from `PGPASSWORD`, a passfile or the configuration file). Neither `Debug` nor
/// [`PgTarget::describe`] shows the password.
#[derive(Clone)]
pub struct PgTarget {
    /// `postgres://user@host:port/database?options` (a password in it is used too).
    pub url: String,
    /// The password, when it is not in the URL.
    pub password: Option<String>,
    /// At most this many connections ([`DEFAULT_POOL_SIZE`] by default).
    pub pool_size: usize,
}

impl PgTarget {
    /// A target with the default pool size.
    pub fn new(url: impl Into<String>, password: Option<String>) -> PgTarget {
        PgTarget {
            url: url.into(),
            password,
            pool_size: DEFAULT_POOL_SIZE,
        }
    }

    /// The URL without its password, for logs and errors.
    pub fn describe(&self) -> String {
        crate::pg::redact(&self.url)
    }
}

impl std::fmt::Debug for PgTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgTarget")
            .field("url", &self.describe())
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("pool_size", &self.pool_size)
            .finish()
    }
}
