//! The stores' clock and timestamp format: UTC text of a fixed width
//! (`YYYY-MM-DDTHH:MM:SS.ffffffZ`) that sorts lexically, so both stores order, compare and
//! cut days alike. [`Timestamp`] is that instant as a type: what the store answers, read
//! back from the text and written out as exactly the same text (the API's JSON and the
//! stored idempotency answers depend on that). The ledger core never reads this clock;
//! stores stamp what it decided.

use super::LedgerError;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The fixed-width text of a store timestamp.
const FORMAT: &[time::format_description::BorrowedFormatItem<'static>] = time::macros::format_description!(
    "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
);

/// A UTC instant at the stores' precision (whole microseconds), so that a timestamp made
/// now equals the same timestamp read back from its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(time::OffsetDateTime);

/// Text that is not a store timestamp.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a store timestamp (YYYY-MM-DDTHH:MM:SS.ffffffZ): {0:?}")]
pub struct BadTimestamp(pub String);

impl Timestamp {
    pub fn now() -> Timestamp {
        Timestamp::at(time::OffsetDateTime::now_utc())
    }

    /// `t` in UTC, cut to whole microseconds.
    pub fn at(t: time::OffsetDateTime) -> Timestamp {
        let t = t.to_offset(time::UtcOffset::UTC);
        let micros = t.nanosecond() / 1_000 * 1_000;
        Timestamp(
            t.replace_nanosecond(micros)
                .expect("fewer nanoseconds stay valid"),
        )
    }

    /// A Unix time in seconds.
    pub fn from_unix(unix: i64) -> Result<Timestamp, LedgerError> {
        time::OffsetDateTime::from_unix_timestamp(unix)
            .map(Timestamp::at)
            .map_err(|e| LedgerError::Storage(e.to_string()))
    }

    /// Reads the fixed-width text, and nothing else (no other offset, no other precision).
    pub fn parse(text: &str) -> Result<Timestamp, BadTimestamp> {
        time::PrimitiveDateTime::parse(text, FORMAT)
            .map(|t| Timestamp(t.assume_utc()))
            .map_err(|_| BadTimestamp(text.to_string()))
    }

    /// The fixed-width text: the one way a timestamp is written, in the database and on
    /// the wire.
    pub fn to_text(self) -> String {
        self.0
            .format(FORMAT)
            .expect("formatting a UTC time cannot fail")
    }

    pub fn unix(self) -> i64 {
        self.0.unix_timestamp()
    }

    /// The UTC day.
    pub fn date(self) -> time::Date {
        self.0.date()
    }
}

impl std::fmt::Display for Timestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_text())
    }
}

/// As its text, the shape stored idempotency answers have always had.
impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_text())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        let text = std::borrow::Cow::<'de, str>::deserialize(d)?;
        Timestamp::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Current UTC time in the fixed-width format.
pub fn now_text() -> String {
    Timestamp::now().to_text()
}

pub fn format_ts(t: time::OffsetDateTime) -> String {
    Timestamp::at(t).to_text()
}

pub fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Today's UTC date, `YYYY-MM-DD`.
pub fn today() -> String {
    day_text(Timestamp::now().date())
}

/// A Unix time in the fixed-width format.
pub fn ts_of(unix: i64) -> Result<String, LedgerError> {
    Timestamp::from_unix(unix).map(Timestamp::to_text)
}

/// The text of a UTC day, `YYYY-MM-DD`.
const DAY: &[time::format_description::BorrowedFormatItem<'static>] =
    time::macros::format_description!("[year]-[month]-[day]");

/// Reads a `YYYY-MM-DD` day (a report's date); `None` if it is not one.
pub fn parse_day(date: &str) -> Option<time::Date> {
    time::Date::parse(date, DAY).ok()
}

/// A day as `YYYY-MM-DD`, as [`parse_day`] reads it.
pub fn day_text(d: time::Date) -> String {
    d.format(DAY).expect("formatting a date cannot fail")
}

/// The bounds `[from, to)` of one UTC day, as timestamp prefixes.
pub fn day_bounds(d: time::Date) -> Result<(String, String), LedgerError> {
    let next = d
        .next_day()
        .ok_or_else(|| LedgerError::InvalidAmount("date out of range".into()))?;
    Ok((format!("{d}T00:00:00"), format!("{next}T00:00:00")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timestamp_reads_back_as_the_same_text_and_instant() {
        let text = "2024-03-05T07:08:09.012345Z";
        let t = Timestamp::parse(text).unwrap();
        assert_eq!(t.to_text(), text);
        assert_eq!(serde_json::to_string(&t).unwrap(), format!("\"{text}\""));
        let back: Timestamp = serde_json::from_str(&format!("\"{text}\"")).unwrap();
        assert_eq!(back, t);
        assert_eq!(day_text(t.date()), "2024-03-05");
        assert_eq!(parse_day("2024-03-05"), Some(t.date()));
        assert_eq!(parse_day("2024-02-30"), None);
        let now = Timestamp::now();
        assert_eq!(Timestamp::parse(&now.to_text()), Ok(now));
        let unix = Timestamp::from_unix(1_700_000_123).unwrap();
        assert_eq!(unix.unix(), 1_700_000_123);
        assert_eq!(unix.to_text(), "2023-11-14T22:15:23.000000Z");
    }

    #[test]
    fn only_the_fixed_width_text_is_a_timestamp() {
        for bad in [
            "2024-02-30T00:00:00.000000Z",
            "2024-03-05T07:08:09Z",
            "2024-03-05T07:08:09.012345+01:00",
            "2024-03-05 07:08:09.012345Z",
            "yesterday",
            "",
        ] {
            assert!(Timestamp::parse(bad).is_err(), "{bad}");
        }
    }
}
