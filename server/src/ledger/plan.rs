//! A decided movement: the transaction record and its legs, balanced and checked.

use super::{Account, AccountId, AccountKind, Amount, TxKind};
use crate::store::LedgerError;
use palmline_shared::Money;

/// The transaction row a movement writes (the store adds its id and timestamp).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxRecord {
    pub kind: TxKind,
    pub amount: Money,
    /// The shopper concerned: the payer, or the credited shopper of a deposit or refund.
    pub shopper: AccountId,
    /// The other party as people see it: the merchant, or a transfer's recipient.
    pub other: AccountId,
    pub merchant: Option<AccountId>,
    pub kiosk_id: Option<String>,
    /// The payment a refund gives back.
    pub refers_to: Option<i64>,
    pub description: Option<String>,
    pub created_by: Option<String>,
    /// The cashier who handled the cash of a deposit or withdrawal.
    pub cashier: Option<i64>,
}

/// One entry: `delta` minor units on `account`, which held `before` and will hold `after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Leg {
    pub account: AccountId,
    pub delta: i64,
    pub before: i64,
    pub after: i64,
}

/// What the core decided: write `tx`, then each leg in order. The legs sum to zero and no
/// shopper's `after` is below zero; [`Plan::post`] makes no other kind of plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub tx: TxRecord,
    pub legs: Vec<Leg>,
}

impl Plan {
    /// Posts `amount` to the first account (the shopper's leg, which receipts show) and
    /// its opposite to the second: the only way the rules make a plan.
    pub(super) fn post(
        tx: TxRecord,
        amount: Amount,
        (first, delta): (&Account, i64),
        second: &Account,
    ) -> Result<Plan, LedgerError> {
        if delta.unsigned_abs() != amount.minor().unsigned_abs() {
            // The rules pass ±amount; anything else is a bug here, not bad input.
            return Err(LedgerError::Storage("unbalanced posting".into()));
        }
        let mut legs: Vec<Leg> = Vec::with_capacity(2);
        for (account, delta) in [(first, delta), (second, -delta)] {
            legs.push(leg(account, delta, amount, &legs)?);
        }
        debug_assert_eq!(legs.iter().map(|l| l.delta).sum::<i64>(), 0);
        Ok(Plan { tx, legs })
    }

    /// The balance after of `account`'s last leg, as money of the transaction's currency.
    pub fn balance_after(&self, account: AccountId) -> Option<Money> {
        self.legs
            .iter()
            .rev()
            .find(|l| l.account == account)
            .map(|l| Money::from_minor(l.after, self.tx.amount.currency()))
    }
}

/// One leg on `account`, after the `earlier` legs of the same plan (a plan could touch an
/// account twice; the rules refuse that for transfers, but the balance stays right anyway).
fn leg(account: &Account, delta: i64, amount: Amount, earlier: &[Leg]) -> Result<Leg, LedgerError> {
    if account.currency != amount.currency() {
        return Err(LedgerError::Storage(format!(
            "account #{} keeps {}, not {}",
            account.id,
            account.currency,
            amount.currency()
        )));
    }
    let before = earlier
        .iter()
        .rev()
        .find(|l| l.account == account.id)
        .map_or(account.balance, |l| l.after);
    let after = before
        .checked_add(delta)
        .ok_or_else(|| LedgerError::InvalidAmount("the balance would overflow".into()))?;
    if account.kind == AccountKind::Shopper && after < 0 {
        return Err(LedgerError::InsufficientFunds);
    }
    Ok(Leg {
        account: account.id,
        delta,
        before,
        after,
    })
}
