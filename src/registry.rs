//! The database registry: the names users give their databases, and the URLs behind them,
//! sealed in the catalog with the service's key. Everything that takes "a database" from a user
//! (a registered name, a `postgres://` URL, or nothing for the only one) resolves it here.
//!
//! Every method blocks on the catalog: call it from async code through `spawn_blocking`.

use std::sync::Arc;

use crate::catalog::{Catalog, CatalogError, DatabaseRecord};
use crate::clock::Clock;
use crate::pg::{DbName, DbRef, DbRefError, PgUrl, PgUrlError};
use crate::secret::{Secrets, UnsealError};

/// Why a database reference cannot be resolved or registered, in words the user can act on.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(
        "no database named `{0}` is registered; add it with `pgbackups databases:add {0} postgres://...`, or pass a postgres:// URL instead"
    )]
    UnknownDatabase(String),
    #[error(
        "no database is registered; add one with `pgbackups databases:add NAME postgres://...`, or pass a postgres:// URL"
    )]
    NoDatabases,
    #[error("several databases are registered ({0}); name the one you mean")]
    WhichDatabase(String),
    #[error(transparent)]
    BadName(#[from] crate::pg::BadDbName),
    #[error(transparent)]
    BadUrl(#[from] PgUrlError),
    #[error("cannot seal the database's URL: {0}")]
    Seal(#[source] std::io::Error),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Unseal(#[from] UnsealError),
}

/// The registered databases of one service.
pub struct Registry {
    catalog: Arc<dyn Catalog>,
    secrets: Arc<Secrets>,
    clock: Arc<dyn Clock>,
}

impl Registry {
    /// A registry over the catalog, sealing URLs with the service's key.
    pub fn new(catalog: Arc<dyn Catalog>, secrets: Arc<Secrets>, clock: Arc<dyn Clock>) -> Self {
        Registry {
            catalog,
            secrets,
            clock,
        }
    }

    /// Resolves what a user typed for a database: a registered name, a `postgres://` URL, or
    /// nothing (the only registered database). Returns the label to record and the URL.
    pub fn resolve(&self, reference: Option<&str>) -> Result<(String, PgUrl), RegistryError> {
        let name = match DbRef::parse_optional(reference)? {
            Some(DbRef::Url(url)) => return Ok((url.redacted(), url)),
            Some(DbRef::Name(name)) => name.to_string(),
            None => {
                let dbs = self.catalog.list_databases()?;
                match dbs.as_slice() {
                    [] => return Err(RegistryError::NoDatabases),
                    [one] => DbName::parse(&one.name)?.to_string(),
                    many => {
                        return Err(RegistryError::WhichDatabase(
                            many.iter()
                                .map(|d| d.name.as_str())
                                .collect::<Vec<_>>()
                                .join(", "),
                        ));
                    }
                }
            }
        };
        let sealed = self
            .catalog
            .database_url_sealed(&name)?
            .ok_or_else(|| RegistryError::UnknownDatabase(name.clone()))?;
        let url = PgUrl::parse(&self.secrets.unseal(&sealed)?)?;
        Ok((name, url))
    }

    /// Registers a database under `name`, its URL sealed.
    pub fn add(&self, name: &str, url: &str) -> Result<PgUrl, RegistryError> {
        check_name(name)?;
        let url = PgUrl::parse(url)?;
        let sealed = self
            .secrets
            .seal(url.expose())
            .map_err(RegistryError::Seal)?;
        self.catalog
            .add_database(name, &sealed, &url.redacted(), self.clock.now())?;
        Ok(url)
    }

    /// All registered databases, by name (URLs redacted).
    pub fn list(&self) -> Result<Vec<DatabaseRecord>, RegistryError> {
        Ok(self.catalog.list_databases()?)
    }

    /// Forgets a database with its schedule (one atomic change); its backups stay. Refused
    /// while it is protected. Returns whether it was registered.
    pub fn remove(&self, name: &str) -> Result<bool, RegistryError> {
        Ok(self.catalog.remove_database(name)?)
    }

    /// Whether `name` is registered.
    pub fn contains(&self, name: &str) -> Result<bool, RegistryError> {
        Ok(self.catalog.database_url_sealed(name)?.is_some())
    }
}

/// Checks a database name ([`DbName`], where the rule lives), for the callers that only need
/// the check.
pub fn check_name(name: &str) -> Result<(), RegistryError> {
    DbName::parse(name)?;
    Ok(())
}

impl From<DbRefError> for RegistryError {
    fn from(e: DbRefError) -> RegistryError {
        match e {
            DbRefError::Name(e) => RegistryError::BadName(e),
            DbRefError::Url(e) => RegistryError::BadUrl(e),
        }
    }
}

/// The word a user must pass to `--confirm` for a database label: the registered name, or the
/// database name inside a URL.
pub fn confirm_word(label: &str) -> String {
    match PgUrl::parse(label) {
        Ok(url) => url.dbname(),
        Err(_) => label.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_and_confirmed() {
        assert_eq!(confirm_word("main"), "main");
        assert_eq!(confirm_word("postgres://u:***@h:5432/app"), "app");
        assert!(check_name("DATABASE_URL").is_ok());
        assert!(check_name("bad name").is_err());
        assert!(check_name("").is_err());
        assert!(check_name("-rf").is_err());
        assert!(check_name("--help").is_err());
        assert!(check_name("_x-1").is_ok());
        let err = check_name("postgress://u:pw@h/db").unwrap_err().to_string();
        assert!(!err.contains("pw@") && err.contains("postgres://"), "{err}");
    }

    #[test]
    fn resolves_the_only_database_and_refuses_unknown_ones() {
        let catalog = crate::catalog::open_in_memory().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let secrets = Arc::new(Secrets::load_or_create(dir.path()).unwrap());
        let registry = Registry::new(catalog, secrets, Arc::new(crate::clock::SystemClock));
        assert!(matches!(
            registry.resolve(None),
            Err(RegistryError::NoDatabases)
        ));
        registry.add("main", "postgres://u:pw@h/app").unwrap();
        let (name, url) = registry.resolve(None).unwrap();
        assert_eq!((name.as_str(), url.dbname().as_str()), ("main", "app"));
        assert!(matches!(
            registry.resolve(Some("other")),
            Err(RegistryError::UnknownDatabase(_))
        ));
        assert!(registry.remove("main").unwrap());
        assert!(!registry.contains("main").unwrap());
    }
}
