//! The one place where the store's domain answers ([`crate::store::model`]) become the HTTP
//! wire types of `palmline_shared::api`: a `From` per type, field by field. Timestamps are
//! written as the stores' fixed-width text and days as `YYYY-MM-DD`, so the JSON is what it
//! was when the store returned wire types itself. Nothing here decides who may see what
//! (a receipt's balance, a masked name): the handlers do that on the domain values first.

use crate::ledger::{AccountKind, Status, TxKind};
use crate::store::clock::day_text;
use crate::store::model;
use palmline_shared::api as wire;

impl From<Status> for wire::AccountStatus {
    fn from(s: Status) -> Self {
        match s {
            Status::Active => wire::AccountStatus::Active,
            Status::Frozen => wire::AccountStatus::Frozen,
        }
    }
}

impl From<TxKind> for wire::TxKind {
    fn from(k: TxKind) -> Self {
        match k {
            TxKind::Deposit => wire::TxKind::Deposit,
            TxKind::Withdrawal => wire::TxKind::Withdrawal,
            TxKind::Payment => wire::TxKind::Payment,
            TxKind::Transfer => wire::TxKind::Transfer,
            TxKind::Refund => wire::TxKind::Refund,
        }
    }
}

impl From<model::CashierStatus> for wire::CashierStatus {
    fn from(s: model::CashierStatus) -> Self {
        match s {
            model::CashierStatus::Active => wire::CashierStatus::Active,
            model::CashierStatus::Disabled => wire::CashierStatus::Disabled,
        }
    }
}

impl From<model::ScanOutcome> for wire::ScanOutcome {
    fn from(o: model::ScanOutcome) -> Self {
        use model::ScanOutcome as S;
        match o {
            S::Accepted => wire::ScanOutcome::Accepted,
            S::Rejected => wire::ScanOutcome::Rejected,
            S::StepUp => wire::ScanOutcome::StepUp,
            S::StepUpFailed => wire::ScanOutcome::StepUpFailed,
            S::Enrolled => wire::ScanOutcome::Enrolled,
            S::Duplicate => wire::ScanOutcome::Duplicate,
            S::BadTemplate => wire::ScanOutcome::BadTemplate,
            S::RateLimited => wire::ScanOutcome::RateLimited,
        }
    }
}

/// An account kind as the wire spells it (a string there).
fn kind_text(k: AccountKind) -> String {
    k.as_str().to_string()
}

impl From<model::Shopper> for wire::Shopper {
    fn from(s: model::Shopper) -> Self {
        wire::Shopper {
            id: s.id,
            username: s.username,
            email: s.email,
            status: s.status.into(),
            has_pin: s.has_pin,
            palm_enrolled: s.palm_enrolled,
            created_at: s.created_at.to_text(),
        }
    }
}

impl From<model::Receipt> for wire::Receipt {
    fn from(r: model::Receipt) -> Self {
        wire::Receipt {
            transaction_id: r.transaction_id,
            kind: r.kind.into(),
            amount: r.amount,
            balance_after: r.balance_after,
            shopper: r.shopper,
            merchant: r.merchant,
            counterparty: r.counterparty,
            kiosk_id: r.kiosk_id,
            created_at: r.created_at.to_text(),
        }
    }
}

impl From<model::AccountRow> for wire::AccountRow {
    fn from(a: model::AccountRow) -> Self {
        wire::AccountRow {
            id: a.id,
            kind: kind_text(a.kind),
            name: a.name,
            email: a.email,
            status: a.status.into(),
            balance: a.balance,
            palm_enrolled: a.palm_enrolled,
            created_at: a.created_at.to_text(),
        }
    }
}

impl From<model::Cashier> for wire::Cashier {
    fn from(c: model::Cashier) -> Self {
        wire::Cashier {
            id: c.id,
            merchant: c.merchant,
            name: c.name,
            status: c.status.into(),
            created_at: c.created_at.to_text(),
        }
    }
}

impl From<model::Wallet> for wire::Wallet {
    fn from(w: model::Wallet) -> Self {
        wire::Wallet {
            shopper: w.shopper.into(),
            balance: w.balance,
        }
    }
}

impl From<model::HistoryItem> for wire::HistoryItem {
    fn from(i: model::HistoryItem) -> Self {
        wire::HistoryItem {
            transaction_id: i.transaction_id,
            kind: i.kind.into(),
            amount: i.amount,
            balance_after: i.balance_after,
            counterparty: i.counterparty,
            description: i.description,
            created_at: i.created_at.to_text(),
        }
    }
}

impl From<model::HistoryPage> for wire::HistoryPage {
    fn from(p: model::HistoryPage) -> Self {
        wire::HistoryPage {
            items: all(p.items),
            next_before: p.next_before,
        }
    }
}

impl From<model::CashierTotals> for wire::CashierTotals {
    fn from(t: model::CashierTotals) -> Self {
        wire::CashierTotals {
            cashier_id: t.cashier_id,
            name: t.name,
            deposits_count: t.deposits_count,
            deposits_total: t.deposits_total,
            withdrawals_count: t.withdrawals_count,
            withdrawals_total: t.withdrawals_total,
            cash_net: t.cash_net,
        }
    }
}

impl From<model::DailyTotals> for wire::DailyTotals {
    fn from(t: model::DailyTotals) -> Self {
        wire::DailyTotals {
            merchant: t.merchant,
            date: day_text(t.date),
            payments_count: t.payments_count,
            payments_total: t.payments_total,
            refunds_total: t.refunds_total,
            deposits_total: t.deposits_total,
            withdrawals_total: t.withdrawals_total,
            cash_net: t.cash_net,
            cashiers: all(t.cashiers),
        }
    }
}

impl From<model::DailyReport> for wire::DailyReport {
    fn from(r: model::DailyReport) -> Self {
        wire::DailyReport {
            date: day_text(r.date),
            merchants: all(r.merchants),
        }
    }
}

impl From<model::KioskRow> for wire::KioskRow {
    fn from(k: model::KioskRow) -> Self {
        wire::KioskRow {
            kiosk_id: k.kiosk_id,
            merchant: k.merchant,
            first_seen: k.first_seen.to_text(),
            last_seen: k.last_seen.to_text(),
            requests: k.requests,
        }
    }
}

impl From<model::PalmScanRow> for wire::PalmScanRow {
    fn from(s: model::PalmScanRow) -> Self {
        wire::PalmScanRow {
            id: s.id,
            kiosk_id: s.kiosk_id,
            at: s.at.to_text(),
            purpose: s.purpose,
            outcome: s.outcome.into(),
            score: s.score,
            account: s.account,
        }
    }
}

impl From<model::BalanceMismatch> for wire::BalanceMismatch {
    fn from(m: model::BalanceMismatch) -> Self {
        wire::BalanceMismatch {
            account_id: m.account_id,
            cached_minor: m.cached_minor,
            from_entries_minor: m.from_entries_minor,
        }
    }
}

impl From<model::LedgerCheck> for wire::LedgerCheck {
    fn from(c: model::LedgerCheck) -> Self {
        wire::LedgerCheck {
            ok: c.ok,
            accounts_checked: c.accounts_checked,
            transactions_checked: c.transactions_checked,
            total_balance_minor: c.total_balance_minor,
            unbalanced_transactions: c.unbalanced_transactions,
            mismatches: all(c.mismatches),
            negative_shoppers: c.negative_shoppers,
        }
    }
}

/// Every item of a list, converted.
pub fn all<T, W: From<T>>(items: Vec<T>) -> Vec<W> {
    items.into_iter().map(W::from).collect()
}

#[cfg(test)]
mod tests {
    use crate::store::{Outcome, StoredResult};
    use palmline_shared::api as wire;

    /// Every record of the idempotency table of a `palmline-server` built just before the
    /// store spoke domain types (commit d9d8917), after one run of registrations, a cashier,
    /// a deposit, payments (one refused), a transfer, a refund, freezes (one refused) and a
    /// cashier disabled; with the body that server answered where it sent the stored
    /// outcome as it was (`None`: the handler changes it first, as a cash deposit's masked
    /// receipt, or an error).
    const BEFORE: &[(&str, Option<&str>)] = &[
        (
            r#"{"Ok":{"Shopper":{"id":3,"username":"alice","email":"alice@example.org","status":"active","has_pin":true,"palm_enrolled":false,"created_at":"2026-12-02T13:21:21.462155Z"}}}"#,
            Some(
                r#"{"id":3,"username":"alice","email":"alice@example.org","status":"active","has_pin":true,"palm_enrolled":false,"created_at":"2026-12-02T13:21:21.462155Z"}"#,
            ),
        ),
        (
            r#"{"Ok":{"Shopper":{"id":4,"username":"bob","email":"bob@example.org","status":"active","has_pin":false,"palm_enrolled":false,"created_at":"2026-12-02T13:21:21.638300Z"}}}"#,
            Some(
                r#"{"id":4,"username":"bob","email":"bob@example.org","status":"active","has_pin":false,"palm_enrolled":false,"created_at":"2026-12-02T13:21:21.638300Z"}"#,
            ),
        ),
        (
            r#"{"Ok":{"Cashier":{"id":1,"merchant":"Corner Cafe","name":"Dana","status":"active","created_at":"2026-12-02T13:21:21.925344Z"}}}"#,
            Some(
                r#"{"id":1,"merchant":"Corner Cafe","name":"Dana","status":"active","created_at":"2026-12-02T13:21:21.925344Z"}"#,
            ),
        ),
        (
            r#"{"Ok":{"Receipt":{"transaction_id":1,"kind":"deposit","amount":{"amount":"50.00","currency":"EUR"},"balance_after":{"amount":"50.00","currency":"EUR"},"shopper":"alice","merchant":"Corner Cafe","kiosk_id":"till-1","created_at":"2026-12-02T13:21:22.506175Z"}}}"#,
            None,
        ),
        (
            r#"{"Ok":{"Receipt":{"transaction_id":2,"kind":"payment","amount":{"amount":"12.50","currency":"EUR"},"balance_after":{"amount":"37.50","currency":"EUR"},"shopper":"alice","merchant":"Corner Cafe","kiosk_id":"till-1","created_at":"2026-12-02T13:21:23.156216Z"}}}"#,
            Some(
                r#"{"transaction_id":2,"kind":"payment","amount":{"amount":"12.50","currency":"EUR"},"balance_after":{"amount":"37.50","currency":"EUR"},"shopper":"alice","merchant":"Corner Cafe","kiosk_id":"till-1","created_at":"2026-12-02T13:21:23.156216Z"}"#,
            ),
        ),
        (r#"{"Err":"InsufficientFunds"}"#, None),
        (
            r#"{"Ok":{"Receipt":{"transaction_id":3,"kind":"transfer","amount":{"amount":"5.00","currency":"EUR"},"balance_after":{"amount":"32.50","currency":"EUR"},"shopper":"alice","counterparty":"bob","kiosk_id":"till-1","created_at":"2026-12-02T13:21:23.422454Z"}}}"#,
            Some(
                r#"{"transaction_id":3,"kind":"transfer","amount":{"amount":"5.00","currency":"EUR"},"balance_after":{"amount":"32.50","currency":"EUR"},"shopper":"alice","counterparty":"bob","kiosk_id":"till-1","created_at":"2026-12-02T13:21:23.422454Z"}"#,
            ),
        ),
        (
            r#"{"Ok":{"Receipt":{"transaction_id":4,"kind":"refund","amount":{"amount":"2.50","currency":"EUR"},"balance_after":{"amount":"35.00","currency":"EUR"},"shopper":"alice","merchant":"Corner Cafe","created_at":"2026-12-02T13:21:23.722612Z"}}}"#,
            Some(
                r#"{"transaction_id":4,"kind":"refund","amount":{"amount":"2.50","currency":"EUR"},"balance_after":{"amount":"35.00","currency":"EUR"},"shopper":"alice","merchant":"Corner Cafe","created_at":"2026-12-02T13:21:23.722612Z"}"#,
            ),
        ),
        (r##"{"Err":{"UnknownAccount":"#2"}}"##, None),
        (
            r#"{"Ok":{"Account":{"id":4,"kind":"shopper","name":"bob","email":"bob@example.org","status":"frozen","balance":{"amount":"5.00","currency":"EUR"},"palm_enrolled":false,"created_at":"2026-12-02T13:21:21.638300Z"}}}"#,
            Some(
                r#"{"id":4,"kind":"shopper","name":"bob","email":"bob@example.org","status":"frozen","balance":{"amount":"5.00","currency":"EUR"},"palm_enrolled":false,"created_at":"2026-12-02T13:21:21.638300Z"}"#,
            ),
        ),
        (
            r#"{"Ok":{"Cashier":{"id":1,"merchant":"Corner Cafe","name":"Dana","status":"disabled","created_at":"2026-12-02T13:21:21.925344Z"}}}"#,
            Some(
                r#"{"id":1,"merchant":"Corner Cafe","name":"Dana","status":"disabled","created_at":"2026-12-02T13:21:21.925344Z"}"#,
            ),
        ),
    ];

    /// The body the API sends for an outcome it answers as it is.
    fn body(o: Outcome) -> String {
        match o {
            Outcome::Shopper(s) => serde_json::to_string(&wire::Shopper::from(s)),
            Outcome::Receipt(r) => serde_json::to_string(&wire::Receipt::from(r)),
            Outcome::Account(a) => serde_json::to_string(&wire::AccountRow::from(a)),
            Outcome::Cashier(c) => serde_json::to_string(&wire::Cashier::from(c)),
            o => panic!("no body for {o:?}"),
        }
        .unwrap()
    }

    #[test]
    fn answers_stored_before_the_domain_types_replay_alike() {
        for (record, answered) in BEFORE {
            let stored: StoredResult = serde_json::from_str(record).unwrap();
            // Written again, the record is the same bytes: old and new records are one format.
            assert_eq!(serde_json::to_string(&stored).unwrap(), *record);
            if let Some(answered) = answered {
                assert_eq!(body(stored.unwrap()), *answered, "{record}");
            }
        }
    }
}
