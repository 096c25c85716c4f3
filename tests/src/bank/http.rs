//! One request of a simulated kiosk, sent until it gets an answer: after a connection error,
//! a timeout, a 503 `unavailable`, a 408 or a 409 `idempotency_in_flight` the same request
//! goes again with the same Idempotency-Key (to the other replica, if there is one), with a
//! growing back-off, until it is answered or its deadline passes.

use palmline_shared::api::{CASHIER_SESSION_HEADER, IDEMPOTENCY_HEADER};
use reqwest::Client;
use serde_json::Value;
use std::time::{Duration, Instant};

/// How long one request may keep being retried before the run counts it as unanswered.
pub const ANSWER_DEADLINE: Duration = Duration::from_secs(90);

/// A request as the kiosk sends it (and resends it, byte for byte).
#[derive(Debug, Clone)]
pub struct Call {
    pub path: String,
    pub key: Option<String>,
    pub token: Option<String>,
    pub cashier: Option<String>,
    pub body: Value,
}

/// A definite answer: status and JSON body (`Null` when the body is not JSON).
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

impl Answer {
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }

    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// Not an answer to the request but "try again": the request may or may not have run.
    fn retryable(&self) -> bool {
        self.status == 503
            || self.status == 408
            || (self.status == 409 && self.code() == "idempotency_in_flight")
    }
}

/// An answered call and how many times it had to be resent.
#[derive(Debug)]
pub struct Sent {
    pub answer: Answer,
    pub retries: u64,
}

/// Where a call goes: the replicas' base URLs and the kiosk's home replica.
#[derive(Debug, Clone)]
pub struct Target {
    pub bases: Vec<String>,
    pub home: usize,
}

impl Call {
    pub fn new(path: &str, key: Option<String>, body: Value) -> Call {
        Call {
            path: path.into(),
            key,
            token: None,
            cashier: None,
            body,
        }
    }

    async fn once(&self, c: &Client, base: &str) -> Result<Answer, reqwest::Error> {
        let mut req = c.post(format!("{base}{}", self.path)).json(&self.body);
        if let Some(k) = &self.key {
            req = req.header(IDEMPOTENCY_HEADER, k);
        }
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(t) = &self.cashier {
            req = req.header(CASHIER_SESSION_HEADER, t);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let text = resp.text().await?;
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Ok(Answer { status, body })
    }

    /// Sends until answered; else, once [`ANSWER_DEADLINE`] passed, the last failure.
    pub async fn send(&self, c: &Client, to: &Target) -> (Result<Answer, String>, u64) {
        let started = Instant::now();
        let (mut replica, mut retries) = (to.home, 0u64);
        loop {
            let base = &to.bases[replica % to.bases.len()];
            let failure = match self.once(c, base).await {
                Ok(a) if !a.retryable() => return (Ok(a), retries),
                Ok(a) => format!("{} {}", a.status, a.body),
                Err(e) => format!("{e:?}"),
            };
            // The other replica may be up while this one restarts.
            replica += 1;
            if started.elapsed() > ANSWER_DEADLINE {
                let last = format!("{retries} retries, the last at {base}: {failure}");
                return (Err(last), retries);
            }
            retries += 1;
            let backoff = 20u64 << retries.min(5);
            tokio::time::sleep(Duration::from_millis(backoff.min(500))).await;
        }
    }
}
