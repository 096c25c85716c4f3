//! Palm endpoints: enroll, delete, pay by palm, and palm login. Every identification attempt
//! goes into the palm-scan log; a kiosk that keeps failing is slowed down.

use super::kiosk::{idempotent, open_session, pin_check, respond, session, subject};
use super::{check_amount, idempotency, parse_json, ApiError, KioskCaller, RawBody, SharedState};
use crate::palm::{Identification, Verdict};
use crate::store::{Command, KioskRef, Outcome};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use palmline_shared::api::{
    ErrorCode, PalmEnrollRequest, PalmEnrollResponse, PalmPaymentRequest, ScanOutcome,
    SessionResponse,
};
use palmline_shared::palm::Template;

/// Largest body of an enrollment (five templates of at most 12 KiB, base64).
pub const MAX_ENROLL_BODY: usize = 96 * 1024;

fn decode_template(b64: &str) -> Result<Template, ApiError> {
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

/// Identifies a probe for a payment or a login and applies the decision policy, with the
/// PIN as step-up. Returns the shopper and whether the PIN was checked; logs every attempt.
async fn identify_for(
    state: &SharedState,
    kiosk: &KioskRef,
    purpose: &str,
    template: &str,
    pin: Option<String>,
) -> Result<(i64, bool), ApiError> {
    let palm = &state.palm;
    if let Some(wait) = palm.slowed_down(&kiosk.kiosk_id) {
        log_scan(state, kiosk, purpose, ScanOutcome::RateLimited, None, None).await?;
        return Err(ApiError::new(
            ErrorCode::RateLimited,
            format!(
                "too many unrecognised palms at this kiosk; try again in {} s",
                wait.as_secs().max(1)
            ),
        ));
    }
    let probe = match decode_template(template) {
        Ok(t) => t,
        Err(e) => {
            log_scan(state, kiosk, purpose, ScanOutcome::BadTemplate, None, None).await?;
            return Err(e);
        }
    };
    let Identification { best, decision, .. } = palm.identify(&*state.store, &probe, None).await?;
    let score = best.map(|b| b.1);
    let (shopper, decision) = match (best, decision) {
        (Some((id, _)), d) if d != Verdict::Reject => (id, d),
        _ => {
            palm.record(&kiosk.kiosk_id, false);
            log_scan(state, kiosk, purpose, ScanOutcome::Rejected, score, None).await?;
            return Err(ApiError::new(
                ErrorCode::PalmNotRecognised,
                "palm not recognised; try again or use your password",
            ));
        }
    };
    if decision == Verdict::StepUp {
        let auth = state.store.shopper_auth_by_id(shopper).await?;
        let Some(pin_hash) = auth.as_ref().and_then(|a| a.pin_hash.clone()) else {
            palm.record(&kiosk.kiosk_id, false);
            log_scan(state, kiosk, purpose, ScanOutcome::Rejected, score, None).await?;
            return Err(ApiError::new(
                ErrorCode::PalmNotRecognised,
                "palm not recognised with certainty; use your password",
            ));
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
        if auth.as_ref().is_some_and(|a| {
            a.locked_until
                .is_some_and(|t| t > crate::store::sqlite::unix_now())
        }) {
            return Err(ApiError::new(
                ErrorCode::AccountLocked,
                "too many failed attempts; try again later",
            ));
        }
        let ok = crate::auth::verify_secret_async(pin, pin_hash).await;
        super::kiosk::record_auth(state, shopper, ok).await?;
        if !ok {
            palm.record(&kiosk.kiosk_id, false);
            log_scan(
                state,
                kiosk,
                purpose,
                ScanOutcome::StepUpFailed,
                score,
                Some(shopper),
            )
            .await?;
            return Err(ApiError::new(ErrorCode::InvalidPin, "wrong PIN"));
        }
    }
    palm.record(&kiosk.kiosk_id, true);
    log_scan(
        state,
        kiosk,
        purpose,
        ScanOutcome::Accepted,
        score,
        Some(shopper),
    )
    .await?;
    Ok((shopper, decision == Verdict::StepUp))
}

/// `POST /v1/payments/palm`: identify and pay, one atomic outcome under the idempotency key.
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
    check_amount(&state, req.amount)?;
    let st = state.clone();
    let outcome = idempotent(&state, idem, async move {
        let pin = req.pin.clone();
        let (shopper, pin_checked) =
            identify_for(&st, &kiosk, "payment", &req.template, req.pin).await?;
        // Above the PIN threshold a recognised palm still needs the PIN (once is enough).
        if !pin_checked {
            pin_check(&st, shopper, req.amount, pin).await?;
        }
        Ok(Command::Payment {
            at: kiosk,
            shopper_id: shopper,
            amount: req.amount,
            description: req.description,
        })
    })
    .await?;
    Ok(respond(outcome, StatusCode::OK))
}

/// Palm login: the same session as a password login.
pub async fn palm_login(
    state: &SharedState,
    kiosk: &KioskRef,
    template: &str,
    pin: Option<String>,
) -> Result<SessionResponse, ApiError> {
    let (shopper, _) = identify_for(state, kiosk, "login", template, pin).await?;
    let auth = state
        .store
        .shopper_auth_by_id(shopper)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::UnknownAccount, "no such shopper"))?;
    super::kiosk::usable(&auth)?;
    open_session(state, shopper, &kiosk.kiosk_id).await
}

/// `POST /v1/palms`: enroll 3-5 captures of the logged-in shopper's palm.
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
    let outcome = idempotent(&state, idem, async move {
        if let Err(problem) = st.palm.consistent(&templates2) {
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
    if let Outcome::Done = outcome {
        state.palm.index_insert(shopper, &templates);
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
    idempotent(state, idem, async move {
        Ok(Command::DeletePalm { shopper_id })
    })
    .await?;
    state.palm.index_remove(shopper_id);
    Ok(StatusCode::NO_CONTENT.into_response())
}
