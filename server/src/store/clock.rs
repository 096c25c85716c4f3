//! The stores' clock and timestamp format: UTC text of a fixed width
//! (`YYYY-MM-DDTHH:MM:SS.ffffffZ`) that sorts lexically, so both stores order, compare and
//! cut days alike. The ledger core never reads this clock; stores stamp what it decided.

use super::LedgerError;

/// Current UTC time in the fixed-width format.
pub fn now_text() -> String {
    format_ts(time::OffsetDateTime::now_utc())
}

pub fn format_ts(t: time::OffsetDateTime) -> String {
    let f = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
    );
    t.to_offset(time::UtcOffset::UTC)
        .format(&f)
        .expect("formatting a UTC time cannot fail")
}

pub fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Today's UTC date, `YYYY-MM-DD`.
pub fn today() -> String {
    now_text()[..10].to_string()
}

/// A Unix time in the fixed-width format.
pub fn ts_of(unix: i64) -> Result<String, LedgerError> {
    let t = time::OffsetDateTime::from_unix_timestamp(unix)
        .map_err(|e| LedgerError::Storage(e.to_string()))?;
    Ok(format_ts(t))
}

/// The bounds `[from, to)` of one UTC day given as `YYYY-MM-DD`, as timestamp prefixes.
pub fn day_bounds(date: &str) -> Result<(String, String), LedgerError> {
    let f = time::macros::format_description!("[year]-[month]-[day]");
    let d = time::Date::parse(date, &f)
        .map_err(|_| LedgerError::InvalidAmount(format!("bad date {date:?}, want YYYY-MM-DD")))?;
    let next = d
        .next_day()
        .ok_or_else(|| LedgerError::InvalidAmount("date out of range".into()))?;
    Ok((format!("{d}T00:00:00"), format!("{next}T00:00:00")))
}
