//! Where the identification limits keep their counts: the token buckets of each kiosk and
//! merchant ([`crate::limits::RateLimiter`]) and each kiosk's failed identifications (the
//! slow-down). With SQLite one process serves and keeps them in memory ([`LocalThrottle`]);
//! with PostgreSQL every replica must see the same counts, so they are rows
//! ([`crate::store::postgres::throttle`]), chosen by [`crate::store::Store::shared_throttle`].
//! The decisions are the pure functions here and in `limits`; a throttle only stores.

use crate::limits::{Rate, RateLimiter};
use crate::store::LedgerError;
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A kiosk's failures are forgotten after this long without one (never by a success: an
/// attacker's own palm must not wash the count away).
pub const FAILURES_FORGOTTEN_AFTER: Duration = Duration::from_secs(600);

/// A token bucket's name: `kiosk:ID` or `merchant:NAME`.
pub type BucketName = String;

/// The counts behind the identification limits.
#[async_trait]
pub trait Throttle: Send + Sync {
    /// Takes `n` tokens from every bucket or from none: `Ok(Err(wait))` says how long until
    /// all of them would have enough.
    async fn take(
        &self,
        buckets: &[(BucketName, Rate)],
        n: u32,
    ) -> Result<Result<(), Duration>, LedgerError>;

    /// How long `kiosk` must wait before its next identification, having had `free`
    /// failures free.
    async fn slowed_down(&self, kiosk: &str, free: u32) -> Result<Option<Duration>, LedgerError>;

    /// Counts a failed identification (unrecognised palm, wrong step-up PIN) of `kiosk`.
    async fn record_failure(&self, kiosk: &str) -> Result<(), LedgerError>;
}

/// The slow-down after `failures` failures, the last `since` ago: none within the `free`
/// allowance or once forgotten; else 1 s after the allowance, doubling per further failure,
/// capped at a minute, counted from the last failure.
pub fn slow_down(failures: u32, since: Duration, free: u32) -> Option<Duration> {
    if failures < free || since >= FAILURES_FORGOTTEN_AFTER {
        return None;
    }
    let wait = Duration::from_secs(1u64 << (failures - free).min(6)).min(Duration::from_secs(60));
    (since < wait).then(|| wait - since)
}

/// The failure count after one more failure, the previous one `since` ago.
pub fn one_more_failure(failures: u32, since: Duration) -> u32 {
    if since >= FAILURES_FORGOTTEN_AFTER {
        1
    } else {
        failures.saturating_add(1)
    }
}

/// The counts in this process's memory (one server: SQLite).
#[derive(Default)]
pub struct LocalThrottle {
    buckets: RateLimiter,
    failures: Mutex<HashMap<String, (u32, Instant)>>,
}

impl LocalThrottle {
    fn slowed_down_at(&self, kiosk: &str, free: u32, now: Instant) -> Option<Duration> {
        let failures = self.failures.lock().expect("poisoned");
        let (n, last) = failures.get(kiosk)?;
        slow_down(*n, now.saturating_duration_since(*last), free)
    }

    fn record_failure_at(&self, kiosk: &str, now: Instant) {
        let mut failures = self.failures.lock().expect("poisoned");
        if failures.len() > 4096 {
            failures
                .retain(|_, (_, t)| now.saturating_duration_since(*t) < FAILURES_FORGOTTEN_AFTER);
        }
        let e = failures.entry(kiosk.to_string()).or_insert((0, now));
        *e = (
            one_more_failure(e.0, now.saturating_duration_since(e.1)),
            now,
        );
    }
}

#[async_trait]
impl Throttle for LocalThrottle {
    async fn take(
        &self,
        buckets: &[(BucketName, Rate)],
        n: u32,
    ) -> Result<Result<(), Duration>, LedgerError> {
        let named: Vec<(&str, Rate)> = buckets.iter().map(|(b, r)| (b.as_str(), *r)).collect();
        Ok(self.buckets.take(&named, n, Instant::now()))
    }

    async fn slowed_down(&self, kiosk: &str, free: u32) -> Result<Option<Duration>, LedgerError> {
        Ok(self.slowed_down_at(kiosk, free, Instant::now()))
    }

    async fn record_failure(&self, kiosk: &str) -> Result<(), LedgerError> {
        self.record_failure_at(kiosk, Instant::now());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kiosk_slow_down_grows_is_not_reset_by_a_success_and_fades_with_time() {
        let t = LocalThrottle::default();
        let t0 = Instant::now();
        for _ in 0..4 {
            t.record_failure_at("k", t0);
            assert!(t.slowed_down_at("k", 5, t0).is_none());
        }
        t.record_failure_at("k", t0);
        let w1 = t.slowed_down_at("k", 5, t0).unwrap();
        t.record_failure_at("k", t0);
        let w2 = t.slowed_down_at("k", 5, t0).unwrap();
        assert!(w2 > w1);
        assert!(t.slowed_down_at("other", 5, t0).is_none());
        // There is no success path at all: only the quiet period forgets.
        let later = t0 + FAILURES_FORGOTTEN_AFTER;
        assert!(t.slowed_down_at("k", 5, later).is_none());
        t.record_failure_at("k", later);
        assert!(
            t.slowed_down_at("k", 5, later).is_none(),
            "counting starts again"
        );
    }
}
