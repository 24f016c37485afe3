//! Scheduler benchmark: 10,000 databases scheduled over ten consecutive minutes, a stub in
//! place of the capture, a test clock 60 times faster than real time. Reports how late the
//! runs start (p50, p99, max; in real time) and the CPU the scheduler used.
//!
//! cargo run --release --example scheduler_bench [-- DATABASES]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use pgbackups::catalog::{Catalog, TransferId};
use pgbackups::schedule::{Clock, Scheduler, Starter, TestClock};
use pgbackups::transfer::TransferError;
use tokio_util::sync::CancellationToken;

const SPEED: f64 = 60.0;

/// Records when each run started instead of capturing.
struct Stub {
    clock: Arc<dyn Clock>,
    started: Mutex<Vec<(String, Timestamp)>>,
}

impl Starter for Stub {
    fn start(&self, database: &str) -> Result<TransferId, TransferError> {
        let mut s = self
            .started
            .lock()
            .map_err(|e| TransferError::Internal(e.to_string()))?;
        s.push((database.to_string(), self.clock.now()));
        Ok(TransferId::new('a', s.len() as u32))
    }
}

fn cpu_seconds() -> f64 {
    // utime and stime of this process, in clock ticks (fields 14 and 15 of /proc/self/stat).
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<f64> = after
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    (f.get(11).unwrap_or(&0.0) + f.get(12).unwrap_or(&0.0)) / 100.0
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000);
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("catalog.db");
    drop(Catalog::open(&path).expect("catalog"));
    // Set-up in one transaction (the service would take 10,000 API calls).
    let t0: Timestamp = "2026-01-01T00:00:40Z".parse().expect("time");
    {
        let mut conn = rusqlite::Connection::open(&path).expect("sqlite");
        let tx = conn.transaction().expect("tx");
        for i in 0..n {
            tx.execute(
                "INSERT INTO schedules (database, hour, minute, zone, created_at) VALUES (?1, 0, ?2, 'UTC', ?3)",
                rusqlite::params![format!("db{i:05}"), 1 + (i % 10) as i64, t0.as_microsecond() - 1],
            )
            .expect("insert");
        }
        tx.commit().expect("commit");
    }
    let catalog = Arc::new(Catalog::open(&path).expect("catalog"));
    let clock: Arc<dyn Clock> = Arc::new(TestClock::new(t0, SPEED));
    let stub = Arc::new(Stub {
        clock: clock.clone(),
        started: Mutex::new(Vec::new()),
    });
    let scheduler = Scheduler::new(catalog, stub.clone(), clock.clone());
    let stop = CancellationToken::new();
    let cpu0 = cpu_seconds();
    let real0 = Instant::now();
    let task = tokio::spawn(scheduler.run(stop.clone()));
    // The last runs are due at 00:10:00, 560 test seconds (9.3 real seconds) after the start.
    tokio::time::sleep(Duration::from_secs_f64(580.0 / SPEED)).await;
    stop.cancel();
    let _ = task.await;
    let cpu = cpu_seconds() - cpu0;
    let real = real0.elapsed().as_secs_f64();

    let started = stub.started.lock().expect("lock").clone();
    let mut late_ms: Vec<f64> = started
        .iter()
        .map(|(db, at)| {
            let i: usize = db[2..].parse().unwrap_or(0);
            let due = t0
                .checked_add(jiff::SignedDuration::from_secs(20 + 60 * (i % 10) as i64))
                .expect("due");
            at.duration_since(due).as_secs_f64() / SPEED * 1000.0
        })
        .collect();
    late_ms.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| {
        late_ms
            .get(((late_ms.len() as f64 - 1.0) * p).round() as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    let mut unique: Vec<&String> = started.iter().map(|(d, _)| d).collect();
    unique.sort();
    unique.dedup();
    let report = format!(
        "| databases | runs started | started twice | late p50 | late p99 | late max | scheduler CPU | wall |\n\
         |---|---|---|---|---|---|---|---|\n\
         | {n} | {} | {} | {:.1} ms | {:.1} ms | {:.1} ms | {:.2} s ({:.1}% of one core) | {:.1} s |\n",
        started.len(),
        started.len() - unique.len(),
        pct(0.5),
        pct(0.99),
        late_ms.last().copied().unwrap_or(f64::NAN),
        cpu,
        100.0 * cpu / real,
        real,
    );
    print!("{report}");
    let target = if pct(0.99) < 1000.0 && started.len() == n && unique.len() == n {
        "met"
    } else {
        "NOT met"
    };
    println!("target (every run started once, p99 under 1 s late): {target}");
}
