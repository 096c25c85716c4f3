//! A request id per HTTP request: kept from the caller's `x-request-id` when it is short and
//! plain, made up otherwise, sent back on the answer, and the `id` of a `request` span
//! (with the method and the route *template*) around everything the request logs.
//!
//! Never puts the raw path, a header's value other than a valid id, or a body in a span or
//! a log line: those carry account ids, tokens and templates.

use axum::extract::{MatchedPath, Request};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use palmline_shared::api::{MAX_REQUEST_ID_LEN, REQUEST_ID_HEADER};
use std::time::Instant;
use tracing::Instrument;

/// A request id: 1 to [`MAX_REQUEST_ID_LEN`] characters of `[A-Za-z0-9_-]`, so it is safe
/// in a header and a log line as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(String);

impl RequestId {
    /// The caller's id, if it is one we keep.
    pub fn parse(raw: &[u8]) -> Option<RequestId> {
        let plain = |b: &u8| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_';
        if raw.is_empty() || raw.len() > MAX_REQUEST_ID_LEN || !raw.iter().all(plain) {
            return None;
        }
        Some(RequestId(String::from_utf8(raw.to_vec()).ok()?))
    }

    /// A new random id (128 bits, hex).
    pub fn generate() -> RequestId {
        let bytes: [u8; 16] = rand::random();
        RequestId(hex::encode(bytes))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The middleware: a `request{id, method, route}` span around the request, one
/// `request answered` line (status, milliseconds) at its end, and the id on the answer.
pub async fn request_id(req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| RequestId::parse(v.as_bytes()))
        .unwrap_or_else(RequestId::generate);
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or(crate::metrics::UNMATCHED_ROUTE, MatchedPath::as_str);
    let span = tracing::info_span!(
        "request",
        id = id.as_str(),
        method = super::method_label(req.method()),
        route,
    );
    let started = Instant::now();
    let mut resp = next.run(req).instrument(span.clone()).await;
    span.in_scope(|| {
        tracing::info!(
            status = resp.status().as_u16(),
            ms = started.elapsed().as_millis() as u64,
            "request answered"
        );
    });
    let value = HeaderValue::from_str(id.as_str()).expect("a request id is a valid header value");
    resp.headers_mut().insert(REQUEST_ID_HEADER, value);
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_short_plain_ids() {
        assert_eq!(
            RequestId::parse(b"abc-DEF_123").map(|i| i.0),
            Some("abc-DEF_123".into())
        );
        assert!(RequestId::parse(&[b'a'; MAX_REQUEST_ID_LEN]).is_some());
        assert!(RequestId::parse(&[b'a'; MAX_REQUEST_ID_LEN + 1]).is_none());
        assert!(RequestId::parse(b"").is_none());
        for bad in [&b"a b"[..], b"a\"b", b"a\nb", b"{x}", "é".as_bytes()] {
            assert!(RequestId::parse(bad).is_none(), "{bad:?}");
        }
        let made = RequestId::generate();
        assert_eq!(
            RequestId::parse(made.as_str().as_bytes()),
            Some(made.clone())
        );
        assert_ne!(made, RequestId::generate());
    }
}
