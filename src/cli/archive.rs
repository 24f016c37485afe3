//! `wal-push`, `wal-fetch`, `wal-prefetch`, `base-backup`: the WAL archive in the store, as
//! PostgreSQL's archive and restore commands use it, and base backups of an archived cluster.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::args::{ArchiveCommand, StoreArgs};
use super::client::CliError;
use super::shared::{Env, on_store, path_part};
use crate::format;

/// What `wal-fetch` says before exiting 126.
const STOPS_RECOVERY: &str = "exiting 126 so that PostgreSQL stops recovery instead of taking this for the end of the archive";

pub async fn run(command: ArchiveCommand, env: &Env) -> Result<i32, CliError> {
    match command {
        ArchiveCommand::WalPush {
            path,
            name,
            data_dir,
            store,
        } => {
            let config = store.service_config(data_dir)?;
            let result = on_store(config, move |storage| {
                crate::wal::push(storage, &name, &path)
            })
            .await;
            match result {
                Ok(crate::wal::Pushed::Stored(key)) => {
                    tracing::debug!("archived as {key}");
                    Ok(0)
                }
                Ok(crate::wal::Pushed::AlreadyThere) => {
                    eprintln!("pgbackups wal-push: already archived with the same content");
                    Ok(0)
                }
                Err(e) => Err(CliError::Context {
                    context: "wal-push",
                    source: Box::new(e),
                }),
            }
        }
        ArchiveCommand::WalFetch {
            file,
            dest,
            name,
            data_dir,
            segment_size,
            service,
            token_file,
            store,
        } => {
            if let (Some(url), Some(token_file)) = (service, token_file) {
                return Ok(wal_fetch_through_service(&url, &token_file, &name, &file, &dest).await);
            }
            // The next segments, fetched in the background once this one is here.
            let prefetch = || {
                if let Some(size) = segment_size {
                    let args = prefetch_store_args(&data_dir, &store);
                    crate::pitr::prefetch::spawn(&name, &file, &dest, size, &args);
                }
            };
            if let Some(size) = segment_size
                && crate::wal::take_prefetched(&file, &dest, size)
            {
                prefetch();
                return Ok(0);
            }
            // PostgreSQL takes exit 1 for "not in the archive" and ends recovery; every other
            // failure, a configuration problem included, must stop it instead (126).
            let (n, f, d) = (name.clone(), file.clone(), dest.clone());
            let result = match store.clone().service_config(data_dir.clone()) {
                Ok(config) => {
                    on_store(config, move |storage| {
                        crate::wal::fetch_with_retries(storage, &n, &f, &d)
                    })
                    .await
                }
                Err(e) => Err(e),
            };
            match result {
                Ok(true) => {
                    prefetch();
                    Ok(0)
                }
                // Not archived (yet): PostgreSQL asks for files past the end of the archive
                // and for timeline histories that do not exist; that is the normal end.
                Ok(false) => Ok(1),
                Err(e) => {
                    eprintln!("pgbackups wal-fetch: {e}; {STOPS_RECOVERY}");
                    Ok(crate::wal::FETCH_FAILED)
                }
            }
        }
        ArchiveCommand::WalPrefetch {
            name,
            after,
            dir,
            segment_size,
            data_dir,
            store,
        } => {
            // Always exit 0: nobody waits for this process, and its parent may be a postmaster
            // that takes an odd exit of an unknown child for a crash.
            let Ok(config) = store.service_config(data_dir) else {
                return Ok(0);
            };
            let _ = tokio::task::spawn_blocking(move || {
                if let Ok(storage) = crate::service::open_configured_storage(&config, false) {
                    let count = crate::pitr::prefetch::count(segment_size);
                    let files = crate::wal::next_segments(&after, segment_size, count);
                    crate::wal::prefetch(storage.as_ref(), &name, &files, &dir);
                }
            })
            .await;
            Ok(0)
        }
        ArchiveCommand::BaseBackup {
            name,
            data_dir,
            store,
        } => {
            let url = database_url(env)?;
            let config = store.service_config(data_dir)?;
            let wal_wait = config.tuning.base_wal_wait;
            let tools = crate::pg::PgTools::discover(&config.pg_bin_dirs);
            let storage = tokio::task::spawn_blocking(move || {
                crate::service::open_configured_storage(&config, false)
            })
            .await?
            .map_err(CliError::lib)?;
            let b = crate::pitr::take_base_backup(storage, &tools, &url, &name, wal_wait)
                .await
                .map_err(CliError::lib)?;
            println!("{}", b.id);
            eprintln!(
                "Base backup {} of {name}: WAL {} to {} on timeline {}, {} ({} stored)",
                b.id,
                b.start_lsn,
                b.stop_lsn,
                b.timeline,
                format::bytes(b.tar_bytes),
                format::bytes(b.stored_bytes)
            );
            Ok(0)
        }
    }
}

/// The flags of a `wal-prefetch` beside this `wal-fetch`: the same store.
fn prefetch_store_args(data_dir: &Option<PathBuf>, store: &StoreArgs) -> Vec<OsString> {
    let mut args = Vec::new();
    if let Some(d) = data_dir {
        args.push("--data-dir".into());
        args.push(d.into());
    }
    args.extend(store.as_args().into_iter().map(OsString::from));
    args
}

/// The connection URL of `base-backup`, which must not take it on the command line:
/// `PGBACKUPS_DATABASE_URL`, else one line of standard input.
fn database_url(env: &Env) -> Result<crate::pg::PgUrl, CliError> {
    let text = match &env.database_url {
        Some(v) => v.clone(),
        None => {
            let mut line = String::new();
            std::io::stdin().read_line(&mut line).map_err(CliError::io(
                "cannot read the database URL from standard input",
            ))?;
            line
        }
    };
    crate::pg::PgUrl::parse(text.trim()).map_err(|e| {
        CliError::msg(format!(
            "the database URL (from PGBACKUPS_DATABASE_URL or stdin): {e}"
        ))
    })
}

/// `wal-fetch --service`: WAL file `file` of `name` from the service, with the archive's WAL
/// token; the exit status PostgreSQL reads (0 fetched, 1 not archived, 126 stop recovery).
async fn wal_fetch_through_service(
    url: &str,
    token_file: &Path,
    name: &str,
    file: &str,
    dest: &Path,
) -> i32 {
    let fail = |why: String| {
        eprintln!("pgbackups wal-fetch: {why}; {STOPS_RECOVERY}");
        crate::wal::FETCH_FAILED
    };
    let token = match std::fs::read_to_string(token_file) {
        Ok(t) => t.trim().to_string(),
        Err(e) => {
            return fail(format!(
                "cannot read the WAL token {}: {e}",
                token_file.display()
            ));
        }
    };
    let Ok(http) = reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(10))
        .build()
    else {
        return fail("cannot create an HTTP client".into());
    };
    let target = format!(
        "{}/wal/{}/{}",
        url.trim_end_matches('/'),
        path_part(name),
        path_part(file)
    );
    // A service restarting or a network hiccup is retried, as a store error is.
    let mut wait = std::time::Duration::from_secs(1);
    let mut last = String::new();
    for attempt in 0..4 {
        if attempt > 0 {
            tokio::time::sleep(wait).await;
            wait *= 2;
        }
        let resp = match http.get(&target).bearer_auth(&token).send().await {
            Ok(r) => r,
            Err(e) => {
                last = format!("cannot reach the service at {url}: {e}");
                continue;
            }
        };
        let status = resp.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return 1;
        }
        if !status.is_success() {
            let body = resp.text().await.unwrap_or_default();
            last = format!("the service answered {status}: {}", body.trim());
            if status.is_client_error() {
                return fail(last);
            }
            continue;
        }
        let body = match resp.bytes().await {
            Ok(b) => b,
            Err(e) => {
                last = format!("the service broke off sending {file}: {e}");
                continue;
            }
        };
        let (f, d) = (file.to_string(), dest.to_path_buf());
        let written = tokio::task::spawn_blocking(move || {
            crate::wal::write_stored(Box::new(std::io::Cursor::new(body)), &f, &d, false)
        })
        .await;
        match written {
            Ok(Ok(())) => return 0,
            Ok(Err(e)) => last = e.to_string(),
            Err(e) => last = e.to_string(),
        }
    }
    fail(last)
}
