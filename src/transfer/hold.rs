//! Test holds: named points where a transfer can be stopped in its tracks, so that a test
//! forces the interleaving it checks (a cancel right after the target was emptied, a kill
//! during a swap, a delete while a restore reads its backup) instead of hoping for it.
//!
//! Off unless the service was started with `PGBACKUPS_TEST_HOLD` naming the point (a
//! comma-separated list), and only in debug builds: a release binary ignores the variable.
//! The configuration loading reads it; `serve` arms the points once with [`arm`].
//! A held transfer logs `Test hold: <point>` and waits until it is cancelled (or the service
//! is killed), at most two minutes.

use std::time::Duration;

use super::job::JobCtx;

/// The points armed for this process (`ServiceConfig::test_holds`).
static POINTS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();

/// Arms the test holds at `points` for this process (once: later calls change nothing).
/// The configuration leaves `points` empty in a release build.
pub fn arm(points: &[String]) {
    if !points.is_empty() {
        let _ = POINTS.set(points.to_vec());
    }
}

fn points() -> &'static [String] {
    POINTS.get().map(Vec::as_slice).unwrap_or_default()
}

/// Whether the test build holds transfers at `point`.
pub fn wanted(point: &str) -> bool {
    points().iter().any(|p| p == point)
}

/// Holds the transfer at `point` when a test asked for it: logs the hold, then waits until
/// the transfer is told to stop.
pub async fn at(ctx: &JobCtx, point: &str) {
    if !wanted(point) {
        return;
    }
    ctx.log(&format!("Test hold: {point}"));
    let _ = tokio::time::timeout(Duration::from_secs(120), ctx.cancelled().cancelled()).await;
}

/// Pauses a request (not a transfer: it has no cancel) at `point` for five seconds when a test
/// asked for it, logging `Test hold: <point>` to the service's log first. The test acts while
/// the pause lasts, once it has seen the line.
pub fn pause(point: &str) {
    if wanted(point) {
        tracing::info!("Test hold: {point}");
        std::thread::sleep(Duration::from_secs(5));
    }
}

/// [`pause`] for async code: the same five seconds, without blocking a runtime thread.
pub async fn pause_async(point: &str) {
    if wanted(point) {
        tracing::info!("Test hold: {point}");
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}
