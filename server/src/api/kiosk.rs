//! Kiosk endpoints: registration, sessions, deposits, withdrawals, payments, transfers,
//! wallet views and the merchant's day. The kiosk and its merchant always come from the
//! client certificate ([`KioskCaller`]).

use super::input::{self, Password, Pin, Username};
use super::{
    check_amount, idempotency, parse_json, ApiError, InFlight, KioskCaller, RawBody, SharedState,
};
use crate::auth;
use crate::limits::{mask_name, Factor, Grant, GuessKey, NoPinGuard};
use crate::metrics::Lockout;
use crate::store::sqlite::unix_now;
use crate::store::{Command, Idem, KioskRef, Outcome, SessionInfo, ShopperAuth};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use palmline_shared::api::{
    self as wire, DailyTotals, DepositRequest, ErrorCode, Health, HistoryPage, PaymentRequest,
    Receipt, RegisterShopper, SessionRequest, SessionResponse, ShopperPinChange, TransferRequest,
    Wallet, WithdrawalRequest,
};
use palmline_shared::Money;
use serde::Deserialize;

#[utoipa::path(
    get,
    path = "/v1/health",
    tag = super::openapi::ANY,
    responses((status = 200, description = "Who the server takes the caller for, and whether its store is `ok` or `degraded`.", body = Health))
)]
pub async fn health(
    State(state): State<SharedState>,
    super::AnyCaller(caller): super::AnyCaller,
) -> Result<Json<Health>, ApiError> {
    let (role, kiosk_id, merchant) = match caller {
        super::Caller::Kiosk(k) => ("kiosk", Some(k.kiosk_id), Some(k.merchant)),
        super::Caller::Admin(_) => ("admin", None, None),
    };
    // "degraded": the store's latest write failed for a storage fault and none has
    // succeeded since (docs/FAULTS.md); payments then answer 503 `unavailable`.
    let status = match state.store.storage_fault() {
        Some(_) => "degraded",
        None => "ok",
    };
    Ok(Json(Health {
        status: status.into(),
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

/// The bearer token of a shopper-scoped request, refused (`session_required`) before its
/// body is judged when it is missing: a caller without credentials learns nothing else.
pub(super) fn bearer_required(headers: &HeaderMap) -> Result<&str, ApiError> {
    bearer(headers).ok_or_else(|| {
        ApiError::new(
            ErrorCode::SessionRequired,
            "log in first (Authorization: Bearer <token>)",
        )
    })
}

pub(super) fn subject(headers: &HeaderMap) -> String {
    bearer(headers)
        .map(|t| hex::encode(auth::token_hash(t)))
        .unwrap_or_default()
}

/// The fingerprint subject of a cash-desk request: a hash of its cashier token (as
/// [`subject`] for the shopper's), so a retry replays only under the same cashier session.
fn cashier_subject(headers: &HeaderMap) -> String {
    super::cashier::token(headers)
        .map(|t| hex::encode(auth::token_hash(t)))
        .unwrap_or_default()
}

/// The session of a shopper-scoped request; it must have been opened at this kiosk.
pub(super) async fn session(
    state: &SharedState,
    headers: &HeaderMap,
    kiosk: &crate::store::KioskRef,
) -> Result<SessionInfo, ApiError> {
    let token = bearer_required(headers)?;
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
    Ok(idempotent_run(state, idem, prepare).await?.0)
}

/// As [`idempotent`], also saying whether the command ran now (`Ran::Now`) or the stored
/// result of an earlier request was found first (`Ran::Before`).
pub(super) async fn idempotent_run<F>(
    state: &SharedState,
    idem: Idem,
    prepare: F,
) -> Result<(Outcome, Ran), ApiError>
where
    F: std::future::Future<Output = Result<Command, ApiError>>,
{
    let _guard = InFlight::claim(state, &idem)?;
    if let Some(done) = state.store.replay(&idem).await? {
        return Ok((done?, Ran::Before));
    }
    let cmd = prepare.await?;
    let outcome = state.store.execute(Some(idem), cmd).await?;
    Ok((outcome, Ran::Now))
}

/// Whether an idempotent request's command ran now or was answered from its stored result.
/// (With PostgreSQL, a duplicate sent at once to another replica waits on the key's row and
/// gets the stored result from `execute`: it counts as `Now` there too.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ran {
    Now,
    Before,
}

pub(super) fn respond(outcome: Outcome, status: StatusCode) -> Response {
    match outcome {
        Outcome::Receipt(r) => (status, Json(wire::Receipt::from(r))).into_response(),
        Outcome::Shopper(s) => (status, Json(wire::Shopper::from(s))).into_response(),
        Outcome::Account(a) => (status, Json(wire::AccountRow::from(a))).into_response(),
        Outcome::Cashier(c) => (status, Json(wire::Cashier::from(c))).into_response(),
        Outcome::Guess(_) | Outcome::Palm(_) | Outcome::Purged(_) | Outcome::Done => {
            StatusCode::NO_CONTENT.into_response()
        }
    }
}

/// `POST /v1/shoppers`: registers a shopper (username 3-32 of `a-z 0-9 . _ -`, password
/// 8-128 characters, optional PIN of 4-8 digits).
#[utoipa::path(
    post,
    path = "/v1/shoppers",
    tag = super::openapi::KIOSK,
    params(super::openapi::IdempotencyKey),
    request_body = RegisterShopper,
    responses((status = 201, description = "Registered.", body = palmline_shared::api::Shopper))
)]
pub async fn register(
    State(state): State<SharedState>,
    KioskCaller(kiosk): KioskCaller,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let idem = idempotency(&headers, &kiosk.scope(), "POST /v1/shoppers", "", &body)?;
    let req: RegisterShopper = parse_json(&body)?;
    let username = Username::new_account(req.username)?;
    input::email(&req.email)?;
    let password = Password::new_account(req.password)?;
    let pin = Pin::optional(req.pin)?;
    let st = state.clone();
    let outcome = idempotent(&state, idem, async move {
        let password_hash = st.hasher.hash(password.expose()).await;
        let pin_hash = match pin {
            Some(pin) => Some(st.hasher.hash(pin.expose()).await),
            None => None,
        };
        Ok(Command::RegisterShopper {
            username: username.into_string(),
            email: req.email,
            password_hash,
            pin_hash,
        })
    })
    .await?;
    Ok(respond(outcome, StatusCode::CREATED))
}

/// Refuses a frozen shopper before any secret is checked.
pub(super) fn usable(a: &ShopperAuth) -> Result<(), ApiError> {
    if a.frozen {
        return Err(ApiError::new(ErrorCode::AccountFrozen, "account is frozen"));
    }
    Ok(())
}

/// Checks one guess at a secret: the guess is counted through the writer first (refused if
/// the factor is locked here or the day's budget is spent), then argon2 runs, and a right
/// guess clears this factor's failures at this kiosk only.
pub(super) async fn check_guess(
    state: &SharedState,
    key: GuessKey,
    secret: String,
    phc: String,
) -> Result<bool, ApiError> {
    let factor = key.factor;
    let reserve = Command::ReserveGuess {
        key: key.clone(),
        rules: state.cfg.guesses,
    };
    let right = Command::GuessRight { key };
    check_reserved(state, factor, reserve, right, secret, phc).await
}

/// One guess at a secret of `factor`: `reserve` counts it (answering [`Outcome::Guess`]),
/// argon2 checks it, and `right` is run if it was right.
pub(super) async fn check_reserved(
    state: &SharedState,
    factor: Factor,
    reserve: Command,
    right: Command,
    secret: String,
    phc: String,
) -> Result<bool, ApiError> {
    let (here, today) = if factor == Factor::Cashier {
        (
            "too many wrong PINs for this cashier; try again later",
            "too many wrong PINs for this cashier today; ask the operator",
        )
    } else {
        (
            "too many failed attempts at this kiosk; try again later",
            "too many failed attempts today; try again tomorrow or ask the operator",
        )
    };
    match state.store.execute(None, reserve).await? {
        Outcome::Guess(Grant::Granted) => {}
        Outcome::Guess(Grant::LockedHere { until }) => {
            state.metrics.lockout(factor, Lockout::Kiosk);
            let wait = (until - unix_now()).max(1) as u64;
            return Err(ApiError::new(ErrorCode::AccountLocked, here)
                .retry_after(std::time::Duration::from_secs(wait)));
        }
        Outcome::Guess(Grant::DailyCapReached) => {
            state.metrics.lockout(factor, Lockout::DailyCap);
            return Err(ApiError::new(ErrorCode::AccountLocked, today));
        }
        other => {
            tracing::error!(?other, "unexpected answer to a guess reservation");
            return Err(ApiError::new(
                ErrorCode::Internal,
                "internal error; try again",
            ));
        }
    }
    let ok = state.hasher.verify(secret, phc).await;
    if ok {
        state.store.execute(None, right).await?;
    }
    Ok(ok)
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
        shopper: wallet.shopper.into(),
    })
}

/// `POST /v1/sessions`. Not idempotency-keyed on purpose: a retry just opens another
/// short-lived session, and a session token is never stored in clear (not even as a
/// replayable response).
#[utoipa::path(
    post,
    path = "/v1/sessions",
    tag = super::openapi::KIOSK,
    request_body = SessionRequest,
    responses((status = 200, description = "A session at this kiosk: send the token as `Authorization: Bearer`.", body = SessionResponse))
)]
pub async fn login(
    State(state): State<SharedState>,
    KioskCaller(kiosk): KioskCaller,
    RawBody(body): RawBody,
) -> Result<Json<SessionResponse>, ApiError> {
    match parse_json::<SessionRequest>(&body)? {
        SessionRequest::Password { username, password } => {
            let username = Username::lookup(username)?;
            let password = Password::for_login(password)?;
            Ok(Json(
                password_login(&state, &kiosk, username, password).await?,
            ))
        }
        SessionRequest::Palm { template, pin } => {
            input::template(&template)?;
            let pin = Pin::optional(pin)?;
            Ok(Json(
                super::palm::palm_login(&state, &kiosk, &template, pin).await?,
            ))
        }
    }
}

async fn password_login(
    state: &SharedState,
    kiosk: &KioskRef,
    username: Username,
    password: Password,
) -> Result<SessionResponse, ApiError> {
    let wrong = || ApiError::new(ErrorCode::InvalidCredentials, "wrong username or password");
    let Some(a) = state.store.shopper_auth(username.as_str()).await? else {
        // Same cost as a real check, so timing does not reveal which users exist.
        state
            .hasher
            .verify(password.expose(), state.dummy_hash.clone())
            .await;
        return Err(wrong());
    };
    usable(&a)?;
    let key = GuessKey {
        account_id: a.id,
        factor: Factor::Password,
        kiosk_id: kiosk.kiosk_id.clone(),
    };
    if !check_guess(state, key, password.expose(), a.password_hash).await? {
        return Err(wrong());
    }
    open_session(state, a.id, &kiosk.kiosk_id).await
}

/// What the PIN rule asks of a debit.
pub(super) enum PinGate {
    /// The PIN was given and is right: nothing more to check.
    Passed,
    /// No PIN given, under the threshold: the debit must stay within the cumulative limits.
    Limited(NoPinGuard),
}

impl PinGate {
    /// The command to run: the debit itself, or the debit under the no-PIN guard.
    pub(super) fn guard(self, debit: Command) -> Command {
        match self {
            PinGate::Passed => debit,
            PinGate::Limited(guard) => Command::WithoutPin {
                guard,
                debit: Box::new(debit),
            },
        }
    }
}

/// The PIN rule of a debit: a given PIN is always checked (a guess at the PIN factor); at
/// or above the threshold it is required; below it, the debit goes under the cumulative
/// limits (the store answers `pin_required` past them). A shopper without a PIN has the
/// same threshold and limits, answered with `pin_not_set`: there is no PIN to ask for, so
/// a stolen password or session cannot empty a PIN-less wallet either.
pub(super) async fn pin_gate(
    state: &SharedState,
    kiosk: &KioskRef,
    shopper_id: i64,
    amount: Money,
    pin: Option<Pin>,
    session_hash: Option<[u8; 32]>,
) -> Result<PinGate, ApiError> {
    let Some(pin_hash) = usable_pin_hash(state, shopper_id).await? else {
        return without_a_pin(state, amount, session_hash);
    };
    match pin {
        Some(pin) => {
            pin_right(state, kiosk, shopper_id, pin, pin_hash).await?;
            Ok(PinGate::Passed)
        }
        None if amount.minor() >= state.cfg.pin_threshold.minor() => Err(ApiError::new(
            ErrorCode::PinRequired,
            format!("amounts from {} need the PIN", state.cfg.pin_threshold),
        )),
        None => Ok(PinGate::Limited(NoPinGuard {
            session_hash,
            limits: state.cfg.no_pin,
            pin_set: true,
        })),
    }
}

/// The PIN rule for a shopper who has no PIN (a PIN sent anyway is not one of theirs):
/// under the threshold and the cumulative limits, or `pin_not_set`.
fn without_a_pin(
    state: &SharedState,
    amount: Money,
    session_hash: Option<[u8; 32]>,
) -> Result<PinGate, ApiError> {
    if amount.minor() >= state.cfg.pin_threshold.minor() {
        return Err(ApiError::new(
            ErrorCode::PinNotSet,
            format!(
                "amounts from {} need a PIN: set one first",
                state.cfg.pin_threshold
            ),
        ));
    }
    Ok(PinGate::Limited(NoPinGuard {
        session_hash,
        limits: state.cfg.no_pin,
        pin_set: false,
    }))
}

/// `POST /v1/deposits`: cash handed to the cashier on duty, credited to a shopper.
#[utoipa::path(
    post,
    path = "/v1/deposits",
    tag = super::openapi::KIOSK,
    params(super::openapi::IdempotencyKey),
    security(("mutualTLS" = [], "cashierSession" = [])),
    request_body = DepositRequest,
    responses((status = 200, description = "Deposited; the receipt masks the name and shows no balance.", body = Receipt))
)]
pub async fn deposit(
    State(state): State<SharedState>,
    KioskCaller(kiosk): KioskCaller,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let subject = cashier_subject(&headers);
    let idem = idempotency(
        &headers,
        &kiosk.scope(),
        "POST /v1/deposits",
        &subject,
        &body,
    )?;
    // After the key (a request without one is `missing_idempotency_key` as everywhere).
    let cashier = super::cashier::token(&headers)?.to_string();
    let req: DepositRequest = parse_json(&body)?;
    let username = Username::lookup(req.username)?;
    check_amount(&state, req.amount)?;
    let st = state.clone();
    let outcome = idempotent(&state, idem, async move {
        let cashier_id = super::cashier::on_duty(&st, &cashier, &kiosk).await?;
        Ok(Command::Deposit {
            at: kiosk,
            username: username.into_string(),
            amount: req.amount,
            cashier_id,
        })
    })
    .await?;
    Ok(respond(for_the_cash_desk(outcome), StatusCode::OK))
}

/// A cash deposit's receipt is read at the till, by whoever brought the cash: the amount
/// and a masked name, never the shopper's balance.
fn for_the_cash_desk(outcome: Outcome) -> Outcome {
    match outcome {
        Outcome::Receipt(mut r) => {
            r.balance_after = None;
            r.shopper = mask_name(&r.shopper);
            Outcome::Receipt(r)
        }
        other => other,
    }
}

/// A debit request's amount and PIN, with every text field checked first.
pub(super) trait DebitRequest: serde::de::DeserializeOwned + Send + 'static {
    fn checked(&mut self) -> Result<(Money, Option<Pin>), ApiError>;
}

impl DebitRequest for WithdrawalRequest {
    fn checked(&mut self) -> Result<(Money, Option<Pin>), ApiError> {
        Ok((self.amount, Pin::optional(self.pin.take())?))
    }
}

impl DebitRequest for PaymentRequest {
    fn checked(&mut self) -> Result<(Money, Option<Pin>), ApiError> {
        input::free_text(&self.description, "description")?;
        Ok((self.amount, Pin::optional(self.pin.take())?))
    }
}

impl DebitRequest for TransferRequest {
    fn checked(&mut self) -> Result<(Money, Option<Pin>), ApiError> {
        input::free_text(&self.note, "note")?;
        Username::lookup(self.to_username.clone())?;
        Ok((self.amount, Pin::optional(self.pin.take())?))
    }
}

/// Whether a debit is handed over the cash desk (a withdrawal: a cashier must be on duty).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Desk {
    Cash,
    None,
}

/// The shared path of a shopper's debit (cash-out, payment, transfer): idempotency key,
/// every field checked, then — unless this is a retry — the cashier on duty (cash only),
/// session, the PIN rule, and the command built by `build` for the session's shopper (and
/// the cashier).
async fn shopper_debit<R: DebitRequest>(
    state: SharedState,
    kiosk: KioskRef,
    headers: HeaderMap,
    body: &[u8],
    (route, desk): (&str, Desk),
    build: impl FnOnce(R, KioskRef, i64, Option<i64>) -> Result<Command, ApiError> + Send + 'static,
) -> Result<Response, ApiError> {
    let subject = match desk {
        Desk::Cash => format!("{}:{}", subject(&headers), cashier_subject(&headers)),
        Desk::None => subject(&headers),
    };
    let idem = idempotency(&headers, &kiosk.scope(), route, &subject, body)?;
    let cashier = match desk {
        Desk::Cash => Some(super::cashier::token(&headers)?.to_string()),
        Desk::None => None,
    };
    bearer_required(&headers)?;
    let mut req: R = parse_json(body)?;
    let (amount, pin) = req.checked()?;
    check_amount(&state, amount)?;
    let st = state.clone();
    let outcome = idempotent(&state, idem, async move {
        // The cashier first: a request without one costs the shopper no PIN guess.
        let cashier_id = match cashier {
            Some(token) => Some(super::cashier::on_duty(&st, &token, &kiosk).await?),
            None => None,
        };
        let s = session(&st, &headers, &kiosk).await?;
        let session_hash = bearer(&headers).map(auth::token_hash);
        let gate = pin_gate(&st, &kiosk, s.shopper_id, amount, pin, session_hash).await?;
        Ok(gate.guard(build(req, kiosk, s.shopper_id, cashier_id)?))
    })
    .await?;
    Ok(respond(outcome, StatusCode::OK))
}

/// `POST /v1/withdrawals`: cash paid out by the cashier on duty to the session's shopper.
#[utoipa::path(
    post,
    path = "/v1/withdrawals",
    tag = super::openapi::KIOSK,
    params(super::openapi::IdempotencyKey),
    security(("mutualTLS" = [], "shopperSession" = [], "cashierSession" = [])),
    request_body = WithdrawalRequest,
    responses((status = 200, description = "Paid out.", body = Receipt))
)]
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
        ("POST /v1/withdrawals", Desk::Cash),
        |r: WithdrawalRequest, at, shopper_id, cashier| {
            // `Desk::Cash` has always found the cashier on duty by now.
            let cashier_id = cashier.ok_or_else(|| {
                ApiError::new(ErrorCode::Internal, "internal error: no cashier on duty")
            })?;
            Ok(Command::Withdrawal {
                at,
                shopper_id,
                amount: r.amount,
                cashier_id,
            })
        },
    )
    .await
}

/// `POST /v1/payments`: the session's shopper pays this kiosk's merchant.
#[utoipa::path(
    post,
    path = "/v1/payments",
    tag = super::openapi::KIOSK,
    params(super::openapi::IdempotencyKey),
    security(("mutualTLS" = [], "shopperSession" = [])),
    request_body = PaymentRequest,
    responses((status = 200, description = "Paid.", body = Receipt))
)]
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
        ("POST /v1/payments", Desk::None),
        |r: PaymentRequest, at, shopper_id, _| {
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

/// `POST /v1/transfers`: the session's shopper sends money to another shopper.
#[utoipa::path(
    post,
    path = "/v1/transfers",
    tag = super::openapi::KIOSK,
    params(super::openapi::IdempotencyKey),
    security(("mutualTLS" = [], "shopperSession" = [])),
    request_body = TransferRequest,
    responses((status = 200, description = "Sent.", body = Receipt))
)]
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
        ("POST /v1/transfers", Desk::None),
        |r: TransferRequest, at, from_shopper_id, _| {
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

/// `POST /v1/wallet/pin`: the session's shopper sets a PIN, or changes it with the current
/// one (a guess at the PIN factor, counted before it is checked). Logged, never the PIN.
#[utoipa::path(
    post,
    path = "/v1/wallet/pin",
    tag = super::openapi::KIOSK,
    params(super::openapi::IdempotencyKey),
    security(("mutualTLS" = [], "shopperSession" = [])),
    request_body = ShopperPinChange,
    responses((status = 204, description = "The PIN is set."))
)]
pub async fn set_pin(
    State(state): State<SharedState>,
    KioskCaller(kiosk): KioskCaller,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let route = "POST /v1/wallet/pin";
    let idem = idempotency(&headers, &kiosk.scope(), route, &subject(&headers), &body)?;
    bearer_required(&headers)?;
    let req: ShopperPinChange = parse_json(&body)?;
    let pin = Pin::parse(req.pin)?;
    let current = Pin::optional(req.current_pin)?;
    let st = state.clone();
    let outcome = idempotent(&state, idem, async move {
        let s = session(&st, &headers, &kiosk).await?;
        current_pin_checked(&st, &kiosk, s.shopper_id, current).await?;
        let pin_hash = st.hasher.hash(pin.expose()).await;
        tracing::info!(shopper = s.shopper_id, kiosk = %kiosk.kiosk_id, "shopper PIN set");
        Ok(Command::SetShopperPin {
            shopper_id: s.shopper_id,
            pin_hash,
        })
    })
    .await?;
    Ok(respond(outcome, StatusCode::NO_CONTENT))
}

/// A shopper who has a PIN changes it only with the current one (`pin_required` without
/// it, `invalid_pin` when wrong); one without a PIN needs nothing more than the session.
async fn current_pin_checked(
    state: &SharedState,
    kiosk: &KioskRef,
    shopper_id: i64,
    current: Option<Pin>,
) -> Result<(), ApiError> {
    let Some(pin_hash) = usable_pin_hash(state, shopper_id).await? else {
        return Ok(());
    };
    let Some(current) = current else {
        return Err(ApiError::new(
            ErrorCode::PinRequired,
            "send the current PIN to change it",
        ));
    };
    pin_right(state, kiosk, shopper_id, current, pin_hash).await
}

/// The PIN hash of a shopper who may act (not frozen); `None` when the shopper has no PIN.
async fn usable_pin_hash(state: &SharedState, shopper_id: i64) -> Result<Option<String>, ApiError> {
    let a = state
        .store
        .shopper_auth_by_id(shopper_id)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::UnknownAccount, "no such shopper"))?;
    usable(&a)?;
    Ok(a.pin_hash)
}

/// One guess at the shopper's PIN at this kiosk (counted before it is checked):
/// `invalid_pin` when wrong.
async fn pin_right(
    state: &SharedState,
    kiosk: &KioskRef,
    shopper_id: i64,
    pin: Pin,
    pin_hash: String,
) -> Result<(), ApiError> {
    let key = GuessKey {
        account_id: shopper_id,
        factor: Factor::Pin,
        kiosk_id: kiosk.kiosk_id.clone(),
    };
    if !check_guess(state, key, pin.expose(), pin_hash).await? {
        return Err(ApiError::new(ErrorCode::InvalidPin, "wrong PIN"));
    }
    Ok(())
}

/// `GET /v1/wallet`: the session's shopper and balance.
#[utoipa::path(
    get,
    path = "/v1/wallet",
    tag = super::openapi::KIOSK,
    security(("mutualTLS" = [], "shopperSession" = [])),
    responses((status = 200, description = "The wallet.", body = Wallet))
)]
pub async fn wallet(
    State(state): State<SharedState>,
    KioskCaller(kiosk): KioskCaller,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let s = session(&state, &headers, &kiosk).await?;
    Ok(Json(Wallet::from(state.store.wallet(s.shopper_id).await?)).into_response())
}

/// A page of a newest-first list.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Page {
    /// How many rows at most: 0 counts as 1, and past the list's cap (200 for a wallet's
    /// history, 1000 for the palm-scan log) as the cap.
    #[param(value_type = Option<u64>, maximum = 4294967295.0)]
    pub limit: Option<u32>,
    /// Only rows with an id below this one (the previous page's `next_before`).
    pub before: Option<i64>,
}

/// `GET /v1/wallet/history`: the session's shopper's transactions, newest first.
#[utoipa::path(
    get,
    path = "/v1/wallet/history",
    tag = super::openapi::KIOSK,
    params(Page),
    security(("mutualTLS" = [], "shopperSession" = [])),
    responses((status = 200, description = "A page of history.", body = HistoryPage))
)]
pub async fn history(
    State(state): State<SharedState>,
    KioskCaller(kiosk): KioskCaller,
    headers: HeaderMap,
    page: Result<Query<Page>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    bearer_required(&headers)?;
    let Query(page) = page.map_err(|e| ApiError::new(ErrorCode::InvalidRequest, e.body_text()))?;
    let s = session(&state, &headers, &kiosk).await?;
    let h = state
        .store
        .history(s.shopper_id, page.before, page.limit.unwrap_or(20))
        .await?;
    Ok(Json(HistoryPage::from(h)).into_response())
}

/// `GET /v1/merchant/today`: the day's totals of this kiosk's merchant (UTC day).
#[utoipa::path(
    get,
    path = "/v1/merchant/today",
    tag = super::openapi::KIOSK,
    responses((status = 200, description = "Today's totals.", body = DailyTotals))
)]
pub async fn merchant_today(
    State(state): State<SharedState>,
    KioskCaller(kiosk): KioskCaller,
) -> Result<Response, ApiError> {
    let today = crate::store::Timestamp::now().date();
    let totals = state.store.merchant_day(&kiosk.merchant, today).await?;
    Ok(Json(DailyTotals::from(totals)).into_response())
}
