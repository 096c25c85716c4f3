//! What both stores build alike from what they loaded and what the core decided: the
//! receipt of a movement and an account's status. No rule lives here.

use super::clock::Timestamp;
use super::model::Receipt;
use crate::ledger::{Plan, Status};

/// Who a receipt names.
pub struct Parties {
    pub shopper: String,
    pub merchant: Option<String>,
    pub counterparty: Option<String>,
    pub kiosk_id: Option<String>,
}

/// The receipt of a persisted plan: the shopper's balance after comes from the plan.
pub fn receipt(transaction_id: i64, created_at: Timestamp, plan: &Plan, p: Parties) -> Receipt {
    Receipt {
        transaction_id,
        kind: plan.tx.kind,
        amount: plan.tx.amount,
        balance_after: plan.balance_after(plan.tx.shopper),
        shopper: p.shopper,
        merchant: p.merchant,
        counterparty: p.counterparty,
        kiosk_id: p.kiosk_id,
        created_at,
    }
}

/// An account's status column (the schema allows `active` and `frozen`).
pub fn status_of(s: &str) -> Status {
    Status::parse(s).unwrap_or(Status::Active)
}
