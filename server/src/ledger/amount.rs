//! The one amount check: every money command's amount passes here, at the API's edge and
//! again in the core, with the same error codes.

use crate::store::LedgerError;
use palmline_shared::money::MAX_MINOR;
use palmline_shared::{Currency, Money};

/// An amount a command may move: in the ledger's currency, above zero and at most
/// [`MAX_MINOR`]. Only [`check_amount`] makes one, so the rules never see another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Amount(Money);

impl Amount {
    pub fn money(self) -> Money {
        self.0
    }

    pub fn minor(self) -> i64 {
        self.0.minor()
    }

    pub fn currency(self) -> Currency {
        self.0.currency()
    }
}

/// Checks an amount against the ledger's currency: another currency is
/// [`LedgerError::UnsupportedCurrency`] (`unsupported_currency`); zero, negative or
/// oversized is [`LedgerError::InvalidAmount`] (`invalid_amount`).
pub fn check_amount(amount: Money, ledger: Currency) -> Result<Amount, LedgerError> {
    if amount.currency() != ledger {
        return Err(LedgerError::UnsupportedCurrency(format!(
            "this server keeps {ledger}, not {}",
            amount.currency()
        )));
    }
    if !amount.is_positive() {
        return Err(LedgerError::InvalidAmount(
            "amount must be greater than zero".into(),
        ));
    }
    if amount.minor() > MAX_MINOR {
        return Err(LedgerError::InvalidAmount("amount is too large".into()));
    }
    Ok(Amount(amount))
}
