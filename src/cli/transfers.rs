//! `backups:restore`, `copy`: transfers into a database, started in the service and watched
//! (`pull` and `push`, which run on the user's machine, are in `pullpush.rs`).

use std::path::Path;

use reqwest::Method;

use super::args::TransferCommand;
use super::client::{CliError, Client, decode};
use super::confirm::{self, confirmed};
use super::shared::{Env, parse_id};
use super::urlarg::{self, Role};
use super::watch;
use crate::api::{CopyRequest, RestoreRequest, UploadQuery};
use crate::catalog::{TransferId, TransferRecord};

pub async fn run(command: TransferCommand, env: &Env) -> Result<i32, CliError> {
    match command {
        TransferCommand::Restore {
            first,
            second,
            confirm,
            jobs,
            atomic,
            drop_old,
            extensions,
            roles,
            set,
            file,
            no_wait,
            verbose,
            wait_interval,
        } => {
            if let Some(note) = wait_interval.note() {
                eprintln!("{note}");
            }
            if let Some(set) = set {
                let server = match (first, second) {
                    (Some(a), None) => urlarg::resolve(a, Role::Target, env)?,
                    _ => {
                        return Err(CliError::Message(
                            "--set restores into one server: pass only its URL or registered name (any database on it), as in `pgbackups backups:restore --set b001 postgres://host/postgres --confirm postgres`".into(),
                        ));
                    }
                };
                return restore_set(env, set, server, confirm, no_wait).await;
            }
            if let Some(path) = file {
                let database = urlarg::resolve_opt(first.or(second), Role::Target, env)?;
                let query = UploadQuery {
                    name: None,
                    database,
                    confirm,
                    jobs: Some(jobs),
                    atomic,
                    drop_old,
                    ..UploadQuery::default()
                };
                let c = Client::connect(env)?;
                // Confirmed first (asked on a terminal), then the file is sent once.
                let confirm =
                    confirmed(query.confirm.clone(), confirm::restore_effect, |confirm| {
                        let (c, query) = (&c, query.clone());
                        async move { check_upload(c, query, confirm).await }
                    })
                    .await?;
                let rec = upload(&c, &path, UploadQuery { confirm, ..query }).await?;
                return watch_upload(&c, rec, no_wait, verbose).await;
            }
            // `restore b001 main`, `restore https://... main`, `restore b001`, `restore main`,
            // `restore`; `-` for either is read from the environment or standard input.
            let is_http = |a: &str| a.starts_with("http://") || a.starts_with("https://");
            let (first, second) = match (first, second) {
                (Some(a), Some(b)) => (
                    Some(urlarg::resolve(a, Role::Source, env)?),
                    Some(urlarg::resolve(b, Role::Target, env)?),
                ),
                // One argument is the target, unless it is a backup or a URL to restore from.
                (Some(a), None) if a == "-" => (None, Some(urlarg::resolve(a, Role::Target, env)?)),
                (Some(a), None) => {
                    let role = if is_http(&a) {
                        Role::Source
                    } else {
                        Role::Target
                    };
                    (Some(urlarg::resolve(a, role, env)?), None)
                }
                (None, b) => (None, urlarg::resolve_opt(b, Role::Target, env)?),
            };
            let from_url = first.clone().filter(|f| is_http(f));
            if from_url.is_some() && !extensions.is_empty() {
                return Err(CliError::Message(
                    "--extensions works with a backup restore, not a restore from a URL: create them in the target first, then restore".into(),
                ));
            }
            if roles && from_url.is_some() {
                return Err(CliError::Message(
                    "--roles creates the roles kept with a backup, and a dump at a URL carries none: restore it without --roles".into(),
                ));
            }
            let first = if from_url.is_some() { None } else { first };
            let (backup, database) = match (first, second) {
                (Some(a), Some(b)) => (Some(parse_id(&a)?), Some(b)),
                (Some(a), None) => match a.parse::<TransferId>() {
                    Ok(id) if id.is_backup() => (Some(id), None),
                    _ => (None, Some(a)),
                },
                (None, database) => (None, database),
            };
            let c = Client::connect(env)?;
            let request = RestoreRequest {
                backup: backup.map(|b| b.to_string()),
                url: from_url,
                database,
                confirm: None,
                jobs: Some(jobs),
                atomic,
                drop_old,
                extensions,
                roles,
            };
            let rec: TransferRecord = confirmed(confirm, confirm::restore_effect, |confirm| {
                let (c, body) = (
                    &c,
                    RestoreRequest {
                        confirm,
                        ..request.clone()
                    },
                );
                async move { c.post("/restores", &body).await }
            })
            .await?;
            let from = rec
                .backup_id
                .map(|b| b.to_string())
                .or(rec.source.clone())
                .unwrap_or_default();
            if no_wait {
                println!("{}", rec.id);
                return Ok(0);
            }
            eprintln!("Starting restore of {from} to {}... done\n", rec.database);
            eprintln!(
                "Use Ctrl-C at any time to stop monitoring progress; the restore will continue running."
            );
            eprintln!("Stop a running restore with `pgbackups backups:cancel`.\n");
            println!("{}", rec.id);
            watch::watch(
                &c,
                rec.id,
                &format!("Restoring {from} to {}", rec.database),
                verbose,
            )
            .await
        }
        TransferCommand::Copy {
            source,
            target,
            confirm,
            no_wait,
            verbose,
            filter,
            wait_interval,
        } => {
            if let Some(note) = wait_interval.note() {
                eprintln!("{note}");
            }
            let source = urlarg::resolve(source, Role::Source, env)?;
            let target = urlarg::resolve(target, Role::Target, env)?;
            let body = CopyRequest {
                source,
                target,
                confirm,
                filter: filter.into(),
            };
            copy_and_watch("/copies", &body, no_wait, verbose, env).await
        }
        TransferCommand::Pull {
            source,
            local_url,
            verbose,
            filter,
        } => super::pullpush::pull(env, source, local_url, filter.into(), verbose).await,
        TransferCommand::Push {
            local_url,
            target,
            confirm,
            no_wait,
            verbose,
            filter,
        } => {
            super::pullpush::push(
                env,
                local_url,
                target,
                confirm,
                filter.into(),
                no_wait,
                verbose,
            )
            .await
        }
    }
}

/// Asks the service whether an upload as `query` says, with `confirm`, would be taken (no body
/// is sent); answers the confirmation that passed.
pub(super) async fn check_upload(
    c: &Client,
    query: UploadQuery,
    confirm: Option<String>,
) -> Result<Option<String>, CliError> {
    let query = UploadQuery {
        confirm: confirm.clone(),
        check: true,
        ..query
    };
    c.send(c.request(Method::POST, "/restores/upload").query(&query))
        .await?;
    Ok(confirm)
}

/// Uploads the dump file `path` for a restore (`query` says where to, without the file's
/// name) and answers the restore started.
async fn upload(c: &Client, path: &Path, query: UploadQuery) -> Result<TransferRecord, CliError> {
    let file = tokio::fs::File::open(path)
        .await
        .map_err(CliError::io(format!("cannot open {}", path.display())))?;
    let query = UploadQuery {
        name: Some(
            path.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        ),
        ..query
    };
    let body =
        reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(file, 1 << 20));
    eprintln!("Uploading {}...", path.display());
    let resp = c
        .send(
            c.request(Method::POST, "/restores/upload")
                .query(&query)
                .body(body),
        )
        .await?;
    decode(resp).await
}

/// Watches the restore of an uploaded file.
async fn watch_upload(
    c: &Client,
    rec: TransferRecord,
    no_wait: bool,
    verbose: bool,
) -> Result<i32, CliError> {
    if no_wait {
        println!("{}", rec.id);
        return Ok(0);
    }
    println!("{}", rec.id);
    let from = rec.source.clone().unwrap_or_default();
    watch::watch(
        c,
        rec.id,
        &format!("Restoring {from} to {}", rec.database),
        verbose,
    )
    .await
}

/// Starts a copy and watches it like a capture.
async fn copy_and_watch(
    path: &str,
    body: &CopyRequest,
    no_wait: bool,
    verbose: bool,
    env: &Env,
) -> Result<i32, CliError> {
    let c = Client::connect(env)?;
    let rec: TransferRecord = confirmed(body.confirm.clone(), confirm::copy_effect, |confirm| {
        let (c, body) = (
            &c,
            CopyRequest {
                confirm,
                ..body.clone()
            },
        );
        async move { c.post(path, &body).await }
    })
    .await?;
    if no_wait {
        println!("{}", rec.id);
        return Ok(0);
    }
    let from = rec.source.clone().unwrap_or_default();
    eprintln!("Starting copy of {from} to {}... done\n", rec.database);
    eprintln!(
        "Use Ctrl-C at any time to stop monitoring progress; the copy will continue running."
    );
    eprintln!("Stop a running copy with `pgbackups backups:cancel`.\n");
    println!("{}", rec.id);
    watch::watch(
        &c,
        rec.id,
        &format!("Copying {from} to {}", rec.database),
        verbose,
    )
    .await
}

/// `backups:restore --set SET SERVER`: starts the restores of the set, waits for every one,
/// prints each result; exits 0 only if all succeeded.
async fn restore_set(
    env: &Env,
    set: String,
    server: String,
    confirm: Option<String>,
    no_wait: bool,
) -> Result<i32, CliError> {
    let c = Client::connect(env)?;
    let body = crate::api::SetRestoreRequest {
        set,
        server,
        confirm,
    };
    eprintln!("Restoring the set's backups (the first alone, as it creates the roles)...");
    let answer: crate::api::SetRestoreStarted = c.post("/set-restores", &body).await?;
    for r in &answer.started {
        println!("{} {}", r.id, r.database);
    }
    if no_wait {
        return Ok(if answer.refused.is_empty() { 0 } else { 1 });
    }
    let ended = wait_all(&c, &answer.started).await?;
    let text = super::print::transfers::set_restore_results(&ended, &answer.refused);
    let ok = answer.refused.is_empty()
        && ended
            .iter()
            .all(|t| t.state == crate::catalog::TransferState::Succeeded);
    if ok {
        print!("{text}");
        Ok(0)
    } else {
        eprint!("{text}");
        Ok(1)
    }
}

/// Waits for every transfer of `started` to end; their final records, in the same order.
pub(super) async fn wait_all(
    c: &Client,
    started: &[TransferRecord],
) -> Result<Vec<TransferRecord>, CliError> {
    let mut ended = Vec::with_capacity(started.len());
    for t in started {
        loop {
            let rec: TransferRecord = c
                .get(&format!(
                    "/transfers/{}?wait_ms={}",
                    t.id,
                    crate::api::MAX_WAIT_MS
                ))
                .await?;
            if rec.state.is_finished() {
                ended.push(rec);
                break;
            }
        }
    }
    Ok(ended)
}
