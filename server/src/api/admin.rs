//! Operator endpoints (admin certificate only): accounts, freeze, refunds, kiosks, the
//! palm-scan log, daily reports, the ledger check and the Prometheus metrics.

use super::kiosk::{idempotent, respond, Page};
use super::wire::all;
use super::{
    admin_action, check_amount, idempotency, input, parse_json, AdminCaller, ApiError, RawBody,
    SharedState,
};
use crate::store::Command;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use palmline_shared::api::{
    AccountRow, DailyReport, ErrorCode, FreezeRequest, KioskRow, LedgerCheck, PalmScanRow,
    PurgeReport, Receipt, RefundRequest, SkippedPalm,
};
use serde::Deserialize;

type QueryResult<T> = Result<Query<T>, axum::extract::rejection::QueryRejection>;

fn query<T>(q: QueryResult<T>) -> Result<T, ApiError> {
    q.map(|Query(t)| t)
        .map_err(|e| ApiError::new(ErrorCode::InvalidRequest, e.body_text()))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AccountsQuery {
    /// Part of a name or e-mail; empty or absent lists all.
    pub q: Option<String>,
    /// How many rows at most: 0 counts as 1, over 1000 as 1000.
    #[param(value_type = Option<u64>, maximum = 4294967295.0)]
    pub limit: Option<u32>,
}

/// `GET /v1/admin/accounts`: accounts, searched by name or e-mail.
#[utoipa::path(
    get,
    path = "/v1/admin/accounts",
    tag = super::openapi::OPERATOR,
    params(AccountsQuery),
    responses((status = 200, description = "Matching accounts.", body = Vec<AccountRow>))
)]
pub async fn accounts(
    State(state): State<SharedState>,
    AdminCaller(_): AdminCaller,
    q: QueryResult<AccountsQuery>,
) -> Result<Response, ApiError> {
    let q = query(q)?;
    let rows = state
        .store
        .accounts(
            q.q.as_deref().filter(|s| !s.is_empty()),
            q.limit.unwrap_or(100),
        )
        .await?;
    Ok(Json(all::<_, AccountRow>(rows)).into_response())
}

async fn set_frozen(
    state: SharedState,
    admin: String,
    id: Result<Path<i64>, axum::extract::rejection::PathRejection>,
    headers: HeaderMap,
    body: axum::body::Bytes,
    frozen: bool,
) -> Result<Response, ApiError> {
    let action = if frozen { "freeze" } else { "unfreeze" };
    let route = format!("POST /v1/admin/accounts/{{id}}/{action}");
    let (id, idem) = admin_action(id, &admin, &route, &headers, &body)?;
    if !body.is_empty() {
        let req: FreezeRequest = parse_json(&body)?;
        input::free_text(&req.reason, "reason")?;
    }
    let outcome = idempotent(&state, idem, async move {
        Ok(Command::SetFrozen {
            account_id: id,
            frozen,
        })
    })
    .await?;
    Ok(respond(outcome, StatusCode::OK))
}

/// `POST /v1/admin/accounts/{id}/freeze`: no debit, login or payment until unfrozen.
#[utoipa::path(
    post,
    path = "/v1/admin/accounts/{id}/freeze",
    tag = super::openapi::OPERATOR,
    params(("id" = i64, Path, description = "account id"), super::openapi::IdempotencyKey),
    request_body(content = Option<FreezeRequest>, description = "optional reason"),
    responses((status = 200, description = "Frozen.", body = AccountRow))
)]
pub async fn freeze(
    State(state): State<SharedState>,
    AdminCaller(admin): AdminCaller,
    id: Result<Path<i64>, axum::extract::rejection::PathRejection>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    set_frozen(state, admin, id, headers, body, true).await
}

/// `POST /v1/admin/accounts/{id}/unfreeze`.
#[utoipa::path(
    post,
    path = "/v1/admin/accounts/{id}/unfreeze",
    tag = super::openapi::OPERATOR,
    params(("id" = i64, Path, description = "account id"), super::openapi::IdempotencyKey),
    request_body(content = Option<FreezeRequest>, description = "optional reason"),
    responses((status = 200, description = "Unfrozen.", body = AccountRow))
)]
pub async fn unfreeze(
    State(state): State<SharedState>,
    AdminCaller(admin): AdminCaller,
    id: Result<Path<i64>, axum::extract::rejection::PathRejection>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    set_frozen(state, admin, id, headers, body, false).await
}

/// `POST /v1/admin/accounts/{id}/unlock`: lifts a shopper's lock-outs at every kiosk and
/// gives back today's guesses (the operator has checked who is asking). Logged.
#[utoipa::path(
    post,
    path = "/v1/admin/accounts/{id}/unlock",
    tag = super::openapi::OPERATOR,
    params(("id" = i64, Path, description = "account id"), super::openapi::IdempotencyKey),
    request_body(content = Option<FreezeRequest>, description = "optional reason"),
    responses((status = 200, description = "Lock-outs lifted.", body = AccountRow))
)]
pub async fn unlock(
    State(state): State<SharedState>,
    AdminCaller(admin): AdminCaller,
    id: Result<Path<i64>, axum::extract::rejection::PathRejection>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let route = "POST /v1/admin/accounts/{id}/unlock";
    let (id, idem) = admin_action(id, &admin, route, &headers, &body)?;
    if !body.is_empty() {
        let req: palmline_shared::api::FreezeRequest = parse_json(&body)?;
        input::free_text(&req.reason, "reason")?;
    }
    let outcome = idempotent(&state, idem, async move {
        Ok(Command::LiftLocks { account_id: id })
    })
    .await?;
    tracing::warn!(account = id, operator = %admin, "lock-outs lifted by the operator");
    Ok(respond(outcome, StatusCode::OK))
}

/// `POST /v1/admin/purge`: the retention purge now, as `serve` runs it every hour: old
/// idempotency records and palm scans, expired sessions, past days' guess counts. No
/// Idempotency-Key: a second run leaves the same state (it finds less to delete). Logged.
#[utoipa::path(
    post,
    path = "/v1/admin/purge",
    tag = super::openapi::OPERATOR,
    responses((status = 200, description = "What was deleted.", body = PurgeReport))
)]
pub async fn purge(
    State(state): State<SharedState>,
    AdminCaller(admin): AdminCaller,
) -> Result<Response, ApiError> {
    let now = crate::store::sqlite::unix_now();
    let p = crate::retention::purge(&*state.store, state.cfg.retention, now).await?;
    tracing::info!(operator = %admin, idempotency = p.idempotency, scans = p.scans,
        sessions = p.sessions, guess_days = p.guess_days, "retention purge by the operator");
    let report = palmline_shared::api::PurgeReport {
        idempotency: p.idempotency,
        scans: p.scans,
        sessions: p.sessions,
        guess_days: p.guess_days,
    };
    Ok(Json(report).into_response())
}

/// `POST /v1/admin/refunds`: gives (part of) a payment back to its shopper.
#[utoipa::path(
    post,
    path = "/v1/admin/refunds",
    tag = super::openapi::OPERATOR,
    params(super::openapi::IdempotencyKey),
    request_body = RefundRequest,
    responses((status = 200, description = "Refunded.", body = Receipt))
)]
pub async fn refund(
    State(state): State<SharedState>,
    AdminCaller(admin): AdminCaller,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let idem = idempotency(
        &headers,
        &format!("admin:{admin}"),
        "POST /v1/admin/refunds",
        "",
        &body,
    )?;
    let req: RefundRequest = parse_json(&body)?;
    input::free_text(&req.reason, "reason")?;
    check_amount(&state, req.amount)?;
    let outcome = idempotent(&state, idem, async move {
        Ok(Command::Refund {
            payment_id: req.payment_id,
            amount: req.amount,
            reason: req.reason,
            operator: admin,
        })
    })
    .await?;
    Ok(respond(outcome, StatusCode::OK))
}

/// `GET /v1/admin/kiosks`: kiosks seen, with their merchant and last call.
#[utoipa::path(
    get,
    path = "/v1/admin/kiosks",
    tag = super::openapi::OPERATOR,
    responses((status = 200, description = "Kiosks.", body = Vec<KioskRow>))
)]
pub async fn kiosks(
    State(state): State<SharedState>,
    AdminCaller(_): AdminCaller,
) -> Result<Response, ApiError> {
    Ok(Json(all::<_, KioskRow>(state.store.kiosks().await?)).into_response())
}

/// `GET /v1/admin/palms/skipped`: enrolled palms this server left out of its index because
/// their templates do not open or decode (the `palms_skipped` gauge counts them).
#[utoipa::path(
    get,
    path = "/v1/admin/palms/skipped",
    tag = super::openapi::OPERATOR,
    responses((status = 200, description = "Skipped palms, by account id.", body = Vec<SkippedPalm>))
)]
pub async fn skipped_palms(
    State(state): State<SharedState>,
    AdminCaller(_): AdminCaller,
) -> Result<Response, ApiError> {
    let mut rows = Vec::new();
    for account_id in state.palm.skipped() {
        let shopper = state.store.shopper_auth_by_id(account_id).await?;
        rows.push(SkippedPalm {
            account_id,
            username: shopper.map(|s| s.username),
        });
    }
    Ok(Json(rows).into_response())
}

/// `GET /v1/admin/palm-scans`: the palm-scan log, newest first.
#[utoipa::path(
    get,
    path = "/v1/admin/palm-scans",
    tag = super::openapi::OPERATOR,
    params(Page),
    responses((status = 200, description = "Scans.", body = Vec<PalmScanRow>))
)]
pub async fn palm_scans(
    State(state): State<SharedState>,
    AdminCaller(_): AdminCaller,
    q: QueryResult<Page>,
) -> Result<Response, ApiError> {
    let q = query(q)?;
    let scans = state
        .store
        .palm_scans(q.before, q.limit.unwrap_or(100))
        .await?;
    Ok(Json(all::<_, PalmScanRow>(scans)).into_response())
}

/// `GET /v1/admin/ledger-check`: every balance recomputed from the entries.
#[utoipa::path(
    get,
    path = "/v1/admin/ledger-check",
    tag = super::openapi::OPERATOR,
    responses((status = 200, description = "The findings; `ok` is the verdict.", body = LedgerCheck))
)]
pub async fn ledger_check(
    State(state): State<SharedState>,
    AdminCaller(_): AdminCaller,
) -> Result<Response, ApiError> {
    Ok(Json(LedgerCheck::from(state.store.ledger_check().await?)).into_response())
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DateQuery {
    /// `YYYY-MM-DD` (UTC); default today.
    pub date: Option<String>,
}

/// `GET /v1/admin/reports/daily`: one UTC day's totals per merchant (default: today).
#[utoipa::path(
    get,
    path = "/v1/admin/reports/daily",
    tag = super::openapi::OPERATOR,
    params(DateQuery),
    responses((status = 200, description = "The report.", body = DailyReport))
)]
pub async fn daily_report(
    State(state): State<SharedState>,
    AdminCaller(_): AdminCaller,
    q: QueryResult<DateQuery>,
) -> Result<Response, ApiError> {
    let q = query(q)?;
    let date = match q.date {
        Some(d) => input::report_date(&d)?,
        None => crate::store::Timestamp::now().date(),
    };
    let report = state.store.daily_report(date).await.map_err(|e| match e {
        // The last day of the calendar has no next day to end it.
        crate::store::LedgerError::InvalidAmount(m) => ApiError::new(ErrorCode::InvalidRequest, m),
        e => e.into(),
    })?;
    Ok(Json(DailyReport::from(report)).into_response())
}

/// `DELETE /v1/admin/accounts/{id}/palm`: the operator deletes a shopper's palm (on the
/// shopper's request, or when it was enrolled wrongly).
#[utoipa::path(
    delete,
    path = "/v1/admin/accounts/{id}/palm",
    tag = super::openapi::OPERATOR,
    params(("id" = i64, Path, description = "shopper account id"), super::openapi::IdempotencyKey),
    responses((status = 204, description = "Deleted (or there was none)."))
)]
pub async fn delete_palm(
    State(state): State<SharedState>,
    AdminCaller(admin): AdminCaller,
    id: Result<Path<i64>, axum::extract::rejection::PathRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let route = "DELETE /v1/admin/accounts/{id}/palm";
    let (id, idem) = admin_action(id, &admin, route, &headers, b"")?;
    super::palm::delete_palm(&state, idem, id).await
}

/// `GET /v1/admin/metrics`: every instrument in Prometheus' (OpenMetrics) text format, with
/// each kiosk's last call read from the store and the index's state read at scrape time.
#[utoipa::path(
    get,
    path = "/v1/admin/metrics",
    tag = super::openapi::OPERATOR,
    responses((status = 200, description = "OpenMetrics text (Prometheus).", content_type = "application/openmetrics-text", body = String))
)]
pub async fn metrics(
    State(state): State<SharedState>,
    AdminCaller(_): AdminCaller,
) -> Result<Response, ApiError> {
    state.palm.observe_index();
    for k in state.store.kiosks().await? {
        state.metrics.kiosk_seen(&k.kiosk_id, k.last_seen.unix());
    }
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            crate::metrics::CONTENT_TYPE,
        )],
        state.metrics.encode(),
    )
        .into_response())
}
