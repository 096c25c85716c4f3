//! Money: an integer count of minor units with an ISO 4217 currency.
//!
//! There is no float anywhere on this path: amounts are parsed from decimal strings
//! ("12.34") digit by digit, printed back the same way, and every arithmetic step is
//! checked. A value of this type is always valid for its currency; invalid input is a
//! typed [`MoneyError`], never a panic.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// An ISO 4217 currency this system knows, with its number of minor-unit digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency {
    code: [u8; 3],
    exponent: u8,
}

/// Currencies accepted on the wire. Unknown codes are rejected rather than guessed.
const KNOWN: &[(&str, u8)] = &[
    ("AUD", 2),
    ("BRL", 2),
    ("CAD", 2),
    ("CHF", 2),
    ("CNY", 2),
    ("CZK", 2),
    ("DKK", 2),
    ("EUR", 2),
    ("GBP", 2),
    ("HKD", 2),
    ("HUF", 2),
    ("INR", 2),
    ("JPY", 0),
    ("KRW", 0),
    ("MXN", 2),
    ("NOK", 2),
    ("NZD", 2),
    ("PLN", 2),
    ("SEK", 2),
    ("SGD", 2),
    ("USD", 2),
    ("ZAR", 2),
];

impl Currency {
    pub const EUR: Currency = Currency {
        code: *b"EUR",
        exponent: 2,
    };
    pub const USD: Currency = Currency {
        code: *b"USD",
        exponent: 2,
    };

    /// Looks up an ISO code (upper case, exactly three letters).
    pub fn from_code(code: &str) -> Result<Currency, MoneyError> {
        KNOWN
            .iter()
            .find(|(c, _)| *c == code)
            .map(|(c, e)| Currency {
                code: c.as_bytes().try_into().expect("three ASCII letters"),
                exponent: *e,
            })
            .ok_or_else(|| MoneyError::UnknownCurrency(code.chars().take(8).collect()))
    }

    pub fn code(&self) -> &str {
        std::str::from_utf8(&self.code).expect("currency codes are ASCII")
    }

    /// Number of digits after the decimal point (2 for EUR, 0 for JPY).
    pub fn exponent(&self) -> u8 {
        self.exponent
    }

    fn scale(&self) -> i64 {
        10i64.pow(u32::from(self.exponent))
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl Serialize for Currency {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.code())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Currency::from_code(&s).map_err(serde::de::Error::custom)
    }
}

impl FromStr for Currency {
    type Err = MoneyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Currency::from_code(s)
    }
}

/// Why an amount was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("unknown currency {0:?}")]
    UnknownCurrency(String),
    #[error("amount {0:?} is not a decimal number like 12.34")]
    Malformed(String),
    #[error("amount has more than {0} decimal places")]
    TooPrecise(u8),
    #[error("amount is too large")]
    Overflow,
    #[error("amount must be greater than zero")]
    NotPositive,
    #[error("currencies differ: {0} and {1}")]
    CurrencyMismatch(Currency, Currency),
}

/// An amount of money: signed minor units in one currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Money {
    minor: i64,
    currency: Currency,
}

/// Largest amount accepted from outside: 10^15 minor units (10 trillion euros). Keeps
/// every sum of a realistic ledger far from i64 overflow while still being checked.
pub const MAX_MINOR: i64 = 1_000_000_000_000_000;

impl Money {
    pub fn from_minor(minor: i64, currency: Currency) -> Money {
        Money { minor, currency }
    }

    pub fn zero(currency: Currency) -> Money {
        Money { minor: 0, currency }
    }

    pub fn minor(&self) -> i64 {
        self.minor
    }

    pub fn currency(&self) -> Currency {
        self.currency
    }

    pub fn is_positive(&self) -> bool {
        self.minor > 0
    }

    /// Strict decimal parsing: optional leading '-', digits, optional '.' and at most
    /// `exponent` digits. No exponent notation, no spaces, no '+', no thousands separators.
    pub fn parse(s: &str, currency: Currency) -> Result<Money, MoneyError> {
        let malformed = || MoneyError::Malformed(s.chars().take(32).collect());
        let (neg, body) = match s.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        let (int_part, frac_part) = match body.split_once('.') {
            Some((i, f)) => (i, Some(f)),
            None => (body, None),
        };
        if int_part.is_empty() || !int_part.bytes().all(|b| b.is_ascii_digit()) {
            return Err(malformed());
        }
        let frac = match frac_part {
            Some(f) if f.is_empty() || !f.bytes().all(|b| b.is_ascii_digit()) => {
                return Err(malformed())
            }
            Some(f) => f,
            None => "",
        };
        let exp = currency.exponent;
        if frac.len() > usize::from(exp) {
            return Err(MoneyError::TooPrecise(exp));
        }
        let mut minor: i64 = 0;
        for b in int_part.bytes() {
            minor = minor
                .checked_mul(10)
                .and_then(|m| m.checked_add(i64::from(b - b'0')))
                .ok_or(MoneyError::Overflow)?;
        }
        minor = minor
            .checked_mul(currency.scale())
            .ok_or(MoneyError::Overflow)?;
        let mut frac_value: i64 = 0;
        for i in 0..usize::from(exp) {
            let digit = frac.as_bytes().get(i).map_or(0, |b| i64::from(b - b'0'));
            frac_value = frac_value * 10 + digit;
        }
        minor = minor.checked_add(frac_value).ok_or(MoneyError::Overflow)?;
        if minor > MAX_MINOR {
            return Err(MoneyError::Overflow);
        }
        Ok(Money {
            minor: if neg { -minor } else { minor },
            currency,
        })
    }

    /// Parses an amount that must be strictly positive (what every request carries).
    pub fn parse_positive(s: &str, currency: Currency) -> Result<Money, MoneyError> {
        let m = Money::parse(s, currency)?;
        if m.minor <= 0 {
            return Err(MoneyError::NotPositive);
        }
        Ok(m)
    }

    pub fn checked_add(self, other: Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        self.minor
            .checked_add(other.minor)
            .map(|minor| Money { minor, ..self })
            .ok_or(MoneyError::Overflow)
    }

    pub fn checked_sub(self, other: Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        self.minor
            .checked_sub(other.minor)
            .map(|minor| Money { minor, ..self })
            .ok_or(MoneyError::Overflow)
    }

    pub fn checked_neg(self) -> Result<Money, MoneyError> {
        self.minor
            .checked_neg()
            .map(|minor| Money { minor, ..self })
            .ok_or(MoneyError::Overflow)
    }

    fn same_currency(&self, other: Money) -> Result<(), MoneyError> {
        if self.currency != other.currency {
            return Err(MoneyError::CurrencyMismatch(self.currency, other.currency));
        }
        Ok(())
    }

    /// The amount as a decimal string without the currency ("12.34", "-0.05", "500").
    pub fn amount_string(&self) -> String {
        let exp = usize::from(self.currency.exponent);
        let abs = self.minor.unsigned_abs();
        let sign = if self.minor < 0 { "-" } else { "" };
        if exp == 0 {
            return format!("{sign}{abs}");
        }
        let scale = 10u64.pow(exp as u32);
        format!("{sign}{}.{:0exp$}", abs / scale, abs % scale, exp = exp)
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.amount_string(), self.currency)
    }
}

/// Wire form: `{"amount": "12.34", "currency": "EUR"}`. The amount is a string so that no
/// JSON number (a float in most parsers) ever carries money.
#[derive(Serialize, Deserialize)]
struct MoneyWire {
    amount: String,
    currency: String,
}

impl Serialize for Money {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        MoneyWire {
            amount: self.amount_string(),
            currency: self.currency.code().to_string(),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Money {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Only the object form: a derived `Deserialize` would also read `["12.34", "EUR"]`.
        let w = d.deserialize_map(MoneyWireVisitor)?;
        let c = Currency::from_code(&w.currency).map_err(serde::de::Error::custom)?;
        Money::parse(&w.amount, c).map_err(serde::de::Error::custom)
    }
}

struct MoneyWireVisitor;

impl<'de> serde::de::Visitor<'de> for MoneyWireVisitor {
    type Value = MoneyWire;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(r#"an amount as {"amount": "12.34", "currency": "EUR"}"#)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<MoneyWire, A::Error> {
        MoneyWire::deserialize(serde::de::value::MapAccessDeserializer::new(map))
    }
}

/// The OpenAPI schema of [`Money`]'s wire form (`{"amount": "12.34", "currency": "EUR"}`),
/// written by hand because its serde form is.
#[cfg(feature = "openapi")]
mod openapi {
    use super::{Money, KNOWN};
    use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
    use utoipa::openapi::RefOr;

    /// The syntax [`Money::parse`] accepts (its range and precision checks come after).
    pub const AMOUNT_PATTERN: &str = r"^-?[0-9]+(\.[0-9]+)?$";

    impl utoipa::PartialSchema for Money {
        fn schema() -> RefOr<Schema> {
            let amount = ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(AMOUNT_PATTERN))
                .description(Some(
                    "decimal string with at most the currency's minor digits; never a JSON number",
                ))
                .examples(["12.34"]);
            let currency = ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(KNOWN.iter().map(|(code, _)| *code)))
                .description(Some(
                    "ISO 4217 code; requests must use the server's currency",
                ))
                .examples(["EUR"]);
            ObjectBuilder::new()
                .property("amount", amount)
                .property("currency", currency)
                .required("amount")
                .required("currency")
                .description(Some(
                    "an amount of money: integer minor units on the server",
                ))
                .into()
        }
    }

    impl utoipa::ToSchema for Money {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn eur(s: &str) -> Result<Money, MoneyError> {
        Money::parse(s, Currency::EUR)
    }

    #[test]
    fn parses_strict_decimals() {
        assert_eq!(eur("12.34").unwrap().minor(), 1234);
        assert_eq!(eur("12.3").unwrap().minor(), 1230);
        assert_eq!(eur("12").unwrap().minor(), 1200);
        assert_eq!(eur("0.01").unwrap().minor(), 1);
        assert_eq!(eur("-0.05").unwrap().minor(), -5);
        assert_eq!(
            Money::parse("500", Currency::from_code("JPY").unwrap())
                .unwrap()
                .minor(),
            500
        );
    }

    #[test]
    fn rejects_sloppy_input() {
        for bad in [
            "", ".", "1.", ".5", "+1", "1e3", " 1", "1 ", "1,00", "0x10", "--1", "1.2.3", "NaN",
            "١٢",
        ] {
            assert!(
                matches!(eur(bad), Err(MoneyError::Malformed(_))),
                "{bad:?} was accepted"
            );
        }
        assert_eq!(eur("1.234"), Err(MoneyError::TooPrecise(2)));
        assert_eq!(
            Money::parse("1.5", Currency::from_code("JPY").unwrap()),
            Err(MoneyError::TooPrecise(0))
        );
        assert_eq!(eur("99999999999999999999"), Err(MoneyError::Overflow));
        assert_eq!(eur("10000000000000.01"), Err(MoneyError::Overflow));
        assert_eq!(
            Money::parse_positive("0.00", Currency::EUR),
            Err(MoneyError::NotPositive)
        );
        assert_eq!(
            Money::parse_positive("-3", Currency::EUR),
            Err(MoneyError::NotPositive)
        );
    }

    #[test]
    fn unknown_currency_is_refused() {
        assert!(matches!(
            Currency::from_code("XYZ"),
            Err(MoneyError::UnknownCurrency(_))
        ));
        assert!(Currency::from_code("eur").is_err());
        let r: Result<Money, _> = serde_json::from_str(r#"{"amount":"1.00","currency":"BTC"}"#);
        assert!(r.is_err());
    }

    #[test]
    fn arithmetic_is_checked() {
        let a = Money::from_minor(i64::MAX, Currency::EUR);
        assert_eq!(
            a.checked_add(Money::from_minor(1, Currency::EUR)),
            Err(MoneyError::Overflow)
        );
        assert!(matches!(
            Money::zero(Currency::EUR).checked_add(Money::zero(Currency::USD)),
            Err(MoneyError::CurrencyMismatch(..))
        ));
        assert_eq!(
            Money::from_minor(i64::MIN, Currency::EUR).checked_neg(),
            Err(MoneyError::Overflow)
        );
    }

    #[test]
    fn wire_form_is_a_string_amount() {
        let m = eur("7.05").unwrap();
        let j = serde_json::to_string(&m).unwrap();
        assert_eq!(j, r#"{"amount":"7.05","currency":"EUR"}"#);
        assert!(serde_json::from_str::<Money>(r#"{"amount":7.05,"currency":"EUR"}"#).is_err());
        assert_eq!(serde_json::from_str::<Money>(&j).unwrap(), m);
        // Found by schemathesis: a derived Deserialize also read the array form.
        let err = serde_json::from_str::<Money>(r#"["7.05","EUR"]"#).unwrap_err();
        assert!(err.to_string().contains("amount"), "{err}");
    }

    proptest! {
        #[test]
        fn display_parse_round_trip(minor in -MAX_MINOR..=MAX_MINOR) {
            let m = Money::from_minor(minor, Currency::EUR);
            prop_assert_eq!(eur(&m.amount_string()).unwrap(), m);
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,40}") {
            let _ = eur(&s);
        }
    }
}
