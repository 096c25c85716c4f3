//! What both stores build alike from what they loaded and what the core decided: the
//! receipt of a movement and an account's status as the API shows it. No rule lives here.

use crate::ledger::Plan;
use palmline_shared::api::{AccountStatus, Receipt};

/// Who a receipt names.
pub struct Parties {
    pub shopper: String,
    pub merchant: Option<String>,
    pub counterparty: Option<String>,
    pub kiosk_id: Option<String>,
}

/// The receipt of a persisted plan: the shopper's balance after comes from the plan.
pub fn receipt(transaction_id: i64, created_at: String, plan: &Plan, p: Parties) -> Receipt {
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

pub fn status_of(s: &str) -> AccountStatus {
    if s == "frozen" {
        AccountStatus::Frozen
    } else {
        AccountStatus::Active
    }
}
