//! Prometheus metrics for operators (`GET /v1/admin/metrics`, admin certificate only): HTTP
//! requests by route template and status, latencies, identification, the writer's group
//! commits, lock-outs, rate-limit refusals and kiosks last seen.
//!
//! One [`Metrics`] per server, built with the [`AppState`](crate::api::AppState); the store
//! and the palm service register their own instruments into its registry. A label is only
//! ever a route *template*, a method, a status code, a fixed reason or a kiosk id from a
//! certificate: never a raw path, a username, a secret or anything from a request body.

use crate::limits::Factor;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};
use std::time::Duration;

/// The content type of [`Metrics::encode`]'s output (OpenMetrics text, which Prometheus
/// scrapes natively).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The route label of a request that matched no route (the raw path is never a label).
pub const UNMATCHED_ROUTE: &str = "unmatched";

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    method: String,
    route: String,
    status: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LockoutLabels {
    factor: &'static str,
    scope: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LimitLabels {
    limit: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KioskLabels {
    kiosk_id: String,
}

/// Why a guess at a secret was refused before it was checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lockout {
    /// The factor is locked at this kiosk for a while.
    Kiosk,
    /// The account's daily budget of wrong guesses at this secret is spent.
    DailyCap,
}

/// Which limit refused an identification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateLimit {
    /// The kiosk's or merchant's identifications per minute.
    IdentifyRate,
    /// The kiosk's slow-down after unrecognised palms.
    KioskSlowDown,
}

/// Buckets in seconds from 1 ms to about 8 s.
fn latency_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 14))
}

pub struct Metrics {
    registry: Registry,
    http_requests: Family<HttpLabels, Counter>,
    http_duration: Family<RouteLabels, Histogram, fn() -> Histogram>,
    lockouts: Family<LockoutLabels, Counter>,
    rate_limited: Family<LimitLabels, Counter>,
    kiosk_last_seen: Family<KioskLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("palmline");
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by method, route template and status code",
            http_requests.clone(),
        );
        let http_duration =
            Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                latency_buckets,
            );
        registry.register_with_unit(
            "http_request_duration",
            "Time from request to response head, by method and route template",
            Unit::Seconds,
            http_duration.clone(),
        );
        let lockouts = Family::<LockoutLabels, Counter>::default();
        registry.register(
            "guess_lockouts",
            "Password or PIN guesses refused unchecked: factor locked at the kiosk, or daily cap spent",
            lockouts.clone(),
        );
        let rate_limited = Family::<LimitLabels, Counter>::default();
        registry.register(
            "rate_limited",
            "Identifications refused by a rate limit (identify_rate) or a kiosk slow-down",
            rate_limited.clone(),
        );
        let kiosk_last_seen = Family::<KioskLabels, Gauge>::default();
        registry.register(
            "kiosk_last_seen_timestamp_seconds",
            "When each kiosk last called (unix seconds, from the store, to the minute)",
            kiosk_last_seen.clone(),
        );
        Metrics {
            registry,
            http_requests,
            http_duration,
            lockouts,
            rate_limited,
            kiosk_last_seen,
        }
    }

    /// For other parts of the server to register their own instruments (at start-up).
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// Records one answered request. `route` is the matched route template.
    pub fn http(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        let route = RouteLabels {
            method: method.to_string(),
            route: route.to_string(),
        };
        self.http_duration
            .get_or_create(&route)
            .observe(elapsed.as_secs_f64());
        self.http_requests
            .get_or_create(&HttpLabels {
                method: route.method,
                route: route.route,
                status: status.to_string(),
            })
            .inc();
    }

    pub fn lockout(&self, factor: Factor, why: Lockout) {
        let scope = match why {
            Lockout::Kiosk => "kiosk",
            Lockout::DailyCap => "daily_cap",
        };
        self.lockouts
            .get_or_create(&LockoutLabels {
                factor: factor.as_str(),
                scope,
            })
            .inc();
    }

    pub fn rate_limited(&self, limit: RateLimit) {
        let limit = match limit {
            RateLimit::IdentifyRate => "identify_rate",
            RateLimit::KioskSlowDown => "kiosk_slow_down",
        };
        self.rate_limited
            .get_or_create(&LimitLabels { limit })
            .inc();
    }

    pub fn kiosk_seen(&self, kiosk_id: &str, unix_secs: i64) {
        self.kiosk_last_seen
            .get_or_create(&KioskLabels {
                kiosk_id: kiosk_id.to_string(),
            })
            .set(unix_secs);
    }

    /// Everything registered, in OpenMetrics text ([`CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// The writer's group commits: batch size and commit time (one fsync each).
#[derive(Debug, Clone)]
pub struct WriterMetrics {
    pub batch_size: Histogram,
    pub commit_seconds: Histogram,
}

impl Default for WriterMetrics {
    fn default() -> Self {
        WriterMetrics {
            batch_size: Histogram::new(exponential_buckets(1.0, 2.0, 10)),
            commit_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 14)),
        }
    }
}

impl WriterMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "writer_batch_size",
            "Commands per group commit of the store's writer",
            self.batch_size.clone(),
        );
        registry.register_with_unit(
            "writer_commit_duration",
            "Time of each group commit's COMMIT (the fsync)",
            Unit::Seconds,
            self.commit_seconds.clone(),
        );
    }
}

/// 1:N identification: time and shortlist size; the index's size and the palm version it is
/// complete up to (replicas that agree on it hold the same gallery).
#[derive(Debug, Clone)]
pub struct IdentifyMetrics {
    pub seconds: Histogram,
    pub shortlist: Histogram,
    /// Candidates of the second, turned query (only when the first found no accept).
    pub turned: Histogram,
    /// Palms verified with the matcher (fewer than shortlisted when one is clear).
    pub verified: Histogram,
    pub indexed: Gauge,
    /// Enrolled palms left out at start-up (templates that do not open or decode).
    pub skipped: Gauge,
    pub version: Gauge,
}

impl Default for IdentifyMetrics {
    fn default() -> Self {
        IdentifyMetrics {
            seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 14)),
            shortlist: Histogram::new([0.0, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0]),
            turned: Histogram::new([0.0, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0]),
            verified: Histogram::new([0.0, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0]),
            indexed: Gauge::default(),
            skipped: Gauge::default(),
            version: Gauge::default(),
        }
    }
}

impl IdentifyMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register_with_unit(
            "identify_duration",
            "Time of one 1:N identification (index, template read, matcher)",
            Unit::Seconds,
            self.seconds.clone(),
        );
        registry.register(
            "identify_shortlist_size",
            "Candidates the index handed to the matcher per identification",
            self.shortlist.clone(),
        );
        registry.register(
            "identify_turned_shortlist_size",
            "Candidates of the second (turned-ROI) query, run when the first found no accept",
            self.turned.clone(),
        );
        registry.register(
            "identify_verified_palms",
            "Palms the matcher verified per identification (it stops at the first clear accept)",
            self.verified.clone(),
        );
        registry.register(
            "palms_indexed",
            "Palms in this server's identification index",
            self.indexed.clone(),
        );
        registry.register(
            "palms_skipped",
            "Enrolled palms left out of this server's index at start-up because their templates do not open or decode (the log names the accounts; they must enroll again)",
            self.skipped.clone(),
        );
        registry.register(
            "palm_version_indexed",
            "The palm version this server's index holds every change up to",
            self.version.clone(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_labels_units_and_eof() {
        let mut m = Metrics::new();
        let w = WriterMetrics::default();
        w.register(m.registry_mut());
        w.batch_size.observe(3.0);
        m.http("POST", "/v1/deposits", 201, Duration::from_millis(3));
        m.lockout(Factor::Pin, Lockout::DailyCap);
        m.rate_limited(RateLimit::KioskSlowDown);
        m.kiosk_seen("kiosk-a", 1_700_000_000);
        let text = m.encode();
        for line in [
            r#"palmline_http_requests_total{method="POST",route="/v1/deposits",status="201"} 1"#,
            r#"palmline_http_request_duration_seconds_count{method="POST",route="/v1/deposits"} 1"#,
            r#"palmline_guess_lockouts_total{factor="pin",scope="daily_cap"} 1"#,
            r#"palmline_rate_limited_total{limit="kiosk_slow_down"} 1"#,
            r#"palmline_kiosk_last_seen_timestamp_seconds{kiosk_id="kiosk-a"} 1700000000"#,
            "palmline_writer_batch_size_count 1",
            "palmline_writer_batch_size_sum 3.0",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from\n{text}"
            );
        }
        assert!(text.ends_with("# EOF\n"));
    }
}
