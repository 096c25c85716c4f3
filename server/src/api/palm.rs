//! Palm endpoints: enroll, delete, pay by palm, and palm login. Every identification attempt
//! goes into the palm-scan log and costs a token of the kiosk's and the merchant's rate
//! (never given back by a success); a kiosk that keeps failing is slowed down.

use super::input::{self, Pin};
use super::kiosk::{
    idempotent, idempotent_run, open_session, pin_gate, respond, session, subject, Ran,
};
use super::{check_amount, idempotency, parse_json, ApiError, KioskCaller, RawBody, SharedState};
use crate::limits::{Factor, GuessKey};
use crate::palm::{Identification, Verdict};
use crate::store::{Command, KioskRef, Outcome, ScanOutcome};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use palmline_shared::api::{
    ErrorCode, PalmEnrollRequest, PalmEnrollResponse, PalmPaymentRequest, SessionResponse,
};
use palmline_shared::palm::Template;

/// Largest body of an enrollment: five templates at the codec's bound (24 KiB each, base64)
/// and the JSON around them.
pub const MAX_ENROLL_BODY: usize = 5 * palmline_shared::api::MAX_TEMPLATE_B64_LEN + 8 * 1024;

fn decode_template(b64: &str) -> Result<Template, ApiError> {
    input::template(b64)?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|_| ApiError::new(ErrorCode::InvalidTemplate, "template is not base64"))?;
    let t = Template::decode(&bytes)
        .map_err(|e| ApiError::new(ErrorCode::InvalidTemplate, format!("bad template: {e}")))?;
    if t.len() < 8 {
        return Err(ApiError::new(
            ErrorCode::InvalidTemplate,
            "template has too few keypoints; capture again",
        ));
    }
    Ok(t)
}

pub(super) async fn log_scan(
    state: &SharedState,
    kiosk: &KioskRef,
    purpose: &str,
    outcome: ScanOutcome,
    score: Option<u32>,
    shopper_id: Option<i64>,
) -> Result<(), ApiError> {
    state
        .store
        .execute(
            None,
            Command::LogScan {
                kiosk_id: kiosk.kiosk_id.clone(),
                purpose: purpose.into(),
                outcome,
                score: score.map(f64::from),
                shopper_id,
            },
        )
        .await?;
    Ok(())
}

/// Refuses an identification from a kiosk that failed too often lately, or past the
/// kiosk's or merchant's rate (every attempt counts, whatever its outcome).
async fn admit(state: &SharedState, kiosk: &KioskRef, purpose: &str) -> Result<(), ApiError> {
    let free = state.palm.policy.free_failures;
    let refused = match state.throttle.slowed_down(&kiosk.kiosk_id, free).await? {
        Some(wait) => Err({
            state
                .metrics
                .rate_limited(crate::metrics::RateLimit::KioskSlowDown);
            ApiError::new(
                ErrorCode::RateLimited,
                format!(
                    "too many unrecognised palms at this kiosk; try again in {} s",
                    wait.as_secs().max(1)
                ),
            )
            .retry_after(wait)
        }),
        None => state.identification_allowed(kiosk, 1).await,
    };
    if refused.is_err() {
        log_scan(state, kiosk, purpose, ScanOutcome::RateLimited, None, None).await?;
    }
    refused
}

/// A palm that was not recognised: counts towards the kiosk's slow-down and is logged.
async fn not_recognised(
    state: &SharedState,
    kiosk: &KioskRef,
    purpose: &str,
    score: Option<u32>,
    message: &str,
) -> ApiError {
    if let Err(e) = state.throttle.record_failure(&kiosk.kiosk_id).await {
        return e.into();
    }
    let logged = log_scan(state, kiosk, purpose, ScanOutcome::Rejected, score, None).await;
    logged
        .err()
        .unwrap_or_else(|| ApiError::new(ErrorCode::PalmNotRecognised, message))
}

/// Identifies a probe for a payment or a login and applies the decision policy, with the
/// PIN as step-up (taken out of `pin` when used). Returns the shopper and whether the PIN
/// was checked; logs every attempt.
async fn identify_for(
    state: &SharedState,
    kiosk: &KioskRef,
    purpose: &str,
    template: &str,
    pin: &mut Option<Pin>,
) -> Result<(i64, bool), ApiError> {
    admit(state, kiosk, purpose).await?;
    let probe = match decode_template(template) {
        Ok(t) => t,
        Err(e) => {
            log_scan(state, kiosk, purpose, ScanOutcome::BadTemplate, None, None).await?;
            return Err(e);
        }
    };
    let Identification { best, decision, .. } =
        state.palm.identify(&*state.store, &probe, None).await?;
    let score = best.map(|b| b.1);
    let shopper = match (best, decision) {
        (Some((id, _)), d) if d != Verdict::Reject => id,
        _ => {
            let msg = "palm not recognised; try again or use your password";
            return Err(not_recognised(state, kiosk, purpose, score, msg).await);
        }
    };
    let stepped_up = decision == Verdict::StepUp;
    if stepped_up {
        step_up(state, kiosk, purpose, shopper, score, pin.take()).await?;
    }
    log_scan(
        state,
        kiosk,
        purpose,
        ScanOutcome::Accepted,
        score,
        Some(shopper),
    )
    .await?;
    Ok((shopper, stepped_up))
}

/// A grey-zone match: the shopper's PIN decides. Every PIN here is a guess at the step-up
/// factor (counted before it is checked; its budget is the PIN's).
async fn step_up(
    state: &SharedState,
    kiosk: &KioskRef,
    purpose: &str,
    shopper: i64,
    score: Option<u32>,
    pin: Option<Pin>,
) -> Result<(), ApiError> {
    let auth = state.store.shopper_auth_by_id(shopper).await?;
    let Some(auth) = auth.filter(|a| a.pin_hash.is_some()) else {
        let msg = "palm not recognised with certainty; use your password";
        return Err(not_recognised(state, kiosk, purpose, score, msg).await);
    };
    let Some(pin) = pin else {
        log_scan(
            state,
            kiosk,
            purpose,
            ScanOutcome::StepUp,
            score,
            Some(shopper),
        )
        .await?;
        return Err(ApiError::new(
            ErrorCode::StepUpRequired,
            "please confirm with your PIN",
        ));
    };
    super::kiosk::usable(&auth)?;
    let key = GuessKey {
        account_id: shopper,
        factor: Factor::StepUp,
        kiosk_id: kiosk.kiosk_id.clone(),
    };
    let phc = auth.pin_hash.unwrap_or_default();
    let checked = super::kiosk::check_guess(state, key, pin.expose(), phc).await;
    if !matches!(checked, Ok(true)) {
        state.throttle.record_failure(&kiosk.kiosk_id).await?;
        let outcome = ScanOutcome::StepUpFailed;
        log_scan(state, kiosk, purpose, outcome, score, Some(shopper)).await?;
        checked?;
        return Err(ApiError::new(ErrorCode::InvalidPin, "wrong PIN"));
    }
    Ok(())
}

/// `POST /v1/payments/palm`: identify and pay, one atomic outcome under the idempotency key.
/// The receipt carries no balance: there is no session to show it to.
#[utoipa::path(
    post,
    path = "/v1/payments/palm",
    tag = super::openapi::KIOSK,
    params(super::openapi::IdempotencyKey),
    request_body = PalmPaymentRequest,
    responses((status = 200, description = "Identified and paid; no balance on the receipt.", body = palmline_shared::api::Receipt))
)]
pub async fn pay_by_palm(
    State(state): State<SharedState>,
    KioskCaller(kiosk): KioskCaller,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let idem = idempotency(
        &headers,
        &kiosk.scope(),
        "POST /v1/payments/palm",
        "",
        &body,
    )?;
    let req: PalmPaymentRequest = parse_json(&body)?;
    input::template(&req.template)?;
    input::free_text(&req.description, "description")?;
    let mut pin = Pin::optional(req.pin)?;
    check_amount(&state, req.amount)?;
    let st = state.clone();
    let outcome = idempotent(&state, idem, async move {
        let (shopper, stepped_up) =
            identify_for(&st, &kiosk, "payment", &req.template, &mut pin).await?;
        let payment = Command::Payment {
            at: kiosk.clone(),
            shopper_id: shopper,
            amount: req.amount,
            description: req.description,
        };
        // A step-up PIN already proved the shopper; otherwise the PIN rule of any debit.
        if stepped_up {
            return Ok(payment);
        }
        let gate = pin_gate(&st, &kiosk, shopper, req.amount, pin, None).await?;
        Ok(gate.guard(payment))
    })
    .await?;
    Ok(respond(without_balance(outcome), StatusCode::OK))
}

fn without_balance(outcome: Outcome) -> Outcome {
    match outcome {
        Outcome::Receipt(mut r) => {
            r.balance_after = None;
            Outcome::Receipt(r)
        }
        other => other,
    }
}

/// Palm login: the same session as a password login.
pub async fn palm_login(
    state: &SharedState,
    kiosk: &KioskRef,
    template: &str,
    mut pin: Option<Pin>,
) -> Result<SessionResponse, ApiError> {
    let (shopper, _) = identify_for(state, kiosk, "login", template, &mut pin).await?;
    let auth = state
        .store
        .shopper_auth_by_id(shopper)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::UnknownAccount, "no such shopper"))?;
    super::kiosk::usable(&auth)?;
    open_session(state, shopper, &kiosk.kiosk_id).await
}

/// `POST /v1/palms`: enroll 3-5 captures of the logged-in shopper's palm.
#[utoipa::path(
    post,
    path = "/v1/palms",
    tag = super::openapi::KIOSK,
    params(super::openapi::IdempotencyKey),
    security(("mutualTLS" = [], "shopperSession" = [])),
    request_body = PalmEnrollRequest,
    responses((status = 201, description = "Enrolled.", body = PalmEnrollResponse))
)]
pub async fn enroll(
    State(state): State<SharedState>,
    KioskCaller(kiosk): KioskCaller,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let idem = idempotency(
        &headers,
        &kiosk.scope(),
        "POST /v1/palms",
        &subject(&headers),
        &body,
    )?;
    super::kiosk::bearer_required(&headers)?;
    let req: PalmEnrollRequest = parse_json(&body)?;
    if !(3..=5).contains(&req.templates.len()) {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            "enrollment needs 3 to 5 captures",
        ));
    }
    let templates = req
        .templates
        .iter()
        .map(|t| decode_template(t))
        .collect::<Result<Vec<_>, _>>()?;
    let s = session(&state, &headers, &kiosk).await?;
    let st = state.clone();
    let shopper = s.shopper_id;
    let count = templates.len() as u32;
    let (kiosk2, templates2) = (kiosk.clone(), templates.clone());
    // From the duplicate check until the palm is in the index: one enrollment at a time,
    // here and (with replicas) in the whole database, with this index caught up first.
    let turn = state.palm.enrollment_turn().await;
    let shared_turn = state.store.enrollment_turn().await?;
    if shared_turn.is_some() {
        state.palm.follow_up(&*state.store).await?;
    }
    let (outcome, ran) = idempotent_run(&state, idem, async move {
        // Each capture is one 1:N search below: each costs an identification attempt.
        if let Err(e) = st.identification_allowed(&kiosk2, count).await {
            let limited = ScanOutcome::RateLimited;
            log_scan(&st, &kiosk2, "enroll", limited, None, Some(shopper)).await?;
            return Err(e);
        }
        if let Err(problem) = st.palm.consistent_off_thread(templates2.clone()).await? {
            return Err(ApiError::new(
                ErrorCode::PalmTemplatesInconsistent,
                problem.message(),
            ));
        }
        // One palm, one account: search everyone else for this palm.
        for t in &templates2 {
            let id = st.palm.identify(&*st.store, t, Some(shopper)).await?;
            if let Some((other, score)) = id.best {
                if score >= st.palm.policy.accept {
                    log_scan(
                        &st,
                        &kiosk2,
                        "enroll",
                        ScanOutcome::Duplicate,
                        Some(score),
                        Some(other),
                    )
                    .await?;
                    return Err(ApiError::new(
                        ErrorCode::PalmAlreadyEnrolled,
                        "this palm is already enrolled to another account",
                    ));
                }
            }
        }
        Ok(Command::EnrollPalm {
            shopper_id: shopper,
            ciphertexts: st.palm.seal_all(shopper, &templates2),
        })
    })
    .await?;
    // This replica's follower may have put the palm in first (the change is announced at
    // commit): the enrollment is logged once, by the request that ran it.
    let applied = outcome
        .palm_version()
        .is_some_and(|v| state.palm.index_insert(shopper, v, &templates));
    drop((shared_turn, turn));
    if applied || ran == Ran::Now {
        log_scan(
            &state,
            &kiosk,
            "enroll",
            ScanOutcome::Enrolled,
            None,
            Some(shopper),
        )
        .await?;
    }
    let wallet = state.store.wallet(shopper).await?;
    Ok((
        StatusCode::CREATED,
        Json(PalmEnrollResponse {
            shopper: wallet.shopper.username,
            templates_stored: count,
        }),
    )
        .into_response())
}

/// `DELETE /v1/palms/me`: the shopper deletes their palm.
#[utoipa::path(
    delete,
    path = "/v1/palms/me",
    tag = super::openapi::KIOSK,
    params(super::openapi::IdempotencyKey),
    security(("mutualTLS" = [], "shopperSession" = [])),
    responses((status = 204, description = "Deleted (or there was none)."))
)]
pub async fn delete_mine(
    State(state): State<SharedState>,
    KioskCaller(kiosk): KioskCaller,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let idem = idempotency(
        &headers,
        &kiosk.scope(),
        "DELETE /v1/palms/me",
        &subject(&headers),
        b"",
    )?;
    let s = session(&state, &headers, &kiosk).await?;
    delete_palm(&state, idem, s.shopper_id).await
}

pub(super) async fn delete_palm(
    state: &SharedState,
    idem: crate::store::Idem,
    shopper_id: i64,
) -> Result<Response, ApiError> {
    let outcome = idempotent(state, idem, async move {
        Ok(Command::DeletePalm { shopper_id })
    })
    .await?;
    // A replay carries the version of the first deletion: it removes nothing enrolled since.
    if let Some(v) = outcome.palm_version() {
        state.palm.index_remove(shopper_id, v);
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}
