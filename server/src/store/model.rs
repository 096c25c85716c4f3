//! What the store answers, in the ledger's own terms: ids, [`Money`], [`Timestamp`]s, days
//! and enums, never the HTTP wire types (`api/wire.rs` alone converts these to the shared
//! crate's `api` types, as rust-analyzer keeps JSON at its edge). A backend fills these
//! from its rows; nothing here knows SQL or HTTP.
//!
//! The types an [`Outcome`](super::Outcome) carries (shopper, receipt, account, cashier) are
//! also the stored idempotency answers, serde JSON in the database and in `migrate-store`'s
//! copy. Their serde shape is that stored format: it must keep decoding every record ever
//! written (field names, `snake_case` enums, timestamps as their fixed-width text), which
//! `api::wire`'s tests pin with records stored before these types existed.

use super::clock::Timestamp;
use crate::ledger::{AccountKind, Status, TxKind};
use palmline_shared::Money;
use serde::{Deserialize, Serialize};

/// A shopper as the ledger keeps it (never a secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shopper {
    pub id: i64,
    pub username: String,
    /// Empty if none was given.
    pub email: String,
    pub status: Status,
    pub has_pin: bool,
    pub palm_enrolled: bool,
    pub created_at: Timestamp,
}

/// The result of a money movement, as it was committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    pub transaction_id: i64,
    pub kind: TxKind,
    pub amount: Money,
    /// The concerned shopper's balance after the movement (the payer, or the credited
    /// shopper of a deposit or refund). The API decides who may see it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub balance_after: Option<Money>,
    /// The shopper's username.
    pub shopper: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merchant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counterparty: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kiosk_id: Option<String>,
    pub created_at: Timestamp,
}

/// Any account (shopper, merchant or till) as the operator sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountRow {
    pub id: i64,
    pub kind: AccountKind,
    pub name: String,
    pub email: Option<String>,
    pub status: Status,
    pub balance: Money,
    pub palm_enrolled: bool,
    pub created_at: Timestamp,
}

/// Whether a cashier may sign in. (Serde: `active`, `disabled`.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CashierStatus {
    Active,
    Disabled,
}

impl CashierStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CashierStatus::Active => "active",
            CashierStatus::Disabled => "disabled",
        }
    }

    pub fn parse(s: &str) -> Option<CashierStatus> {
        [CashierStatus::Active, CashierStatus::Disabled]
            .into_iter()
            .find(|c| c.as_str() == s)
    }
}

/// A person who handles the cash at one merchant's kiosks (never the PIN hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cashier {
    pub id: i64,
    pub merchant: String,
    pub name: String,
    pub status: CashierStatus,
    pub created_at: Timestamp,
}

/// A shopper and their balance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wallet {
    pub shopper: Shopper,
    pub balance: Money,
}

/// One entry of a shopper's history, from the shopper's side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryItem {
    pub transaction_id: i64,
    pub kind: TxKind,
    /// Signed: positive when money came in.
    pub amount: Money,
    pub balance_after: Money,
    pub counterparty: Option<String>,
    pub description: Option<String>,
    pub created_at: Timestamp,
}

/// A page of history, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryPage {
    pub items: Vec<HistoryItem>,
    /// The entry id to pass as `before` for the next (older) page, if there is one.
    pub next_before: Option<i64>,
}

/// One merchant's figures for one UTC day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DailyTotals {
    pub merchant: String,
    pub date: time::Date,
    pub payments_count: i64,
    pub payments_total: Money,
    pub refunds_total: Money,
    pub deposits_total: Money,
    pub withdrawals_total: Money,
    /// Cash that should be in the till from the day's deposits and withdrawals.
    pub cash_net: Money,
    /// The same cash by cashier, by name; cash without a cashier last.
    pub cashiers: Vec<CashierTotals>,
}

/// One cashier's cash of one day (`cashier_id` `None`: recorded before cashiers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CashierTotals {
    pub cashier_id: Option<i64>,
    /// Empty for movements without a cashier.
    pub name: String,
    pub deposits_count: i64,
    pub deposits_total: Money,
    pub withdrawals_count: i64,
    pub withdrawals_total: Money,
    pub cash_net: Money,
}

/// Every merchant's figures for one UTC day, by merchant name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DailyReport {
    pub date: time::Date,
    pub merchants: Vec<DailyTotals>,
}

/// A kiosk the server has seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KioskRow {
    pub kiosk_id: String,
    pub merchant: String,
    pub first_seen: Timestamp,
    pub last_seen: Timestamp,
    pub requests: i64,
}

/// How an identification attempt ended. (Serde: `snake_case`, as in the database.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScanOutcome {
    Accepted,
    Rejected,
    StepUp,
    StepUpFailed,
    Enrolled,
    Duplicate,
    BadTemplate,
    RateLimited,
}

impl ScanOutcome {
    pub const ALL: [ScanOutcome; 8] = [
        ScanOutcome::Accepted,
        ScanOutcome::Rejected,
        ScanOutcome::StepUp,
        ScanOutcome::StepUpFailed,
        ScanOutcome::Enrolled,
        ScanOutcome::Duplicate,
        ScanOutcome::BadTemplate,
        ScanOutcome::RateLimited,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ScanOutcome::Accepted => "accepted",
            ScanOutcome::Rejected => "rejected",
            ScanOutcome::StepUp => "step_up",
            ScanOutcome::StepUpFailed => "step_up_failed",
            ScanOutcome::Enrolled => "enrolled",
            ScanOutcome::Duplicate => "duplicate",
            ScanOutcome::BadTemplate => "bad_template",
            ScanOutcome::RateLimited => "rate_limited",
        }
    }

    pub fn parse(s: &str) -> Option<ScanOutcome> {
        ScanOutcome::ALL.into_iter().find(|o| o.as_str() == s)
    }
}

/// One row of the palm-scan log.
#[derive(Debug, Clone, PartialEq)]
pub struct PalmScanRow {
    pub id: i64,
    pub kiosk_id: String,
    pub at: Timestamp,
    /// What the scan was for, as the API logged it (`login`, `payment`, `enroll`).
    pub purpose: String,
    pub outcome: ScanOutcome,
    pub score: Option<f64>,
    /// The shopper's username, if the scan named one.
    pub account: Option<String>,
}

/// The findings of a ledger check (`ok` is the verdict). Serialize: `ledger-check`'s and
/// `migrate-store`'s JSON output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LedgerCheck {
    pub ok: bool,
    pub accounts_checked: i64,
    pub transactions_checked: i64,
    /// Sum of every account's balance (must be zero).
    pub total_balance_minor: i64,
    /// Transactions whose entries do not sum to zero.
    pub unbalanced_transactions: Vec<i64>,
    /// Accounts whose cached balance differs from the sum of their entries.
    pub mismatches: Vec<BalanceMismatch>,
    /// Shoppers below zero (never allowed).
    pub negative_shoppers: Vec<i64>,
}

impl LedgerCheck {
    /// The findings of a check, with its verdict: every transaction balanced, every cached
    /// balance equal to its entries, no shopper below zero and a grand total of zero.
    pub fn new(
        accounts_checked: i64,
        transactions_checked: i64,
        total_balance_minor: i64,
        unbalanced_transactions: Vec<i64>,
        mismatches: Vec<BalanceMismatch>,
        negative_shoppers: Vec<i64>,
    ) -> Self {
        Self {
            ok: unbalanced_transactions.is_empty()
                && mismatches.is_empty()
                && negative_shoppers.is_empty()
                && total_balance_minor == 0,
            accounts_checked,
            transactions_checked,
            total_balance_minor,
            unbalanced_transactions,
            mismatches,
            negative_shoppers,
        }
    }
}

/// An account whose cached balance is not the sum of its entries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BalanceMismatch {
    pub account_id: i64,
    pub cached_minor: i64,
    pub from_entries_minor: i64,
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                rust_files(&path, out);
            } else if path.extension().is_some_and(|x| x == "rs") {
                out.push(path);
            }
        }
    }

    /// ARCHITECTURE.md: the store and the ledger core speak domain types; only `api/`
    /// names the wire types.
    #[test]
    fn the_store_and_the_ledger_never_name_a_wire_type() {
        let needle = concat!("palmline_shared::", "api");
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        for dir in ["store", "ledger"] {
            rust_files(&src.join(dir), &mut files);
        }
        assert!(files.len() > 20, "found only {files:?}");
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap();
            assert!(!text.contains(needle), "{} names a wire type", f.display());
        }
    }
}
