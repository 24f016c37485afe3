//! `rollback` and `fork`: read the target from the command line, have the library make (and
//! maybe start) the new cluster, say what it did.

use super::args::{ArchiveName, ClusterCommand, StoreArgs, TargetDir, TimelineArg};
use super::client::{CliError, Client};
use super::shared::{Env, on_store, parse_duration, path_part};
use crate::pitr::cluster::{self, NewCluster, WalSource};
use crate::pitr::{Recovery, RecoveryTarget, TimelineChoice};

pub async fn run(command: ClusterCommand, env: &Env) -> Result<i32, CliError> {
    match command {
        ClusterCommand::Rollback {
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
                let secs = parse_duration("--by", &b)?;
                targets.push(RecoveryTarget::Time(
                    jiff::Timestamp::now()
                        .checked_sub(jiff::SignedDuration::from_secs(
                            i64::try_from(secs).unwrap_or(i64::MAX),
                        ))
                        .map_err(|e| {
                            CliError::msg(format!("--by `{b}` reaches before any time: {e}"))
                        })?,
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
            let recovery = cluster::recovery(target, timeline_choice(&timeline)?, base_backup);
            new_cluster(name, recovery, target_dir, store, env).await
        }
        ClusterCommand::Fork {
            name,
            timeline,
            target_dir,
            store,
        } => {
            let recovery =
                cluster::recovery(RecoveryTarget::Latest, timeline_choice(&timeline)?, None);
            new_cluster(name, recovery, target_dir, store, env).await
        }
    }
}

/// `--timeline`: `latest` (the default), `current` or a timeline ID.
fn timeline_choice(timeline: &TimelineArg) -> Result<TimelineChoice, CliError> {
    Ok(match timeline.timeline.as_deref().map(str::trim) {
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
    })
}

/// `rollback` and `fork`: unpack, configure recovery, maybe start.
async fn new_cluster(
    name: ArchiveName,
    recovery: Recovery,
    dir: TargetDir,
    store: StoreArgs,
    env: &Env,
) -> Result<i32, CliError> {
    let name = name.get();
    let (target, deprecated) = dir.dir();
    if let Some(message) = deprecated {
        eprintln!("{message}");
    }
    let timeout = dir
        .timeout
        .as_deref()
        .map(|t| parse_duration("--timeout", t))
        .transpose()?
        .unwrap_or(3600);
    let data_dir = std::path::absolute(&target).unwrap_or(target);
    // Checked before anything is unpacked: PostgreSQL refuses to run as root, so root starts
    // it as the owner of the data directory (or of the directory it is created in).
    let run_as = cluster::owner_for_start(&data_dir, dir.start).map_err(CliError::lib)?;
    let exe = std::env::current_exe().map_err(CliError::io("cannot find this program"))?;
    let config = store.clone().service_config(None)?;
    let pg_bin_dirs = config.pg_bin_dirs.clone();
    let wal = if dir.through_service {
        // The store stays the service's: the server gets a token that reads this archive's
        // WAL and nothing else.
        let c = Client::connect(env)?;
        let answer: crate::api::WalToken = c
            .post_empty(&format!("/wal/{}/token", path_part(&name)))
            .await?;
        WalSource::Service {
            url: c.base().to_string(),
            token: answer.token,
        }
    } else {
        WalSource::Store {
            data_dir: std::path::absolute(&config.data_dir).unwrap_or(config.data_dir.clone()),
            store_args: store.as_args(),
        }
    };
    let new = NewCluster {
        name: name.clone(),
        recovery,
        data_dir: data_dir.clone(),
        port: dir.port,
        wal,
        run_as,
        pg_bin_dirs,
    };
    let unpacking = new.clone();
    let plan = on_store(config, move |storage| {
        cluster::unpack(storage, &unpacking, &exe)
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
    cluster::hand_over(&new).map_err(CliError::lib)?;
    if !dir.start {
        eprintln!(
            "Not started: recovery is configured, not run, so whether it reaches the target is known only once the server runs. Start it as the OS user that owns the data directory with: pg_ctl -D {} -l {}/server.log start; it accepts writes once `SELECT pg_is_in_recovery()` answers f, and if it stops instead its log says why.",
            data_dir.display(),
            data_dir.display()
        );
        return Ok(0);
    }
    let started = cluster::start(&new, std::time::Duration::from_secs(timeout))
        .await
        .map_err(CliError::lib)?;
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
