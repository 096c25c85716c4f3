//! The checks after a bank run, over the requests' first answers and a snapshot of the
//! ledger read from the stopped store. Pure: unit-tested with planted faults below.
//!
//! - every acknowledged money movement is in the ledger exactly once, as asked (kind,
//!   amount, shopper), and no transaction is in the ledger that was never acknowledged;
//! - every transaction has two legs summing to zero; every cached balance is the sum of its
//!   entries; the sum of all balances is zero; no shopper is below zero;
//! - every account's balance is what the acknowledged movements alone make it.

use super::world::{Op, Record};
use std::collections::{BTreeMap, HashMap, HashSet};

/// An account as stored.
#[derive(Debug, Clone)]
pub struct Account {
    pub id: i64,
    pub kind: String,
    pub name: String,
    pub balance: i64,
}

/// A transaction as stored, with its shopper's name.
#[derive(Debug, Clone)]
pub struct Tx {
    pub id: i64,
    pub kind: String,
    pub amount: i64,
    pub shopper: String,
}

/// The ledger after the run.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub accounts: Vec<Account>,
    pub txs: Vec<Tx>,
    /// `(tx_id, account_id, amount)`.
    pub entries: Vec<(i64, i64, i64)>,
}

/// What an acknowledged movement must have written: kind, amount, shopper, and each
/// account's change by `(kind, name)`.
struct Expected {
    kind: &'static str,
    amount: i64,
    shopper: String,
    moves: Vec<((&'static str, String), i64)>,
}

fn expected(rec: &Record, payments: &HashMap<i64, (String, String)>) -> Option<Expected> {
    let m = rec.merchant.clone();
    // A merchant's till is the account `till:{merchant}`.
    let till = |name: String| ("till", format!("till:{name}"));
    let shopper = |name: &String| ("shopper", name.clone());
    let (kind, amount, who, moves) = match &rec.op {
        Op::Deposit { name, minor } => (
            "deposit",
            *minor,
            name.clone(),
            vec![(shopper(name), *minor), (till(m), -minor)],
        ),
        Op::Withdrawal { name, minor } => (
            "withdrawal",
            *minor,
            name.clone(),
            vec![(shopper(name), -minor), (till(m), *minor)],
        ),
        Op::Payment { name, minor } => (
            "payment",
            *minor,
            name.clone(),
            vec![(shopper(name), -minor), (("merchant", m), *minor)],
        ),
        Op::PalmPayment { minor, .. } => {
            let name = rec.first.body["shopper"].as_str()?.to_string();
            (
                "payment",
                *minor,
                name.clone(),
                vec![(shopper(&name), -minor), (("merchant", m), *minor)],
            )
        }
        Op::Transfer { from, to, minor } => (
            "transfer",
            *minor,
            from.clone(),
            vec![(shopper(from), -minor), (shopper(to), *minor)],
        ),
        Op::Refund { payment, minor } => {
            let (payer, merchant) = payments.get(payment)?.clone();
            (
                "refund",
                *minor,
                payer.clone(),
                vec![(shopper(&payer), *minor), (("merchant", merchant), -minor)],
            )
        }
        Op::Register { .. } | Op::Enroll { .. } => return None,
    };
    Some(Expected {
        kind,
        amount,
        shopper: who,
        moves,
    })
}

/// Every violation found; empty when the ledger is exactly what was acknowledged.
pub fn check(records: &[Record], snap: &Snapshot) -> Vec<String> {
    let mut v = Vec::new();
    let acked = acknowledged(records, &mut v);
    check_transactions(&acked, snap, &mut v);
    check_entries(snap, &mut v);
    check_balances(&acked, snap, &mut v);
    v
}

/// The acknowledged movements by transaction id, with what each must have written.
fn acknowledged(records: &[Record], v: &mut Vec<String>) -> BTreeMap<i64, Expected> {
    let mut payments = HashMap::new();
    for r in records {
        if let (Some(tx), Op::Payment { name, .. }) = (r.tx_id(), &r.op) {
            payments.insert(tx, (name.clone(), r.merchant.clone()));
        }
        if let (Some(tx), Op::PalmPayment { .. }) = (r.tx_id(), &r.op) {
            let name = r.first.body["shopper"].as_str().unwrap_or_default();
            payments.insert(tx, (name.to_string(), r.merchant.clone()));
        }
    }
    let mut acked = BTreeMap::new();
    for r in records.iter().filter(|r| r.first.ok()) {
        let Some(e) = expected(r, &payments) else {
            if !matches!(r.op, Op::Register { .. } | Op::Enroll { .. }) {
                v.push(format!(
                    "acknowledged {:?} without a usable receipt: {}",
                    r.op, r.first.body
                ));
            }
            continue;
        };
        let Some(tx) = r.tx_id() else { continue };
        if acked.insert(tx, e).is_some() {
            v.push(format!(
                "transaction {tx} acknowledged to two different requests"
            ));
        }
    }
    acked
}

fn check_transactions(acked: &BTreeMap<i64, Expected>, snap: &Snapshot, v: &mut Vec<String>) {
    let stored: HashMap<i64, &Tx> = snap.txs.iter().map(|t| (t.id, t)).collect();
    for (id, e) in acked {
        match stored.get(id) {
            None => v.push(format!(
                "acknowledged transaction {id} ({}) is not in the ledger",
                e.kind
            )),
            Some(t)
                if (t.kind.as_str(), t.amount, &t.shopper) != (e.kind, e.amount, &e.shopper) =>
            {
                v.push(format!(
                    "transaction {id} is {} {} of {}, acknowledged as {} {} of {}",
                    t.kind, t.amount, t.shopper, e.kind, e.amount, e.shopper
                ))
            }
            Some(_) => {}
        }
    }
    for t in &snap.txs {
        if !acked.contains_key(&t.id) {
            v.push(format!(
                "transaction {} ({} {}) is in the ledger but was never acknowledged",
                t.id, t.kind, t.amount
            ));
        }
    }
}

fn check_entries(snap: &Snapshot, v: &mut Vec<String>) {
    let mut legs: HashMap<i64, (usize, i64)> = HashMap::new();
    let mut per_account: HashMap<i64, i64> = HashMap::new();
    for &(tx, account, amount) in &snap.entries {
        let l = legs.entry(tx).or_default();
        l.0 += 1;
        l.1 += amount;
        *per_account.entry(account).or_default() += amount;
    }
    for t in &snap.txs {
        match legs.get(&t.id) {
            Some(&(2, 0)) => {}
            other => v.push(format!(
                "transaction {} has legs (count, sum) {other:?}, not two summing to zero",
                t.id
            )),
        }
    }
    let known: HashSet<i64> = snap.txs.iter().map(|t| t.id).collect();
    if let Some(&(tx, ..)) = snap.entries.iter().find(|e| !known.contains(&e.0)) {
        v.push(format!("entries of a transaction {tx} that does not exist"));
    }
    for a in &snap.accounts {
        let sum = per_account.get(&a.id).copied().unwrap_or(0);
        if sum != a.balance {
            v.push(format!(
                "{} {} holds {} but its entries sum to {sum}",
                a.kind, a.name, a.balance
            ));
        }
    }
}

fn check_balances(acked: &BTreeMap<i64, Expected>, snap: &Snapshot, v: &mut Vec<String>) {
    let mut want: HashMap<(&str, String), i64> = HashMap::new();
    for e in acked.values() {
        for (account, delta) in &e.moves {
            *want.entry((account.0, account.1.clone())).or_default() += delta;
        }
    }
    let total: i64 = snap.accounts.iter().map(|a| a.balance).sum();
    if total != 0 {
        v.push(format!("the balances sum to {total}, not zero"));
    }
    for a in &snap.accounts {
        if a.kind == "shopper" && a.balance < 0 {
            v.push(format!("shopper {} is below zero: {}", a.name, a.balance));
        }
        let w = want.remove(&(a.kind.as_str(), a.name.clone())).unwrap_or(0);
        if w != a.balance {
            v.push(format!(
                "{} {} holds {}, the acknowledged movements make {w}",
                a.kind, a.name, a.balance
            ));
        }
    }
    for ((kind, name), w) in want.into_iter().filter(|(_, w)| *w != 0) {
        v.push(format!(
            "{kind} {name} should hold {w} but is not in the ledger"
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bank::http::{Answer, Call};
    use crate::bank::world::Sender;
    use serde_json::json;

    fn rec(op: Op, tx: i64, shopper: &str) -> Record {
        Record {
            sender: Sender::Kiosk(0),
            merchant: "Shop 0".into(),
            op,
            call: Call::new("/", None, json!({})),
            first: Answer {
                status: 200,
                body: json!({"transaction_id": tx, "shopper": shopper}),
            },
        }
    }

    fn account(id: i64, kind: &str, name: &str, balance: i64) -> Account {
        Account {
            id,
            kind: kind.into(),
            name: name.into(),
            balance,
        }
    }

    fn tx(id: i64, kind: &str, amount: i64, shopper: &str) -> Tx {
        Tx {
            id,
            kind: kind.into(),
            amount,
            shopper: shopper.into(),
        }
    }

    /// A deposit of 500 to ann and a payment of 200 by ann, as acknowledged and stored.
    fn world() -> (Vec<Record>, Snapshot) {
        let records = vec![
            rec(
                Op::Deposit {
                    name: "ann".into(),
                    minor: 500,
                },
                1,
                "a***n",
            ),
            rec(
                Op::Payment {
                    name: "ann".into(),
                    minor: 200,
                },
                2,
                "ann",
            ),
        ];
        let snap = Snapshot {
            accounts: vec![
                account(1, "shopper", "ann", 300),
                account(2, "merchant", "Shop 0", 200),
                account(3, "till", "till:Shop 0", -500),
            ],
            txs: vec![tx(1, "deposit", 500, "ann"), tx(2, "payment", 200, "ann")],
            entries: vec![(1, 1, 500), (1, 3, -500), (2, 1, -200), (2, 2, 200)],
        };
        (records, snap)
    }

    #[test]
    fn a_ledger_of_exactly_the_acknowledged_movements_passes() {
        let (records, snap) = world();
        assert_eq!(check(&records, &snap), Vec::<String>::new());
    }

    #[test]
    fn a_lost_acknowledged_payment_is_found() {
        let (records, mut snap) = world();
        snap.txs.pop();
        snap.entries.truncate(2);
        snap.accounts[0].balance = 500;
        snap.accounts[1].balance = 0;
        let v = check(&records, &snap);
        assert!(
            v.iter().any(|s| s.contains("is not in the ledger")),
            "{v:?}"
        );
        assert!(
            v.iter().any(|s| s.contains("acknowledged movements make")),
            "{v:?}"
        );
    }

    #[test]
    fn a_payment_applied_twice_is_found() {
        let (records, mut snap) = world();
        snap.txs.push(tx(3, "payment", 200, "ann"));
        snap.entries.extend([(3, 1, -200), (3, 2, 200)]);
        snap.accounts[0].balance = 100;
        snap.accounts[1].balance = 400;
        let v = check(&records, &snap);
        assert!(v.iter().any(|s| s.contains("never acknowledged")), "{v:?}");
        assert!(v.iter().any(|s| s.contains("holds 100")), "{v:?}");
    }

    #[test]
    fn a_half_applied_transaction_is_found() {
        let (records, mut snap) = world();
        snap.entries.pop();
        snap.accounts[1].balance = 0;
        let v = check(&records, &snap);
        assert!(
            v.iter().any(|s| s.contains("not two summing to zero")),
            "{v:?}"
        );
        assert!(v.iter().any(|s| s.contains("sum to -200")), "{v:?}");
    }

    #[test]
    fn a_negative_shopper_and_a_stored_kind_that_differs_are_found() {
        let (records, mut snap) = world();
        snap.accounts[0].balance = -1;
        snap.txs[1].kind = "withdrawal".into();
        let v = check(&records, &snap);
        assert!(v.iter().any(|s| s.contains("below zero")), "{v:?}");
        assert!(
            v.iter().any(|s| s.contains("acknowledged as payment")),
            "{v:?}"
        );
    }
}
