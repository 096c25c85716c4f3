//! One simulated kiosk of the load run: pays by palm in a loop until the run's end, each
//! payment a random shopper's fresh capture (encoded before the clock starts) for a small
//! random amount, with its own Idempotency-Key, sent until it gets a definite answer
//! (`bank::http`: a 503, a 408, a connection error is resent with the same key). A
//! `step_up_required` is completed with the shopper's PIN as the kiosk would, as a new
//! request, and counted apart.

use super::palms::username;
use super::seed::PIN;
use crate::bank::http::{Call, Target};
use crate::bank::kiosk::eur;
use crate::bank::rng::Rng;
use reqwest::Client;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Payment amounts: 0.01 to 5.00 EUR, below the PIN threshold (50.00) and, over a run,
/// far from the no-PIN limits (100.00 a session, 200.00 a day) of any one shopper.
const MAX_MINOR: u64 = 500;

/// An accepted payment: its transaction, the shopper whose palm was shown, the amount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paid {
    pub tx: i64,
    pub shopper: String,
    pub minor: i64,
}

/// What the kiosks saw.
#[derive(Debug, Default)]
pub struct Tally {
    pub paid: Vec<Paid>,
    /// Time to the definite answer of every payment request (both halves of a step-up).
    pub latency: Vec<Duration>,
    /// Time from the first request to the accepted answer, step-up included.
    pub accepted_latency: Vec<Duration>,
    /// Refusals by `status code` (e.g. `404 palm_not_recognised`).
    pub refused: BTreeMap<String, u64>,
    /// Receipts naming another shopper than the palm's.
    pub wrong_shopper: Vec<String>,
    pub step_ups: u64,
    pub retries: u64,
    /// Requests with no definite answer within `bank::http::ANSWER_DEADLINE`.
    pub unanswered: u64,
}

impl Tally {
    pub fn merge(&mut self, o: Tally) {
        self.paid.extend(o.paid);
        self.latency.extend(o.latency);
        self.accepted_latency.extend(o.accepted_latency);
        for (k, n) in o.refused {
            *self.refused.entry(k).or_default() += n;
        }
        self.wrong_shopper.extend(o.wrong_shopper);
        self.step_ups += o.step_ups;
        self.retries += o.retries;
        self.unanswered += o.unanswered;
    }
}

pub struct Kiosk {
    pub id: String,
    pub client: Client,
    pub to: Target,
    /// Base64 of one fresh capture per shopper, by shopper number.
    pub probes: Arc<Vec<String>>,
    pub rng: Rng,
    /// Open loop: a payment starts every `period` (see `Config::rate`).
    pub period: Option<Duration>,
}

impl Kiosk {
    pub async fn run(mut self, until: Instant) -> Tally {
        let mut tally = Tally::default();
        let mut seq = 0u64;
        let mut schedule = self.period.map(|p| {
            // Kiosks start at random phases, so that their payments do not arrive together.
            let phase = p.mul_f64(self.rng.below(1_000_000) as f64 / 1e6);
            let mut ticks = tokio::time::interval_at((Instant::now() + phase).into(), p);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            ticks
        });
        loop {
            let start = match &mut schedule {
                Some(ticks) => ticks.tick().await.into_std(),
                None => Instant::now(),
            };
            if start >= until {
                break;
            }
            let shopper = self.rng.below(self.probes.len() as u64) as usize;
            let minor = self.rng.between(1, MAX_MINOR) as i64;
            self.pay(start, shopper, minor, &mut seq, &mut tally).await;
        }
        tally
    }

    /// One payment that should have started at `started` (now, in a closed loop).
    async fn pay(
        &self,
        started: Instant,
        shopper: usize,
        minor: i64,
        seq: &mut u64,
        tally: &mut Tally,
    ) {
        let mut body = json!({"template": self.probes[shopper], "amount": eur(minor)});
        let mut answer = self.send(&body, seq, tally).await;
        if matches!(&answer, Some(a) if a.code() == "step_up_required") {
            tally.step_ups += 1;
            body["pin"] = json!(PIN);
            answer = self.send(&body, seq, tally).await;
        }
        let Some(a) = answer else { return };
        if !a.ok() {
            *tally
                .refused
                .entry(format!("{} {}", a.status, a.code()))
                .or_default() += 1;
            return;
        }
        tally.accepted_latency.push(started.elapsed());
        let name = username(shopper);
        if a.body["shopper"] != name.as_str() {
            let shown = a.body["shopper"].clone();
            tally
                .wrong_shopper
                .push(format!("palm of {name} paid as {shown}"));
        }
        tally.paid.push(Paid {
            tx: a.body["transaction_id"].as_i64().unwrap_or(-1),
            shopper: name,
            minor,
        });
    }

    /// One payment request, resent with its key until answered; `None` if it never was.
    async fn send(
        &self,
        body: &serde_json::Value,
        seq: &mut u64,
        tally: &mut Tally,
    ) -> Option<crate::bank::http::Answer> {
        *seq += 1;
        let key = format!("load-{}-{seq}", self.id);
        let call = Call::new("/v1/payments/palm", Some(key), body.clone());
        let t0 = Instant::now();
        let (answer, retries) = call.send(&self.client, &self.to).await;
        tally.retries += retries;
        match answer {
            Ok(a) => {
                tally.latency.push(t0.elapsed());
                Some(a)
            }
            Err(last) => {
                eprintln!("kiosk {}: no answer: {last}", self.id);
                tally.unanswered += 1;
                None
            }
        }
    }
}
