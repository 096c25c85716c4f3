//! The checks after a load run, over the accepted payments and a snapshot of the stopped
//! ledger. Pure: unit-tested with planted faults below.
//!
//! - every accepted payment is in the ledger once, as a payment of its amount by the shopper
//!   whose palm was shown, and the ledger holds no payment that was not accepted;
//! - that shopper's account, and no other, paid it: every shopper's balance is its funds
//!   less its own accepted payments.

use super::kiosk::Paid;
use crate::bank::check::Snapshot;
use std::collections::HashMap;

/// What the ledger says against the accepted payments: payments charged to another
/// shopper than the palm's, and every other disagreement.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Findings {
    pub wrong_shopper: Vec<String>,
    pub other: Vec<String>,
}

pub fn check(paid: &[Paid], snap: &Snapshot, funds: i64) -> Findings {
    let mut f = Findings::default();
    let txs: HashMap<i64, _> = snap.txs.iter().map(|t| (t.id, t)).collect();
    for p in paid {
        match txs.get(&p.tx) {
            None => f
                .other
                .push(format!("accepted payment {} not in the ledger", p.tx)),
            Some(t) if t.shopper != p.shopper => f.wrong_shopper.push(format!(
                "payment {} by the palm of {} charged to {}",
                p.tx, p.shopper, t.shopper
            )),
            Some(t) if t.kind != "payment" || t.amount != p.minor => f.other.push(format!(
                "transaction {} is a {} of {}, accepted as a payment of {}",
                p.tx, t.kind, t.amount, p.minor
            )),
            Some(_) => {}
        }
    }
    let in_ledger = snap.txs.iter().filter(|t| t.kind == "payment").count();
    if in_ledger != paid.len() {
        f.other.push(format!(
            "{in_ledger} payments in the ledger, {} accepted",
            paid.len()
        ));
    }
    f.wrong_shopper.extend(balances(paid, snap, funds));
    f
}

/// Shoppers whose balance is not their funds less their own accepted payments.
fn balances(paid: &[Paid], snap: &Snapshot, funds: i64) -> Vec<String> {
    let mut spent: HashMap<&str, i64> = HashMap::new();
    for p in paid {
        *spent.entry(p.shopper.as_str()).or_default() += p.minor;
    }
    snap.accounts
        .iter()
        .filter(|a| a.kind == "shopper")
        .filter_map(|a| {
            let want = funds - spent.get(a.name.as_str()).copied().unwrap_or(0);
            (a.balance != want).then(|| {
                format!(
                    "shopper {} holds {}, its own accepted payments leave {want}",
                    a.name, a.balance
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bank::check::{Account, Tx};

    fn shopper(id: i64, name: &str, balance: i64) -> Account {
        Account {
            id,
            kind: "shopper".into(),
            name: name.into(),
            balance,
        }
    }

    fn payment(id: i64, shopper: &str, amount: i64) -> Tx {
        Tx {
            id,
            kind: "payment".into(),
            amount,
            shopper: shopper.into(),
        }
    }

    fn paid(tx: i64, shopper: &str, minor: i64) -> Paid {
        Paid {
            tx,
            shopper: shopper.into(),
            minor,
        }
    }

    fn ledger(accounts: Vec<Account>, txs: Vec<Tx>) -> Snapshot {
        Snapshot {
            accounts,
            txs,
            entries: Vec::new(),
        }
    }

    #[test]
    fn a_ledger_holding_exactly_the_accepted_payments_passes() {
        let snap = ledger(
            vec![shopper(1, "a", 95), shopper(2, "b", 100)],
            vec![payment(10, "a", 5)],
        );
        assert_eq!(check(&[paid(10, "a", 5)], &snap, 100), Findings::default());
    }

    #[test]
    fn a_payment_charged_to_another_shopper_is_found_twice() {
        let snap = ledger(
            vec![shopper(1, "a", 100), shopper(2, "b", 95)],
            vec![payment(10, "b", 5)],
        );
        let f = check(&[paid(10, "a", 5)], &snap, 100);
        assert_eq!(f.wrong_shopper.len(), 3, "{f:?}");
        assert!(f.other.is_empty(), "{f:?}");
    }

    #[test]
    fn a_debit_of_the_wrong_account_is_found_by_the_balances() {
        let snap = ledger(
            vec![shopper(1, "a", 100), shopper(2, "b", 95)],
            vec![payment(10, "a", 5)],
        );
        let f = check(&[paid(10, "a", 5)], &snap, 100);
        assert_eq!(f.wrong_shopper.len(), 2, "{f:?}");
    }

    #[test]
    fn missing_extra_and_altered_payments_are_found() {
        let snap = ledger(
            vec![shopper(1, "a", 92)],
            vec![
                payment(10, "a", 5),
                payment(11, "a", 2),
                payment(13, "a", 1),
            ],
        );
        let f = check(&[paid(10, "a", 4), paid(12, "a", 1)], &snap, 100);
        assert_eq!(f.other.len(), 3, "amount, missing, count: {f:?}");
    }
}
