//! Where the catalog is: the embedded SQLite file in the data directory (the default), or a
//! PostgreSQL database that several nodes share (`--catalog`, `PGBACKUPS_CATALOG`, or
//! `catalog` in the configuration file). Its password comes as libpq users expect: in the
//! file's URL, else `PGPASSWORD`, else the passfile (`PGPASSFILE` or `~/.pgpass`); never from
//! the command line, where `ps` would show it, nor from `PGBACKUPS_CATALOG`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::ConfigError;

/// A PostgreSQL catalog's URL and its password. `Debug` shows neither the password nor any
/// part of the URL that could hold one.
#[derive(Clone)]
pub struct CatalogUrl {
    /// `postgres://user@host:port/database?options`, without the password when it came apart.
    pub url: String,
    /// The password, from the URL, `PGPASSWORD` or the passfile.
    pub password: Option<String>,
}

impl std::fmt::Debug for CatalogUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CatalogUrl")
            .field("url", &without_password(&self.url))
            .field("password", &self.password.as_ref().map(|_| "***"))
            .finish()
    }
}

/// `url` with its password, if any, replaced by `***`.
fn without_password(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.to_string()
        }
        Err(_) => "(not a URL)".to_string(),
    }
}

/// Reads one environment variable.
type Env<'a> = &'a dyn Fn(&str) -> Option<OsString>;

/// The catalog from the flag (`--catalog`), else `PGBACKUPS_CATALOG`, else the file's
/// `catalog`; `None` for the embedded SQLite catalog. Only the file's URL may hold the
/// password.
pub(super) fn resolve(
    flag: Option<String>,
    file: Option<String>,
    env: Env,
) -> Result<Option<CatalogUrl>, ConfigError> {
    let text = |var: &str| {
        env(var)
            .and_then(|v| v.into_string().ok())
            .filter(|v| !v.is_empty())
    };
    let outside_file = flag
        .filter(|f| !f.is_empty())
        .or_else(|| text("PGBACKUPS_CATALOG"));
    let from_file = outside_file.is_none();
    let chosen = outside_file.or(file.filter(|f| !f.is_empty()));
    let Some(chosen) = chosen else {
        return Ok(None);
    };
    if chosen == "sqlite" {
        return Ok(None);
    }
    let url = url::Url::parse(&chosen)
        .ok()
        .filter(|u| matches!(u.scheme(), "postgres" | "postgresql"))
        .ok_or_else(|| ConfigError::CatalogUrl(without_password(&chosen)))?;
    if url.username().is_empty() {
        return Err(ConfigError::CatalogUser(without_password(&chosen)));
    }
    if url.password().is_some() {
        if !from_file {
            return Err(ConfigError::CatalogPasswordOutsideFile);
        }
        return Ok(Some(CatalogUrl {
            url: chosen,
            password: None,
        }));
    }
    let password = text("PGPASSWORD").or_else(|| {
        let file = env("PGPASSFILE")
            .map(PathBuf::from)
            .or_else(|| env("HOME").map(|h| PathBuf::from(h).join(".pgpass")))?;
        from_passfile(&file, &url)
    });
    Ok(Some(CatalogUrl {
        url: chosen,
        password,
    }))
}

/// The password for `url` in the passfile at `path` (libpq's format: lines of
/// `host:port:database:user:password`, `*` matching anything, `\` escaping `:` and `\`).
/// Like libpq, a file that others may read is ignored (with a warning).
fn from_passfile(path: &Path, url: &url::Url) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).ok()?;
    if meta.permissions().mode() & 0o077 != 0 {
        tracing::warn!(
            "ignoring passfile {}: others may read it; chmod 600 it",
            path.display()
        );
        return None;
    }
    let text = std::fs::read_to_string(path).ok()?;
    let host = match url.host_str() {
        None | Some("") => "localhost".to_string(),
        Some(h) => percent_decode(h),
    };
    let host = if host.starts_with('/') {
        "localhost".to_string()
    } else {
        host
    };
    let port = url.port().unwrap_or(5432).to_string();
    let user = percent_decode(url.username());
    let database = match url.path().trim_start_matches('/') {
        "" => user.clone(),
        d => percent_decode(d),
    };
    let wanted = [
        host.as_str(),
        port.as_str(),
        database.as_str(),
        user.as_str(),
    ];
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
        .find_map(|line| {
            let fields = split_passfile_line(line);
            if fields.len() < 5 {
                return None;
            }
            let matches = wanted
                .iter()
                .zip(&fields)
                .all(|(want, field)| field == "*" || field == want);
            matches.then(|| fields[4].clone())
        })
}

/// A passfile line's fields, with `\:` and `\\` unescaped.
fn split_passfile_line(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => field.extend(chars.next()),
            // The password is the rest of the line, colons and all.
            ':' if fields.len() < 4 => fields.push(std::mem::take(&mut field)),
            c => field.push(c),
        }
    }
    fields.push(field);
    fields
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::os::unix::fs::PermissionsExt;

    fn env_of(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> + use<> {
        let map: HashMap<String, OsString> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn sqlite_is_the_default_and_a_flag_wins_over_the_environment_and_the_file() {
        assert!(resolve(None, None, &env_of(&[])).unwrap().is_none());
        assert!(
            resolve(None, Some("sqlite".into()), &env_of(&[]))
                .unwrap()
                .is_none()
        );
        let env = env_of(&[("PGBACKUPS_CATALOG", "postgres://env@h/db")]);
        let got = resolve(
            Some("postgres://flag@h/db".into()),
            Some("postgres://file@h/db".into()),
            &env,
        );
        assert_eq!(got.unwrap().unwrap().url, "postgres://flag@h/db");
        let got = resolve(None, Some("postgres://file@h/db".into()), &env)
            .unwrap()
            .unwrap();
        assert_eq!(got.url, "postgres://env@h/db");
        let got = resolve(None, Some("postgres://file@h/db".into()), &env_of(&[]))
            .unwrap()
            .unwrap();
        assert_eq!(got.url, "postgres://file@h/db");
    }

    #[test]
    fn a_password_in_the_flag_or_the_variable_is_refused_in_the_file_it_is_used() {
        let err = resolve(
            Some("postgres://u:Secret-1@h/db".into()),
            None,
            &env_of(&[]),
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("PGPASSWORD") && !text.contains("Secret-1"),
            "{text}"
        );
        let got = resolve(
            None,
            Some("postgres://u:Secret-1@h/db".into()),
            &env_of(&[]),
        )
        .unwrap()
        .unwrap();
        assert_eq!(got.url, "postgres://u:Secret-1@h/db");
        assert!(!format!("{got:?}").contains("Secret-1"));
        let got = resolve(
            Some("postgres://u@h/db".into()),
            None,
            &env_of(&[("PGPASSWORD", "pw")]),
        )
        .unwrap()
        .unwrap();
        assert_eq!(got.password.as_deref(), Some("pw"));
        assert!(!format!("{got:?}").contains("pw\""));
    }

    #[test]
    fn not_a_postgres_url_or_no_user_is_refused_with_what_to_write() {
        let err = resolve(Some("mysql://u@h/db".into()), None, &env_of(&[])).unwrap_err();
        assert!(err.to_string().contains("postgres://"), "{err}");
        let err = resolve(Some("postgres://h/db".into()), None, &env_of(&[])).unwrap_err();
        assert!(err.to_string().contains("user"), "{err}");
    }

    #[test]
    fn the_passfile_gives_the_password_of_the_first_matching_line() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pgpass");
        std::fs::write(
            &file,
            "# comment\nother:5432:*:u:no\nh:5433:cat:u:a\\:b:c\n*:*:*:u:fallback\n",
        )
        .unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let env = env_of(&[("PGPASSFILE", file.to_str().unwrap())]);
        let got = resolve(Some("postgres://u@h:5433/cat".into()), None, &env)
            .unwrap()
            .unwrap();
        assert_eq!(got.password.as_deref(), Some("a:b:c"));
        let got = resolve(Some("postgres://u@h/cat".into()), None, &env)
            .unwrap()
            .unwrap();
        assert_eq!(got.password.as_deref(), Some("fallback"));
        // PGPASSWORD comes first, as in libpq.
        let env = env_of(&[
            ("PGPASSFILE", file.to_str().unwrap()),
            ("PGPASSWORD", "env"),
        ]);
        let got = resolve(Some("postgres://u@h/cat".into()), None, &env)
            .unwrap()
            .unwrap();
        assert_eq!(got.password.as_deref(), Some("env"));
        // A passfile others can read is ignored.
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let env = env_of(&[("PGPASSFILE", file.to_str().unwrap())]);
        let got = resolve(Some("postgres://u@h/cat".into()), None, &env)
            .unwrap()
            .unwrap();
        assert_eq!(got.password, None);
    }
}
