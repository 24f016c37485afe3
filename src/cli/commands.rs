//! What each command does: call the API, print the answer.

use std::io::Write;
use std::path::{Path, PathBuf};

use reqwest::Method;
use serde_json::json;

use super::client::{CliError, Client};
use super::table::render;
use super::urlarg::{self, Role};
use super::{Command, watch};
use crate::catalog::{
    DatabaseRecord, LogLine, Origin, TransferId, TransferKind, TransferRecord, TransferState,
    VerifyMode,
};
use crate::config::ServiceConfig;
use crate::format;

pub async fn run(command: Command) -> Result<i32, CliError> {
    match command {
        Command::Serve {
            data_dir,
            store,
            listen,
            public_url,
            max_running,
            notify_url,
        } => {
            let config = crate::config::load(crate::config::Flags {
                listen,
                public_url,
                max_running,
                notify_url,
                ..store.flags(data_dir)
            })
            .map_err(|e| CliError::msg(e.to_string()))?;
            crate::server::serve(config)
                .await
                .map_err(|e| CliError::msg(e.to_string()))?;
            Ok(0)
        }
        Command::WalPush {
            path,
            name,
            data_dir,
            store,
        } => {
            let config = store.service_config(data_dir)?;
            let result = on_store(config, move |storage| {
                crate::wal::push(storage, &name, &path).map_err(|e| e.to_string())
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
                Err(e) => Err(CliError::msg(format!("wal-push: {e}"))),
            }
        }
        Command::WalFetch {
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
                    start_prefetch(&name, &file, &dest, size, &data_dir, &store);
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
                Ok(config) => tokio::task::spawn_blocking(move || {
                    let storage = crate::service::open_configured_storage(&config, false)
                        .map_err(|e| crate::wal::WalError::Setup(e.to_string()))?;
                    crate::wal::fetch_with_retries(storage.as_ref(), &n, &f, &d)
                })
                .await
                .unwrap_or_else(|e| Err(crate::wal::WalError::Setup(e.to_string()))),
                Err(e) => Err(crate::wal::WalError::Setup(e.to_string())),
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
                    eprintln!(
                        "pgbackups wal-fetch: {e}; exiting 126 so that PostgreSQL stops recovery instead of taking this for the end of the archive"
                    );
                    Ok(126)
                }
            }
        }
        Command::WalPrefetch {
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
                    // About 128 MiB ahead: eight 16 MiB segments.
                    let count = ((128u64 << 20) / segment_size.max(1)).clamp(1, 8) as usize;
                    let files = crate::wal::next_segments(&after, segment_size, count);
                    crate::wal::prefetch(storage.as_ref(), &name, &files, &dir);
                }
            })
            .await;
            Ok(0)
        }
        Command::BaseBackup {
            name,
            data_dir,
            store,
        } => {
            let url = database_url_from_env_or_stdin()?;
            let config = store.service_config(data_dir)?;
            let wal_wait = config.tuning.base_wal_wait;
            let tools = crate::pg::PgTools::discover(&config.pg_bin_dirs);
            let storage = tokio::task::spawn_blocking(move || {
                crate::service::open_configured_storage(&config, false)
            })
            .await
            .map_err(|e| CliError::msg(e.to_string()))?
            .map_err(|e| CliError::msg(e.to_string()))?;
            let b = crate::pitr::take_base_backup(storage, &tools, &url, &name, wal_wait)
                .await
                .map_err(CliError::msg)?;
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
        Command::Rollback {
            name,
            to,
            by,
            lsn,
            xid,
            restore_point,
            immediate,
            base_backup,
            timeline,
            target_dir,
            store,
        } => {
            use crate::pitr::RecoveryTarget;
            let mut targets = Vec::new();
            if let Some(t) = to {
                targets.push(RecoveryTarget::Time(
                    t.trim().parse::<jiff::Timestamp>().map_err(|e| {
                        CliError::msg(format!(
                            "--to `{t}` is not a time with a UTC offset, such as 2026-11-25T05:30:00Z: {e}"
                        ))
                    })?,
                ));
            }
            if let Some(b) = by {
                let secs = parse_expiry(&b)?;
                targets.push(RecoveryTarget::Time(
                    jiff::Timestamp::now()
                        .checked_sub(jiff::SignedDuration::from_secs(secs as i64))
                        .map_err(|e| CliError::msg(e.to_string()))?,
                ));
            }
            targets.extend(lsn.map(RecoveryTarget::Lsn));
            targets.extend(xid.map(RecoveryTarget::Xid));
            targets.extend(restore_point.map(RecoveryTarget::RestorePoint));
            if immediate {
                targets.push(RecoveryTarget::Immediate);
            }
            let target = match <[RecoveryTarget; 1]>::try_from(targets) {
                Ok([t]) => t,
                Err(_) => {
                    return Err(CliError::msg(
                        "give one of --to TIME, --by INTERVAL, --lsn LSN, --xid XID, --restore-point NAME or --immediate (or use `pgbackups fork` for the latest moment)",
                    ));
                }
            };
            let recovery = recovery(target, &timeline, base_backup)?;
            restore_cluster(name.get(), recovery, target_dir, store).await
        }
        Command::Fork {
            name,
            timeline,
            target_dir,
            store,
        } => {
            let recovery = recovery(crate::pitr::RecoveryTarget::Latest, &timeline, None)?;
            restore_cluster(name.get(), recovery, target_dir, store).await
        }
        Command::Protect {
            database,
            base_every,
            keep,
        } => {
            let base_every_secs = base_every
                .as_deref()
                .map(|b| parse_duration("--base-every", b))
                .transpose()?;
            let c = Client::from_env()?;
            let v: serde_json::Value = c
                .post(
                    "/protections",
                    &json!({ "database": database, "base_every_secs": base_every_secs, "keep": keep }),
                )
                .await?;
            let every = v
                .get("base_every_secs")
                .and_then(|x| x.as_u64())
                .unwrap_or(0);
            println!(
                "Protecting {database}: its WAL streams into the store through replication slot {}; base backups every {}, the newest {} kept. The first base backup starts once the WAL streams; watch with `pgbackups protection:info {database}`.",
                v.get("slot").and_then(|x| x.as_str()).unwrap_or("?"),
                format_duration(every),
                v.get("keep_base").and_then(|x| x.as_u64()).unwrap_or(0)
            );
            Ok(0)
        }
        Command::Unprotect { database } => {
            let c = Client::from_env()?;
            let v: serde_json::Value = c
                .send(c.request(
                    Method::DELETE,
                    &format!("/protections/{}", path_part(&database)),
                ))
                .await?
                .json()
                .await
                .map_err(|e| CliError::msg(format!("unreadable answer from the service: {e}")))?;
            println!(
                "Stopped protecting {database}; its archive stays in the store (rollback and fork still work)."
            );
            if let Some(w) = v.get("warning").and_then(|w| w.as_str()) {
                eprintln!("WARNING: {w}");
                return Ok(1);
            }
            Ok(0)
        }
        Command::ProtectionInfo {
            database,
            name: None,
            json,
            store: _,
        } => {
            let c = Client::from_env()?;
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
            let mut problems = 0;
            for v in &views {
                for p in v
                    .get("problems")
                    .and_then(|p| p.as_array())
                    .into_iter()
                    .flatten()
                {
                    problems += 1;
                    eprintln!(
                        "WARNING: {}: {}",
                        v.get("database").and_then(|d| d.as_str()).unwrap_or("?"),
                        p.as_str().unwrap_or("")
                    );
                }
            }
            Ok(if problems == 0 { 0 } else { 3 })
        }
        Command::ProtectionInfo {
            database: _,
            name: Some(name),
            json,
            store,
        } => {
            let config = store.service_config(None)?;
            let info = on_store(config, move |storage| {
                crate::pitr::archive_info(storage, &name).map_err(|e| e.to_string())
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
        Command::ProtectionExpire { name, keep, store } => {
            let name = name.get();
            if keep == 0 {
                return Err(CliError::msg("--keep must be at least 1"));
            }
            let config = store.service_config(None)?;
            let n = name.clone();
            let gone = on_store(config, move |storage| {
                crate::pitr::expire(storage, &n, keep).map_err(|e| e.to_string())
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
        Command::Databases { json } => {
            let c = Client::from_env()?;
            let dbs: Vec<DatabaseRecord> = c.get("/databases").await?;
            if json {
                print_json(&dbs)?;
            } else if dbs.is_empty() {
                println!(
                    "No databases registered. Add one with `pgbackups databases:add NAME postgres://...`."
                );
            } else {
                println!("=== Databases");
                let rows = dbs
                    .iter()
                    .map(|d| vec![d.name.clone(), d.url.clone(), format::time(d.created_at)])
                    .collect::<Vec<_>>();
                print!("{}", render(&["Name", "URL", "Added at"], &rows));
            }
            Ok(0)
        }
        Command::DatabasesAdd { name, url } => {
            let url = match url.filter(|u| u != "-") {
                Some(u) => {
                    urlarg::warn_if_password(
                        &u,
                        "leave the URL out (or pass `-`) and give it on standard input",
                    );
                    u
                }
                None => urlarg::read_line(
                    "Database URL",
                    "no URL given: pass it as the second argument or on standard input",
                )?,
            };
            let c = Client::from_env()?;
            let added: serde_json::Value = c
                .post("/databases", &json!({ "name": name, "url": url }))
                .await?;
            println!(
                "Added database {name}: {}",
                added.get("url").and_then(|u| u.as_str()).unwrap_or("")
            );
            Ok(0)
        }
        Command::DatabasesRemove { name } => {
            let c = Client::from_env()?;
            c.send(c.request(Method::DELETE, &format!("/databases/{}", path_part(&name))))
                .await?;
            println!("Removed database {name} (its backups are kept).");
            Ok(0)
        }
        Command::Backups { json } => {
            let c = Client::from_env()?;
            let all: Vec<TransferRecord> = c.get("/transfers").await?;
            if json {
                print_json(&all)?;
            } else {
                print!("{}", backups_listing(&all));
            }
            Ok(0)
        }
        Command::Capture {
            database,
            no_wait,
            verbose,
            filter,
        } => {
            let database = urlarg::resolve_opt(database, Role::Source)?;
            let c = Client::from_env()?;
            let mut body = filter_json(&filter);
            body["database"] = json!(database);
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
        Command::Cancel { id } => {
            let c = Client::from_env()?;
            let path = match &id {
                Some(id) => format!("/transfers/{}/cancel", parse_id(id)?),
                None => "/transfers/cancel".to_string(),
            };
            let answer: serde_json::Value = c.post(&path, &json!({})).await?;
            let id = answer.get("id").and_then(|v| v.as_str()).unwrap_or("?");
            println!("Stopping {id}... done");
            Ok(0)
        }
        Command::Info { id, json } => {
            let c = Client::from_env()?;
            let id = match id {
                Some(id) => parse_id(&id)?,
                None => newest_backup(&c).await?,
            };
            let mut rec: TransferRecord = c.get(&format!("/transfers/{id}")).await?;
            let logs: Vec<LogLine> = c.get(&format!("/transfers/{id}/logs")).await?;
            if rec.kind == TransferKind::Capture {
                // The newest verification of this backup, shown as its own line.
                let all: Vec<TransferRecord> = c.get("/transfers").await?;
                if let Some(v) = all
                    .iter()
                    .filter(|t| t.kind == TransferKind::Verify && t.backup_id == Some(rec.id))
                    .max_by_key(|t| (t.created_at, t.id))
                {
                    let at = v.finished_at.map(format::time).unwrap_or_default();
                    rec.detail = Some(match v.state {
                        TransferState::Succeeded => format!(
                            "OK {at} ({}: {})",
                            v.id,
                            v.detail.clone().unwrap_or_default()
                        ),
                        TransferState::Failed => format!(
                            "FAILED {at} ({}: {})",
                            v.id,
                            v.error.clone().unwrap_or_default()
                        ),
                        other => format!("{} ({})", other.as_str(), v.id),
                    });
                }
            }
            if json {
                let mut v = serde_json::to_value(&rec).map_err(|e| CliError::msg(e.to_string()))?;
                v["logs"] =
                    serde_json::to_value(&logs).map_err(|e| CliError::msg(e.to_string()))?;
                print_json(&v)?;
            } else {
                print!("{}", info_text(&rec, &logs));
            }
            Ok(0)
        }
        Command::Download { id, output } => download(id, &output).await,
        Command::Url { id, expires, plain } => {
            let secs = parse_expiry(&expires)?;
            let id = match id {
                Some(id) => parse_id(&id)?.to_string(),
                None => "latest".to_string(),
            };
            let c = Client::from_env()?;
            let link: crate::transfer::BackupUrl = c
                .post(
                    &format!("/backups/{id}/url"),
                    &json!({ "expires_secs": secs, "plain": plain }),
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
                    "Valid until {until}. It streams backup {} as a plain custom-format dump through this service.",
                    link.id
                );
            }
            Ok(0)
        }
        Command::Verify {
            id,
            restore,
            target,
            no_wait,
            verbose,
        } => {
            let id = match id {
                Some(id) => parse_id(&id)?.to_string(),
                None => "latest".to_string(),
            };
            let target = urlarg::resolve_opt(target, Role::Target)?;
            let c = Client::from_env()?;
            let mode = if restore { "restore" } else { "checksum" };
            let rec: TransferRecord = c
                .post(
                    &format!("/backups/{id}/verify"),
                    &json!({ "mode": mode, "target": target }),
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
        Command::CatalogRebuild => {
            let c = Client::from_env()?;
            let r: crate::transfer::RebuildReport = c.post("/catalog/rebuild", &json!({})).await?;
            let ids = |v: &[crate::catalog::TransferId]| {
                v.iter()
                    .map(|i| i.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            println!(
                "Recreated {} backup(s) from the store{}",
                r.added.len(),
                if r.added.is_empty() {
                    String::new()
                } else {
                    format!(": {}", ids(&r.added))
                }
            );
            if !r.present.is_empty() {
                println!("Already in the catalog: {}", ids(&r.present));
            }
            for (id, key) in &r.conflicts {
                println!(
                    "Not recreated: {key} is backup {id}, but {id} is already another backup here (made before the rebuild); the object stays in the store"
                );
            }
            for key in &r.orphaned {
                println!("Skipped {key}: its backup object is missing");
            }
            for (key, why) in &r.unreadable {
                println!("Skipped {key}: {why}");
            }
            if !r.added.is_empty() {
                println!(
                    "Databases, schedules and retention are not in the store: add them again with databases:add and backups:schedule."
                );
            }
            Ok(if r.unreadable.is_empty() && r.conflicts.is_empty() {
                0
            } else {
                1
            })
        }
        Command::Copy {
            source,
            target,
            confirm,
            no_wait,
            verbose,
            filter,
        } => {
            let source = urlarg::resolve(source, Role::Source)?;
            let target = urlarg::resolve(target, Role::Target)?;
            let mut body = filter_json(&filter);
            body["source"] = json!(source);
            body["target"] = json!(target);
            body["confirm"] = json!(confirm);
            copy_and_watch("/copies", &body, no_wait, verbose).await
        }
        Command::Pull {
            source,
            local_url,
            no_wait,
            verbose,
            filter,
        } => {
            let source = urlarg::resolve(source, Role::Source)?;
            let local_url = urlarg::resolve(local_url, Role::Target)?;
            let mut body = filter_json(&filter);
            body["source"] = json!(source);
            body["target"] = json!(local_url);
            copy_and_watch("/pulls", &body, no_wait, verbose).await
        }
        Command::Push {
            local_url,
            target,
            confirm,
            no_wait,
            verbose,
            filter,
        } => {
            let local_url = urlarg::resolve(local_url, Role::Source)?;
            let target = urlarg::resolve(target, Role::Target)?;
            let mut body = filter_json(&filter);
            body["source"] = json!(local_url);
            body["target"] = json!(target);
            body["confirm"] = json!(confirm);
            copy_and_watch("/pushes", &body, no_wait, verbose).await
        }
        Command::Schedule {
            database,
            at,
            verify,
        } => {
            let verify: VerifyMode = verify.parse().map_err(CliError::msg)?;
            let c = Client::from_env()?;
            let s: serde_json::Value = c
                .post(
                    "/schedules",
                    &json!({ "database": database, "at": at, "verify": verify }),
                )
                .await?;
            let field = |k: &str| s.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
            println!(
                "Scheduled automatic daily backups of {} at {}; next: {} ({} UTC)",
                field("database"),
                field("at"),
                field("next_run_local"),
                field("next_run_at")
            );
            Ok(0)
        }
        Command::Retention {
            database,
            daily,
            weekly,
            monthly,
            manual,
        } => {
            let c = Client::from_env()?;
            let path = format!("/retention/{}", path_part(&database));
            let v: serde_json::Value = if [daily, weekly, monthly, manual]
                .iter()
                .all(Option::is_none)
            {
                c.get(&path).await?
            } else {
                let body = json!({ "daily": daily, "weekly": weekly, "monthly": monthly, "manual": manual });
                let resp = c.send(c.request(Method::PUT, &path).json(&body)).await?;
                resp.json()
                    .await
                    .map_err(|e| CliError::msg(format!("reading the service's answer: {e}")))?
            };
            let n = |k: &str| v[k].as_u64().unwrap_or(0);
            println!(
                "{} keeps: {} manual; scheduled: {} daily, {} weekly, {} monthly{} (pinned backups are always kept)",
                v["database"].as_str().unwrap_or(&database),
                n("manual"),
                n("daily"),
                n("weekly"),
                n("monthly"),
                if v["default"].as_bool() == Some(true) {
                    " (the default)"
                } else {
                    ""
                }
            );
            Ok(0)
        }
        Command::Pin { id } => {
            let id = parse_id(&id)?;
            let c = Client::from_env()?;
            c.send(c.request(Method::POST, &format!("/backups/{id}/pin")))
                .await?;
            println!("Pinned {id}: retention will keep it.");
            Ok(0)
        }
        Command::Unpin { id } => {
            let id = parse_id(&id)?;
            let c = Client::from_env()?;
            c.send(c.request(Method::DELETE, &format!("/backups/{id}/pin")))
                .await?;
            println!("Unpinned {id}: retention may expire it again.");
            Ok(0)
        }
        Command::Unschedule { database } => {
            let c = Client::from_env()?;
            let name = match database {
                Some(d) => d,
                None => {
                    let all: Vec<serde_json::Value> = c.get("/schedules").await?;
                    match all.as_slice() {
                        [one] => one["database"].as_str().unwrap_or("").to_string(),
                        [] => return Err(CliError::msg("no database has a schedule")),
                        _ => {
                            return Err(CliError::msg(
                                "several databases have schedules; name the one to unschedule",
                            ));
                        }
                    }
                }
            };
            c.send(c.request(Method::DELETE, &format!("/schedules/{}", path_part(&name))))
                .await?;
            println!("Stopped automatic daily backups of {name}");
            Ok(0)
        }
        Command::Schedules { json } => {
            let c = Client::from_env()?;
            let all: Vec<serde_json::Value> = c.get("/schedules").await?;
            if json {
                print_json(&all)?;
            } else if all.is_empty() {
                println!(
                    "No backup schedules. Add one with `pgbackups backups:schedule DATABASE --at '02:00 UTC'`."
                );
            } else {
                println!("=== Backup Schedules");
                let text = |v: &serde_json::Value, k: &str| v[k].as_str().unwrap_or("").to_string();
                let rows = all
                    .iter()
                    .map(|s| {
                        vec![
                            text(s, "database"),
                            format!("daily at {}", text(s, "at")),
                            text(s, "next_run_local"),
                            s["next_run_at"]
                                .as_str()
                                .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                                .map(format::time)
                                .unwrap_or_default(),
                            {
                                let r = &s["retention"];
                                let n = |k: &str| r[k].as_u64().unwrap_or(0);
                                format!(
                                    "{} daily, {} weekly, {} monthly, {} manual",
                                    n("daily"),
                                    n("weekly"),
                                    n("monthly"),
                                    n("manual")
                                )
                            },
                            match text(s, "verify").as_str() {
                                "checksum" => "checksum".to_string(),
                                "restore" => "restore test".to_string(),
                                _ => "no".to_string(),
                            },
                        ]
                    })
                    .collect::<Vec<_>>();
                print!(
                    "{}",
                    render(
                        &[
                            "Database",
                            "Schedule",
                            "Next run",
                            "Next run (UTC)",
                            "Keeps",
                            "Verify"
                        ],
                        &rows
                    )
                );
            }
            Ok(0)
        }
        Command::Delete { id, confirm } => {
            let id = parse_id(&id)?;
            let c = Client::from_env()?;
            let mut req = c.request(Method::DELETE, &format!("/backups/{id}"));
            if let Some(confirm) = &confirm {
                req = req.query(&[("confirm", confirm)]);
            }
            c.send(req).await?;
            println!("Deleting backup {id}... done");
            Ok(0)
        }
        Command::Restore {
            first,
            second,
            confirm,
            jobs,
            atomic,
            drop_old,
            file,
            no_wait,
            verbose,
        } => {
            if let Some(path) = file {
                let database = urlarg::resolve_opt(first.or(second), Role::Target)?;
                return upload_and_watch(
                    &path, database, confirm, jobs, atomic, drop_old, no_wait, verbose,
                )
                .await;
            }
            // `restore b001 main`, `restore https://... main`, `restore b001`, `restore main`,
            // `restore`; `-` for either is read from the environment or standard input.
            let is_http = |a: &str| a.starts_with("http://") || a.starts_with("https://");
            let (first, second) = match (first, second) {
                (Some(a), Some(b)) => (
                    Some(urlarg::resolve(a, Role::Source)?),
                    Some(urlarg::resolve(b, Role::Target)?),
                ),
                // One argument is the target, unless it is a backup or a URL to restore from.
                (Some(a), None) if a == "-" => (None, Some(urlarg::resolve(a, Role::Target)?)),
                (Some(a), None) => {
                    let role = if is_http(&a) {
                        Role::Source
                    } else {
                        Role::Target
                    };
                    (Some(urlarg::resolve(a, role)?), None)
                }
                (None, b) => (None, urlarg::resolve_opt(b, Role::Target)?),
            };
            let from_url = first.clone().filter(|f| is_http(f));
            let first = if from_url.is_some() { None } else { first };
            let (backup, database) = match (first, second) {
                (Some(a), Some(b)) => (Some(parse_id(&a)?), Some(b)),
                (Some(a), None) => match a.parse::<TransferId>() {
                    Ok(id) if id.is_backup() => (Some(id), None),
                    _ => (None, Some(a)),
                },
                (None, database) => (None, database),
            };
            let c = Client::from_env()?;
            let rec: TransferRecord = c
                .post(
                    "/restores",
                    &json!({
                        "backup": backup.map(|b| b.to_string()),
                        "url": from_url,
                        "database": database,
                        "confirm": confirm,
                        "jobs": jobs,
                        "atomic": atomic,
                        "drop_old": drop_old,
                    }),
                )
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
    }
}

/// Uploads a dump file for a restore, then watches the restore.
#[allow(clippy::too_many_arguments)]
async fn upload_and_watch(
    path: &Path,
    database: Option<String>,
    confirm: Option<String>,
    jobs: u32,
    atomic: bool,
    drop_old: bool,
    no_wait: bool,
    verbose: bool,
) -> Result<i32, CliError> {
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|e| CliError::msg(format!("cannot open {}: {e}", path.display())))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let c = Client::from_env()?;
    let mut query: Vec<(&str, String)> = vec![
        ("name", name),
        ("jobs", jobs.to_string()),
        ("atomic", atomic.to_string()),
        ("drop_old", drop_old.to_string()),
    ];
    if let Some(d) = database {
        query.push(("database", d));
    }
    if let Some(c) = confirm {
        query.push(("confirm", c));
    }
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
    let rec: TransferRecord = resp
        .json()
        .await
        .map_err(|e| CliError::msg(format!("reading the service's answer: {e}")))?;
    if no_wait {
        println!("{}", rec.id);
        return Ok(0);
    }
    println!("{}", rec.id);
    let from = rec.source.clone().unwrap_or_default();
    watch::watch(
        &c,
        rec.id,
        &format!("Restoring {from} to {}", rec.database),
        verbose,
    )
    .await
}

/// Starts a copy (plain, pull or push) and watches it like a capture.
async fn copy_and_watch(
    path: &str,
    body: &serde_json::Value,
    no_wait: bool,
    verbose: bool,
) -> Result<i32, CliError> {
    let c = Client::from_env()?;
    let rec: TransferRecord = c.post(path, body).await?;
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

/// The selection options as the API takes them.
fn filter_json(f: &super::FilterArgs) -> serde_json::Value {
    json!({
        "schema": f.schema,
        "exclude_schema": f.exclude_schema,
        "table": f.table,
        "exclude_table_data": f.exclude_table_data,
    })
}

fn parse_id(s: &str) -> Result<TransferId, CliError> {
    s.parse()
        .map_err(|e: crate::catalog::TransferIdError| CliError::msg(e.to_string()))
}

fn path_part(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn print_json<T: serde::Serialize>(v: &T) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(v).map_err(|e| CliError::msg(e.to_string()))?;
    println!("{text}");
    Ok(())
}

async fn newest_backup(c: &Client) -> Result<TransferId, CliError> {
    let all: Vec<TransferRecord> = c.get("/transfers?kind=capture").await?;
    all.iter()
        .max_by_key(|t| t.created_at)
        .map(|t| t.id)
        .ok_or_else(|| {
            CliError::msg("there are no backups yet; take one with `pgbackups backups:capture`")
        })
}

impl super::StoreArgs {
    /// The service's configuration from the data directory, the configuration file, the
    /// environment and these flags (which win).
    pub fn service_config(self, data_dir: Option<PathBuf>) -> Result<ServiceConfig, CliError> {
        crate::config::load(self.flags(data_dir)).map_err(|e| CliError::msg(e.to_string()))
    }

    /// These flags (and `--data-dir`) as the configuration loading takes them.
    pub fn flags(self, data_dir: Option<PathBuf>) -> crate::config::Flags {
        crate::config::Flags {
            data_dir,
            config: self.config,
            storage: self.storage,
            storage_endpoint: self.storage_endpoint,
            storage_region: self.storage_region,
            encrypt_to: self.encrypt_to,
            identity_file: self.identity_file,
            passphrase_file: self.passphrase_file,
            ..Default::default()
        }
    }
}

impl super::StoreArgs {
    /// These flags as `wal-fetch` arguments, with paths made absolute (PostgreSQL runs the
    /// restore_command in its own data directory).
    fn as_args(&self) -> Vec<String> {
        let abs = |p: &PathBuf| {
            std::path::absolute(p)
                .unwrap_or_else(|_| p.clone())
                .display()
                .to_string()
        };
        let mut out = Vec::new();
        let mut push = |flag: &str, v: Option<String>| {
            if let Some(v) = v {
                out.push(flag.to_string());
                out.push(v);
            }
        };
        push("--config", self.config.as_ref().map(abs));
        push("--storage", self.storage.clone());
        push("--storage-endpoint", self.storage_endpoint.clone());
        push("--storage-region", self.storage_region.clone());
        push("--identity-file", self.identity_file.as_ref().map(abs));
        push("--passphrase-file", self.passphrase_file.as_ref().map(abs));
        out
    }
}

/// A word for /bin/sh: `'it'"'"'s'`.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\"'\"'"))
}

/// Runs `work` on a blocking thread with the store `config` names, opened without the
/// start-up probe (these commands open it once per use: per WAL segment, for wal-push).
async fn on_store<T: Send + 'static>(
    config: ServiceConfig,
    work: impl FnOnce(&dyn crate::storage::Storage) -> Result<T, String> + Send + 'static,
) -> Result<T, CliError> {
    tokio::task::spawn_blocking(move || {
        let storage =
            crate::service::open_configured_storage(&config, false).map_err(|e| e.to_string())?;
        work(storage.as_ref())
    })
    .await
    .map_err(|e| CliError::msg(e.to_string()))?
    .map_err(CliError::msg)
}

/// Starts `wal-prefetch` for the segments after `file` in the background, detached: this
/// `wal-fetch` returns at once, and PostgreSQL replays while the next segments arrive.
fn start_prefetch(
    name: &str,
    file: &str,
    dest: &std::path::Path,
    segment_size: u64,
    data_dir: &Option<std::path::PathBuf>,
    store: &super::StoreArgs,
) {
    if file.len() != 24 || !crate::wal::make_prefetch_dir(dest) {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let mut cmd = std::process::Command::new(exe);
    cmd.args(["wal-prefetch", "--name", name, "--after", file, "--dir"])
        .arg(crate::wal::prefetch_dir(dest))
        .args(["--segment-size", &segment_size.to_string()]);
    if let Some(d) = data_dir {
        cmd.arg("--data-dir").arg(d);
    }
    cmd.args(store.as_args())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    // Its own process group: the signals PostgreSQL sends its restore_command are not for it.
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    // SAFETY: close_range is async-signal-safe and touches no memory: the descriptors the
    // server left open in its restore_command (its log pipe, say) are not the prefetcher's.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            libc::close_range(3, libc::c_uint::MAX, 0);
            Ok(())
        });
    }
    let _ = cmd.spawn();
}

/// `wal-fetch --service`: WAL file `file` of `name` from the service, with the archive's WAL
/// token; the exit status PostgreSQL reads (0 fetched, 1 not archived, 126 stop recovery).
async fn wal_fetch_through_service(
    url: &str,
    token_file: &std::path::Path,
    name: &str,
    file: &str,
    dest: &std::path::Path,
) -> i32 {
    let fail = |why: String| {
        eprintln!(
            "pgbackups wal-fetch: {why}; exiting 126 so that PostgreSQL stops recovery instead of taking this for the end of the archive"
        );
        126
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

/// Where `rollback --through-service` keeps the WAL token in the new data directory.
const WAL_TOKEN_FILE: &str = "pgbackups-wal-token";

/// The OS user a server started by root runs as.
struct Owner {
    uid: nix::unistd::Uid,
    gid: nix::unistd::Gid,
}

/// The owner of `data_dir`, or of the directory it will be created in; never root.
fn server_owner(data_dir: &std::path::Path) -> Result<Owner, CliError> {
    use std::os::unix::fs::MetadataExt;
    let existing = std::iter::successors(Some(data_dir), |p| p.parent())
        .find(|p| p.exists())
        .unwrap_or(data_dir);
    let meta = std::fs::metadata(existing)
        .map_err(|e| CliError::msg(format!("cannot read {}: {e}", existing.display())))?;
    if meta.uid() == 0 {
        return Err(CliError::msg(format!(
            "--start runs the server as the owner of {} (PostgreSQL refuses to run as root), but root owns {}: create the data directory owned by the OS user the server should run as (for example `install -d -o postgres -m 700 {}`), then roll back again",
            data_dir.display(),
            existing.display(),
            data_dir.display()
        )));
    }
    let uid = nix::unistd::Uid::from_raw(meta.uid());
    let gid = nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map(|u| u.gid)
        .unwrap_or(nix::unistd::Gid::from_raw(meta.gid()));
    Ok(Owner { uid, gid })
}

/// Hands the unpacked data directory to the server's OS user.
fn give_to(dir: &std::path::Path, owner: &Owner) -> Result<(), CliError> {
    fn walk(p: &std::path::Path, owner: &Owner) -> std::io::Result<()> {
        std::os::unix::fs::lchown(p, Some(owner.uid.as_raw()), Some(owner.gid.as_raw()))?;
        if std::fs::symlink_metadata(p)?.is_dir() {
            for e in std::fs::read_dir(p)? {
                walk(&e?.path(), owner)?;
            }
        }
        Ok(())
    }
    walk(dir, owner).map_err(|e| {
        CliError::msg(format!(
            "cannot hand {} to the server's OS user: {e}",
            dir.display()
        ))
    })
}

/// Writes a file only its owner may read, in place of one the base backup may have brought
/// (a cluster that was itself recovered through the service).
fn write_private(path: &std::path::Path, bytes: &[u8]) -> Result<(), CliError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(CliError::msg(format!(
                "cannot replace {}: {e}",
                path.display()
            )));
        }
        _ => {}
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(bytes))
        .map_err(|e| CliError::msg(format!("cannot write {}: {e}", path.display())))
}

/// What `rollback` and `fork` ask of recovery.
fn recovery(
    target: crate::pitr::RecoveryTarget,
    timeline: &super::TimelineArg,
    base_backup: Option<String>,
) -> Result<crate::pitr::Recovery, CliError> {
    use crate::pitr::TimelineChoice;
    let timeline = match timeline.timeline.as_deref().map(str::trim) {
        None | Some("latest") => TimelineChoice::Latest,
        Some("current") => TimelineChoice::Current,
        Some(n) => match n.parse::<u32>() {
            Ok(id) if id >= 1 => TimelineChoice::Id(id),
            _ => {
                return Err(CliError::msg(format!(
                    "--timeline `{n}` is not a timeline: give `latest`, `current` or a timeline ID such as 2 (as pg_control_checkpoint() shows it)"
                )));
            }
        },
    };
    Ok(crate::pitr::Recovery {
        target,
        timeline,
        base_backup,
        waldumps: crate::pg::PgTools::discover(&[]).all(crate::pg::PgTool::WalDump),
    })
}

/// `rollback` and `fork`: unpack, configure recovery, maybe start.
async fn restore_cluster(
    name: String,
    recovery: crate::pitr::Recovery,
    dir: super::TargetDir,
    store: super::StoreArgs,
) -> Result<i32, CliError> {
    let timeout = dir
        .timeout
        .as_deref()
        .map(|t| parse_duration("--timeout", t))
        .transpose()?
        .unwrap_or(3600);
    let data_dir = std::path::absolute(&dir.data_dir).unwrap_or(dir.data_dir.clone());
    // Checked before anything is unpacked: PostgreSQL refuses to run as root, so root starts
    // it as the owner of the data directory (or of the directory it is created in).
    let run_as = if dir.start && nix::unistd::Uid::effective().is_root() {
        Some(server_owner(&data_dir)?)
    } else {
        None
    };
    let exe = std::env::current_exe().map_err(|e| CliError::msg(e.to_string()))?;
    let config = store.clone().service_config(None)?;
    let pg_bin_dirs = config.pg_bin_dirs.clone();
    let token_path = data_dir.join(WAL_TOKEN_FILE);
    // The server runs this as its own user, maybe with another HOME: every setting is spelled
    // out, with absolute paths. `%` is doubled, or the server would substitute it.
    let mut words = vec![
        exe.display().to_string(),
        "wal-fetch".into(),
        "--name".into(),
        name.clone(),
    ];
    let wal_token = if dir.through_service {
        // The store stays the service's: the server gets a token that reads this archive's
        // WAL and nothing else, in a file (never in the restore_command, which `ps` shows).
        let c = Client::from_env()?;
        let v: serde_json::Value = c
            .post(&format!("/wal/{}/token", path_part(&name)), &json!({}))
            .await?;
        let token = v
            .get("token")
            .and_then(|t| t.as_str())
            .ok_or_else(|| CliError::msg("the service answered without a WAL token"))?
            .to_string();
        words.extend([
            "--service".into(),
            c.base().to_string(),
            "--token-file".into(),
            token_path.display().to_string(),
        ]);
        Some(token)
    } else {
        words.extend([
            "--data-dir".into(),
            std::path::absolute(&config.data_dir)
                .unwrap_or(config.data_dir.clone())
                .display()
                .to_string(),
        ]);
        words.extend(store.as_args());
        None
    };
    // `%f %p`, and the segment size for prefetching, are added by the rollback.
    let restore_command = words
        .iter()
        .map(|w| sh_quote(&w.replace('%', "%%")))
        .collect::<Vec<_>>()
        .join(" ");
    let (d, n) = (data_dir.clone(), name.clone());
    let port = dir.port;
    let plan = on_store(config, move |storage| {
        crate::pitr::rollback(storage, &n, &recovery, &d, &restore_command, port)
            .map_err(|e| e.to_string())
    })
    .await?;
    eprintln!(
        "Unpacked base backup {} of {name} (WAL {} to {}) into {}; recovery configured:",
        plan.base.id,
        plan.base.start_lsn,
        plan.base.stop_lsn,
        data_dir.display()
    );
    for line in &plan.settings {
        eprintln!("  {line}");
    }
    if let Some(token) = wal_token {
        write_private(&token_path, token.as_bytes())?;
    }
    if let Some(owner) = &run_as {
        give_to(&data_dir, owner)?;
    }
    if !dir.start {
        eprintln!(
            "Not started: recovery is configured, not run, so whether it reaches the target is known only once the server runs. Start it as the OS user that owns the data directory with: pg_ctl -D {} -l {}/server.log start; it accepts writes once `SELECT pg_is_in_recovery()` answers f, and if it stops instead its log says why.",
            data_dir.display(),
            data_dir.display()
        );
        return Ok(0);
    }
    let tools = crate::pg::PgTools::discover(&pg_bin_dirs);
    let pg_ctl = tools
        .newest(crate::pg::PgTool::Ctl)
        .map_err(|e| CliError::msg(e.to_string()))?;
    let started = super::start::start_and_wait(
        &name,
        run_as.as_ref().map(|o| (o.uid, o.gid)),
        &pg_ctl,
        &data_dir,
        std::time::Duration::from_secs(timeout),
    )
    .await?;
    for line in &started.stopped_at {
        eprintln!("  {}", line.trim());
    }
    match started.port {
        Some(port) => println!("postgres://localhost:{port}/postgres"),
        None => eprintln!("It listens on the port of the backed-up configuration."),
    }
    eprintln!(
        "Recovery reached the target; the server (pid {}{}) accepts writes.",
        started.pid,
        started
            .socket_dir
            .map(|d| format!(", socket in {d}"))
            .unwrap_or_default()
    );
    Ok(0)
}

/// The connection URL of a command that must not take it on the command line.
fn database_url_from_env_or_stdin() -> Result<crate::pg::PgUrl, CliError> {
    let text = match std::env::var("PGBACKUPS_DATABASE_URL") {
        Ok(v) if !v.trim().is_empty() => v,
        _ => {
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .map_err(|e| CliError::msg(e.to_string()))?;
            line
        }
    };
    crate::pg::PgUrl::parse(text.trim()).map_err(|e| {
        CliError::msg(format!(
            "the database URL (from PGBACKUPS_DATABASE_URL or stdin): {e}"
        ))
    })
}

/// The `protection:info` text.
fn protection_text(info: &crate::pitr::ArchiveInfo) -> String {
    let mut out = format!("=== Protection of {}\n", info.name);
    let window = match (&info.earliest, &info.latest_segment) {
        (Some(e), Some(l)) => format!("{} .. the end of WAL segment {l}", format::time(*e)),
        (None, _) => "none: no base backup yet (pgbackups base-backup)".into(),
        (Some(e), None) => format!("{} .. (no WAL archived yet)", format::time(*e)),
    };
    let last = info
        .base_backups
        .last()
        .map(|b| format!("{} (finished {})", b.id, format::time(b.finished_at)))
        .unwrap_or_else(|| "none".into());
    let rows = vec![
        vec!["Restorable window".to_string(), window],
        vec!["Last base backup".to_string(), last],
        vec![
            "Base backups".to_string(),
            info.base_backups.len().to_string(),
        ],
        vec![
            "WAL segments".to_string(),
            format!(
                "{} ({} of WAL), {} timeline histories",
                info.segments,
                format::bytes(info.segments as u64 * (16 << 20)),
                info.histories
            ),
        ],
        vec![
            "Gaps".to_string(),
            if info.gaps.is_empty() {
                "none".into()
            } else {
                format!("{} (see the warning below)", info.gaps.len())
            },
        ],
    ];
    out.push_str(&render(&["", ""], &rows));
    out
}

/// The text of one database's protection, as the service reports it.
fn protection_view_text(v: &serde_json::Value) -> String {
    let str_of = |v: &serde_json::Value, k: &str| {
        v.get(k)
            .and_then(|x| x.as_str())
            .map(str::to_string)
            .unwrap_or_default()
    };
    let time_of = |v: &serde_json::Value, k: &str| {
        v.get(k)
            .and_then(|x| x.as_str())
            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
            .map(format::time)
    };
    let database = str_of(v, "database");
    let mut out = String::new();
    let null = serde_json::Value::Null;
    let live = v.get("live").unwrap_or(&null);
    let archive = v.get("archive").unwrap_or(&null);
    if v.get("protected").and_then(|p| p.as_bool()) == Some(true) {
        out.push_str(&format!(
            "=== {database}: protected (slot {}, since {})\n",
            str_of(v, "slot"),
            time_of(v, "since").unwrap_or_default()
        ));
    } else {
        out.push_str(&format!(
            "=== {database}: not protected by this service (an archive-command archive)\n"
        ));
    }
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut row = |k: &str, val: String| rows.push(vec![k.to_string(), val]);
    if !live.is_null() {
        row("Status", str_of(live, "receiver"));
    }
    let earliest = time_of(live, "earliest").or_else(|| time_of(archive, "earliest"));
    let stored = match (
        time_of(live, "stored_at"),
        live.get("stored_lsn").and_then(|x| x.as_str()),
    ) {
        (Some(at), Some(lsn)) => format!("WAL stored up to {lsn} at {at}"),
        _ => match archive.get("latest_segment").and_then(|x| x.as_str()) {
            Some(seg) => format!("the end of WAL segment {seg}"),
            None => "no WAL stored yet".into(),
        },
    };
    row(
        "Restorable window",
        match earliest {
            Some(e) => format!("{e} .. {stored}"),
            None => "none yet: no base backup".into(),
        },
    );
    if let (Some(b), Some(s)) = (
        live.get("lag_bytes").and_then(|x| x.as_u64()),
        live.get("lag_seconds").and_then(|x| x.as_u64()),
    ) {
        let retained = live
            .get("slot_retained_bytes")
            .and_then(|x| x.as_u64())
            .map(|r| format!(" (the slot keeps {} on the server)", format::bytes(r)))
            .unwrap_or_default();
        row("WAL lag", format!("{}, {s} s{retained}", format::bytes(b)));
    }
    let last = live
        .get("last_base_backup")
        .filter(|b| !b.is_null())
        .or_else(|| {
            archive
                .get("base_backups")
                .and_then(|b| b.as_array())
                .and_then(|b| b.last())
        });
    let mut base = last
        .map(|b| {
            format!(
                "{} (finished {}, {} stored)",
                str_of(b, "id"),
                time_of(b, "finished_at").unwrap_or_default(),
                format::bytes(b.get("stored_bytes").and_then(|x| x.as_u64()).unwrap_or(0))
            )
        })
        .unwrap_or_else(|| "none yet".into());
    if live.get("base_backup_running").and_then(|x| x.as_bool()) == Some(true) {
        base.push_str("; one is running");
    } else if let Some(next) = time_of(live, "next_base_backup_at") {
        base.push_str(&format!("; next at {next}"));
    }
    row("Last base backup", base);
    let count = live
        .get("base_backups")
        .and_then(|x| x.as_u64())
        .or_else(|| {
            archive
                .get("base_backups")
                .and_then(|b| b.as_array())
                .map(|b| b.len() as u64)
        })
        .unwrap_or(0);
    let policy = match (
        v.get("base_every_secs").and_then(|x| x.as_u64()),
        v.get("keep_base").and_then(|x| x.as_u64()),
    ) {
        (Some(e), Some(k)) => format!(" (one every {}, the newest {k} kept)", format_duration(e)),
        _ => String::new(),
    };
    row("Base backups", format!("{count}{policy}"));
    if let Some(d) = live.get("wal_bytes_per_day").and_then(|x| x.as_u64()) {
        row("WAL per day", format!("about {}", format::bytes(d)));
    }
    let gaps = live
        .get("gaps")
        .or_else(|| archive.get("gaps"))
        .and_then(|g| g.as_array())
        .map(|g| g.len())
        .unwrap_or(0);
    row(
        "Gaps",
        if gaps == 0 {
            "none".into()
        } else {
            format!("{gaps} (see the warnings)")
        },
    );
    out.push_str(&render(&["", ""], &rows));
    out
}

/// `1d`, `6h`, `90m`, `45s` for a number of seconds.
fn format_duration(secs: u64) -> String {
    match secs {
        s if s % 86_400 == 0 && s > 0 => format!("{}d", s / 86_400),
        s if s % 3600 == 0 && s > 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 && s > 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// Seconds in `60m`, `12h`, `7d`, `90s` or `3600`, for the option `flag`.
fn parse_duration(flag: &str, text: &str) -> Result<u64, CliError> {
    parse_expiry(text).map_err(|_| {
        CliError::msg(format!(
            "{flag} `{text}` is not a duration: use such as 90s, 60m, 12h or 7d"
        ))
    })
}

/// Seconds in `60m`, `12h`, `7d`, `90s` or `3600`.
fn parse_expiry(text: &str) -> Result<u64, CliError> {
    let t = text.trim();
    let (num, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let n: u64 = num.parse().map_err(|_| bad_expiry(text))?;
    let mult = match unit.trim() {
        "" | "s" => 1,
        "m" | "min" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return Err(bad_expiry(text)),
    };
    Ok(n.saturating_mul(mult))
}

fn bad_expiry(text: &str) -> CliError {
    CliError::msg(format!(
        "--expires `{text}` is not a duration: use such as 90s, 60m, 12h or 7d"
    ))
}

/// `Completed 2026-11-24 02:00:13 +0000`, `Running (12.3MB processed)`, ...
pub fn status_text(t: &TransferRecord) -> String {
    let at = t.finished_at.map(format::time).unwrap_or_default();
    match t.state {
        TransferState::Pending => "Pending".into(),
        TransferState::Running => {
            format!("Running ({} processed)", format::bytes(t.bytes_processed))
        }
        TransferState::Succeeded if t.kind == TransferKind::Capture => format!("Completed {at}"),
        TransferState::Succeeded => format!("Finished {at}"),
        TransferState::Failed => format!("Failed {at}"),
        TransferState::Cancelled => format!("Cancelled {at}"),
    }
}

fn size_text(t: &TransferRecord) -> String {
    let size = match t.kind {
        TransferKind::Capture => t.object_size,
        TransferKind::Restore | TransferKind::Copy | TransferKind::Verify => t.dump_size,
    };
    size.map(format::bytes).unwrap_or_else(|| {
        if t.state == TransferState::Running {
            format::bytes(t.bytes_processed)
        } else {
            String::new()
        }
    })
}

/// The `pgbackups backups` listing: backups, then restores, newest first.
pub fn backups_listing(all: &[TransferRecord]) -> String {
    let mut out = String::from("=== Backups\n");
    let mut captures: Vec<&TransferRecord> = all
        .iter()
        .filter(|t| t.kind == TransferKind::Capture)
        .collect();
    captures.sort_by_key(|t| std::cmp::Reverse((t.created_at, t.id)));
    if captures.is_empty() {
        out.push_str("No backups. Capture one with `pgbackups backups:capture`.\n");
    } else {
        let rows = captures
            .iter()
            .map(|t| {
                vec![
                    t.id.to_string(),
                    format::time(t.created_at),
                    status_text(t),
                    size_text(t),
                    t.database.clone(),
                ]
            })
            .collect::<Vec<_>>();
        out.push_str(&render(
            &["ID", "Created at", "Status", "Size", "Database"],
            &rows,
        ));
    }
    out.push_str("\n=== Restores\n");
    let mut restores: Vec<&TransferRecord> = all
        .iter()
        .filter(|t| t.kind == TransferKind::Restore)
        .collect();
    restores.sort_by_key(|t| std::cmp::Reverse((t.created_at, t.id)));
    if restores.is_empty() {
        out.push_str("No restores found. Use `pgbackups backups:restore` to restore a backup.\n");
    } else {
        let rows = restores
            .iter()
            .map(|t| {
                vec![
                    t.id.to_string(),
                    t.started_at.map(format::time).unwrap_or_default(),
                    status_text(t),
                    size_text(t),
                    format!(
                        "{} → {}",
                        t.backup_id
                            .map(|b| b.to_string())
                            .or(t.source.clone())
                            .unwrap_or_default(),
                        t.database
                    ),
                ]
            })
            .collect::<Vec<_>>();
        out.push_str(&render(
            &["ID", "Started at", "Status", "Size", "From → To"],
            &rows,
        ));
    }
    let mut checks: Vec<&TransferRecord> = all
        .iter()
        .filter(|t| t.kind == TransferKind::Verify)
        .collect();
    if !checks.is_empty() {
        out.push_str("\n=== Verifications\n");
        checks.sort_by_key(|t| std::cmp::Reverse((t.created_at, t.id)));
        let rows = checks
            .iter()
            .map(|t| {
                vec![
                    t.id.to_string(),
                    t.started_at.map(format::time).unwrap_or_default(),
                    status_text(t),
                    t.backup_id.map(|b| b.to_string()).unwrap_or_default(),
                    t.detail.clone().or(t.error.clone()).unwrap_or_default(),
                ]
            })
            .collect::<Vec<_>>();
        out.push_str(&render(
            &["ID", "Started at", "Status", "Backup", "Result"],
            &rows,
        ));
    }
    let mut copies: Vec<&TransferRecord> = all
        .iter()
        .filter(|t| t.kind == TransferKind::Copy)
        .collect();
    if !copies.is_empty() {
        out.push_str("\n=== Copies\n");
        copies.sort_by_key(|t| std::cmp::Reverse((t.created_at, t.id)));
        let rows = copies
            .iter()
            .map(|t| {
                vec![
                    t.id.to_string(),
                    t.started_at.map(format::time).unwrap_or_default(),
                    status_text(t),
                    size_text(t),
                    format!("{} → {}", t.source.clone().unwrap_or_default(), t.database),
                ]
            })
            .collect::<Vec<_>>();
        out.push_str(&render(
            &["ID", "Started at", "Status", "Size", "From → To"],
            &rows,
        ));
    }
    out
}

/// The `pgbackups backups:info` text.
pub fn info_text(t: &TransferRecord, logs: &[LogLine]) -> String {
    let mut out = String::new();
    let what = match t.kind {
        TransferKind::Capture => "Backup",
        TransferKind::Restore => "Restore",
        TransferKind::Copy => "Copy",
        TransferKind::Verify => "Verification",
    };
    out.push_str(&format!("=== {what} {}\n", t.id));
    let mut fields: Vec<(&str, String)> = vec![("Database", t.database.clone())];
    if let Some(source) = &t.source {
        fields.push(("Source", source.clone()));
    }
    if !t.filter.is_empty() {
        fields.push(("Partial", t.filter.args().join(" ")));
    }
    if let Some(b) = t.backup_id {
        fields.push(("Backup", b.to_string()));
    }
    fields.push((
        "Started at",
        t.started_at
            .map(format::time)
            .unwrap_or_else(|| "not yet".into()),
    ));
    if let Some(f) = t.finished_at {
        fields.push(("Finished at", format::time(f)));
    }
    let status = match t.state {
        TransferState::Pending => "Pending".to_string(),
        TransferState::Running => {
            format!("Running ({} processed)", format::bytes(t.bytes_processed))
        }
        TransferState::Succeeded if t.kind == TransferKind::Restore => "Finished".into(),
        TransferState::Succeeded => "Completed".into(),
        TransferState::Failed => "Failed".into(),
        TransferState::Cancelled => "Cancelled".into(),
    };
    fields.push(("Status", status));
    if let Some(e) = &t.error {
        fields.push(("Error", e.clone()));
    }
    if t.pinned {
        fields.push(("Pinned", "yes (retention never expires it)".into()));
    }
    fields.push((
        "Type",
        match t.origin {
            Origin::Manual => "Manual".into(),
            Origin::Scheduled => "Scheduled".into(),
        },
    ));
    if let Some(s) = t.database_size {
        fields.push(("Original DB Size", format::bytes(s)));
    }
    match t.kind {
        TransferKind::Capture => {
            if let (Some(stored), Some(dump)) = (t.object_size, t.dump_size) {
                fields.push((
                    "Backup Size",
                    format!(
                        "{} ({}; dump {})",
                        format::bytes(stored),
                        format::ratio(dump, stored),
                        format::bytes(dump)
                    ),
                ));
            }
            if let Some(sha) = &t.sha256 {
                fields.push(("SHA-256", sha.clone()));
            }
            if let Some(enc) = &t.encryption {
                fields.push(("Encryption", enc.clone()));
            }
            fields.push((
                "Verified",
                t.detail
                    .clone()
                    .unwrap_or_else(|| "never (check it with `pgbackups backups:verify`)".into()),
            ));
        }
        TransferKind::Verify => {
            if let Some(d) = &t.detail {
                fields.push(("Result", d.clone()));
            }
        }
        TransferKind::Restore | TransferKind::Copy => {
            if let Some(d) = t.dump_size {
                fields.push(("Dump Size", format::bytes(d)));
            }
        }
    }
    if let Some(v) = &t.server_version {
        fields.push(("PostgreSQL", v.clone()));
    }
    if let Some(v) = &t.tool_version {
        let tool = if t.kind == TransferKind::Restore {
            "pg_restore"
        } else {
            "pg_dump"
        };
        fields.push(("Tool", format!("{tool} {v}")));
    }
    let width = fields.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
    for (k, v) in fields {
        out.push_str(&format!("{:<width$} {v}\n", format!("{k}:")));
    }
    out.push_str(&format!("=== {what} Logs\n"));
    for l in logs {
        out.push_str(&format!("{} {}\n", format::time(l.at), l.line));
    }
    out
}

async fn download(id: Option<String>, output: &Path) -> Result<i32, CliError> {
    let c = Client::from_env()?;
    let id_part = match &id {
        Some(id) => parse_id(id)?.to_string(),
        None => "latest".into(),
    };
    let mut resp = c
        .send(c.request(Method::GET, &format!("/backups/{id_part}/download")))
        .await?;
    let expected = resp.content_length();
    let backup = resp
        .headers()
        .get("x-pgbackups-backup")
        .and_then(|v| v.to_str().ok())
        .unwrap_or(&id_part)
        .to_string();
    let dir = output
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = output
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| CliError::msg(format!("{} is not a file name", output.display())))?;
    let tmp = dir.join(format!(".{name}.part-{}", std::process::id()));
    let file = std::fs::File::create(&tmp)
        .map_err(|e| CliError::msg(format!("cannot create {}: {e}", tmp.display())))?;
    // HTTP chunks are small; a large buffer turns them into few writes.
    let mut file = std::io::BufWriter::with_capacity(1 << 20, file);
    let cleanup = |e: String| {
        let _ = std::fs::remove_file(&tmp);
        CliError::msg(e)
    };
    let mut written = 0u64;
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                file.write_all(&chunk)
                    .map_err(|e| cleanup(format!("cannot write {}: {e}", tmp.display())))?;
                written += chunk.len() as u64;
            }
            Ok(None) => break,
            Err(e) => {
                return Err(cleanup(format!(
                    "the download of {backup} broke off after {} ({e}); nothing was written to {}. If it happens again, check the backup with `pgbackups backups:info {backup}`",
                    format::bytes(written),
                    output.display()
                )));
            }
        }
    }
    if expected.is_some_and(|n| n != written) {
        return Err(cleanup(format!(
            "the download of {backup} is incomplete ({written} of {} bytes); nothing was written to {}",
            expected.unwrap_or(0),
            output.display()
        )));
    }
    let file = file
        .into_inner()
        .map_err(|e| cleanup(format!("cannot write {}: {}", tmp.display(), e.error())))?;
    file.sync_all()
        .map_err(|e| cleanup(format!("cannot write {}: {e}", tmp.display())))?;
    drop(file);
    std::fs::rename(&tmp, output)
        .map_err(|e| cleanup(format!("cannot rename to {}: {e}", output.display())))?;
    let _ = crate::durable::fsync_dir(dir);
    println!(
        "Downloaded {backup} to {} ({}), a custom-format dump: restore it with pg_restore.",
        output.display(),
        format::bytes(written)
    );
    Ok(0)
}
