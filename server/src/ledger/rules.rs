//! The rules of each money movement: who may be debited or credited, in which order the
//! checks run (the first failing one is the answer), and which legs it posts.

use super::{Account, AccountId, AccountKind, Amount, Plan, TxKind, TxRecord};
use crate::limits::NoPinLimits;
use crate::store::LedgerError;
use palmline_shared::Money;

/// The accounts of the merchant a kiosk belongs to: the account payments credit, and its
/// till, the cash drawer that deposits and withdrawals move.
#[derive(Debug, Clone, Copy)]
pub struct Merchant<'a> {
    pub account: &'a Account,
    pub till: &'a Account,
}

/// A payment as a refund needs it: what was paid, by whom, to whom, and how much of it has
/// already been given back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PaymentState {
    pub id: i64,
    pub paid: Money,
    pub shopper: AccountId,
    pub merchant: AccountId,
    pub refunded: i64,
}

/// The cashier who handles the cash of a deposit or withdrawal, as the store loaded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cashier {
    pub id: i64,
    /// The merchant account the cashier works for.
    pub merchant: AccountId,
    pub active: bool,
}

/// Only an active cashier of the kiosk's own merchant handles its till.
fn handles_till(cashier: &Cashier, m: Merchant<'_>) -> Result<(), LedgerError> {
    if cashier.merchant != m.account.id {
        return Err(LedgerError::CashierElsewhere);
    }
    if !cashier.active {
        return Err(LedgerError::CashierDisabled);
    }
    Ok(())
}

/// Cash in at a kiosk, taken by `cashier`: the till pays the shopper. A frozen shopper
/// takes no deposit.
pub fn deposit(
    amount: Amount,
    shopper: &Account,
    m: Merchant<'_>,
    kiosk_id: &str,
    cashier: &Cashier,
) -> Result<Plan, LedgerError> {
    handles_till(cashier, m)?;
    expect(shopper, AccountKind::Shopper)?;
    if shopper.is_frozen() {
        return Err(LedgerError::AccountFrozen);
    }
    let mut tx = at_kiosk(TxKind::Deposit, amount, shopper, m, kiosk_id, None);
    tx.cashier = Some(cashier.id);
    Plan::post(tx, amount, (shopper, amount.minor()), m.till)
}

/// Cash out at a kiosk, paid by `cashier`: the shopper pays the till.
pub fn withdrawal(
    amount: Amount,
    shopper: &Account,
    m: Merchant<'_>,
    kiosk_id: &str,
    cashier: &Cashier,
) -> Result<Plan, LedgerError> {
    handles_till(cashier, m)?;
    debitable(shopper, amount)?;
    let mut tx = at_kiosk(TxKind::Withdrawal, amount, shopper, m, kiosk_id, None);
    tx.cashier = Some(cashier.id);
    Plan::post(tx, amount, (shopper, -amount.minor()), m.till)
}

/// A purchase: the shopper pays the merchant, who must not be frozen.
pub fn payment(
    amount: Amount,
    shopper: &Account,
    m: Merchant<'_>,
    kiosk_id: &str,
    description: Option<String>,
) -> Result<Plan, LedgerError> {
    debitable(shopper, amount)?;
    if m.account.is_frozen() {
        return Err(LedgerError::AccountFrozen);
    }
    let tx = at_kiosk(TxKind::Payment, amount, shopper, m, kiosk_id, description);
    Plan::post(tx, amount, (shopper, -amount.minor()), m.account)
}

/// Shopper to shopper, never to oneself; neither side may be frozen.
pub fn transfer(
    amount: Amount,
    from: &Account,
    to: &Account,
    kiosk_id: Option<String>,
    note: Option<String>,
) -> Result<Plan, LedgerError> {
    expect(to, AccountKind::Shopper)?;
    if from.id == to.id {
        return Err(LedgerError::SameAccount);
    }
    debitable(from, amount)?;
    if to.is_frozen() {
        return Err(LedgerError::AccountFrozen);
    }
    let tx = TxRecord {
        kind: TxKind::Transfer,
        amount: amount.money(),
        shopper: from.id,
        other: to.id,
        merchant: None,
        kiosk_id,
        refers_to: None,
        description: note,
        created_by: None,
        cashier: None,
    };
    Plan::post(tx, amount, (from, -amount.minor()), to)
}

/// An operator gives back (part of) a payment: the merchant pays the shopper, never more
/// in total than was paid. Frozen accounts do not stop a refund, and a merchant's balance
/// may go below zero (only shoppers' may not).
pub fn refund(
    amount: Amount,
    payment: &PaymentState,
    shopper: &Account,
    merchant: &Account,
    reason: Option<String>,
    operator: String,
) -> Result<Plan, LedgerError> {
    let remaining = payment.paid.minor().saturating_sub(payment.refunded);
    if amount.minor() > remaining {
        return Err(LedgerError::RefundExceedsPayment(
            Money::from_minor(remaining, amount.currency()).to_string(),
        ));
    }
    if shopper.id != payment.shopper || merchant.id != payment.merchant {
        return Err(LedgerError::Storage(format!(
            "refund of payment #{}: accounts do not match the payment",
            payment.id
        )));
    }
    let tx = TxRecord {
        kind: TxKind::Refund,
        amount: amount.money(),
        shopper: shopper.id,
        other: merchant.id,
        merchant: Some(merchant.id),
        kiosk_id: None,
        refers_to: Some(payment.id),
        description: reason,
        created_by: Some(operator),
        cashier: None,
    };
    Plan::post(tx, amount, (shopper, amount.minor()), merchant)
}

/// What a shopper already spent without the PIN (minor units): today, and in the session
/// the debit comes from (`None` for a palm payment, which has no session).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoPinSpent {
    pub today: i64,
    pub session: Option<i64>,
}

/// A debit without the PIN stays within the day's limit and the session's limit, or the
/// PIN is required ([`LedgerError::PinRequired`]; [`LedgerError::PinNotSet`] for a shopper
/// who has none, `pin_set` false).
pub fn within_no_pin_limits(
    amount: Amount,
    spent: NoPinSpent,
    limits: &NoPinLimits,
    pin_set: bool,
) -> Result<(), LedgerError> {
    let over = |spent: i64, limit: Money| spent.saturating_add(amount.minor()) > limit.minor();
    if over(spent.today, limits.per_day)
        || spent.session.is_some_and(|s| over(s, limits.per_session))
    {
        return Err(if pin_set {
            LedgerError::PinRequired
        } else {
            LedgerError::PinNotSet
        });
    }
    Ok(())
}

/// A shopper who may pay `amount`: not frozen, and holding at least that much.
fn debitable(shopper: &Account, amount: Amount) -> Result<(), LedgerError> {
    expect(shopper, AccountKind::Shopper)?;
    if shopper.is_frozen() {
        return Err(LedgerError::AccountFrozen);
    }
    if shopper.balance < amount.minor() {
        return Err(LedgerError::InsufficientFunds);
    }
    Ok(())
}

/// The store handed over the wrong kind of account: a bug in the store, not bad input.
fn expect(account: &Account, kind: AccountKind) -> Result<(), LedgerError> {
    if account.kind == kind {
        return Ok(());
    }
    Err(LedgerError::Storage(format!(
        "account #{} is a {}, not a {}",
        account.id,
        account.kind.as_str(),
        kind.as_str()
    )))
}

fn at_kiosk(
    kind: TxKind,
    amount: Amount,
    shopper: &Account,
    m: Merchant<'_>,
    kiosk_id: &str,
    description: Option<String>,
) -> TxRecord {
    TxRecord {
        kind,
        amount: amount.money(),
        shopper: shopper.id,
        other: m.account.id,
        merchant: Some(m.account.id),
        kiosk_id: Some(kiosk_id.to_string()),
        refers_to: None,
        description,
        created_by: None,
        cashier: None,
    }
}
