//! One mapping from every error to an HTTP status and the stable JSON error body.
//! Internal details (storage errors) are logged, never sent: a storage fault that goes away
//! on its own (disk full, read-only, database unreachable) is 503 `unavailable` with a
//! Retry-After; any other storage failure is 500 `internal`.

use crate::store::LedgerError;
use axum::http::header::RETRY_AFTER;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use palmline_shared::api::{ErrorBody, ErrorCode};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    /// Sent as `Retry-After` (whole seconds, at least 1).
    pub retry_after: Option<Duration>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn retry_after(mut self, wait: Duration) -> ApiError {
        self.retry_after = Some(wait);
        self
    }
}

impl LedgerError {
    /// The stable wire code of a ledger error (here, with the rest of the HTTP mapping: the
    /// store never names a wire type).
    pub fn code(&self) -> ErrorCode {
        match self {
            LedgerError::InsufficientFunds => ErrorCode::InsufficientFunds,
            LedgerError::UnknownAccount(_) => ErrorCode::UnknownAccount,
            LedgerError::AccountFrozen => ErrorCode::AccountFrozen,
            LedgerError::UsernameTaken => ErrorCode::UsernameTaken,
            LedgerError::UnknownPayment => ErrorCode::UnknownPayment,
            LedgerError::RefundExceedsPayment(_) => ErrorCode::RefundExceedsPayment,
            LedgerError::SameAccount => ErrorCode::SameAccount,
            LedgerError::IdempotencyMismatch => ErrorCode::IdempotencyMismatch,
            LedgerError::InvalidAmount(_) => ErrorCode::InvalidAmount,
            LedgerError::UnsupportedCurrency(_) => ErrorCode::UnsupportedCurrency,
            LedgerError::PinRequired => ErrorCode::PinRequired,
            LedgerError::PinNotSet => ErrorCode::PinNotSet,
            LedgerError::UnknownCashier => ErrorCode::UnknownCashier,
            LedgerError::CashierExists => ErrorCode::CashierExists,
            LedgerError::CashierDisabled => ErrorCode::CashierDisabled,
            LedgerError::CashierElsewhere => ErrorCode::Forbidden,
            LedgerError::Unavailable { .. } => ErrorCode::Unavailable,
            LedgerError::Storage(_) => ErrorCode::Internal,
        }
    }
}

impl From<LedgerError> for ApiError {
    fn from(e: LedgerError) -> ApiError {
        match e {
            LedgerError::Unavailable { fault, detail } => {
                tracing::warn!(%fault, %detail, "storage unavailable; answered 503");
                ApiError::new(
                    ErrorCode::Unavailable,
                    "the ledger is unavailable for a moment; nothing was changed; retry with the same Idempotency-Key",
                )
                .retry_after(fault.retry_after())
            }
            LedgerError::Storage(detail) => {
                tracing::error!(%detail, "storage failure");
                ApiError::new(ErrorCode::Internal, "internal error; try again")
            }
            other => ApiError::new(other.code(), other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.code.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = (status, Json(ErrorBody::new(self.code, self.message))).into_response();
        if let Some(wait) = self.retry_after {
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            resp.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StorageFault;

    #[test]
    fn a_storage_fault_is_503_with_retry_after_and_no_detail_and_a_bug_is_500() {
        let e = ApiError::from(LedgerError::unavailable(
            StorageFault::DiskFull,
            "sqlite 13: database or disk is full",
        ));
        assert_eq!(e.code, ErrorCode::Unavailable);
        assert!(!e.message.contains("disk"), "{}", e.message);
        let resp = e.into_response();
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(resp.headers()[RETRY_AFTER], "5");

        let bug = ApiError::from(LedgerError::Storage("unbalanced posting".into()));
        assert_eq!(bug.code, ErrorCode::Internal);
        let resp = bug.into_response();
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(resp.headers().get(RETRY_AFTER).is_none());
    }
}
