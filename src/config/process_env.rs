//! The process environment, read once: a snapshot taken on first use, which the parts that
//! hand variables on to children (PATH for finding PostgreSQL's tools, the variables passed
//! to `pg_dump` and its kind, the whole environment for our own binary run again) read
//! instead of `std::env`. Settings are not read here: they come from [`super::load`].

use std::ffi::{OsStr, OsString};
use std::sync::OnceLock;

/// Our environment as it was when first asked for (nothing in the service changes it).
fn snapshot() -> &'static [(OsString, OsString)] {
    static SNAPSHOT: OnceLock<Vec<(OsString, OsString)>> = OnceLock::new();
    SNAPSHOT.get_or_init(|| std::env::vars_os().collect())
}

/// One variable of our environment, if set.
pub fn var_os(key: impl AsRef<OsStr>) -> Option<OsString> {
    let key = key.as_ref();
    snapshot()
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
}

/// Every variable of our environment.
pub fn vars_os() -> impl Iterator<Item = (OsString, OsString)> {
    snapshot().iter().cloned()
}
