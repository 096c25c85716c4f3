//! The kiosk's HTTPS client: mutual TLS with the kiosk's certificate, the server's CA
//! pinned (system roots are never consulted), per-attempt timeouts, and retries that can
//! never move money twice.
//!
//! Retries: every mutating [`ApiCall`] carries the idempotency key the state machine chose;
//! a retry after a timeout or a dropped connection sends the same key, so the server answers
//! with the first result instead of charging again. This module never invents a new key.

use crate::app::{ApiCall, ApiError, Reply};
use anyhow::{Context, Result};
use palmline_shared::api::{
    CashierSessionResponse, DailyTotals, ErrorBody, ErrorCode, Health, HistoryPage,
    PalmEnrollResponse, Receipt, SessionResponse, Shopper, Wallet, CASHIER_SESSION_HEADER,
    IDEMPOTENCY_HEADER, REQUEST_ID_HEADER, RETRY_AFTER_HEADER,
};
use reqwest::blocking::{Client, RequestBuilder, Response};
use reqwest::Method;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::de::DeserializeOwned;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Installs ring as the process's rustls provider. Call once at start, before any client
/// is built; harmless when called again.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// TLS material of a kiosk.
#[derive(Debug, Clone)]
pub struct TlsFiles<'a> {
    pub ca: &'a Path,
    pub cert: &'a Path,
    pub key: &'a Path,
}

/// How hard to try.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub request: Duration,
    pub connect: Duration,
    /// Extra attempts after a network failure.
    pub retries: u32,
    /// Pause before the first retry (doubles each time).
    pub backoff: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            request: Duration::from_secs(5),
            connect: Duration::from_secs(3),
            retries: 2,
            backoff: Duration::from_millis(200),
        }
    }
}

/// Builds the rustls configuration: only `ca` is trusted; the kiosk presents `cert`/`key`.
pub fn tls_config(files: &TlsFiles<'_>) -> Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(files.ca)
        .with_context(|| format!("reading CA {}", files.ca.display()))?
    {
        roots
            .add(cert.context("parsing the CA certificate")?)
            .context("adding the CA certificate")?;
    }
    if roots.is_empty() {
        anyhow::bail!("no certificate in {}", files.ca.display());
    }
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(files.cert)
        .with_context(|| format!("reading kiosk certificate {}", files.cert.display()))?
        .collect::<Result<_, _>>()
        .context("parsing the kiosk certificate")?;
    let key = PrivateKeyDer::from_pem_file(files.key)
        .with_context(|| format!("reading kiosk key {}", files.key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .context("kiosk certificate and key do not match")?;
    Ok(cfg)
}

/// The blocking API client. Call it from a worker thread, never from the UI thread.
#[derive(Clone)]
pub struct ApiClient {
    http: Client,
    base: String,
    timeouts: Timeouts,
}

impl ApiClient {
    pub fn new(base_url: &str, files: &TlsFiles<'_>, timeouts: Timeouts) -> Result<ApiClient> {
        install_crypto_provider();
        let tls = tls_config(files)?;
        let http = Client::builder()
            .tls_backend_preconfigured(tls)
            .timeout(timeouts.request)
            .connect_timeout(timeouts.connect)
            .pool_idle_timeout(Duration::from_secs(30))
            .user_agent(concat!("palmline-kiosk/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("building the HTTPS client")?;
        Ok(ApiClient {
            http,
            base: base_url.trim_end_matches('/').to_string(),
            timeouts,
        })
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// Performs one API call, retrying network failures with the same idempotency key.
    /// Every attempt carries one request id (`x-request-id`), which the server logs and
    /// echoes: the kiosk's log line of a failed call names it, so an operator finds the
    /// server's side of that call.
    pub fn call(&self, call: &ApiCall) -> Result<Reply, ApiError> {
        let mut delay = self.timeouts.backoff;
        let mut attempt = 0;
        let rid = new_request_id();
        loop {
            let result = self.attempt(&rid, call);
            let retryable = matches!(
                &result,
                Err(ApiError::Offline(_))
                    | Err(ApiError::Timeout)
                    | Err(ApiError::Server {
                        code: ErrorCode::IdempotencyInFlight,
                        ..
                    })
            );
            if !retryable || attempt >= self.timeouts.retries {
                if let Err(e) = &result {
                    tracing::info!(request_id = %rid, "{} failed: {e:?}", describe(call));
                }
                return result;
            }
            attempt += 1;
            tracing::warn!(
                request_id = %rid,
                "retrying {} (attempt {}) after {:?}",
                describe(call),
                attempt + 1,
                result.as_ref().err()
            );
            // Backoff between attempts of one request (not a synchronisation device).
            std::thread::sleep(delay);
            delay *= 2;
        }
    }

    fn request(&self, rid: &str, method: Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, format!("{}{}", self.base, path))
            .header(REQUEST_ID_HEADER, rid)
    }

    fn attempt(&self, rid: &str, call: &ApiCall) -> Result<Reply, ApiError> {
        use ApiCall as C;
        let key = call.idempotency_key().map(str::to_string);
        let with_key = |rb: RequestBuilder| match &key {
            Some(k) => rb.header(IDEMPOTENCY_HEADER, k.as_str()),
            None => rb,
        };
        match call {
            C::Health => self
                .get::<Health>(self.request(rid, Method::GET, "/v1/health"))
                .map(Reply::Health),
            C::Register { req, .. } => self
                .get::<Shopper>(with_key(
                    self.request(rid, Method::POST, "/v1/shoppers").json(req),
                ))
                .map(Reply::Shopper),
            C::Login { req, .. } => self
                .get::<SessionResponse>(with_key(
                    self.request(rid, Method::POST, "/v1/sessions").json(req),
                ))
                .map(|s| Reply::Session {
                    token: s.token,
                    shopper: s.shopper,
                }),
            C::CashierLogin { req } => self
                .get::<CashierSessionResponse>(
                    self.request(rid, Method::POST, "/v1/cashier-sessions")
                        .json(req),
                )
                .map(|s| Reply::CashierSession {
                    token: s.token,
                    cashier: s.cashier,
                }),
            C::Deposit { req, cashier, .. } => self
                .get::<Receipt>(with_key(
                    self.request(rid, Method::POST, "/v1/deposits")
                        .header(CASHIER_SESSION_HEADER, cashier.as_str())
                        .json(req),
                ))
                .map(Reply::Receipt),
            C::Withdraw {
                token,
                cashier,
                req,
                ..
            } => self
                .get::<Receipt>(with_key(
                    self.request(rid, Method::POST, "/v1/withdrawals")
                        .bearer_auth(token)
                        .header(CASHIER_SESSION_HEADER, cashier.as_str())
                        .json(req),
                ))
                .map(Reply::Receipt),
            C::Pay { token, req, .. } => self
                .get::<Receipt>(with_key(
                    self.request(rid, Method::POST, "/v1/payments")
                        .bearer_auth(token)
                        .json(req),
                ))
                .map(Reply::Receipt),
            C::PalmPay { req, .. } => self
                .get::<Receipt>(with_key(
                    self.request(rid, Method::POST, "/v1/payments/palm")
                        .json(req),
                ))
                .map(Reply::Receipt),
            C::Transfer { token, req, .. } => self
                .get::<Receipt>(with_key(
                    self.request(rid, Method::POST, "/v1/transfers")
                        .bearer_auth(token)
                        .json(req),
                ))
                .map(Reply::Receipt),
            C::Wallet { token } => self
                .get::<Wallet>(
                    self.request(rid, Method::GET, "/v1/wallet")
                        .bearer_auth(token),
                )
                .map(Reply::Wallet),
            C::History {
                token,
                limit,
                before,
            } => {
                let mut path = format!("/v1/wallet/history?limit={limit}");
                if let Some(b) = before {
                    path.push_str(&format!("&before={b}"));
                }
                self.get::<HistoryPage>(self.request(rid, Method::GET, &path).bearer_auth(token))
                    .map(Reply::History)
            }
            C::Today => self
                .get::<DailyTotals>(self.request(rid, Method::GET, "/v1/merchant/today"))
                .map(Reply::Today),
            C::EnrollPalms { token, req, .. } => self
                .get::<PalmEnrollResponse>(with_key(
                    self.request(rid, Method::POST, "/v1/palms")
                        .bearer_auth(token)
                        .json(req),
                ))
                .map(|r| Reply::Enrolled {
                    templates_stored: r.templates_stored,
                }),
            C::SetPin { token, req, .. } => {
                let resp = self.send(with_key(
                    self.request(rid, Method::POST, "/v1/wallet/pin")
                        .bearer_auth(token)
                        .json(req),
                ))?;
                if resp.status().is_success() {
                    Ok(Reply::PinSet)
                } else {
                    Err(error_from(resp))
                }
            }
            C::DeletePalm { token, .. } => {
                let resp = self.send(with_key(
                    self.request(rid, Method::DELETE, "/v1/palms/me")
                        .bearer_auth(token),
                ))?;
                if resp.status().is_success() {
                    Ok(Reply::Deleted)
                } else {
                    Err(error_from(resp))
                }
            }
        }
    }

    fn send(&self, rb: RequestBuilder) -> Result<Response, ApiError> {
        rb.send().map_err(classify)
    }

    fn get<T: DeserializeOwned>(&self, rb: RequestBuilder) -> Result<T, ApiError> {
        let resp = self.send(rb)?;
        if !resp.status().is_success() {
            return Err(error_from(resp));
        }
        let bytes = resp.bytes().map_err(classify)?;
        serde_json::from_slice(&bytes).map_err(|e| ApiError::Protocol(format!("bad JSON: {e}")))
    }
}

/// A fresh request id: "k" and 32 hex digits (the server keeps ids of `[A-Za-z0-9_-]`).
fn new_request_id() -> String {
    format!("k{}", uuid::Uuid::new_v4().simple())
}

fn describe(call: &ApiCall) -> String {
    let s = format!("{call:?}");
    s.split([' ', '{']).next().unwrap_or("call").to_string()
}

/// Sorts transport errors into "nothing was sent" (connect failed) and "unknown outcome".
fn classify(e: reqwest::Error) -> ApiError {
    if e.is_connect() {
        // TLS handshake failures also surface as connect errors: say which.
        ApiError::Offline(chain(&e))
    } else if e.is_timeout() {
        ApiError::Timeout
    } else if e.is_request() || e.is_body() || e.is_decode() {
        // The connection broke while sending or reading: the server may have acted.
        tracing::warn!("request failed mid-way: {}", chain(&e));
        ApiError::Timeout
    } else {
        ApiError::Protocol(chain(&e))
    }
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

fn error_from(resp: Response) -> ApiError {
    let status = resp.status();
    let retry_after = resp
        .headers()
        .get(RETRY_AFTER_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u32>().ok());
    match resp.bytes() {
        Ok(bytes) => match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(body) => ApiError::Server {
                code: body.error.code,
                message: body.error.message,
                retry_after,
            },
            Err(_) => ApiError::Protocol(format!(
                "HTTP {status}: {}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
            )),
        },
        Err(e) => classify(e),
    }
}

/// Days until a PEM certificate expires (negative when expired), for diagnostics.
pub fn cert_days_left(pem_path: &Path) -> Result<i64> {
    let der = CertificateDer::pem_file_iter(pem_path)
        .with_context(|| format!("reading {}", pem_path.display()))?
        .next()
        .context("no certificate in file")?
        .context("parsing certificate")?;
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).context("parsing X.509")?;
    let not_after = cert.validity().not_after.timestamp();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    Ok((not_after - now).div_euclid(86_400))
}

#[cfg(test)]
mod tests {
    use super::*;
    use palmline_shared::api::MAX_REQUEST_ID_LEN;

    #[test]
    fn request_ids_are_fresh_and_kept_by_the_server() {
        let (a, b) = (new_request_id(), new_request_id());
        assert_ne!(a, b);
        for id in [a, b] {
            // The server keeps a caller's id only if short and plain (else makes one up).
            assert!(!id.is_empty() && id.len() <= MAX_REQUEST_ID_LEN, "{id}");
            let plain = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
            assert!(id.chars().all(plain), "{id}");
        }
    }
}
