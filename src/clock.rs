//! The wall clock the service reads (transfers are stamped with it, schedules and links
//! expire by it), injectable so that schedules are tested without sleeping until 2 am. A plain
//! foundation: it depends on nothing of the service's.

use std::time::{Duration, Instant};

use jiff::Timestamp;

/// What time it is, and a way to wait until a given time.
pub trait Clock: Send + Sync {
    /// The current wall-clock time.
    fn now(&self) -> Timestamp;

    /// How long to really wait for the clock to reach `t` (zero when it has).
    fn until(&self, t: Timestamp) -> Duration;
}

/// The system clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }

    fn until(&self, t: Timestamp) -> Duration {
        let secs = t.duration_since(Timestamp::now()).as_secs_f64();
        Duration::from_secs_f64(secs.max(0.0))
    }
}

/// A clock that starts at a given time and runs `speed` times faster than real time; for
/// tests (`PGBACKUPS_TEST_CLOCK=2026-03-08T09:59:00Z,60`).
pub struct TestClock {
    start: Timestamp,
    speed: f64,
    real_start: Instant,
}

impl TestClock {
    pub fn new(start: Timestamp, speed: f64) -> TestClock {
        TestClock {
            start,
            speed: speed.max(0.001),
            real_start: Instant::now(),
        }
    }

    /// Parses `START,SPEED` (speed optional, default 1).
    pub fn parse(spec: &str) -> Option<TestClock> {
        let (start, speed) = match spec.split_once(',') {
            Some((s, v)) => (s, v.trim().parse().ok()?),
            None => (spec, 1.0),
        };
        Some(TestClock::new(start.trim().parse().ok()?, speed))
    }
}

impl Clock for TestClock {
    fn now(&self) -> Timestamp {
        let elapsed = self.real_start.elapsed().as_secs_f64() * self.speed;
        let span = jiff::SignedDuration::from_secs_f64(elapsed);
        self.start.checked_add(span).unwrap_or(Timestamp::MAX)
    }

    fn until(&self, t: Timestamp) -> Duration {
        let secs = t.duration_since(self.now()).as_secs_f64() / self.speed;
        Duration::from_secs_f64(secs.max(0.0))
    }
}
