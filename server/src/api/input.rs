//! Request fields parsed at the edge, before any expensive work (a 1:N identification, an
//! argon2 hash, a writer round-trip): a field past its bound is refused here, and the error
//! never repeats the value it refuses.

use super::ApiError;
use crate::auth;
use palmline_shared::api::{
    ErrorCode, CASHIER_PIN_MAX, CASHIER_PIN_MIN, MAX_CASHIER_NAME_CHARS, MAX_TEMPLATE_B64_LEN,
    MAX_TEXT_CHARS,
};

/// Longest username (registration allows 3-32 of `a-z 0-9 . _ -`).
pub const MAX_USERNAME_LEN: usize = 32;
/// Longest password (characters).
pub const MAX_PASSWORD_CHARS: usize = 128;

fn invalid(msg: &'static str) -> ApiError {
    ApiError::new(ErrorCode::InvalidRequest, msg)
}

/// A username to look up (deposit, transfer, login): bounded, not yet known to exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username(String);

impl Username {
    pub fn lookup(s: String) -> Result<Username, ApiError> {
        if s.is_empty() || s.len() > MAX_USERNAME_LEN {
            return Err(invalid("username must be 1-32 characters"));
        }
        Ok(Username(s))
    }

    /// A username for a new account: the full rule.
    pub fn new_account(s: String) -> Result<Username, ApiError> {
        if !auth::valid_username(&s) {
            return Err(invalid(
                "username must be 3-32 of a-z 0-9 . _ - starting with a letter or digit",
            ));
        }
        Ok(Username(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// A password as typed: bounded (a new account's also needs 8 characters).
pub struct Password(String);

impl Password {
    pub fn for_login(s: String) -> Result<Password, ApiError> {
        if s.is_empty() || s.chars().count() > MAX_PASSWORD_CHARS {
            return Err(invalid("password must be 1-128 characters"));
        }
        Ok(Password(s))
    }

    pub fn new_account(s: String) -> Result<Password, ApiError> {
        if !auth::valid_password(&s) {
            return Err(invalid("password must be 8-128 characters"));
        }
        Ok(Password(s))
    }

    pub fn expose(self) -> String {
        self.0
    }
}

/// A PIN as typed: 4-8 digits.
pub struct Pin(String);

impl Pin {
    pub fn parse(s: String) -> Result<Pin, ApiError> {
        if !auth::valid_pin(&s) {
            return Err(invalid("PIN must be 4-8 digits"));
        }
        Ok(Pin(s))
    }

    pub fn optional(s: Option<String>) -> Result<Option<Pin>, ApiError> {
        s.map(Pin::parse).transpose()
    }

    pub fn expose(self) -> String {
        self.0
    }
}

/// A cashier's name: 1-32 characters, no control characters, no surrounding spaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CashierName(String);

impl CashierName {
    pub fn parse(s: String) -> Result<CashierName, ApiError> {
        let n = s.chars().take(MAX_CASHIER_NAME_CHARS + 1).count();
        if n == 0 || n > MAX_CASHIER_NAME_CHARS || s.chars().any(char::is_control) || s.trim() != s
        {
            return Err(invalid(
                "cashier name must be 1-32 characters without control characters or surrounding spaces",
            ));
        }
        Ok(CashierName(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// A cashier's PIN as typed: 4-12 digits.
pub struct CashierPin(String);

impl CashierPin {
    pub fn parse(s: String) -> Result<CashierPin, ApiError> {
        if !(CASHIER_PIN_MIN..=CASHIER_PIN_MAX).contains(&s.len())
            || !s.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(invalid("cashier PIN must be 4-12 digits"));
        }
        Ok(CashierPin(s))
    }

    pub fn expose(self) -> String {
        self.0
    }
}

/// A merchant's name as kiosk certificates carry it (1-64 printable characters).
pub fn merchant(m: &str) -> Result<(), ApiError> {
    if !crate::pki::valid_merchant(m) {
        return Err(invalid(
            "merchant must be 1-64 printable characters without surrounding spaces",
        ));
    }
    Ok(())
}

/// Free text (description, note, reason): at most [`MAX_TEXT_CHARS`] characters.
pub fn free_text(text: &Option<String>, what: &'static str) -> Result<(), ApiError> {
    // Count at most one past the bound: a 60 KB string costs no more than a short one.
    if text
        .as_ref()
        .is_some_and(|d| d.chars().take(MAX_TEXT_CHARS + 1).count() > MAX_TEXT_CHARS)
    {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            format!("{what} over {MAX_TEXT_CHARS} characters"),
        ));
    }
    Ok(())
}

/// A base64 template: bounded before it is decoded.
pub fn template(b64: &str) -> Result<(), ApiError> {
    if b64.len() > MAX_TEMPLATE_B64_LEN {
        return Err(ApiError::new(
            ErrorCode::InvalidTemplate,
            "template over the size bound",
        ));
    }
    Ok(())
}

/// A report's UTC day, `YYYY-MM-DD` (the message names the refused text, as it always has:
/// a query parameter, not a secret).
pub fn report_date(date: &str) -> Result<time::Date, ApiError> {
    crate::store::clock::parse_day(date).ok_or_else(|| {
        ApiError::new(
            ErrorCode::InvalidRequest,
            format!("bad date {date:?}, want YYYY-MM-DD"),
        )
    })
}

/// An e-mail address for a new account.
pub fn email(e: &str) -> Result<(), ApiError> {
    if !auth::valid_email(e) {
        return Err(invalid("invalid e-mail address"));
    }
    Ok(())
}

/// Shortens a message that may quote request content (a serde error names the value it
/// could not read) so that an over-long field is never echoed back: any word over 24
/// characters is left out, and the whole is cut at 160.
pub fn clip(msg: String) -> String {
    const MAX: usize = 160;
    const WORD: usize = 24;
    let mut out = String::with_capacity(msg.len().min(MAX + 4));
    for (i, word) in msg.split(' ').enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(if word.chars().count() > WORD {
            "…"
        } else {
            word
        });
        if out.len() > MAX {
            let mut end = MAX;
            while !out.is_char_boundary(end) {
                end -= 1;
            }
            out.truncate(end);
            out.push('…');
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_and_no_echo() {
        let long = "x".repeat(60_000);
        for e in [
            Username::lookup(long.clone()).unwrap_err(),
            Username::new_account(long.clone()).unwrap_err(),
            Password::for_login(long.clone()).err().unwrap(),
            Pin::parse(long.clone()).err().unwrap(),
            CashierName::parse(long.clone()).unwrap_err(),
            CashierPin::parse(long.clone()).err().unwrap(),
            merchant(&long).unwrap_err(),
            free_text(&Some(long.clone()), "description").unwrap_err(),
            template(&long).unwrap_err(),
        ] {
            assert!(e.message.len() < 100, "{}", e.message);
            assert!(!e.message.contains("xxxx"), "{}", e.message);
        }
        assert!(free_text(&Some("é".repeat(MAX_TEXT_CHARS)), "d").is_ok());
        assert!(CashierName::parse("Zoë K.".into()).is_ok());
        assert!(CashierName::parse("é".repeat(32)).is_ok());
        for bad in ["", " ann", "ann ", "a\nb", &"é".repeat(33)] {
            assert!(CashierName::parse(bad.into()).is_err(), "{bad:?}");
        }
        assert!(CashierPin::parse("0000".into()).is_ok());
        assert!(CashierPin::parse("123456789012".into()).is_ok());
        for bad in ["123", "1234567890123", "12a4", " 1234", "١٢٣٤"] {
            assert!(CashierPin::parse(bad.into()).is_err(), "{bad:?}");
        }
        assert_eq!(
            clip(format!("bad amount \"{long}\" here")),
            "bad amount … here"
        );
        assert!(clip("é ".repeat(200)).len() <= 164);
        assert_eq!(clip("short".into()), "short");
    }
}
