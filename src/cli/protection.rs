//! `protect`, `unprotect`, `protection:info`, `protection:expire`: Continuous Protection in
//! the service, and the archives in the store.

use reqwest::Method;

use super::args::ProtectionCommand;
use super::client::{CliError, Client, decode};
use super::print::protection::{problems, protected_text, protection_text, protection_view_text};
use super::shared::{Env, on_store, parse_duration, path_part, print_json};
use crate::api::{ProtectRequest, ProtectionView, Unprotected};

pub async fn run(command: ProtectionCommand, env: &Env) -> Result<i32, CliError> {
    match command {
        ProtectionCommand::Protect {
            database,
            base_every,
            keep,
        } => {
            let base_every_secs = base_every
                .as_deref()
                .map(|b| parse_duration("--base-every", b))
                .transpose()?;
            let c = Client::connect(env)?;
            let v: ProtectionView = c
                .post(
                    "/protections",
                    &ProtectRequest {
                        database: database.clone(),
                        base_every_secs,
                        keep,
                    },
                )
                .await?;
            print!("{}", protected_text(&database, &v));
            Ok(0)
        }
        ProtectionCommand::Unprotect { database } => {
            let c = Client::connect(env)?;
            let v: Unprotected = decode(
                c.send(c.request(
                    Method::DELETE,
                    &format!("/protections/{}", path_part(&database)),
                ))
                .await?,
            )
            .await?;
            println!(
                "Stopped protecting {database}; its archive stays in the store (rollback and fork still work)."
            );
            if let Some(w) = &v.warning {
                eprintln!("WARNING: {w}");
                return Ok(1);
            }
            Ok(0)
        }
        ProtectionCommand::ProtectionInfo {
            database,
            name: None,
            json,
            store: _,
        } => {
            let c = Client::connect(env)?;
            // The service's answer as is for --json, read into the API's views for the rest.
            let answer: serde_json::Value = match &database {
                Some(d) => c.get(&format!("/protections/{}", path_part(d))).await?,
                None => c.get("/protections").await?,
            };
            let views: Vec<ProtectionView> = match &database {
                Some(_) => vec![read_view(answer.clone())?],
                None => read_view(answer.clone())?,
            };
            if json {
                print_json(&answer)?;
            } else if views.is_empty() {
                println!(
                    "No database is protected; protect one with `pgbackups protect DATABASE`."
                );
            } else {
                for v in &views {
                    print!("{}", protection_view_text(v));
                }
            }
            let problems = problems(&views);
            for p in &problems {
                eprintln!("WARNING: {p}");
            }
            Ok(if problems.is_empty() { 0 } else { 3 })
        }
        ProtectionCommand::ProtectionInfo {
            database: _,
            name: Some(name),
            json,
            store,
        } => {
            let config = store.service_config(None)?;
            let info = on_store(config, move |storage| {
                crate::pitr::archive_info(storage, &name)
            })
            .await?;
            if json {
                print_json(&info)?;
            } else {
                print!("{}", protection_text(&info));
            }
            for (from, to) in &info.gaps {
                eprintln!(
                    "WARNING: WAL GAP in {}: {from} .. {to} are missing from the archive; rollbacks cannot cross it. Take a new base backup now.",
                    info.name
                );
            }
            Ok(if info.gaps.is_empty() { 0 } else { 3 })
        }
        ProtectionCommand::ProtectionExpire { name, keep, store } => {
            let name = name.get();
            if keep == 0 {
                return Err(CliError::msg("--keep must be at least 1"));
            }
            let config = store.service_config(None)?;
            let n = name.clone();
            let gone = on_store(config, move |storage| {
                crate::pitr::expire(storage, &n, keep)
            })
            .await?;
            println!(
                "Expired {} base backup(s) of {name}{} and {} WAL file(s) no kept base backup needs",
                gone.base_backups.len(),
                if gone.base_backups.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", gone.base_backups.join(", "))
                },
                gone.wal_files
            );
            Ok(0)
        }
    }
}

/// The service's answer as the API's view of it.
fn read_view<T: serde::de::DeserializeOwned>(answer: serde_json::Value) -> Result<T, CliError> {
    serde_json::from_value(answer).map_err(|source| CliError::Answer { source })
}
