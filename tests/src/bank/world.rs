//! What the simulated kiosks share: the shoppers whose registration was acknowledged, the
//! enrolled palms, the acknowledged payments (for refunds), every keyed request with its
//! first answer (for the checks afterwards), the counters and the violations seen live.

use super::http::{Answer, Call};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// A request the bank test keeps, by what it asked for (amounts in minor units).
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Register {
        name: String,
    },
    Enroll {
        name: String,
    },
    Deposit {
        name: String,
        minor: i64,
    },
    Withdrawal {
        name: String,
        minor: i64,
    },
    Payment {
        name: String,
        minor: i64,
    },
    PalmPayment {
        owner: String,
        minor: i64,
    },
    Transfer {
        from: String,
        to: String,
        minor: i64,
    },
    Refund {
        payment: i64,
        minor: i64,
    },
}

impl Op {
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Register { .. } => "register",
            Op::Enroll { .. } => "enroll",
            Op::Deposit { .. } => "deposit",
            Op::Withdrawal { .. } => "withdrawal",
            Op::Payment { .. } => "payment",
            Op::PalmPayment { .. } => "palm payment",
            Op::Transfer { .. } => "transfer",
            Op::Refund { .. } => "refund",
        }
    }
}

/// Who sent a request: its certificate is part of the idempotency key's scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sender {
    Kiosk(usize),
    Admin,
}

/// A keyed request and the first answer it got.
#[derive(Debug, Clone)]
pub struct Record {
    pub sender: Sender,
    /// The merchant of the sending kiosk (payments are credited to it).
    pub merchant: String,
    pub op: Op,
    pub call: Call,
    pub first: Answer,
}

impl Record {
    /// The transaction id of an acknowledged money movement.
    pub fn tx_id(&self) -> Option<i64> {
        let money = !matches!(self.op, Op::Register { .. } | Op::Enroll { .. });
        (money && self.first.ok())
            .then(|| self.first.body["transaction_id"].as_i64())
            .flatten()
    }
}

/// An acknowledged payment a refund may name.
#[derive(Debug, Clone)]
pub struct Paid {
    pub tx: i64,
    pub minor: i64,
}

#[derive(Default)]
pub struct Counters {
    pub attempted: AtomicU64,
    pub answered: AtomicU64,
    pub succeeded: AtomicU64,
    pub retries: AtomicU64,
    pub replays: AtomicU64,
}

#[derive(Default)]
pub struct World {
    pub shoppers: Mutex<Vec<String>>,
    /// Enrolled palms: owner and the seed of the palm.
    pub palms: Mutex<Vec<(String, u64)>>,
    pub payments: Mutex<Vec<Paid>>,
    pub records: Mutex<Vec<Record>>,
    pub violations: Mutex<Vec<String>>,
    pub counters: Counters,
    /// Definite answers by request, status and error code (`payment 422 insufficient_funds`).
    pub answers: Mutex<BTreeMap<String, u64>>,
    /// Time from the first send to the definite answer (retries included), by request.
    pub latency: Mutex<BTreeMap<String, Vec<std::time::Duration>>>,
}

impl World {
    pub fn violation(&self, v: String) {
        eprintln!("VIOLATION: {v}");
        self.violations.lock().expect("poisoned").push(v);
    }

    pub fn count(&self, c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts a definite answer to a request of kind `what`, `took` after its first send.
    pub fn answered(&self, what: &str, a: &Answer, took: std::time::Duration) {
        let mut l = self.latency.lock().expect("poisoned");
        l.entry(what.to_string()).or_default().push(took);
        drop(l);
        self.count(&self.counters.answered, 1);
        if a.ok() {
            self.count(&self.counters.succeeded, 1);
        }
        let label = format!("{what} {} {}", a.status, a.code());
        *self
            .answers
            .lock()
            .expect("poisoned")
            .entry(label.trim().to_string())
            .or_default() += 1;
    }

    pub fn random_shopper(&self, pick: u64) -> Option<String> {
        let s = self.shoppers.lock().expect("poisoned");
        (!s.is_empty()).then(|| s[pick as usize % s.len()].clone())
    }
}

/// Error codes whose answer the server stores with the key (so a replay must give it back
/// unchanged). Others (`palm_not_recognised`, `rate_limited`, …) are decided before the
/// command and run again on a replay, as documented.
pub fn stored(a: &Answer) -> bool {
    a.ok()
        || matches!(
            a.code(),
            "insufficient_funds"
                | "unknown_account"
                | "account_frozen"
                | "username_taken"
                | "unknown_payment"
                | "refund_exceeds_payment"
                | "same_account"
                | "idempotency_mismatch"
                | "invalid_amount"
        )
}
