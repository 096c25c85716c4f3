//! A batch's decisions, in memory: the accounts the batch locked, each movement put to the
//! ledger core in order against the balances as the earlier movements left them. No SQL and
//! no rule here: the rules are [`crate::ledger`]'s; this only finds the accounts a movement
//! names, in the order the per-command path checks them, and keeps the balances and what
//! each shopper and session has spent without the PIN.

use super::{Kind, Movement};
use crate::ledger::{self, Amount, Plan};
use crate::limits::NoPinGuard;
use crate::store::postgres::accounts::Acct;
use crate::store::receipt::Parties;
use crate::store::{LedgerError, StoredResult};
use palmline_shared::Currency;
use std::collections::HashMap;

/// What the batch does with one movement.
pub(super) enum Decision {
    /// Its key was answered before this batch: that answer, nothing written.
    Replay(StoredResult),
    /// Refused (or failed alone): nothing moved. A final error is its key's answer.
    Refused(LedgerError),
    /// Decided: write the plan (and, made without the PIN, record it against the limits).
    Moved(Plan, Parties, Option<NoPin>),
    /// For the per-command path (a merchant not seen before).
    Elsewhere,
}

/// A debit made without the PIN, to record in `no_pin_debits` with its transaction (the
/// shopper and amount are the plan's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct NoPin {
    pub session: Option<[u8; 32]>,
}

/// What was spent without the PIN before the batch: per guarded shopper today, per guarded
/// session (absent: nothing).
#[derive(Debug, Default)]
pub(super) struct Spent {
    pub today: HashMap<i64, i64>,
    pub sessions: HashMap<[u8; 32], i64>,
}

/// A loaded account and, for a till, its merchant's account.
pub(super) struct Loaded {
    pub acct: Acct,
    pub merchant: Option<i64>,
}

/// The accounts a batch holds locked, with their balances as its decisions leave them.
pub(super) struct Books {
    accounts: HashMap<i64, Acct>,
    /// Each account's balance as loaded (what the write compares against).
    loaded: HashMap<i64, i64>,
    shoppers: HashMap<String, i64>,
    merchants: HashMap<String, i64>,
    /// Merchant account id → its till's id.
    tills: HashMap<i64, i64>,
    /// Spent without the PIN, as the batch's decisions leave it.
    spent: Spent,
}

impl Books {
    pub fn new(rows: Vec<Loaded>, spent: Spent) -> Books {
        let mut b = Books {
            spent,
            accounts: HashMap::with_capacity(rows.len()),
            loaded: HashMap::with_capacity(rows.len()),
            shoppers: HashMap::new(),
            merchants: HashMap::new(),
            tills: HashMap::new(),
        };
        for Loaded { acct, merchant } in rows {
            let id = acct.core.id;
            match acct.core.kind {
                ledger::AccountKind::Shopper => b.shoppers.insert(acct.name.clone(), id),
                ledger::AccountKind::Merchant => b.merchants.insert(acct.name.clone(), id),
                ledger::AccountKind::Till => merchant.and_then(|m| b.tills.insert(m, id)),
            };
            b.loaded.insert(id, acct.core.balance);
            b.accounts.insert(id, acct);
        }
        b
    }

    /// Decides `m` and, if it moves money, takes its legs into the balances (and, made
    /// without the PIN, its amount into what the shopper and the session have spent).
    pub fn decide(&mut self, cur: Currency, m: Movement) -> Decision {
        let guard = m.guard.as_ref();
        let decided = match m.kind {
            k @ Kind::Payment { .. } => self.payment(cur, k, guard),
            k @ Kind::Transfer { .. } => self.transfer(cur, k, guard),
        };
        match decided {
            Ok(Some((plan, parties))) => {
                self.apply(&plan);
                let no_pin = guard.map(|g| self.spend(g, &plan));
                Decision::Moved(plan, parties, no_pin)
            }
            Ok(None) => Decision::Elsewhere,
            Err(e) => Decision::Refused(e),
        }
    }

    /// Every account whose balance the batch changed: (id, balance loaded, balance now).
    pub fn changed(&self) -> Vec<(i64, i64, i64)> {
        let mut out: Vec<_> = self
            .loaded
            .iter()
            .filter_map(|(&id, &was)| {
                let now = self.accounts.get(&id)?.core.balance;
                (now != was).then_some((id, was, now))
            })
            .collect();
        out.sort_unstable();
        out
    }

    fn apply(&mut self, plan: &Plan) {
        for leg in &plan.legs {
            if let Some(a) = self.accounts.get_mut(&leg.account) {
                a.core.balance = leg.after;
            }
        }
    }

    /// A debit without the PIN stays within the limits, given what was spent before it.
    fn within_limits(
        &self,
        guard: Option<&NoPinGuard>,
        shopper: i64,
        amount: Amount,
    ) -> Result<(), LedgerError> {
        let Some(g) = guard else { return Ok(()) };
        let spent = ledger::NoPinSpent {
            today: self.spent.today.get(&shopper).copied().unwrap_or(0),
            session: g
                .session_hash
                .map(|h| self.spent.sessions.get(&h).copied().unwrap_or(0)),
        };
        ledger::within_no_pin_limits(amount, spent, &g.limits, g.pin_set)
    }

    fn spend(&mut self, g: &NoPinGuard, plan: &Plan) -> NoPin {
        let amount = plan.tx.amount.minor();
        *self.spent.today.entry(plan.tx.shopper).or_default() += amount;
        if let Some(h) = g.session_hash {
            *self.spent.sessions.entry(h).or_default() += amount;
        }
        NoPin {
            session: g.session_hash,
        }
    }

    fn shopper(&self, id: i64) -> Result<&Acct, LedgerError> {
        self.accounts
            .get(&id)
            .filter(|a| a.core.kind == ledger::AccountKind::Shopper)
            .ok_or_else(|| LedgerError::UnknownAccount(format!("#{id}")))
    }

    fn get(&self, id: i64) -> Result<&Acct, LedgerError> {
        self.accounts
            .get(&id)
            .ok_or_else(|| LedgerError::Storage(format!("account #{id} vanished")))
    }

    /// As the per-command path: the amount, the merchant (none yet: elsewhere), the shopper,
    /// the no-PIN limits, then the rule.
    fn payment(
        &self,
        cur: Currency,
        k: Kind,
        guard: Option<&NoPinGuard>,
    ) -> Result<Option<(Plan, Parties)>, LedgerError> {
        let Kind::Payment {
            at,
            shopper,
            amount,
            description,
        } = k
        else {
            return Err(LedgerError::Storage("not a payment".into()));
        };
        let amount = ledger::check_amount(amount, cur)?;
        let Some(&merchant) = self.merchants.get(&at.merchant) else {
            return Ok(None);
        };
        let till = *self
            .tills
            .get(&merchant)
            .ok_or_else(|| LedgerError::Storage(format!("merchant {} has no till", at.merchant)))?;
        let s = self.shopper(shopper)?;
        self.within_limits(guard, shopper, amount)?;
        let (account, till) = (self.get(merchant)?, self.get(till)?);
        let m = ledger::Merchant {
            account: &account.core,
            till: &till.core,
        };
        let plan = ledger::payment(amount, &s.core, m, &at.kiosk_id, description)?;
        let parties = Parties {
            shopper: s.name.clone(),
            merchant: Some(account.name.clone()),
            counterparty: None,
            kiosk_id: Some(at.kiosk_id),
        };
        Ok(Some((plan, parties)))
    }

    /// As the per-command path: the amount, the payer, the recipient, the no-PIN limits,
    /// then the rule.
    fn transfer(
        &self,
        cur: Currency,
        k: Kind,
        guard: Option<&NoPinGuard>,
    ) -> Result<Option<(Plan, Parties)>, LedgerError> {
        let Kind::Transfer {
            at,
            from,
            to,
            amount,
            note,
        } = k
        else {
            return Err(LedgerError::Storage("not a transfer".into()));
        };
        let amount = ledger::check_amount(amount, cur)?;
        let payer = self.shopper(from)?;
        let to = *self
            .shoppers
            .get(&to)
            .ok_or(LedgerError::UnknownAccount(to))?;
        let recipient = self.shopper(to)?;
        self.within_limits(guard, from, amount)?;
        let kiosk = at.map(|k| k.kiosk_id);
        let plan = ledger::transfer(amount, &payer.core, &recipient.core, kiosk.clone(), note)?;
        let parties = Parties {
            shopper: payer.name.clone(),
            merchant: None,
            counterparty: Some(recipient.name.clone()),
            kiosk_id: kiosk,
        };
        Ok(Some((plan, parties)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{Account, AccountKind, Status};
    use crate::store::KioskRef;
    use palmline_shared::Money;

    const EUR: Currency = Currency::EUR;

    fn acct(id: i64, name: &str, kind: AccountKind, balance: i64, merchant: Option<i64>) -> Loaded {
        Loaded {
            acct: Acct {
                name: name.into(),
                core: Account {
                    id,
                    kind,
                    status: Status::Active,
                    balance,
                    currency: EUR,
                },
            },
            merchant,
        }
    }

    fn books() -> Books {
        Books::new(rows(), Spent::default())
    }

    fn rows() -> Vec<Loaded> {
        vec![
            acct(1, "shop", AccountKind::Merchant, 0, None),
            acct(2, "till:shop", AccountKind::Till, 0, Some(1)),
            acct(3, "ann", AccountKind::Shopper, 500, None),
            acct(4, "ben", AccountKind::Shopper, 0, None),
        ]
    }

    fn pay(shopper: i64, minor: i64, merchant: &str) -> Movement {
        let kind = Kind::Payment {
            at: KioskRef {
                kiosk_id: "k".into(),
                merchant: merchant.into(),
            },
            shopper,
            amount: Money::from_minor(minor, EUR),
            description: None,
        };
        Movement { kind, guard: None }
    }

    fn send(from: i64, to: &str, minor: i64) -> Movement {
        let kind = Kind::Transfer {
            at: None,
            from,
            to: to.into(),
            amount: Money::from_minor(minor, EUR),
            note: None,
        };
        Movement { kind, guard: None }
    }

    /// `m` made without the PIN, in `session` (none: a palm payment); limits 1.00 a
    /// session, 1.50 a day.
    fn no_pin(m: Movement, session: Option<u8>, pin_set: bool) -> Movement {
        use crate::limits::NoPinLimits;
        let guard = NoPinGuard {
            session_hash: session.map(|s| [s; 32]),
            limits: NoPinLimits {
                per_session: Money::from_minor(100, EUR),
                per_day: Money::from_minor(150, EUR),
            },
            pin_set,
        };
        Movement {
            guard: Some(guard),
            ..m
        }
    }

    #[test]
    fn no_pin_limits_count_what_was_spent_before_and_earlier_in_the_batch() {
        let spent = Spent {
            today: HashMap::from([(3, 20)]),
            sessions: HashMap::from([([1; 32], 20)]),
        };
        let mut b = Books::new(rows(), spent);
        // Session 1 has 0.80 left of its 1.00; the day 1.30 of its 1.50.
        assert!(matches!(
            b.decide(EUR, no_pin(pay(3, 60, "shop"), Some(1), true)),
            Decision::Moved(_, _, Some(NoPin { session: Some(s) })) if s == [1; 32]
        ));
        assert!(matches!(
            b.decide(EUR, no_pin(send(3, "ben", 30), Some(1), true)),
            Decision::Refused(LedgerError::PinRequired)
        ));
        // Another session: 0.70 of the day left; a palm payment has no session.
        assert!(matches!(
            b.decide(EUR, no_pin(send(3, "ben", 70), Some(2), true)),
            Decision::Moved(_, _, Some(NoPin { session: Some(_) }))
        ));
        assert!(matches!(
            b.decide(EUR, no_pin(pay(3, 1, "shop"), None, false)),
            Decision::Refused(LedgerError::PinNotSet)
        ));
        // With the PIN the day's sum does not apply; a refusal moved nothing.
        assert!(matches!(
            b.decide(EUR, pay(3, 100, "shop")),
            Decision::Moved(_, _, None)
        ));
        assert_eq!(b.spent.today[&3], 150);
        assert_eq!(b.spent.sessions[&[1; 32]], 80);
        assert_eq!(b.changed(), vec![(1, 0, 160), (3, 500, 270), (4, 0, 70)]);
    }

    #[test]
    fn each_movement_sees_the_balances_the_earlier_ones_left() {
        let mut b = books();
        assert!(matches!(
            b.decide(EUR, pay(3, 400, "shop")),
            Decision::Moved(..)
        ));
        // 100 left: refused, and the refusal changes nothing.
        assert!(matches!(
            b.decide(EUR, send(3, "ben", 200)),
            Decision::Refused(LedgerError::InsufficientFunds)
        ));
        assert!(matches!(
            b.decide(EUR, send(3, "ben", 100)),
            Decision::Moved(..)
        ));
        assert!(matches!(
            b.decide(EUR, pay(4, 60, "shop")),
            Decision::Moved(..)
        ));
        // Each account once, from what was loaded to where the batch left it.
        assert_eq!(b.changed(), vec![(1, 0, 460), (3, 500, 0), (4, 0, 40)]);
    }

    #[test]
    fn unknown_parties_are_answered_in_the_per_command_order() {
        let mut b = books();
        assert!(matches!(
            b.decide(EUR, pay(3, 1, "new")),
            Decision::Elsewhere
        ));
        assert!(matches!(
            b.decide(EUR, pay(9, 1, "shop")),
            Decision::Refused(LedgerError::UnknownAccount(n)) if n == "#9"
        ));
        assert!(matches!(
            b.decide(EUR, send(9, "nobody", 1)),
            Decision::Refused(LedgerError::UnknownAccount(n)) if n == "#9"
        ));
        assert!(matches!(
            b.decide(EUR, send(3, "nobody", 1)),
            Decision::Refused(LedgerError::UnknownAccount(n)) if n == "nobody"
        ));
        assert!(matches!(
            b.decide(EUR, send(3, "ann", 0)),
            Decision::Refused(LedgerError::InvalidAmount(_))
        ));
        assert!(b.changed().is_empty());
    }
}
