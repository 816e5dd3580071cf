//! The lockout of client addresses that keep offering wrong keys. Failures are counted per IP
//! address within a window (a minute): after `slow_after` of them each further wrong key waits
//! a growing delay before its 401; at `lock_after` the address is locked for `lock_for`, and
//! every request from it (a correct key included) is refused with 429 until the lock ends. A
//! correct key from an address that is not locked clears its count.
//!
//! The clock is injected: every call takes `now`, so the timing is tested without sleeping.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Thresholds of the lockout.
#[derive(Debug, Clone)]
pub struct LockoutConfig {
    /// Failures within the window after which each wrong key is slowed.
    pub slow_after: u32,
    /// Failures within the window at which the address is locked.
    pub lock_after: u32,
    pub window: Duration,
    pub lock_for: Duration,
    /// The delay of the first slowed failure; it doubles with each further one.
    pub delay_step: Duration,
    pub delay_max: Duration,
}

impl Default for LockoutConfig {
    fn default() -> Self {
        LockoutConfig {
            slow_after: 5,
            lock_after: 20,
            window: Duration::from_secs(60),
            lock_for: Duration::from_secs(300),
            delay_step: Duration::from_millis(250),
            delay_max: Duration::from_secs(4),
        }
    }
}

/// What a wrong key from an address brings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Answer 401 after this delay (zero below `slow_after`).
    Delay(Duration),
    /// The address is now locked for this long: answer 429.
    Locked(Duration),
}

#[derive(Debug, Default)]
struct Entry {
    failures: VecDeque<Instant>,
    locked_until: Option<Instant>,
}

/// Addresses beyond this many are pruned of stale entries.
const MAX_TRACKED: usize = 10_000;

/// Per-address failure counts and locks.
#[derive(Debug)]
pub struct Lockout {
    cfg: LockoutConfig,
    map: Mutex<HashMap<IpAddr, Entry>>,
    lockouts: AtomicU64,
}

impl Lockout {
    pub fn new(cfg: LockoutConfig) -> Lockout {
        Lockout {
            cfg,
            map: Mutex::new(HashMap::new()),
            lockouts: AtomicU64::new(0),
        }
    }

    /// How many times an address was locked since the daemon started.
    pub fn lockouts(&self) -> u64 {
        self.lockouts.load(Ordering::Relaxed)
    }

    /// The time left of the lock of `ip`, if it is locked.
    pub fn locked(&self, ip: IpAddr, now: Instant) -> Option<Duration> {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let until = map.get(&ip)?.locked_until?;
        (until > now).then(|| until - now)
    }

    /// Records a wrong key from `ip`.
    pub fn fail(&self, ip: IpAddr, now: Instant) -> Failure {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_TRACKED && !map.contains_key(&ip) {
            let cfg = &self.cfg;
            map.retain(|_, e| {
                e.locked_until.is_some_and(|u| u > now)
                    || e.failures.back().is_some_and(|t| now - *t < cfg.window)
            });
        }
        let e = map.entry(ip).or_default();
        if let Some(until) = e.locked_until {
            if until > now {
                return Failure::Locked(until - now);
            }
            e.locked_until = None;
        }
        while e
            .failures
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= self.cfg.window)
        {
            e.failures.pop_front();
        }
        e.failures.push_back(now);
        let n = u32::try_from(e.failures.len()).unwrap_or(u32::MAX);
        if n >= self.cfg.lock_after {
            e.failures.clear();
            e.locked_until = Some(now + self.cfg.lock_for);
            let total = self.lockouts.fetch_add(1, Ordering::Relaxed) + 1;
            tracing::warn!(
                address = %ip,
                failures = n,
                lock_s = self.cfg.lock_for.as_secs(),
                lockouts_total = total,
                "locked out a client address after repeated wrong API keys"
            );
            return Failure::Locked(self.cfg.lock_for);
        }
        if n > self.cfg.slow_after {
            let doublings = (n - self.cfg.slow_after - 1).min(16);
            let d = self.cfg.delay_step.saturating_mul(1 << doublings);
            return Failure::Delay(d.min(self.cfg.delay_max));
        }
        Failure::Delay(Duration::ZERO)
    }

    /// Records a correct key from an address that is not locked: its count starts over.
    pub fn success(&self, ip: IpAddr) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if map.get(&ip).is_some_and(|e| e.locked_until.is_none()) {
            map.remove(&ip);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> LockoutConfig {
        LockoutConfig {
            slow_after: 2,
            lock_after: 5,
            window: Duration::from_secs(60),
            lock_for: Duration::from_secs(300),
            delay_step: Duration::from_millis(100),
            delay_max: Duration::from_millis(250),
        }
    }

    #[test]
    fn slowed_then_locked_then_released() {
        let l = Lockout::new(cfg());
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        assert_eq!(l.fail(ip, t0), Failure::Delay(Duration::ZERO));
        assert_eq!(l.fail(ip, t0), Failure::Delay(Duration::ZERO));
        assert_eq!(l.fail(ip, t0), Failure::Delay(ms(100)));
        assert_eq!(l.fail(ip, t0), Failure::Delay(ms(200)));
        assert_eq!(l.locked(ip, t0), None);
        assert_eq!(l.fail(ip, t0), Failure::Locked(Duration::from_secs(300)));
        assert_eq!(l.lockouts(), 1);
        let t1 = t0 + Duration::from_secs(100);
        assert_eq!(l.locked(ip, t1), Some(Duration::from_secs(200)));
        assert_eq!(l.fail(ip, t1), Failure::Locked(Duration::from_secs(200)));
        // A correct key does not lift the lock; another address is unaffected.
        l.success(ip);
        assert!(l.locked(ip, t1).is_some());
        assert_eq!(l.locked(other, t1), None);
        let t2 = t0 + Duration::from_secs(301);
        assert_eq!(l.locked(ip, t2), None);
        assert_eq!(l.fail(ip, t2), Failure::Delay(Duration::ZERO));
        assert_eq!(l.lockouts(), 1);
    }

    #[test]
    fn failures_outside_the_window_and_after_a_success_do_not_count() {
        let l = Lockout::new(cfg());
        let ip: IpAddr = "::1".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..4 {
            l.fail(ip, t0);
        }
        let later = t0 + Duration::from_secs(61);
        assert_eq!(l.fail(ip, later), Failure::Delay(Duration::ZERO));
        for _ in 0..3 {
            l.fail(ip, later);
        }
        l.success(ip);
        assert_eq!(l.fail(ip, later), Failure::Delay(Duration::ZERO));
        // The delay is capped.
        let l = Lockout::new(LockoutConfig {
            lock_after: 100,
            ..cfg()
        });
        let mut last = Failure::Delay(Duration::ZERO);
        for _ in 0..50 {
            last = l.fail(ip, t0);
        }
        assert_eq!(last, Failure::Delay(Duration::from_millis(250)));
    }
}
