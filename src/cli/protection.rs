//! `protect`, `unprotect`, `protection:info`, `protection:expire`: Continuous Protection in
//! the service, and the archives in the store.

use reqwest::Method;

use super::args::ProtectionCommand;
use super::client::{CliError, Client, decode};
use super::print::protection::{problems, protected_text, protection_text, protection_view_text};
use super::requests;
use super::shared::{Env, on_store, parse_duration, path_part, print_json};

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
            let v: serde_json::Value = c
                .post(
                    "/protections",
                    &requests::Protect {
                        database: &database,
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
            let v: serde_json::Value = decode(
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
            if let Some(w) = v.get("warning").and_then(|w| w.as_str()) {
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
            let views: Vec<serde_json::Value> = match &database {
                Some(d) => vec![c.get(&format!("/protections/{}", path_part(d))).await?],
                None => c.get("/protections").await?,
            };
            if json {
                if database.is_some() {
                    print_json(&views[0])?;
                } else {
                    print_json(&views)?;
                }
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
