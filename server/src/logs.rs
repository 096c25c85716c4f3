//! `serve`'s log lines on stderr: text for people, or one JSON object per line
//! (`--log-format json`) for a log shipper, each carrying the fields of its spans (a
//! request's `request{id, method, route}`, from `api::request_id`).
//!
//! What is logged never includes a password, PIN, session or cashier token, template or key
//! (server/tests/logs.rs greps every line for them): log ids, counts and error kinds, never a
//! request's body or headers.

use crate::config::LogFormat;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber; `RUST_LOG` filters (default `info`).
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .init(),
    }
}
