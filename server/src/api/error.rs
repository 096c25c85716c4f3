//! One mapping from every error to an HTTP status and the stable JSON error body.
//! Internal details (storage errors) are logged, never sent.

use crate::store::LedgerError;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use palmline_shared::api::{ErrorBody, ErrorCode};

#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            message: message.into(),
        }
    }
}

impl From<LedgerError> for ApiError {
    fn from(e: LedgerError) -> ApiError {
        match e {
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
        (status, Json(ErrorBody::new(self.code, self.message))).into_response()
    }
}
