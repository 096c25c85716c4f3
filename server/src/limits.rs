//! Limits against a hostile kiosk, shopper or passer-by: guess budgets for secrets,
//! spending without the PIN, and the identification rate per kiosk and per merchant.
//!
//! Guesses at a secret are *reserved* through the store's writer before the (slow) hash is
//! checked, so concurrent requests cannot all slip in before a lock is written. Nothing here
//! hashes or identifies; it only decides whether the expensive work may start. Nothing here
//! ever resets a limit because some *other* check succeeded.

use palmline_shared::Money;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A way of proving who you are. Each has its own failure counters: a right password
/// never forgives wrong PINs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Factor {
    /// The password at a password login.
    Password,
    /// The PIN asked for a debit (threshold or cumulative limit).
    Pin,
    /// The PIN asked after a palm identification in the grey zone.
    StepUp,
    /// A cashier's PIN at a cashier sign-in. Its counts live on the cashier's own row
    /// (one lock for every kiosk of the merchant), never in the shoppers' `auth_kiosk` /
    /// `auth_day`; in a [`GuessKey`] its `account_id` is the cashier's id.
    Cashier,
}

impl Factor {
    pub fn as_str(self) -> &'static str {
        match self {
            Factor::Password => "password",
            Factor::Pin => "pin",
            Factor::StepUp => "step_up",
            Factor::Cashier => "cashier_pin",
        }
    }

    /// The secret this factor guesses at: the daily budget is per secret, so the PIN's
    /// two doors (debit PIN, step-up PIN) share one budget.
    pub fn secret(self) -> &'static str {
        match self {
            Factor::Password => "password",
            Factor::Pin | Factor::StepUp => "pin",
            Factor::Cashier => "cashier_pin",
        }
    }
}

/// Whose guess, at what, where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuessKey {
    pub account_id: i64,
    pub factor: Factor,
    pub kiosk_id: String,
}

/// How many wrong guesses are allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuessRules {
    /// Wrong guesses in a row at one kiosk before that kiosk is locked for this factor.
    pub lock_after: u32,
    /// First lock's length; each further lock of the same secret that day doubles it.
    pub lock_secs: i64,
    /// Longest lock (the back-off's ceiling).
    pub max_lock_secs: i64,
    /// Wrong guesses at one secret per account per UTC day, at all kiosks together.
    pub max_per_day: u32,
}

impl Default for GuessRules {
    fn default() -> Self {
        GuessRules {
            lock_after: 5,
            lock_secs: 900,
            max_lock_secs: 86_400,
            max_per_day: 10,
        }
    }
}

impl GuessRules {
    /// Length of the `n`-th lock of a day (1-based): doubling, capped.
    pub fn lock_length(&self, n: u32) -> i64 {
        let shift = n.saturating_sub(1).min(20);
        self.lock_secs
            .saturating_mul(1i64 << shift)
            .min(self.max_lock_secs)
    }
}

/// The answer to a guess reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Grant {
    /// Check the secret now; the guess is already counted.
    Granted,
    /// This factor is locked at this kiosk until then (unix seconds).
    LockedHere { until: i64 },
    /// The day's budget of wrong guesses at this secret is spent, at every kiosk.
    DailyCapReached,
}

/// The guess counts of one factor of one shopper: at one kiosk (consecutive failures and
/// its lock) and for the secret today (wrong guesses and locks at every kiosk together).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GuessCounts {
    pub failures: u32,
    pub locked_until: Option<i64>,
    pub guesses_today: u32,
    pub locks_today: u32,
}

/// Decides one guess reservation at `now` (Unix seconds) from the counts as they stand:
/// the answer, and the counts to write when the guess is granted (`None`: write nothing).
/// Every store calls this with the counts it holds locked, so the rule exists once.
pub fn reserve_guess(
    key: &GuessKey,
    rules: GuessRules,
    now: i64,
    c: GuessCounts,
) -> (Grant, Option<GuessCounts>) {
    if let Some(until) = c.locked_until.filter(|t| *t > now) {
        return (Grant::LockedHere { until }, None);
    }
    if c.guesses_today >= rules.max_per_day {
        return (Grant::DailyCapReached, None);
    }
    let guesses_today = c.guesses_today + 1;
    let failures = c.failures + 1;
    if guesses_today == rules.max_per_day {
        tracing::warn!(account = key.account_id, kiosk = %key.kiosk_id, factor = key.factor.as_str(), guesses = guesses_today,
            "day's budget of guesses spent: factor locked at every kiosk until the end of the UTC day");
    }
    let after = if failures >= rules.lock_after {
        let locks_today = c.locks_today + 1;
        let secs = rules.lock_length(locks_today);
        tracing::warn!(account = key.account_id, kiosk = %key.kiosk_id, factor = key.factor.as_str(), secs, locks_today,
            "too many wrong guesses: factor locked at this kiosk");
        GuessCounts {
            failures: 0,
            locked_until: Some(now + secs),
            guesses_today,
            locks_today,
        }
    } else {
        GuessCounts {
            failures,
            locked_until: None,
            guesses_today,
            locks_today: c.locks_today,
        }
    };
    (Grant::Granted, Some(after))
}

/// Debits without the PIN, per session and per UTC day, per shopper.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoPinLimits {
    pub per_session: Money,
    pub per_day: Money,
}

/// Attached to a debit made without the PIN: the store refuses it (`pin_required`) when it
/// would take the shopper past a limit, in the same savepoint as the debit itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoPinGuard {
    /// SHA-256 of the session token; `None` for a palm payment (no session).
    pub session_hash: Option<[u8; 32]>,
    pub limits: NoPinLimits,
    /// Whether the shopper has a PIN at all: past a limit the answer is then `pin_required`
    /// (send again with it), otherwise `pin_not_set` (set one first).
    #[serde(default = "pin_set_by_default")]
    pub pin_set: bool,
}

fn pin_set_by_default() -> bool {
    true
}

/// Identifications allowed per `window` (also the burst), per kiosk and per merchant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdentifyRates {
    pub per_kiosk: u32,
    pub per_merchant: u32,
    /// A minute in production; tests lengthen it so that refill does not race them.
    pub window: Duration,
}

impl Default for IdentifyRates {
    fn default() -> Self {
        IdentifyRates {
            per_kiosk: 30,
            per_merchant: 300,
            window: Duration::from_secs(60),
        }
    }
}

/// Token buckets keyed by name, refilled continuously. A success never refills a bucket:
/// every attempt costs a token, whatever its outcome.
pub struct RateLimiter {
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

/// The capacity of one bucket and the time it takes to refill completely.
#[derive(Debug, Clone, Copy)]
pub struct Rate {
    pub per_window: u32,
    pub window: Duration,
}

impl Rate {
    pub fn per_minute(n: u32) -> Rate {
        Rate {
            per_window: n,
            window: Duration::from_secs(60),
        }
    }

    /// A full bucket: the burst.
    pub fn full(self) -> f64 {
        f64::from(self.per_window)
    }

    fn per_sec(self) -> f64 {
        f64::from(self.per_window) / self.window.as_secs_f64().max(0.001)
    }
}

impl Default for RateLimiter {
    fn default() -> Self {
        RateLimiter {
            buckets: Mutex::new(HashMap::new()),
        }
    }
}

impl RateLimiter {
    /// Takes `n` tokens from every named bucket, or from none: `Err(wait)` says how long
    /// until all of them would have enough.
    pub fn take(&self, buckets: &[(&str, Rate)], n: u32, now: Instant) -> Result<(), Duration> {
        let mut map = self.buckets.lock().expect("poisoned");
        let levels: Vec<(f64, Rate)> = buckets
            .iter()
            .map(|(name, rate)| (Self::level(&map, name, *rate, now), *rate))
            .collect();
        take_from(&levels, n)?;
        let need = f64::from(n);
        for (name, rate) in buckets {
            let level = Self::level(&map, name, *rate, now);
            map.insert((*name).to_string(), (level - need, now));
        }
        // A bucket refills completely within its window, and a full bucket is the same as no
        // bucket: forget idle ones so the map stays bounded by the number of recently active
        // kiosks and merchants.
        let longest = buckets
            .iter()
            .map(|(_, r)| r.window)
            .max()
            .unwrap_or_default();
        if map.len() > 4096 {
            map.retain(|_, (_, t)| {
                now.saturating_duration_since(*t) < longest.max(Duration::from_secs(3600))
            });
        }
        Ok(())
    }

    fn level(map: &HashMap<String, (f64, Instant)>, name: &str, rate: Rate, now: Instant) -> f64 {
        match map.get(name) {
            None => rate.full(),
            Some((level, t)) => refill(*level, now.saturating_duration_since(*t), rate),
        }
    }
}

/// A bucket's level after `elapsed` of refilling from `level` (never above full).
pub fn refill(level: f64, elapsed: Duration, rate: Rate) -> f64 {
    (level + elapsed.as_secs_f64() * rate.per_sec()).min(rate.full())
}

/// Whether `n` tokens can be taken from every bucket (at these levels) at once; if not, how
/// long until they all could.
pub fn take_from(levels: &[(f64, Rate)], n: u32) -> Result<(), Duration> {
    let need = f64::from(n);
    let wait = levels
        .iter()
        .filter(|(level, _)| *level < need)
        .map(|(level, rate)| (need - level) / rate.per_sec())
        .fold(0f64, f64::max);
    if wait > 0.0 {
        return Err(Duration::from_secs_f64(wait));
    }
    Ok(())
}

/// Masks a username for a receipt read by someone other than its owner: first and last
/// character kept (`alice` → `a***e`), never its length.
pub fn mask_name(name: &str) -> String {
    let mut chars = name.chars();
    match (chars.next(), chars.next_back()) {
        (Some(first), Some(last)) => format!("{first}***{last}"),
        (Some(first), None) => format!("{first}***"),
        _ => "***".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_refuse_past_the_burst_and_refill_with_time() {
        let r = RateLimiter::default();
        let t0 = Instant::now();
        let rate = Rate::per_minute(6);
        for _ in 0..6 {
            r.take(&[("k", rate)], 1, t0).unwrap();
        }
        let wait = r.take(&[("k", rate)], 1, t0).unwrap_err();
        assert!(
            (9.9..=10.1).contains(&wait.as_secs_f64()),
            "one token per 10 s: {wait:?}"
        );
        assert!(r
            .take(&[("k", rate)], 1, t0 + Duration::from_secs(10))
            .is_ok());
        assert!(r
            .take(&[("k", rate)], 1, t0 + Duration::from_secs(10))
            .is_err());
        assert!(r.take(&[("other", rate)], 1, t0).is_ok(), "per name");
    }

    #[test]
    fn all_or_nothing_across_buckets() {
        let r = RateLimiter::default();
        let t0 = Instant::now();
        let (small, big) = (Rate::per_minute(2), Rate::per_minute(100));
        r.take(&[("m", small)], 2, t0).unwrap();
        assert!(r.take(&[("k", big), ("m", small)], 1, t0).is_err());
        // The refused attempt took nothing from the kiosk bucket.
        r.take(&[("k", big)], 100, t0).unwrap();
    }

    #[test]
    fn lock_lengths_double_and_stop_at_the_ceiling() {
        let g = GuessRules::default();
        assert_eq!(g.lock_length(1), 900);
        assert_eq!(g.lock_length(2), 1800);
        assert_eq!(g.lock_length(3), 3600);
        assert_eq!(g.lock_length(40), 86_400);
    }

    #[test]
    fn masks_keep_two_letters_and_hide_the_length() {
        assert_eq!(mask_name("alice"), "a***e");
        assert_eq!(mask_name("bob.smith-2"), "b***2");
        assert_eq!(mask_name("x"), "x***");
        assert_eq!(mask_name(""), "***");
        assert_eq!(Factor::StepUp.secret(), Factor::Pin.secret());
    }
}
