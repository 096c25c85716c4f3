//! The ledger's rules, with no database in it.
//!
//! Given a money command and the current state of the accounts it touches, this module
//! decides whether the movement may happen and, if so, exactly what to write: the posting
//! legs (which sum to zero), each touched account's balance after, and the transaction
//! record. A store only loads the accounts (creating a merchant's accounts on first sight),
//! calls one function here, persists the [`Plan`] it gets back and commits; SQLite and
//! PostgreSQL share these rules instead of each writing its own.
//!
//! This module must never run SQL, read a clock or do I/O: everything it needs arrives as
//! arguments, so every rule is tested here without a database.

mod amount;
mod plan;
mod rules;
#[cfg(test)]
mod tests;

pub use amount::{check_amount, Amount};
pub use plan::{Leg, Plan, TxRecord};
pub use rules::{
    deposit, payment, refund, transfer, withdrawal, within_no_pin_limits, Cashier, Merchant,
    NoPinSpent, PaymentState,
};

use palmline_shared::Currency;
use serde::{Deserialize, Serialize};

/// An account's id in the store.
pub type AccountId = i64;

/// What an account is for: shoppers' wallets must never go below zero; a merchant's
/// account takes payments; its till is the cash drawer that deposits and withdrawals move.
/// (Serde: as in the database, `shopper`, `merchant`, `till`.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountKind {
    Shopper,
    Merchant,
    Till,
}

impl AccountKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AccountKind::Shopper => "shopper",
            AccountKind::Merchant => "merchant",
            AccountKind::Till => "till",
        }
    }

    pub fn parse(s: &str) -> Option<AccountKind> {
        Some(match s {
            "shopper" => AccountKind::Shopper,
            "merchant" => AccountKind::Merchant,
            "till" => AccountKind::Till,
            _ => return None,
        })
    }
}

/// Whether an account may take part in new movements. (Serde: `active`, `frozen`.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Active,
    Frozen,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Active => "active",
            Status::Frozen => "frozen",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Some(match s {
            "active" => Status::Active,
            "frozen" => Status::Frozen,
            _ => return None,
        })
    }
}

/// What a transaction is. (Serde: as in the database, `deposit`, `withdrawal`, ...)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TxKind {
    Deposit,
    Withdrawal,
    Payment,
    Transfer,
    Refund,
}

impl TxKind {
    pub const ALL: [TxKind; 5] = [
        TxKind::Deposit,
        TxKind::Withdrawal,
        TxKind::Payment,
        TxKind::Transfer,
        TxKind::Refund,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TxKind::Deposit => "deposit",
            TxKind::Withdrawal => "withdrawal",
            TxKind::Payment => "payment",
            TxKind::Transfer => "transfer",
            TxKind::Refund => "refund",
        }
    }

    pub fn parse(s: &str) -> Option<TxKind> {
        TxKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// The state of one account as the store loaded it, just before the command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub id: AccountId,
    pub kind: AccountKind,
    pub status: Status,
    /// Minor units of `currency`.
    pub balance: i64,
    pub currency: Currency,
}

impl Account {
    pub fn is_frozen(&self) -> bool {
        self.status == Status::Frozen
    }
}
