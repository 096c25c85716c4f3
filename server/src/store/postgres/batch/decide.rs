//! A batch's decisions, in memory: the accounts the batch locked, each movement put to the
//! ledger core in order against the balances as the earlier movements left them. No SQL and
//! no rule here: the rules are [`crate::ledger`]'s; this only finds the accounts a movement
//! names, in the order the per-command path checks them, and keeps the balances.

use super::Movement;
use crate::ledger::{self, Plan};
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
    /// Decided: write the plan.
    Moved(Plan, Parties),
    /// For the per-command path (a merchant not seen before).
    Elsewhere,
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
}

impl Books {
    pub fn new(rows: Vec<Loaded>) -> Books {
        let mut b = Books {
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

    /// Decides `m` and, if it moves money, takes its legs into the balances.
    pub fn decide(&mut self, cur: Currency, m: Movement) -> Decision {
        let decided = match m {
            Movement::Payment { .. } => self.payment(cur, m),
            Movement::Transfer { .. } => self.transfer(cur, m),
        };
        match decided {
            Ok(Some((plan, parties))) => {
                self.apply(&plan);
                Decision::Moved(plan, parties)
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
    /// then the rule.
    fn payment(&self, cur: Currency, m: Movement) -> Result<Option<(Plan, Parties)>, LedgerError> {
        let Movement::Payment {
            at,
            shopper,
            amount,
            description,
        } = m
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

    /// As the per-command path: the amount, the payer, the recipient, then the rule.
    fn transfer(&self, cur: Currency, m: Movement) -> Result<Option<(Plan, Parties)>, LedgerError> {
        let Movement::Transfer {
            at,
            from,
            to,
            amount,
            note,
        } = m
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
        Books::new(vec![
            acct(1, "shop", AccountKind::Merchant, 0, None),
            acct(2, "till:shop", AccountKind::Till, 0, Some(1)),
            acct(3, "ann", AccountKind::Shopper, 500, None),
            acct(4, "ben", AccountKind::Shopper, 0, None),
        ])
    }

    fn pay(shopper: i64, minor: i64, merchant: &str) -> Movement {
        Movement::Payment {
            at: KioskRef {
                kiosk_id: "k".into(),
                merchant: merchant.into(),
            },
            shopper,
            amount: Money::from_minor(minor, EUR),
            description: None,
        }
    }

    fn send(from: i64, to: &str, minor: i64) -> Movement {
        Movement::Transfer {
            at: None,
            from,
            to: to.into(),
            amount: Money::from_minor(minor, EUR),
            note: None,
        }
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
