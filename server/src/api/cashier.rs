//! Cashiers: the operator creates, lists and disables them (admin certificate); a cashier
//! signs in at a kiosk of their merchant with name and PIN and gets a short-lived token
//! that the cash desk's requests (deposits, withdrawals) carry in `Cashier-Session`.
//!
//! A cashier's PIN is a guessable secret like a shopper's: every guess is counted through
//! the store before argon2 runs ([`super::kiosk::check_reserved`]), on the cashier's own
//! counters. Nothing here ever trusts a cashier named in a request body: the session token
//! names the cashier, and the kiosk's certificate names the merchant.

use super::input::{self, CashierName, CashierPin};
use super::kiosk::{check_reserved, idempotent};
use super::{
    admin_action, idempotency, parse_json, AdminCaller, ApiError, KioskCaller, RawBody, SharedState,
};
use crate::auth;
use crate::limits::Factor;
use crate::store::sqlite::unix_now;
use crate::store::{CashierStatus, Command, KioskRef, Outcome};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use palmline_shared::api::{
    Cashier, CashierPinChange, CashierSessionRequest, CashierSessionResponse, ErrorCode,
    NewCashier, CASHIER_SESSION_HEADER,
};
use serde::Deserialize;

/// `POST /v1/admin/cashiers`: a new cashier of a merchant, with an argon2id PIN hash.
#[utoipa::path(
    post,
    path = "/v1/admin/cashiers",
    tag = super::openapi::OPERATOR,
    params(super::openapi::IdempotencyKey),
    request_body = NewCashier,
    responses((status = 201, description = "Created.", body = Cashier))
)]
pub async fn create(
    State(state): State<SharedState>,
    AdminCaller(admin): AdminCaller,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let scope = format!("admin:{admin}");
    let idem = idempotency(&headers, &scope, "POST /v1/admin/cashiers", "", &body)?;
    let req: NewCashier = parse_json(&body)?;
    input::merchant(&req.merchant)?;
    let name = CashierName::parse(req.name)?;
    let pin = CashierPin::parse(req.pin)?;
    let st = state.clone();
    let merchant = req.merchant;
    let outcome = idempotent(&state, idem, async move {
        let pin_hash = st.hasher.hash(pin.expose()).await;
        Ok(Command::CreateCashier {
            merchant,
            name: name.into_string(),
            pin_hash,
        })
    })
    .await?;
    cashier_response(outcome, StatusCode::CREATED)
}

fn cashier_response(outcome: Outcome, status: StatusCode) -> Result<Response, ApiError> {
    match outcome {
        Outcome::Cashier(c) => Ok((status, Json(Cashier::from(c))).into_response()),
        other => {
            tracing::error!(?other, "unexpected answer to a cashier command");
            Err(ApiError::new(
                ErrorCode::Internal,
                "internal error; try again",
            ))
        }
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only this merchant's cashiers.
    pub merchant: Option<String>,
}

/// `GET /v1/admin/cashiers[?merchant=M]`: never shows a PIN hash.
#[utoipa::path(
    get,
    path = "/v1/admin/cashiers",
    tag = super::openapi::OPERATOR,
    params(ListQuery),
    responses((status = 200, description = "Cashiers.", body = Vec<Cashier>))
)]
pub async fn list(
    State(state): State<SharedState>,
    AdminCaller(_): AdminCaller,
    q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::new(ErrorCode::InvalidRequest, e.body_text()))?;
    if let Some(m) = &q.merchant {
        input::merchant(m)?;
    }
    let cashiers = state.store.cashiers(q.merchant.as_deref()).await?;
    Ok(Json(super::wire::all::<_, Cashier>(cashiers)).into_response())
}

/// `POST /v1/admin/cashiers/{id}/disable`: the cashier can no longer sign in, and the
/// sessions already open stop working (`cashier_disabled`).
#[utoipa::path(
    post,
    path = "/v1/admin/cashiers/{id}/disable",
    tag = super::openapi::OPERATOR,
    params(("id" = i64, Path, description = "cashier id"), super::openapi::IdempotencyKey),
    responses((status = 200, description = "Disabled.", body = Cashier))
)]
pub async fn disable(
    State(state): State<SharedState>,
    AdminCaller(admin): AdminCaller,
    id: Result<Path<i64>, axum::extract::rejection::PathRejection>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let route = "POST /v1/admin/cashiers/{id}/disable";
    let (id, idem) = admin_action(id, &admin, route, &headers, &body)?;
    let outcome = idempotent(&state, idem, async move {
        Ok(Command::DisableCashier { cashier_id: id })
    })
    .await?;
    cashier_response(outcome, StatusCode::OK)
}

/// `POST /v1/admin/cashiers/{id}/unlock`: lifts the cashier's lock and gives back the
/// day's guesses (the operator has checked who is asking). Logged.
#[utoipa::path(
    post,
    path = "/v1/admin/cashiers/{id}/unlock",
    tag = super::openapi::OPERATOR,
    params(("id" = i64, Path, description = "cashier id"), super::openapi::IdempotencyKey),
    responses((status = 200, description = "Unlocked.", body = Cashier))
)]
pub async fn unlock(
    State(state): State<SharedState>,
    AdminCaller(admin): AdminCaller,
    id: Result<Path<i64>, axum::extract::rejection::PathRejection>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let route = "POST /v1/admin/cashiers/{id}/unlock";
    let (id, idem) = admin_action(id, &admin, route, &headers, &body)?;
    let outcome = idempotent(&state, idem, async move {
        Ok(Command::ResetCashier {
            cashier_id: id,
            pin_hash: None,
        })
    })
    .await?;
    tracing::warn!(cashier = id, operator = %admin, "cashier lock lifted by the operator");
    cashier_response(outcome, StatusCode::OK)
}

/// `POST /v1/admin/cashiers/{id}/pin`: a new PIN (argon2id), the lock lifted, and the
/// cashier's open sessions ended. Logged (never the PIN).
#[utoipa::path(
    post,
    path = "/v1/admin/cashiers/{id}/pin",
    tag = super::openapi::OPERATOR,
    params(("id" = i64, Path, description = "cashier id"), super::openapi::IdempotencyKey),
    request_body = CashierPinChange,
    responses((status = 200, description = "PIN changed, lock lifted, open sessions ended.", body = Cashier))
)]
pub async fn set_pin(
    State(state): State<SharedState>,
    AdminCaller(admin): AdminCaller,
    id: Result<Path<i64>, axum::extract::rejection::PathRejection>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let route = "POST /v1/admin/cashiers/{id}/pin";
    let (id, idem) = admin_action(id, &admin, route, &headers, &body)?;
    let req: CashierPinChange = parse_json(&body)?;
    let pin = CashierPin::parse(req.pin)?;
    let st = state.clone();
    let outcome = idempotent(&state, idem, async move {
        let pin_hash = st.hasher.hash(pin.expose()).await;
        Ok(Command::ResetCashier {
            cashier_id: id,
            pin_hash: Some(pin_hash),
        })
    })
    .await?;
    tracing::warn!(cashier = id, operator = %admin, "cashier PIN changed by the operator");
    cashier_response(outcome, StatusCode::OK)
}

/// `POST /v1/cashier-sessions`: a cashier of this kiosk's merchant signs in. Not
/// idempotency-keyed (as shopper logins): a retry opens another short-lived session.
#[utoipa::path(
    post,
    path = "/v1/cashier-sessions",
    tag = super::openapi::KIOSK,
    request_body = CashierSessionRequest,
    responses((status = 200, description = "Signed in: send the token in `Cashier-Session`.", body = CashierSessionResponse))
)]
pub async fn sign_in(
    State(state): State<SharedState>,
    KioskCaller(kiosk): KioskCaller,
    RawBody(body): RawBody,
) -> Result<Json<CashierSessionResponse>, ApiError> {
    let req: CashierSessionRequest = parse_json(&body)?;
    let name = CashierName::parse(req.name)?;
    let pin = CashierPin::parse(req.pin)?;
    let wrong = || ApiError::new(ErrorCode::InvalidCredentials, "wrong cashier name or PIN");
    let Some(a) = state
        .store
        .cashier_auth(&kiosk.merchant, name.as_str())
        .await?
    else {
        // Same cost as a real check, so timing does not tell which names exist.
        state
            .hasher
            .verify(pin.expose(), state.dummy_hash.clone())
            .await;
        return Err(wrong());
    };
    if a.cashier.status != CashierStatus::Active {
        return Err(ApiError::new(
            ErrorCode::CashierDisabled,
            "this cashier is disabled; ask the operator",
        ));
    }
    let id = a.cashier.id;
    let reserve = Command::ReserveCashierGuess {
        cashier_id: id,
        kiosk_id: kiosk.kiosk_id.clone(),
        rules: state.cfg.guesses,
    };
    let right = Command::CashierGuessRight { cashier_id: id };
    if !check_reserved(
        &state,
        Factor::Cashier,
        reserve,
        right,
        pin.expose(),
        a.pin_hash,
    )
    .await?
    {
        return Err(wrong());
    }
    let (token, token_hash) = auth::new_token();
    let expires = unix_now() + state.cfg.cashier_session_ttl.as_secs() as i64;
    let open = Command::CreateCashierSession {
        token_hash,
        cashier_id: id,
        kiosk_id: kiosk.kiosk_id.clone(),
        expires_at: expires,
    };
    state.store.execute(None, open).await?;
    let expires_at = time::OffsetDateTime::from_unix_timestamp(expires)
        .map(crate::store::sqlite::format_ts)
        .unwrap_or_default();
    Ok(Json(CashierSessionResponse {
        token,
        expires_at,
        cashier: a.cashier.into(),
    }))
}

/// The token of a cash-desk request, refused (`cashier_session_required`) before anything
/// else when it is missing.
pub(super) fn token(headers: &HeaderMap) -> Result<&str, ApiError> {
    headers
        .get(CASHIER_SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::CashierSessionRequired,
                "a cashier must sign in first (Cashier-Session header)",
            )
        })
}

/// The cashier on duty for a cash-desk request: a live session opened at this very kiosk
/// by an active cashier of its merchant. Returns the cashier's id.
pub(super) async fn on_duty(
    state: &SharedState,
    token: &str,
    kiosk: &KioskRef,
) -> Result<i64, ApiError> {
    let expired = |why: &str| ApiError::new(ErrorCode::CashierSessionExpired, why.to_string());
    let s = state
        .store
        .cashier_session(auth::token_hash(token), unix_now())
        .await?
        .ok_or_else(|| expired("cashier session expired or unknown; sign in again"))?;
    if s.kiosk_id != kiosk.kiosk_id || s.merchant != kiosk.merchant {
        return Err(expired("this cashier session belongs to another kiosk"));
    }
    if !s.active {
        return Err(ApiError::new(
            ErrorCode::CashierDisabled,
            "this cashier is disabled; ask the operator",
        ));
    }
    Ok(s.cashier_id)
}
