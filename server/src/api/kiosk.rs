//! Kiosk endpoints: registration, sessions, deposits, withdrawals, payments, transfers,
//! wallet views and the merchant's day. The kiosk and its merchant always come from the
//! client certificate ([`KioskCaller`]).

use super::{
    check_amount, idempotency, parse_json, ApiError, InFlight, KioskCaller, RawBody, SharedState,
};
use crate::auth;
use crate::store::sqlite::unix_now;
use crate::store::{Command, Idem, KioskRef, Outcome, SessionInfo, ShopperAuth};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use palmline_shared::api::{
    DepositRequest, ErrorCode, Health, PaymentRequest, RegisterShopper, SessionRequest,
    SessionResponse, TransferRequest, WithdrawalRequest,
};
use palmline_shared::Money;
use serde::Deserialize;

pub async fn health(
    State(state): State<SharedState>,
    super::AnyCaller(caller): super::AnyCaller,
) -> Result<Json<Health>, ApiError> {
    let (role, kiosk_id, merchant) = match caller {
        super::Caller::Kiosk(k) => ("kiosk", Some(k.kiosk_id), Some(k.merchant)),
        super::Caller::Admin(_) => ("admin", None, None),
    };
    Ok(Json(Health {
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        role: role.into(),
        kiosk_id,
        merchant,
        currency: state.cfg.currency.code().into(),
        pin_threshold: state.cfg.pin_threshold,
        server_time: crate::store::sqlite::now_text(),
    }))
}

/// The fingerprint subject of a shopper-scoped request: a hash of its bearer token, so that
/// a retry can be answered before the session is looked up (it may have expired since).
fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
}

pub(super) fn subject(headers: &HeaderMap) -> String {
    bearer(headers)
        .map(|t| hex::encode(auth::token_hash(t)))
        .unwrap_or_default()
}

/// The session of a shopper-scoped request; it must have been opened at this kiosk.
pub(super) async fn session(
    state: &SharedState,
    headers: &HeaderMap,
    kiosk: &crate::store::KioskRef,
) -> Result<SessionInfo, ApiError> {
    let token = bearer(headers).ok_or_else(|| {
        ApiError::new(
            ErrorCode::SessionRequired,
            "log in first (Authorization: Bearer <token>)",
        )
    })?;
    let s = state
        .store
        .session(auth::token_hash(token), unix_now())
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::SessionExpired, "session expired or unknown"))?;
    if s.kiosk_id != kiosk.kiosk_id {
        return Err(ApiError::new(
            ErrorCode::SessionExpired,
            "this session belongs to another kiosk",
        ));
    }
    Ok(s)
}

/// Runs a mutating request under its idempotency key: answers a completed retry from the
/// store, refuses a concurrent duplicate, otherwise prepares the command (slow checks such
/// as PINs happen here) and executes it.
pub(super) async fn idempotent<F>(
    state: &SharedState,
    idem: Idem,
    prepare: F,
) -> Result<Outcome, ApiError>
where
    F: std::future::Future<Output = Result<Command, ApiError>>,
{
    let _guard = InFlight::claim(state, &idem)?;
    if let Some(done) = state.store.replay(&idem).await? {
        return done.map_err(ApiError::from);
    }
    let cmd = prepare.await?;
    state
        .store
        .execute(Some(idem), cmd)
        .await
        .map_err(ApiError::from)
}

pub(super) fn respond(outcome: Outcome, status: StatusCode) -> Response {
    match outcome {
        Outcome::Receipt(r) => (status, Json(r)).into_response(),
        Outcome::Shopper(s) => (status, Json(s)).into_response(),
        Outcome::Account(a) => (status, Json(a)).into_response(),
        Outcome::Done => StatusCode::NO_CONTENT.into_response(),
    }
}

pub async fn register(
    State(state): State<SharedState>,
    KioskCaller(kiosk): KioskCaller,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let idem = idempotency(&headers, &kiosk.scope(), "POST /v1/shoppers", "", &body)?;
    let req: RegisterShopper = parse_json(&body)?;
    if !auth::valid_username(&req.username) {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            "username must be 3-32 of a-z 0-9 . _ - starting with a letter or digit",
        ));
    }
    if !auth::valid_email(&req.email) {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            "invalid e-mail address",
        ));
    }
    if !auth::valid_password(&req.password) {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            "password must be 8-128 characters",
        ));
    }
    if let Some(pin) = &req.pin {
        if !auth::valid_pin(pin) {
            return Err(ApiError::new(
                ErrorCode::InvalidRequest,
                "PIN must be 4-8 digits",
            ));
        }
    }
    let cost = state.cfg.hash_cost;
    let outcome = idempotent(&state, idem, async move {
        let password_hash = auth::hash_secret_async(req.password, cost).await;
        let pin_hash = match req.pin {
            Some(pin) => Some(auth::hash_secret_async(pin, cost).await),
            None => None,
        };
        Ok(Command::RegisterShopper {
            username: req.username,
            email: req.email,
            password_hash,
            pin_hash,
        })
    })
    .await?;
    Ok(respond(outcome, StatusCode::CREATED))
}

/// Refuses a locked or frozen shopper before any secret is checked.
pub(super) fn usable(a: &ShopperAuth) -> Result<(), ApiError> {
    if a.locked_until.is_some_and(|t| t > unix_now()) {
        return Err(ApiError::new(
            ErrorCode::AccountLocked,
            "too many failed attempts; try again later",
        ));
    }
    if a.frozen {
        return Err(ApiError::new(ErrorCode::AccountFrozen, "account is frozen"));
    }
    Ok(())
}

pub(super) async fn record_auth(
    state: &SharedState,
    shopper_id: i64,
    ok: bool,
) -> Result<(), ApiError> {
    let cmd = if ok {
        Command::AuthSuccess { shopper_id }
    } else {
        Command::AuthFailure {
            shopper_id,
            lock_after: state.cfg.lockout_after,
            lock_seconds: state.cfg.lockout.as_secs() as i64,
        }
    };
    state.store.execute(None, cmd).await?;
    Ok(())
}

/// Opens a session for a shopper at this kiosk.
pub(super) async fn open_session(
    state: &SharedState,
    shopper_id: i64,
    kiosk_id: &str,
) -> Result<SessionResponse, ApiError> {
    let (token, token_hash) = auth::new_token();
    let expires = unix_now() + state.cfg.session_ttl.as_secs() as i64;
    state
        .store
        .execute(
            None,
            Command::CreateSession {
                token_hash,
                shopper_id,
                kiosk_id: kiosk_id.to_string(),
                expires_at: expires,
            },
        )
        .await?;
    let wallet = state.store.wallet(shopper_id).await?;
    let expires_at = time::OffsetDateTime::from_unix_timestamp(expires)
        .map(crate::store::sqlite::format_ts)
        .unwrap_or_default();
    Ok(SessionResponse {
        token,
        expires_at,
        shopper: wallet.shopper,
    })
}

/// `POST /v1/sessions`. Not idempotency-keyed on purpose: a retry just opens another
/// short-lived session, and a session token is never stored in clear (not even as a
/// replayable response).
pub async fn login(
    State(state): State<SharedState>,
    KioskCaller(kiosk): KioskCaller,
    RawBody(body): RawBody,
) -> Result<Json<SessionResponse>, ApiError> {
    match parse_json::<SessionRequest>(&body)? {
        SessionRequest::Password { username, password } => {
            let found = state.store.shopper_auth(&username).await?;
            let Some(a) = found else {
                // Same cost as a real check, so timing does not reveal which users exist.
                auth::verify_secret_async(password, state.dummy_hash.clone()).await;
                return Err(ApiError::new(
                    ErrorCode::InvalidCredentials,
                    "wrong username or password",
                ));
            };
            usable(&a)?;
            let ok = auth::verify_secret_async(password, a.password_hash.clone()).await;
            record_auth(&state, a.id, ok).await?;
            if !ok {
                return Err(ApiError::new(
                    ErrorCode::InvalidCredentials,
                    "wrong username or password",
                ));
            }
            Ok(Json(open_session(&state, a.id, &kiosk.kiosk_id).await?))
        }
        SessionRequest::Palm { template, pin } => Ok(Json(
            super::palm::palm_login(&state, &kiosk, &template, pin).await?,
        )),
    }
}

/// Checks the PIN when `amount` reaches the threshold and the shopper has a PIN.
pub(super) async fn pin_check(
    state: &SharedState,
    shopper_id: i64,
    amount: Money,
    pin: Option<String>,
) -> Result<(), ApiError> {
    if amount.minor() < state.cfg.pin_threshold.minor() {
        return Ok(());
    }
    let a = state
        .store
        .shopper_auth_by_id(shopper_id)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::UnknownAccount, "no such shopper"))?;
    usable(&a)?;
    let Some(pin_hash) = a.pin_hash else {
        return Ok(());
    };
    let Some(pin) = pin else {
        return Err(ApiError::new(
            ErrorCode::PinRequired,
            format!("amounts from {} need the PIN", state.cfg.pin_threshold),
        ));
    };
    let ok = auth::verify_secret_async(pin, pin_hash).await;
    record_auth(state, shopper_id, ok).await?;
    if !ok {
        return Err(ApiError::new(ErrorCode::InvalidPin, "wrong PIN"));
    }
    Ok(())
}

pub async fn deposit(
    State(state): State<SharedState>,
    KioskCaller(kiosk): KioskCaller,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let idem = idempotency(&headers, &kiosk.scope(), "POST /v1/deposits", "", &body)?;
    let req: DepositRequest = parse_json(&body)?;
    check_amount(&state, req.amount)?;
    let outcome = idempotent(&state, idem, async move {
        Ok(Command::Deposit {
            at: kiosk,
            username: req.username,
            amount: req.amount,
        })
    })
    .await?;
    Ok(respond(outcome, StatusCode::OK))
}

/// The shared path of a shopper's debit (cash-out, payment, transfer): idempotency key,
/// amount check, then — unless this is a retry — session, PIN above the threshold, and the
/// command built by `build` for the session's shopper.
async fn shopper_debit<R: serde::de::DeserializeOwned + Send + 'static>(
    state: SharedState,
    kiosk: KioskRef,
    headers: HeaderMap,
    body: &[u8],
    route: &str,
    money: impl Fn(&R) -> (Money, Option<String>),
    build: impl FnOnce(R, KioskRef, i64) -> Result<Command, ApiError> + Send + 'static,
) -> Result<Response, ApiError> {
    let idem = idempotency(&headers, &kiosk.scope(), route, &subject(&headers), body)?;
    let req: R = parse_json(body)?;
    let (amount, pin) = money(&req);
    check_amount(&state, amount)?;
    let st = state.clone();
    let outcome = idempotent(&state, idem, async move {
        let s = session(&st, &headers, &kiosk).await?;
        pin_check(&st, s.shopper_id, amount, pin).await?;
        build(req, kiosk, s.shopper_id)
    })
    .await?;
    Ok(respond(outcome, StatusCode::OK))
}

fn bounded_text(text: &Option<String>, what: &str) -> Result<(), ApiError> {
    if text.as_ref().is_some_and(|d| d.chars().count() > 200) {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            format!("{what} over 200 characters"),
        ));
    }
    Ok(())
}

pub async fn withdraw(
    State(state): State<SharedState>,
    KioskCaller(kiosk): KioskCaller,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    shopper_debit(
        state,
        kiosk,
        headers,
        &body,
        "POST /v1/withdrawals",
        |r: &WithdrawalRequest| (r.amount, r.pin.clone()),
        |r, at, shopper_id| {
            Ok(Command::Withdrawal {
                at,
                shopper_id,
                amount: r.amount,
            })
        },
    )
    .await
}

pub async fn pay(
    State(state): State<SharedState>,
    KioskCaller(kiosk): KioskCaller,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    shopper_debit(
        state,
        kiosk,
        headers,
        &body,
        "POST /v1/payments",
        |r: &PaymentRequest| (r.amount, r.pin.clone()),
        |r, at, shopper_id| {
            bounded_text(&r.description, "description")?;
            Ok(Command::Payment {
                at,
                shopper_id,
                amount: r.amount,
                description: r.description,
            })
        },
    )
    .await
}

pub async fn transfer(
    State(state): State<SharedState>,
    KioskCaller(kiosk): KioskCaller,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    shopper_debit(
        state,
        kiosk,
        headers,
        &body,
        "POST /v1/transfers",
        |r: &TransferRequest| (r.amount, r.pin.clone()),
        |r, at, from_shopper_id| {
            bounded_text(&r.note, "note")?;
            Ok(Command::Transfer {
                at: Some(at),
                from_shopper_id,
                to_username: r.to_username,
                amount: r.amount,
                note: r.note,
            })
        },
    )
    .await
}

pub async fn wallet(
    State(state): State<SharedState>,
    KioskCaller(kiosk): KioskCaller,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let s = session(&state, &headers, &kiosk).await?;
    Ok(Json(state.store.wallet(s.shopper_id).await?).into_response())
}

#[derive(Deserialize)]
pub struct Page {
    pub limit: Option<u32>,
    pub before: Option<i64>,
}

pub async fn history(
    State(state): State<SharedState>,
    KioskCaller(kiosk): KioskCaller,
    headers: HeaderMap,
    page: Result<Query<Page>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(page) = page.map_err(|e| ApiError::new(ErrorCode::InvalidRequest, e.body_text()))?;
    let s = session(&state, &headers, &kiosk).await?;
    let h = state
        .store
        .history(s.shopper_id, page.before, page.limit.unwrap_or(20))
        .await?;
    Ok(Json(h).into_response())
}

pub async fn merchant_today(
    State(state): State<SharedState>,
    KioskCaller(kiosk): KioskCaller,
) -> Result<Response, ApiError> {
    let today = crate::store::sqlite::now_text()[..10].to_string();
    Ok(Json(state.store.merchant_day(&kiosk.merchant, &today).await?).into_response())
}
