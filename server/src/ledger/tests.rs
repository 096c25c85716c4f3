//! Every rule of the core, without a database, and a property test over random sequences.

use super::*;
use crate::store::LedgerError;
use palmline_shared::money::MAX_MINOR;
use palmline_shared::{Currency, Money};
use proptest::prelude::*;

const EUR: Currency = Currency::EUR;

fn acct(id: AccountId, kind: AccountKind, balance: i64) -> Account {
    Account {
        id,
        kind,
        status: Status::Active,
        balance,
        currency: EUR,
    }
}

fn shopper(id: AccountId, balance: i64) -> Account {
    acct(id, AccountKind::Shopper, balance)
}

fn frozen(mut a: Account) -> Account {
    a.status = Status::Frozen;
    a
}

fn amt(minor: i64) -> Amount {
    check_amount(Money::from_minor(minor, EUR), EUR).expect("valid amount")
}

fn shop() -> (Account, Account) {
    (
        acct(100, AccountKind::Merchant, 0),
        acct(101, AccountKind::Till, 0),
    )
}

fn merchant<'a>(m: &'a (Account, Account)) -> Merchant<'a> {
    Merchant {
        account: &m.0,
        till: &m.1,
    }
}

/// A cashier of [`shop`]'s merchant.
const CASHIER: Cashier = Cashier {
    id: 7,
    merchant: 100,
    active: true,
};

fn sum(plan: &Plan) -> i64 {
    plan.legs.iter().map(|l| l.delta).sum()
}

#[test]
fn only_an_active_cashier_of_the_merchant_handles_its_till() {
    let m = shop();
    let s = shopper(1, 1_000);
    let elsewhere = Cashier {
        merchant: 200,
        ..CASHIER
    };
    let disabled = Cashier {
        active: false,
        ..CASHIER
    };
    for c in [&elsewhere, &disabled] {
        let want = if c.active {
            LedgerError::CashierElsewhere
        } else {
            LedgerError::CashierDisabled
        };
        assert_eq!(
            deposit(amt(5), &s, merchant(&m), "k1", c),
            Err(want.clone())
        );
        assert_eq!(withdrawal(amt(5), &s, merchant(&m), "k1", c), Err(want));
    }
    let plan = deposit(amt(5), &s, merchant(&m), "k1", &CASHIER).unwrap();
    assert_eq!(plan.tx.cashier, Some(7));
    let plan = withdrawal(amt(5), &s, merchant(&m), "k1", &CASHIER).unwrap();
    assert_eq!(plan.tx.cashier, Some(7));
    let plan = payment(amt(5), &s, merchant(&m), "k1", None).unwrap();
    assert_eq!(plan.tx.cashier, None, "a payment has no cashier");
}

#[test]
fn bad_amounts_are_invalid_amount() {
    for minor in [0, -1, -500, MAX_MINOR + 1, i64::MAX, i64::MIN] {
        assert!(
            matches!(
                check_amount(Money::from_minor(minor, EUR), EUR),
                Err(LedgerError::InvalidAmount(_))
            ),
            "{minor}"
        );
    }
    assert_eq!(amt(MAX_MINOR).minor(), MAX_MINOR);
    assert_eq!(amt(1).money(), Money::from_minor(1, EUR));
}

#[test]
fn another_currency_is_unsupported_currency_with_its_wire_code() {
    let err = check_amount(Money::from_minor(5, Currency::USD), EUR).unwrap_err();
    assert!(matches!(err, LedgerError::UnsupportedCurrency(_)));
    assert_eq!(err.code().as_str(), "unsupported_currency");
    let err = check_amount(Money::from_minor(0, EUR), EUR).unwrap_err();
    assert_eq!(err.code().as_str(), "invalid_amount");
    // The currency is checked first: a zero in another currency is about the currency.
    assert!(matches!(
        check_amount(Money::from_minor(0, Currency::USD), EUR),
        Err(LedgerError::UnsupportedCurrency(_))
    ));
}

#[test]
fn an_account_of_another_currency_is_refused() {
    let m = shop();
    let mut s = shopper(1, 1_000);
    s.currency = Currency::USD;
    assert!(matches!(
        deposit(amt(5), &s, merchant(&m), "k1", &CASHIER),
        Err(LedgerError::Storage(_))
    ));
}

#[test]
fn deposit_credits_the_shopper_from_the_till() {
    let m = shop();
    let plan = deposit(amt(250), &shopper(1, 10), merchant(&m), "k1", &CASHIER).unwrap();
    assert_eq!(plan.tx.kind, TxKind::Deposit);
    assert_eq!(plan.tx.merchant, Some(100));
    assert_eq!(plan.tx.other, 100);
    assert_eq!(plan.tx.kiosk_id.as_deref(), Some("k1"));
    assert_eq!(
        plan.legs,
        vec![
            Leg {
                account: 1,
                delta: 250,
                before: 10,
                after: 260
            },
            Leg {
                account: 101,
                delta: -250,
                before: 0,
                after: -250
            },
        ]
    );
    assert_eq!(plan.balance_after(1), Some(Money::from_minor(260, EUR)));
    assert_eq!(sum(&plan), 0);
}

#[test]
fn frozen_shopper_takes_no_deposit_and_cannot_pay() {
    let m = shop();
    let s = frozen(shopper(1, 1_000));
    assert_eq!(
        deposit(amt(5), &s, merchant(&m), "k1", &CASHIER),
        Err(LedgerError::AccountFrozen)
    );
    assert_eq!(
        withdrawal(amt(5), &s, merchant(&m), "k1", &CASHIER),
        Err(LedgerError::AccountFrozen)
    );
    assert_eq!(
        payment(amt(5), &s, merchant(&m), "k1", None),
        Err(LedgerError::AccountFrozen)
    );
    assert_eq!(
        transfer(amt(5), &s, &shopper(2, 0), None, None),
        Err(LedgerError::AccountFrozen)
    );
}

#[test]
fn frozen_merchant_takes_no_payment_but_its_till_still_moves_cash() {
    let m = (
        frozen(acct(100, AccountKind::Merchant, 0)),
        acct(101, AccountKind::Till, 0),
    );
    let s = shopper(1, 1_000);
    assert_eq!(
        payment(amt(5), &s, merchant(&m), "k1", None),
        Err(LedgerError::AccountFrozen)
    );
    assert!(deposit(amt(5), &s, merchant(&m), "k1", &CASHIER).is_ok());
    assert!(withdrawal(amt(5), &s, merchant(&m), "k1", &CASHIER).is_ok());
}

#[test]
fn insufficient_funds_for_every_debit() {
    let m = shop();
    let s = shopper(1, 99);
    assert_eq!(
        withdrawal(amt(100), &s, merchant(&m), "k1", &CASHIER),
        Err(LedgerError::InsufficientFunds)
    );
    assert_eq!(
        payment(amt(100), &s, merchant(&m), "k1", None),
        Err(LedgerError::InsufficientFunds)
    );
    assert_eq!(
        transfer(amt(100), &s, &shopper(2, 0), None, None),
        Err(LedgerError::InsufficientFunds)
    );
    // Exactly the balance is fine and leaves zero.
    let plan = payment(amt(99), &s, merchant(&m), "k1", Some("x".into())).unwrap();
    assert_eq!(plan.balance_after(1), Some(Money::from_minor(0, EUR)));
    assert_eq!(plan.balance_after(100), Some(Money::from_minor(99, EUR)));
    assert_eq!(plan.tx.description.as_deref(), Some("x"));
}

#[test]
fn frozen_check_comes_before_funds_and_merchant() {
    let m = (
        frozen(acct(100, AccountKind::Merchant, 0)),
        acct(101, AccountKind::Till, 0),
    );
    let s = frozen(shopper(1, 0));
    assert_eq!(
        payment(amt(100), &s, merchant(&m), "k1", None),
        Err(LedgerError::AccountFrozen)
    );
    assert_eq!(
        payment(amt(100), &shopper(1, 0), merchant(&m), "k1", None),
        Err(LedgerError::InsufficientFunds)
    );
}

#[test]
fn withdrawal_pays_the_till() {
    let m = shop();
    let plan = withdrawal(amt(40), &shopper(1, 100), merchant(&m), "k1", &CASHIER).unwrap();
    assert_eq!(plan.tx.kind, TxKind::Withdrawal);
    assert_eq!(plan.legs[0].account, 1);
    assert_eq!(plan.legs[0].after, 60);
    assert_eq!(plan.legs[1].account, 101);
    assert_eq!(plan.legs[1].after, 40);
}

#[test]
fn transfer_rules() {
    let a = shopper(1, 100);
    let b = shopper(2, 5);
    assert_eq!(
        transfer(amt(1), &a, &a, None, None),
        Err(LedgerError::SameAccount)
    );
    // Same account is answered before anything else, even with no money.
    assert_eq!(
        transfer(amt(1_000), &shopper(3, 0), &shopper(3, 0), None, None),
        Err(LedgerError::SameAccount)
    );
    assert_eq!(
        transfer(amt(1), &a, &frozen(b.clone()), None, None),
        Err(LedgerError::AccountFrozen)
    );
    let plan = transfer(amt(30), &a, &b, Some("k1".into()), Some("lunch".into())).unwrap();
    assert_eq!(plan.tx.kind, TxKind::Transfer);
    assert_eq!(
        (plan.tx.shopper, plan.tx.other, plan.tx.merchant),
        (1, 2, None)
    );
    assert_eq!(plan.balance_after(1), Some(Money::from_minor(70, EUR)));
    assert_eq!(plan.balance_after(2), Some(Money::from_minor(35, EUR)));
    assert_eq!(sum(&plan), 0);
}

#[test]
fn transfer_to_a_merchant_is_a_store_bug() {
    assert!(matches!(
        transfer(
            amt(1),
            &shopper(1, 10),
            &acct(100, AccountKind::Merchant, 0),
            None,
            None
        ),
        Err(LedgerError::Storage(_))
    ));
}

fn paid(paid: i64, refunded: i64) -> PaymentState {
    PaymentState {
        id: 7,
        paid: Money::from_minor(paid, EUR),
        shopper: 1,
        merchant: 100,
        refunded,
    }
}

#[test]
fn refund_up_to_what_was_paid() {
    let s = shopper(1, 0);
    let m = acct(100, AccountKind::Merchant, 500);
    let plan = refund(
        amt(300),
        &paid(500, 200),
        &s,
        &m,
        Some("broken".into()),
        "ops".into(),
    )
    .unwrap();
    assert_eq!(plan.tx.kind, TxKind::Refund);
    assert_eq!(plan.tx.refers_to, Some(7));
    assert_eq!(plan.tx.created_by.as_deref(), Some("ops"));
    assert_eq!(plan.balance_after(1), Some(Money::from_minor(300, EUR)));
    assert_eq!(plan.balance_after(100), Some(Money::from_minor(200, EUR)));
}

#[test]
fn refund_over_the_cap_names_what_remains() {
    let s = shopper(1, 0);
    let m = acct(100, AccountKind::Merchant, 500);
    assert_eq!(
        refund(amt(301), &paid(500, 200), &s, &m, None, "ops".into()),
        Err(LedgerError::RefundExceedsPayment("3.00 EUR".into()))
    );
}

#[test]
fn double_refund_is_refused() {
    let s = shopper(1, 0);
    let m = acct(100, AccountKind::Merchant, 500);
    assert!(refund(amt(500), &paid(500, 0), &s, &m, None, "ops".into()).is_ok());
    assert!(matches!(
        refund(amt(1), &paid(500, 500), &s, &m, None, "ops".into()),
        Err(LedgerError::RefundExceedsPayment(_))
    ));
}

#[test]
fn refund_ignores_frozen_and_may_take_a_merchant_below_zero() {
    let s = frozen(shopper(1, 0));
    let m = frozen(acct(100, AccountKind::Merchant, 0));
    let plan = refund(amt(50), &paid(50, 0), &s, &m, None, "ops".into()).unwrap();
    assert_eq!(plan.balance_after(100), Some(Money::from_minor(-50, EUR)));
}

#[test]
fn refund_with_accounts_not_of_the_payment_is_a_store_bug() {
    let m = acct(100, AccountKind::Merchant, 0);
    assert!(matches!(
        refund(amt(1), &paid(50, 0), &shopper(2, 0), &m, None, "ops".into()),
        Err(LedgerError::Storage(_))
    ));
}

#[test]
fn a_balance_that_would_overflow_is_refused() {
    let m = shop();
    let s = shopper(1, i64::MAX - 1);
    assert!(matches!(
        deposit(amt(2), &s, merchant(&m), "k1", &CASHIER),
        Err(LedgerError::InvalidAmount(_))
    ));
}

#[test]
fn no_pin_limits_per_day_and_per_session() {
    let limits = crate::limits::NoPinLimits {
        per_session: Money::from_minor(50, EUR),
        per_day: Money::from_minor(100, EUR),
    };
    let spent = |today, session| NoPinSpent { today, session };
    assert_eq!(
        within_no_pin_limits(amt(50), spent(0, Some(0)), &limits, true),
        Ok(())
    );
    assert_eq!(
        within_no_pin_limits(amt(51), spent(0, Some(0)), &limits, true),
        Err(LedgerError::PinRequired)
    );
    assert_eq!(
        within_no_pin_limits(amt(1), spent(40, Some(50)), &limits, true),
        Err(LedgerError::PinRequired)
    );
    // No session (a palm payment): only the day's limit counts.
    assert_eq!(
        within_no_pin_limits(amt(100), spent(0, None), &limits, true),
        Ok(())
    );
    assert_eq!(
        within_no_pin_limits(amt(1), spent(100, None), &limits, true),
        Err(LedgerError::PinRequired)
    );
    // A shopper without a PIN has the same limits; past them, the answer says to set one.
    assert_eq!(
        within_no_pin_limits(amt(50), spent(0, Some(0)), &limits, false),
        Ok(())
    );
    assert_eq!(
        within_no_pin_limits(amt(1), spent(100, None), &limits, false),
        Err(LedgerError::PinNotSet)
    );
}

// ------------------------------------------------------------------ property test

/// A tiny in-memory ledger that applies plans as a store would.
struct Model {
    accounts: Vec<Account>,
    payments: Vec<PaymentState>,
}

const SHOPPERS: usize = 4;

impl Model {
    fn new() -> Model {
        let mut accounts: Vec<Account> = (0..SHOPPERS as i64).map(|i| shopper(i, 0)).collect();
        accounts.push(acct(100, AccountKind::Merchant, 0));
        accounts.push(acct(101, AccountKind::Till, 0));
        Model {
            accounts,
            payments: Vec::new(),
        }
    }

    fn get(&self, id: AccountId) -> &Account {
        self.accounts.iter().find(|a| a.id == id).expect("known id")
    }

    fn apply(&mut self, plan: &Plan) {
        assert_eq!(sum(plan), 0, "unbalanced plan {plan:?}");
        for leg in &plan.legs {
            let a = self
                .accounts
                .iter_mut()
                .find(|a| a.id == leg.account)
                .unwrap();
            assert_eq!(a.balance, leg.before, "plan made on a stale balance");
            a.balance = leg.after;
        }
    }

    fn run(&mut self, op: &Op) -> Result<(), LedgerError> {
        let m = (self.get(100).clone(), self.get(101).clone());
        let plan = match *op {
            Op::Deposit(s, n) => deposit(amt(n), self.get(s), merchant(&m), "k", &CASHIER)?,
            Op::Withdraw(s, n) => withdrawal(amt(n), self.get(s), merchant(&m), "k", &CASHIER)?,
            Op::Pay(s, n) => payment(amt(n), self.get(s), merchant(&m), "k", None)?,
            Op::Transfer(a, b, n) => transfer(amt(n), self.get(a), self.get(b), None, None)?,
            Op::Refund(p, n) => {
                let Some(p) = self.payments.get(p % self.payments.len().max(1)).copied() else {
                    return Err(LedgerError::UnknownPayment);
                };
                let plan = refund(
                    amt(n),
                    &p,
                    self.get(p.shopper),
                    self.get(100),
                    None,
                    "o".into(),
                )?;
                self.payments
                    .iter_mut()
                    .find(|q| q.id == p.id)
                    .unwrap()
                    .refunded += n;
                plan
            }
            Op::Freeze(id, f) => {
                let a = self.accounts.iter_mut().find(|a| a.id == id).unwrap();
                a.status = if f { Status::Frozen } else { Status::Active };
                return Ok(());
            }
        };
        self.apply(&plan);
        if plan.tx.kind == TxKind::Payment {
            self.payments.push(PaymentState {
                id: self.payments.len() as i64,
                paid: plan.tx.amount,
                shopper: plan.tx.shopper,
                merchant: 100,
                refunded: 0,
            });
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
enum Op {
    Deposit(AccountId, i64),
    Withdraw(AccountId, i64),
    Pay(AccountId, i64),
    Transfer(AccountId, AccountId, i64),
    Refund(usize, i64),
    Freeze(AccountId, bool),
}

fn op() -> impl Strategy<Value = Op> {
    let s = 0..SHOPPERS as i64;
    let n = 1..2_000i64;
    prop_oneof![
        3 => (s.clone(), n.clone()).prop_map(|(s, n)| Op::Deposit(s, n)),
        2 => (s.clone(), n.clone()).prop_map(|(s, n)| Op::Withdraw(s, n)),
        3 => (s.clone(), n.clone()).prop_map(|(s, n)| Op::Pay(s, n)),
        3 => (s.clone(), s.clone(), n.clone()).prop_map(|(a, b, n)| Op::Transfer(a, b, n)),
        2 => (0..16usize, n).prop_map(|(p, n)| Op::Refund(p, n)),
        1 => (prop_oneof![s, Just(100)], any::<bool>()).prop_map(|(a, f)| Op::Freeze(a, f)),
    ]
}

proptest! {
    #[test]
    fn random_sequences_keep_the_ledger_balanced(ops in proptest::collection::vec(op(), 1..80)) {
        let mut model = Model::new();
        for op in &ops {
            let before: Vec<i64> = model.accounts.iter().map(|a| a.balance).collect();
            let result = model.run(op);
            if result.is_err() {
                // A refused command changes nothing.
                let after: Vec<i64> = model.accounts.iter().map(|a| a.balance).collect();
                prop_assert_eq!(before, after);
            }
            prop_assert_eq!(model.accounts.iter().map(|a| a.balance).sum::<i64>(), 0);
            for a in &model.accounts {
                prop_assert!(a.kind != AccountKind::Shopper || a.balance >= 0, "{:?}", a);
            }
            for p in &model.payments {
                prop_assert!(p.refunded <= p.paid.minor());
            }
        }
    }
}
