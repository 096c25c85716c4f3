//! The HTTP API (axum). Every request has already passed the TLS handshake with a client
//! certificate from our CA; here the certificate's role decides what it may call: kiosk
//! endpoints take the kiosk id and merchant from the certificate, never from the body;
//! operator endpoints need an admin certificate.
//!
//! Mutating requests carry an `Idempotency-Key`: a retry gets the first answer back and moves
//! nothing; the same key with another request is `idempotency_mismatch`; the same key while
//! the first request is still being processed is `idempotency_in_flight`.

mod admin;
mod cashier;
mod error;
pub mod input;
mod kiosk;
pub mod openapi;
mod palm;
mod request_id;
pub mod wire;

pub use error::ApiError;
pub use request_id::RequestId;

use crate::auth::{HashCost, Hasher};
use crate::limits::{GuessRules, IdentifyRates, NoPinLimits, Rate};
use crate::metrics::{Metrics, RateLimit};
use crate::pki::{identity_of, Role};
use crate::store::{Idem, KioskRef, Store};
use crate::throttle::{LocalThrottle, Throttle};
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::HeaderMap;
use axum::{Extension, Router};
use palmline_shared::api::{
    ErrorCode, IDEMPOTENCY_HEADER, MAX_BODY_BYTES, MAX_IDEMPOTENCY_KEY_LEN,
};
use palmline_shared::{Currency, Money};
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Policy knobs of the API.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    pub currency: Currency,
    /// Payments, withdrawals and transfers at or above this need the PIN (if the shopper has one).
    pub pin_threshold: Money,
    pub session_ttl: Duration,
    /// How long a cashier's sign-in lasts.
    pub cashier_session_ttl: Duration,
    /// Wrong guesses per factor: kiosk lock, back-off and the account-wide daily cap.
    pub guesses: GuessRules,
    /// Debits without the PIN beyond these need the PIN.
    pub no_pin: NoPinLimits,
    /// Identification attempts per minute, per kiosk and per merchant.
    pub identify: IdentifyRates,
    pub hash_cost: HashCost,
    /// argon2 hashes at once (each takes `hash_cost.memory_kib`).
    pub hash_concurrency: usize,
    /// Threads the palm matcher may use at once (off the async workers).
    pub matcher_threads: usize,
    /// What `POST /v1/admin/purge` keeps (the same as `serve`'s hourly purge).
    pub retention: crate::retention::Retention,
}

/// `n` whole units of `currency` (50 → 50.00 EUR, 50 JPY).
fn units(n: i64, currency: Currency) -> Money {
    Money::from_minor(n * 10i64.pow(u32::from(currency.exponent())), currency)
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

impl ApiConfig {
    pub fn defaults(currency: Currency) -> ApiConfig {
        ApiConfig {
            currency,
            pin_threshold: units(50, currency),
            session_ttl: Duration::from_secs(300),
            cashier_session_ttl: Duration::from_secs(900),
            guesses: GuessRules::default(),
            no_pin: NoPinLimits {
                per_session: units(100, currency),
                per_day: units(200, currency),
            },
            identify: IdentifyRates::default(),
            hash_cost: HashCost::default(),
            hash_concurrency: cores(),
            matcher_threads: cores(),
            retention: Default::default(),
        }
    }
}

pub struct AppState {
    pub store: Arc<dyn Store>,
    pub cfg: ApiConfig,
    pub palm: Arc<crate::palm::PalmService>,
    inflight: Mutex<HashSet<(String, String)>>,
    kiosk_seen: Mutex<HashMap<String, Instant>>,
    /// Serials the current CRL revokes (see [`crate::tls::revoked_serials`]).
    revoked: std::sync::RwLock<Arc<HashSet<Vec<u8>>>>,
    /// A hash to verify against when the username does not exist, so that a login for an
    /// unknown user costs the same time as one for a known user.
    dummy_hash: String,
    /// argon2 behind a semaphore.
    pub hasher: Hasher,
    /// Identification attempts per kiosk and per merchant, and each kiosk's failures: in
    /// memory with SQLite, rows shared by every replica with PostgreSQL.
    pub throttle: Arc<dyn Throttle>,
    /// Everything `GET /v1/admin/metrics` shows (the store's and palm's instruments too).
    pub metrics: Metrics,
}

impl AppState {
    pub fn new(
        store: Arc<dyn Store>,
        cfg: ApiConfig,
        palm: Arc<crate::palm::PalmService>,
    ) -> Arc<AppState> {
        let dummy_hash = crate::auth::hash_secret("palmline-dummy-password", cfg.hash_cost);
        let mut metrics = Metrics::new();
        store.register_metrics(metrics.registry_mut());
        palm.metrics.register(metrics.registry_mut());
        Arc::new(AppState {
            throttle: store
                .shared_throttle()
                .unwrap_or_else(|| Arc::new(LocalThrottle::default())),
            store,
            palm,
            inflight: Mutex::new(HashSet::new()),
            kiosk_seen: Mutex::new(HashMap::new()),
            revoked: Default::default(),
            dummy_hash,
            hasher: Hasher::new(cfg.hash_cost, cfg.hash_concurrency),
            metrics,
            cfg,
        })
    }

    /// Counts `n` identification attempts (1:N searches) of this kiosk and its merchant,
    /// whatever their outcome; a flood gets `rate_limited` with a Retry-After.
    pub async fn identification_allowed(&self, kiosk: &KioskRef, n: u32) -> Result<(), ApiError> {
        let rates = self.cfg.identify;
        let rate = |per_window| Rate {
            per_window,
            window: rates.window,
        };
        let buckets = [
            (format!("kiosk:{}", kiosk.kiosk_id), rate(rates.per_kiosk)),
            (
                format!("merchant:{}", kiosk.merchant),
                rate(rates.per_merchant),
            ),
        ];
        self.throttle.take(&buckets, n).await?.map_err(|wait| {
            self.metrics.rate_limited(RateLimit::IdentifyRate);
            tracing::warn!(kiosk = %kiosk.kiosk_id, merchant = %kiosk.merchant, "identification rate limit reached");
            ApiError::new(
                ErrorCode::RateLimited,
                "too many palm identifications from this kiosk or shop; try again shortly",
            )
            .retry_after(wait)
        })
    }

    /// Replaces the set of revoked certificate serials (at start-up and on each CRL reload).
    pub fn set_revoked(&self, serials: HashSet<Vec<u8>>) {
        *self.revoked.write().expect("poisoned") = Arc::new(serials);
    }

    fn is_revoked(&self, serial: &[u8]) -> bool {
        self.revoked.read().expect("poisoned").contains(serial)
    }
}

pub type SharedState = Arc<AppState>;

/// The one route table. Every route is registered here through `routes!`, which takes its
/// method and path from the handler's `#[utoipa::path]`: serving a route and documenting it
/// are one act ([`openapi`]; server/tests/openapi.rs checks the built router against the
/// document both ways). Never add a route with `.route(..)`.
pub fn routes() -> OpenApiRouter<SharedState> {
    use utoipa_axum::router::UtoipaMethodRouterExt;
    OpenApiRouter::with_openapi(<openapi::ApiDoc as utoipa::OpenApi>::openapi())
        .routes(routes!(kiosk::health))
        .routes(routes!(openapi::openapi_json))
        .routes(routes!(kiosk::register))
        .routes(routes!(kiosk::login))
        .routes(routes!(cashier::sign_in))
        .routes(routes!(kiosk::deposit))
        .routes(routes!(kiosk::withdraw))
        .routes(routes!(kiosk::pay))
        .routes(routes!(kiosk::transfer))
        .routes(routes!(kiosk::wallet))
        .routes(routes!(kiosk::set_pin))
        .routes(routes!(kiosk::history))
        .routes(routes!(kiosk::merchant_today))
        .routes(routes!(palm::enroll).layer(Extension(BodyLimit(palm::MAX_ENROLL_BODY))))
        .routes(routes!(palm::delete_mine))
        .routes(routes!(palm::pay_by_palm))
        .routes(routes!(admin::delete_palm))
        .routes(routes!(admin::accounts))
        .routes(routes!(admin::freeze))
        .routes(routes!(admin::unfreeze))
        .routes(routes!(admin::unlock))
        .routes(routes!(admin::refund))
        .routes(routes!(admin::kiosks))
        .routes(routes!(cashier::list, cashier::create))
        .routes(routes!(cashier::disable))
        .routes(routes!(cashier::unlock))
        .routes(routes!(cashier::set_pin))
        .routes(routes!(admin::palm_scans))
        .routes(routes!(admin::skipped_palms))
        .routes(routes!(admin::ledger_check))
        .routes(routes!(admin::purge))
        .routes(routes!(admin::daily_report))
        .routes(routes!(admin::metrics))
}

/// The router: [`routes`] with the fallback and the layers every request goes through.
/// Needs `Extension<Arc<axum_server::tls::TlsInfo>>` on every request, which the TLS
/// acceptor adds; without a Palmline client certificate nothing runs.
pub fn router(state: SharedState) -> Router {
    let (routes, _document) = routes().split_for_parts();
    routes
        .fallback(|| async { ApiError::new(ErrorCode::NotFound, "no such endpoint") })
        .layer(axum::middleware::from_fn_with_state(state.clone(), observe))
        .layer(axum::middleware::from_fn(request_id::request_id))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// Counts every answered request by method, route *template* (never the raw path, which
/// carries account ids) and status, and times it to the response head.
async fn observe(
    axum::extract::State(state): axum::extract::State<SharedState>,
    req: Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let started = Instant::now();
    let method = method_label(req.method());
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or(crate::metrics::UNMATCHED_ROUTE.to_string(), |p| {
            p.as_str().to_string()
        });
    let resp = next.run(req).await;
    state
        .metrics
        .http(method, &route, resp.status().as_u16(), started.elapsed());
    resp
}

/// A method for a label or a log line: one of the methods the API knows, or `other` (a
/// caller may send any token as a method).
fn method_label(m: &axum::http::Method) -> &'static str {
    match m.as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        _ => "other",
    }
}

/// The authenticated caller, from the client certificate.
#[derive(Debug, Clone)]
pub enum Caller {
    Kiosk(KioskRef),
    Admin(String),
}

fn caller_from_parts(parts: &Parts, state: &AppState) -> Result<Caller, ApiError> {
    let Some(Extension(info)) = parts
        .extensions
        .get::<Arc<axum_server::tls::TlsInfo>>()
        .cloned()
        .map(Extension)
    else {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "a client certificate is required",
        ));
    };
    let leaf = info
        .peer_certificates
        .first()
        .ok_or_else(|| ApiError::new(ErrorCode::Forbidden, "a client certificate is required"))?;
    let Ok((serial, role)) = identity_of(leaf) else {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "unreadable client certificate",
        ));
    };
    // The handshake refuses revoked certificates; this catches a connection that was opened
    // before the revocation and kept alive.
    if state.is_revoked(&serial) {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "this client certificate has been revoked",
        ));
    }
    match role {
        Some(Role::Kiosk { kiosk_id, merchant }) => {
            Ok(Caller::Kiosk(KioskRef { kiosk_id, merchant }))
        }
        Some(Role::Admin { name }) => Ok(Caller::Admin(name)),
        _ => Err(ApiError::new(
            ErrorCode::Forbidden,
            "the client certificate carries no Palmline role",
        )),
    }
}

/// Any authenticated caller.
pub struct AnyCaller(pub Caller);

impl FromRequestParts<SharedState> for AnyCaller {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &SharedState) -> Result<Self, ApiError> {
        caller_from_parts(parts, state).map(AnyCaller)
    }
}

/// A kiosk caller (403 for anyone else). Records the kiosk as seen, at most once a minute.
pub struct KioskCaller(pub KioskRef);

impl FromRequestParts<SharedState> for KioskCaller {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &SharedState) -> Result<Self, ApiError> {
        match caller_from_parts(parts, state)? {
            Caller::Kiosk(k) => {
                let due = {
                    let mut seen = state.kiosk_seen.lock().expect("poisoned");
                    let now = Instant::now();
                    match seen.get(&k.kiosk_id) {
                        Some(t) if now.duration_since(*t) < Duration::from_secs(60) => false,
                        _ => {
                            seen.insert(k.kiosk_id.clone(), now);
                            true
                        }
                    }
                };
                if due {
                    let touched = state
                        .store
                        .execute(None, crate::store::Command::TouchKiosk { at: k.clone() })
                        .await;
                    match touched {
                        // Last-seen is bookkeeping: a store that cannot write now must not
                        // fail a read that it can still answer; the next call tries again.
                        Err(e) if e.fault().is_some() => {
                            tracing::warn!(kiosk = %k.kiosk_id, error = %e, "kiosk last-seen not recorded");
                            state
                                .kiosk_seen
                                .lock()
                                .expect("poisoned")
                                .remove(&k.kiosk_id);
                        }
                        other => {
                            other.map_err(ApiError::from)?;
                        }
                    }
                }
                Ok(KioskCaller(k))
            }
            Caller::Admin(_) => Err(ApiError::new(
                ErrorCode::Forbidden,
                "this endpoint is for kiosks",
            )),
        }
    }
}

/// An operator caller (403 for kiosks).
pub struct AdminCaller(pub String);

impl FromRequestParts<SharedState> for AdminCaller {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &SharedState) -> Result<Self, ApiError> {
        match caller_from_parts(parts, state)? {
            Caller::Admin(a) => Ok(AdminCaller(a)),
            Caller::Kiosk(_) => Err(ApiError::new(
                ErrorCode::Forbidden,
                "this endpoint needs an operator certificate",
            )),
        }
    }
}

/// A request body read under the size limit, with its bytes kept for the idempotency hash.
pub struct RawBody(pub Bytes);

/// A route's body limit where it is not [`MAX_BODY_BYTES`] (an `Extension` layer on the route).
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

/// Bytes of an over-limit body read and thrown away before the 413 goes out, so that a client
/// that sends its whole body before reading (most do) gets the answer rather than a reset
/// connection (nginx's "lingering close"); a body longer still is cut off as before. The
/// request timeout bounds the time this takes.
const DRAIN_BYTES: usize = 1 << 20;

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;
    async fn from_request(req: Request, _: &S) -> Result<Self, ApiError> {
        use http_body_util::BodyExt;
        let limit = req
            .extensions()
            .get::<BodyLimit>()
            .map_or(MAX_BODY_BYTES, |l| l.0);
        let unreadable = || ApiError::new(ErrorCode::InvalidRequest, "unreadable request body");
        let mut body = req.into_body();
        let mut buf = Vec::new();
        while let Some(frame) = body.frame().await {
            let Ok(data) = frame.map_err(|_| unreadable())?.into_data() else {
                continue;
            };
            if buf.len() + data.len() > limit {
                drain(body, DRAIN_BYTES).await;
                return Err(ApiError::new(
                    ErrorCode::BodyTooLarge,
                    format!("request body over {limit} bytes"),
                ));
            }
            buf.extend_from_slice(&data);
        }
        Ok(RawBody(Bytes::from(buf)))
    }
}

/// Reads and drops up to `max` more bytes of a body (or until it ends or fails).
async fn drain(mut body: axum::body::Body, max: usize) {
    use http_body_util::BodyExt;
    let mut seen = 0;
    while seen <= max {
        match body.frame().await {
            Some(Ok(frame)) => seen += frame.data_ref().map_or(0, |d| d.len()),
            _ => return,
        }
    }
}

/// Parses JSON with typed errors: syntax errors are `malformed_json`, bad amounts
/// `invalid_amount`, unknown currencies `unsupported_currency`, the rest `invalid_request`.
/// Every request body is a JSON object: valid JSON of another kind (serde would read an
/// array into a struct, field by field) is `invalid_request`.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let first = body
        .iter()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'));
    if first.is_some_and(|b| *b != b'{')
        && serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok()
    {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            "the request body must be a JSON object",
        ));
    }
    serde_json::from_slice(body).map_err(|e| {
        use serde_json::error::Category;
        let msg = input::clip(e.to_string());
        match e.classify() {
            Category::Syntax | Category::Eof | Category::Io => {
                ApiError::new(ErrorCode::MalformedJson, format!("malformed JSON: {msg}"))
            }
            Category::Data if msg.starts_with("unknown currency") => {
                ApiError::new(ErrorCode::UnsupportedCurrency, msg)
            }
            Category::Data if msg.contains("amount") => {
                ApiError::new(ErrorCode::InvalidAmount, msg)
            }
            Category::Data => ApiError::new(ErrorCode::InvalidRequest, msg),
        }
    })
}

/// Checks an amount from a request before any slow work: the ledger's own check
/// ([`crate::ledger::check_amount`]), so the API and the store answer with the same code.
pub fn check_amount(state: &AppState, amount: Money) -> Result<(), ApiError> {
    crate::ledger::check_amount(amount, state.cfg.currency)?;
    Ok(())
}

/// The idempotency context of a mutating request: key from the header, fingerprint over
/// method, path, caller, subject (e.g. the session's shopper) and body.
/// An operator's action on one record (`{method} /v1/admin/{path}` with `{id}` in it): the
/// id from the path, and the idempotency record keyed to the concrete route and operator.
pub fn admin_action(
    id: Result<axum::extract::Path<i64>, axum::extract::rejection::PathRejection>,
    admin: &str,
    route: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(i64, Idem), ApiError> {
    let axum::extract::Path(id) =
        id.map_err(|e| ApiError::new(ErrorCode::InvalidRequest, e.body_text()))?;
    let route = route.replace("{id}", &id.to_string());
    let idem = idempotency(headers, &format!("admin:{admin}"), &route, "", body)?;
    Ok((id, idem))
}

pub fn idempotency(
    headers: &HeaderMap,
    scope: &str,
    route: &str,
    subject: &str,
    body: &[u8],
) -> Result<Idem, ApiError> {
    let key = headers
        .get(IDEMPOTENCY_HEADER)
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::MissingIdempotencyKey,
                "mutating requests need an Idempotency-Key header",
            )
        })?
        .to_str()
        .ok()
        .filter(|k| {
            !k.is_empty()
                && k.len() <= MAX_IDEMPOTENCY_KEY_LEN
                && k.bytes().all(|b| b.is_ascii_graphic())
        })
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::InvalidRequest,
                format!("Idempotency-Key must be 1-{MAX_IDEMPOTENCY_KEY_LEN} printable ASCII characters"),
            )
        })?;
    let mut h = Sha256::new();
    for part in [route.as_bytes(), subject.as_bytes(), body] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    Ok(Idem {
        scope: scope.to_string(),
        key: key.to_string(),
        request_hash: h.finalize().into(),
    })
}

/// Marks an idempotency key as being processed; a second request with the same key while
/// this guard lives gets `idempotency_in_flight`.
pub struct InFlight {
    state: SharedState,
    id: (String, String),
}

impl InFlight {
    pub fn claim(state: &SharedState, idem: &Idem) -> Result<InFlight, ApiError> {
        let id = (idem.scope.clone(), idem.key.clone());
        if !state.inflight.lock().expect("poisoned").insert(id.clone()) {
            return Err(ApiError::new(
                ErrorCode::IdempotencyInFlight,
                "a request with this Idempotency-Key is still being processed",
            ));
        }
        Ok(InFlight {
            state: state.clone(),
            id,
        })
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.state
            .inflight
            .lock()
            .expect("poisoned")
            .remove(&self.id);
    }
}
