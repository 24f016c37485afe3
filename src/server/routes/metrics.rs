//! `GET /api/metrics`: Prometheus text for the WAL stream of each protected database.

use std::fmt::Write;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::{ApiResult, AppState};

/// Prometheus text: the WAL stream of each protected database.
pub(super) async fn metrics(State(s): State<AppState>) -> ApiResult<Response> {
    let views = s.protector.list().await?;
    let mut out = String::new();
    let mut metric = |name: &str, help: &str, values: &mut dyn Iterator<Item = (String, f64)>| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for (db, v) in values {
            // Label values escaped as the text format asks, whatever a name holds.
            let db = db
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            let _ = writeln!(out, "{name}{{database=\"{db}\"}} {v}");
        }
    };
    let live = |f: &dyn Fn(&crate::protect::Live) -> Option<f64>| -> Vec<(String, f64)> {
        views
            .iter()
            .filter_map(|v| Some((v.database.clone(), f(v.live.as_ref()?)?)))
            .collect()
    };
    metric(
        "pgbackups_wal_lag_bytes",
        "WAL the server wrote that is not in the store yet.",
        &mut live(&|l| l.lag_bytes.map(|b| b as f64)).into_iter(),
    );
    metric(
        "pgbackups_wal_lag_seconds",
        "How long ago the server was at the position the store has reached.",
        &mut live(&|l| l.lag_seconds.map(|b| b as f64)).into_iter(),
    );
    metric(
        "pgbackups_wal_slot_retained_bytes",
        "WAL the replication slot keeps on the server.",
        &mut live(&|l| l.slot_retained_bytes.map(|b| b as f64)).into_iter(),
    );
    metric(
        "pgbackups_wal_receiver_up",
        "1 while the WAL receiver streams.",
        &mut live(&|l| {
            Some(f64::from(u8::from(
                l.receiver == crate::protect::ReceiverState::Streaming,
            )))
        })
        .into_iter(),
    );
    metric(
        "pgbackups_wal_gaps",
        "Runs of WAL segments missing from the store.",
        &mut live(&|l| Some(l.gaps.len() as f64)).into_iter(),
    );
    metric(
        "pgbackups_base_backup_last_timestamp_seconds",
        "When the newest base backup finished.",
        &mut live(&|l| {
            l.last_base_backup
                .as_ref()
                .map(|b| b.finished_at.as_second() as f64)
        })
        .into_iter(),
    );
    metric(
        "pgbackups_protection_problems",
        "Problems protection:info reports.",
        &mut views
            .iter()
            .map(|v| (v.database.clone(), v.problems.len() as f64)),
    );
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response())
}
