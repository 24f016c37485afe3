//! Login limits, counted in memory: at most [`PER_USER`] failed logins per user name and
//! [`PER_ADDRESS`] per client address within [`WINDOW`]; past that, logins are refused until the
//! oldest failure leaves the window. A success clears the user name's count.
//!
//! An attempt is counted as failed when it starts (and forgiven when it succeeds), so that
//! many attempts sent at once cannot all be tried before the first failure is counted. IPv6
//! addresses count by their /64, which one client usually holds whole.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Failed logins a user name may have within [`WINDOW`].
pub const PER_USER: usize = 5;
/// Failed logins an address may have within [`WINDOW`].
pub const PER_ADDRESS: usize = 20;
/// How long a failed login counts.
pub const WINDOW: Duration = Duration::from_secs(15 * 60);

/// The failure counts, per user name and per address.
#[derive(Default)]
pub struct Limiter {
    users: HashMap<String, VecDeque<Instant>>,
    addresses: HashMap<IpAddr, VecDeque<Instant>>,
    calls: u32,
}

/// An attempt let through by [`Limiter::begin`], counted as failed until
/// [`Limiter::succeeded`] says otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt {
    at: Instant,
}

impl Limiter {
    /// Lets a login attempt for `name` from `addr` go on (counted as a failure from now), or
    /// says how long to wait when the user name or the address is over its limit.
    pub fn begin(&mut self, name: &str, addr: IpAddr, now: Instant) -> Result<Attempt, Duration> {
        self.calls = self.calls.wrapping_add(1);
        if self.calls.is_multiple_of(256) {
            self.sweep(now);
        }
        let name = name.to_ascii_lowercase();
        let addr = bucket(addr);
        let wait_user = wait(self.users.get_mut(&name), PER_USER, now);
        let wait_addr = wait(self.addresses.get_mut(&addr), PER_ADDRESS, now);
        if let Some(w) = wait_user.max(wait_addr) {
            return Err(w);
        }
        self.users.entry(name).or_default().push_back(now);
        self.addresses.entry(addr).or_default().push_back(now);
        Ok(Attempt { at: now })
    }

    /// The attempt succeeded: the user name's failures are forgotten, and the address is not
    /// charged for it.
    pub fn succeeded(&mut self, name: &str, addr: IpAddr, attempt: Attempt) {
        self.users.remove(&name.to_ascii_lowercase());
        if let Some(q) = self.addresses.get_mut(&bucket(addr))
            && let Some(i) = q.iter().rposition(|t| *t == attempt.at)
        {
            q.remove(i);
        }
    }

    /// Drops what left the window, so that memory stays bounded by recent failures.
    fn sweep(&mut self, now: Instant) {
        fn prune<K: Eq + Hash>(m: &mut HashMap<K, VecDeque<Instant>>, now: Instant) {
            m.retain(|_, q| {
                expire(q, now);
                !q.is_empty()
            });
        }
        prune(&mut self.users, now);
        prune(&mut self.addresses, now);
    }
}

/// How long until `q` is under `limit` again, if it is at it now.
fn wait(q: Option<&mut VecDeque<Instant>>, limit: usize, now: Instant) -> Option<Duration> {
    let q = q?;
    expire(q, now);
    if q.len() < limit {
        return None;
    }
    // The failure whose leaving brings the count under the limit.
    let oldest = q[q.len() - limit];
    Some(
        (oldest + WINDOW)
            .saturating_duration_since(now)
            .max(Duration::from_secs(1)),
    )
}

fn expire(q: &mut VecDeque<Instant>, now: Instant) {
    while q
        .front()
        .is_some_and(|t| now.saturating_duration_since(*t) >= WINDOW)
    {
        q.pop_front();
    }
}

/// The key an address counts under: itself, or its /64 for IPv6.
fn bucket(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn five_failures_for_a_name_lock_it_for_the_rest_of_the_window() {
        let mut l = Limiter::default();
        let t0 = Instant::now();
        for i in 0..PER_USER {
            let at = t0 + Duration::from_secs(i as u64);
            assert!(l.begin("alice", ip("10.0.0.1"), at).is_ok());
        }
        // The sixth, even with the right password, is not tried; nor from elsewhere, nor
        // with the name spelled in capitals.
        let now = t0 + Duration::from_secs(60);
        let wait = l.begin("alice", ip("10.0.0.2"), now).unwrap_err();
        assert_eq!(wait, WINDOW - Duration::from_secs(60));
        assert!(l.begin("ALICE", ip("10.0.0.3"), now).is_err());
        // Another user is not locked out by alice's attacker.
        assert!(l.begin("bob", ip("10.0.0.1"), now).is_ok());
        // Once the oldest failure leaves the window, one more try is allowed.
        assert!(l.begin("alice", ip("10.0.0.1"), t0 + WINDOW).is_ok());
        assert!(l.begin("alice", ip("10.0.0.1"), t0 + WINDOW).is_err());
    }

    #[test]
    fn a_success_clears_the_names_count() {
        let mut l = Limiter::default();
        let t0 = Instant::now();
        for _ in 0..PER_USER - 1 {
            l.begin("alice", ip("10.0.0.1"), t0).unwrap();
        }
        let a = l.begin("alice", ip("10.0.0.1"), t0).unwrap();
        l.succeeded("alice", ip("10.0.0.1"), a);
        for _ in 0..PER_USER {
            assert!(l.begin("alice", ip("10.0.0.1"), t0).is_ok());
        }
    }

    #[test]
    fn twenty_failures_from_one_address_lock_it_whatever_the_names() {
        let mut l = Limiter::default();
        let t0 = Instant::now();
        for i in 0..PER_ADDRESS {
            assert!(l.begin(&format!("user{i}"), ip("192.0.2.7"), t0).is_ok());
        }
        assert!(l.begin("someone", ip("192.0.2.7"), t0).is_err());
        assert!(l.begin("someone", ip("192.0.2.8"), t0).is_ok());
        // IPv6: the whole /64 is one client.
        for i in 0..PER_ADDRESS {
            let a = ip(&format!("2001:db8::{i:x}"));
            assert!(l.begin(&format!("v6user{i}"), a, t0).is_ok());
        }
        assert!(l.begin("other", ip("2001:db8::ffff"), t0).is_err());
        assert!(l.begin("other", ip("2001:db8:0:1::1"), t0).is_ok());
    }

    #[test]
    fn memory_is_given_back_when_failures_leave_the_window() {
        let mut l = Limiter::default();
        let t0 = Instant::now();
        for i in 0..300 {
            let _ = l.begin(&format!("u{i}"), ip("10.1.1.1"), t0);
        }
        let later = t0 + WINDOW + Duration::from_secs(1);
        for _ in 0..256 {
            let _ = l.begin("x", ip("10.2.2.2"), later);
        }
        assert!(l.users.len() <= 2, "{}", l.users.len());
    }
}
