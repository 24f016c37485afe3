//! `backups`, `backups:capture`, `backups:cancel`, `backups:info`, `backups:download`,
//! `backups:url`, `backups:verify`, `backups:delete`, `backups:pin`, `backups:unpin` and
//! `catalog:rebuild`: backups in the service.

use reqwest::Method;
use serde::Serialize;

use super::args::BackupCommand;
use super::client::{CliError, Client};
use super::confirm::{self, confirmed};
use super::print::transfers;
use super::shared::{Env, id_or_latest, newest_backup, parse_duration, parse_id, print_json};
use super::urlarg::{self, Role};
use super::watch;
use crate::api::{
    BackupLink, CaptureRequest, RebuildReport, TransferCancelled, UrlRequest, VerifyRequest,
};
use crate::catalog::{LogLine, TransferKind, TransferRecord, VerifyMode};
use crate::format;

/// `backups:info --json`: the record with its log.
#[derive(Serialize)]
struct InfoJson<'a> {
    #[serde(flatten)]
    record: &'a TransferRecord,
    logs: &'a [LogLine],
}

pub async fn run(command: BackupCommand, env: &Env) -> Result<i32, CliError> {
    match command {
        BackupCommand::Backups {
            json,
            all: show_all,
            heroku,
        } => {
            if let Some(note) = heroku.note() {
                eprintln!("{note}");
            }
            let c = Client::connect(env)?;
            let all: Vec<TransferRecord> = c.get("/transfers").await?;
            if json {
                print_json(&all)?;
            } else {
                print!("{}", transfers::backups_listing(&all, show_all));
            }
            Ok(0)
        }
        BackupCommand::Capture {
            database,
            all,
            no_wait,
            verbose,
            filter,
            wait_interval,
        } => {
            if let Some(note) = wait_interval.note() {
                eprintln!("{note}");
            }
            let database = urlarg::resolve_opt(database, Role::Source, env)?;
            let c = Client::connect(env)?;
            if all {
                return capture_server(&c, database, no_wait).await;
            }
            let body = CaptureRequest {
                database,
                filter: filter.into(),
            };
            let rec: TransferRecord = c.post("/captures", &body).await?;
            if no_wait {
                println!("{}", rec.id);
                return Ok(0);
            }
            let shown = rec.database.clone();
            eprintln!("Starting backup of {shown}... done\n");
            eprintln!(
                "Use Ctrl-C at any time to stop monitoring progress; the backup will continue running."
            );
            eprintln!("Use `pgbackups backups:info` to check progress.");
            eprintln!("Stop a running backup with `pgbackups backups:cancel`.\n");
            println!("{}", rec.id);
            watch::watch(
                &c,
                rec.id,
                &format!("Backing up {shown} to {}", rec.id),
                verbose,
            )
            .await
        }
        BackupCommand::Cancel { id } => {
            let c = Client::connect(env)?;
            let path = match &id {
                Some(id) => format!("/transfers/{}/cancel", parse_id(id)?),
                None => "/transfers/cancel".to_string(),
            };
            let answer: TransferCancelled = c.post_empty(&path).await?;
            println!("Stopping {}... done", answer.id);
            Ok(0)
        }
        BackupCommand::Info { id, json } => {
            let c = Client::connect(env)?;
            let id = match id {
                Some(id) => parse_id(&id)?,
                None => newest_backup(&c).await?,
            };
            let mut rec: TransferRecord = c.get(&format!("/transfers/{id}")).await?;
            let logs: Vec<LogLine> = c.get(&format!("/transfers/{id}/logs")).await?;
            if rec.kind == TransferKind::Capture {
                // The newest verification of this backup, shown as its own line.
                let all: Vec<TransferRecord> = c.get("/transfers").await?;
                if let Some(detail) = transfers::verified_detail(&all, rec.id) {
                    rec.detail = Some(detail);
                }
            }
            if json {
                // Through a Value, as before: its keys come out sorted.
                let v = serde_json::to_value(InfoJson {
                    record: &rec,
                    logs: &logs,
                })
                .map_err(CliError::Json)?;
                print_json(&v)?;
            } else {
                print!("{}", transfers::info_text(&rec, &logs));
            }
            Ok(0)
        }
        BackupCommand::Download { id, output } => super::download::download(id, &output, env).await,
        BackupCommand::Url { id, expires, raw } => {
            let secs = parse_duration("--expires", &expires)?;
            let id = id_or_latest(id)?;
            let c = Client::connect(env)?;
            let link: BackupLink = c
                .post(
                    &format!("/backups/{id}/url"),
                    &UrlRequest {
                        expires_secs: Some(secs),
                        raw,
                    },
                )
                .await?;
            println!("{}", link.url);
            let until = format::time(link.expires_at);
            if link.content == "zstd" {
                eprintln!(
                    "Valid until {until}. It serves backup {} as stored: the custom-format dump compressed with zstd. `curl -s URL | zstd -d > {}.dump` gives the dump; `pgbackups backups:restore URL DATABASE` takes the link as is.",
                    link.id, link.id
                );
            } else {
                eprintln!(
                    "Valid until {until}. It serves backup {} as a compressed custom-format dump: `curl -o latest.dump URL && pg_restore -d DATABASE latest.dump`, or give it to `pgbackups backups:restore URL DATABASE`.",
                    link.id
                );
            }
            Ok(0)
        }
        BackupCommand::Verify {
            id,
            restore,
            target,
            no_wait,
            verbose,
        } => {
            let id = id_or_latest(id)?;
            let target = urlarg::resolve_opt(target, Role::Target, env)?;
            let c = Client::connect(env)?;
            let mode = if restore {
                VerifyMode::Restore
            } else {
                VerifyMode::Checksum
            };
            let rec: TransferRecord = c
                .post(
                    &format!("/backups/{id}/verify"),
                    &VerifyRequest { mode, target },
                )
                .await?;
            println!("{}", rec.id);
            if no_wait {
                return Ok(0);
            }
            let backup = rec.backup_id.map(|b| b.to_string()).unwrap_or_default();
            let code = watch::watch(&c, rec.id, &format!("Verifying {backup}"), verbose).await?;
            let done: TransferRecord = c.get(&format!("/transfers/{}", rec.id)).await?;
            if let Some(d) = &done.detail {
                println!("{backup}: {d}");
            }
            Ok(code)
        }
        BackupCommand::CatalogRebuild => {
            let c = Client::connect(env)?;
            let r: RebuildReport = c.post_empty("/catalog/rebuild").await?;
            print!("{}", transfers::rebuild_text(&r));
            Ok(if r.unreadable.is_empty() && r.conflicts.is_empty() {
                0
            } else {
                1
            })
        }
        BackupCommand::Delete { id, confirm } => {
            let id = parse_id(&id)?;
            let c = Client::connect(env)?;
            confirmed(confirm, confirm::delete_effect, |confirm| {
                let mut req = c.request(Method::DELETE, &format!("/backups/{id}"));
                if let Some(confirm) = &confirm {
                    req = req.query(&[("confirm", confirm)]);
                }
                c.send(req)
            })
            .await?;
            println!("Deleting backup {id}... done");
            Ok(0)
        }
        BackupCommand::Pin { id } => {
            let id = parse_id(&id)?;
            let c = Client::connect(env)?;
            c.send(c.request(Method::POST, &format!("/backups/{id}/pin")))
                .await?;
            println!("Pinned {id}: retention will keep it.");
            Ok(0)
        }
        BackupCommand::Unpin { id } => {
            let id = parse_id(&id)?;
            let c = Client::connect(env)?;
            c.send(c.request(Method::DELETE, &format!("/backups/{id}/pin")))
                .await?;
            println!("Unpinned {id}: retention may expire it again.");
            Ok(0)
        }
    }
}

/// `backups:capture --all SERVER`: one backup of every database of the server, in one set;
/// waits for all of them and exits non-zero if any failed.
async fn capture_server(
    c: &Client,
    server: Option<String>,
    no_wait: bool,
) -> Result<i32, CliError> {
    let Some(server) = server else {
        return Err(CliError::Message(
            "--all needs the server: pass a registered name or a postgres:// URL of any database on it".into(),
        ));
    };
    let body = crate::api::ServerCaptureRequest { server };
    let recs: Vec<TransferRecord> = c.post("/server-captures", &body).await?;
    let set = recs.first().and_then(|r| r.set.clone()).unwrap_or_default();
    eprintln!(
        "Starting backups of {} databases in set {set}... done",
        recs.len()
    );
    for r in &recs {
        println!("{} {}", r.id, r.database);
    }
    if no_wait {
        return Ok(0);
    }
    let ended = super::transfers::wait_all(c, &recs).await?;
    let failed: Vec<&TransferRecord> = ended
        .iter()
        .filter(|t| t.state != crate::catalog::TransferState::Succeeded)
        .collect();
    for t in &ended {
        eprintln!("{} {}: {}", t.id, t.database, transfers::status_text(t));
    }
    if failed.is_empty() {
        Ok(0)
    } else {
        for t in failed {
            eprintln!("{} failed: {}", t.id, t.error.clone().unwrap_or_default());
        }
        Ok(1)
    }
}
