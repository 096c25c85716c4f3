//! The HTTP API's wire types, shared by the server, the kiosk and the admin CLI.
//!
//! JSON over HTTPS with client certificates. Every mutating request carries an
//! `Idempotency-Key` header; shopper-scoped requests carry `Authorization: Bearer <token>`
//! from a session. Money is always `{"amount": "12.34", "currency": "EUR"}`. Errors are
//! `{"error": {"code": "...", "message": "..."}}` with a code from [`ErrorCode`].
//!
//! Nothing here may carry a raw palm image: only templates cross the network.

use crate::money::Money;
use serde::{Deserialize, Serialize};

/// Header carrying the idempotency key of a mutating request.
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";
/// Longest accepted idempotency key.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 128;
/// Largest request body the server reads.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Longest free text (payment description, transfer note, refund reason), in characters.
pub const MAX_TEXT_CHARS: usize = 200;
/// Longest base64 palm template the server reads (the codec's 24 KiB bound, base64).
pub const MAX_TEMPLATE_B64_LEN: usize = 32 * 1024 + 4;
/// Response header of a `rate_limited` answer: seconds to wait before trying again.
pub const RETRY_AFTER_HEADER: &str = "Retry-After";
/// Request header carrying a cashier's session token (from `POST /v1/cashier-sessions`) on
/// the cash desk's requests (deposits, withdrawals), next to the shopper's
/// `Authorization: Bearer` where there is one.
pub const CASHIER_SESSION_HEADER: &str = "Cashier-Session";
/// Request and response header naming a request in the server's logs: the server keeps a
/// caller's id of 1 to [`MAX_REQUEST_ID_LEN`] characters from `[A-Za-z0-9_-]`, makes one up
/// otherwise, and sends it back on every answer.
pub const REQUEST_ID_HEADER: &str = "x-request-id";
/// Longest request id the server keeps from a caller.
pub const MAX_REQUEST_ID_LEN: usize = 64;
/// Cashier names: 1 to this many characters.
pub const MAX_CASHIER_NAME_CHARS: usize = 32;
/// Cashier PINs: this many digits at least...
pub const CASHIER_PIN_MIN: usize = 4;
/// ...and at most.
pub const CASHIER_PIN_MAX: usize = 12;

/// Stable error codes. The string form (snake_case) is part of the API contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    InvalidAmount,
    UnsupportedCurrency,
    InvalidRequest,
    MalformedJson,
    BodyTooLarge,
    MissingIdempotencyKey,
    IdempotencyMismatch,
    IdempotencyInFlight,
    InsufficientFunds,
    UnknownAccount,
    UnknownPayment,
    RefundExceedsPayment,
    AccountFrozen,
    UsernameTaken,
    InvalidCredentials,
    AccountLocked,
    PinRequired,
    InvalidPin,
    /// The shopper has no PIN, and the amount (or the day's spending without one) needs it.
    PinNotSet,
    SessionRequired,
    SessionExpired,
    Forbidden,
    NotFound,
    SameAccount,
    PalmNotRecognised,
    StepUpRequired,
    PalmAlreadyEnrolled,
    PalmTemplatesInconsistent,
    InvalidTemplate,
    RateLimited,
    /// A cash-desk request without a `Cashier-Session` header.
    CashierSessionRequired,
    /// The cashier session is unknown, expired or was opened at another kiosk.
    CashierSessionExpired,
    /// The cashier was disabled by the operator.
    CashierDisabled,
    UnknownCashier,
    /// The merchant already has a cashier of that name.
    CashierExists,
    Unavailable,
    Internal,
}

impl ErrorCode {
    /// The HTTP status this code is sent with.
    pub fn http_status(self) -> u16 {
        use ErrorCode::*;
        match self {
            InvalidAmount
            | UnsupportedCurrency
            | InvalidRequest
            | MalformedJson
            | MissingIdempotencyKey
            | InvalidTemplate
            | SameAccount => 400,
            InvalidCredentials | SessionRequired | SessionExpired | InvalidPin => 401,
            CashierSessionRequired | CashierSessionExpired => 401,
            CashierDisabled => 403,
            UnknownCashier => 404,
            CashierExists => 409,
            PinRequired | StepUpRequired => 401,
            PinNotSet => 403,
            Forbidden | AccountFrozen | AccountLocked => 403,
            UnknownAccount | UnknownPayment | NotFound | PalmNotRecognised => 404,
            IdempotencyInFlight | UsernameTaken | PalmAlreadyEnrolled => 409,
            BodyTooLarge => 413,
            IdempotencyMismatch
            | InsufficientFunds
            | RefundExceedsPayment
            | PalmTemplatesInconsistent => 422,
            RateLimited => 429,
            Unavailable => 503,
            Internal => 500,
        }
    }

    pub fn as_str(self) -> &'static str {
        // serde gives the canonical spelling; this avoids allocating at call sites.
        use ErrorCode::*;
        match self {
            InvalidAmount => "invalid_amount",
            UnsupportedCurrency => "unsupported_currency",
            InvalidRequest => "invalid_request",
            MalformedJson => "malformed_json",
            BodyTooLarge => "body_too_large",
            MissingIdempotencyKey => "missing_idempotency_key",
            IdempotencyMismatch => "idempotency_mismatch",
            IdempotencyInFlight => "idempotency_in_flight",
            InsufficientFunds => "insufficient_funds",
            UnknownAccount => "unknown_account",
            UnknownPayment => "unknown_payment",
            RefundExceedsPayment => "refund_exceeds_payment",
            AccountFrozen => "account_frozen",
            UsernameTaken => "username_taken",
            InvalidCredentials => "invalid_credentials",
            AccountLocked => "account_locked",
            PinRequired => "pin_required",
            InvalidPin => "invalid_pin",
            PinNotSet => "pin_not_set",
            SessionRequired => "session_required",
            SessionExpired => "session_expired",
            Forbidden => "forbidden",
            NotFound => "not_found",
            SameAccount => "same_account",
            PalmNotRecognised => "palm_not_recognised",
            StepUpRequired => "step_up_required",
            PalmAlreadyEnrolled => "palm_already_enrolled",
            PalmTemplatesInconsistent => "palm_templates_inconsistent",
            InvalidTemplate => "invalid_template",
            RateLimited => "rate_limited",
            CashierSessionRequired => "cashier_session_required",
            CashierSessionExpired => "cashier_session_expired",
            CashierDisabled => "cashier_disabled",
            UnknownCashier => "unknown_cashier",
            CashierExists => "cashier_exists",
            Unavailable => "unavailable",
            Internal => "internal",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorDetail {
    pub code: ErrorCode,
    pub message: String,
}

/// The body of every error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

impl ErrorBody {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                code,
                message: message.into(),
            },
        }
    }
}

// ---------------------------------------------------------------- kiosk role

/// `GET /v1/health`: who the server thinks the caller is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Health {
    pub status: String,
    pub version: String,
    pub role: String,
    pub kiosk_id: Option<String>,
    pub merchant: Option<String>,
    pub currency: String,
    /// Payments at or above this amount need the shopper's PIN.
    pub pin_threshold: Money,
    pub server_time: String,
}

/// `POST /v1/shoppers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RegisterShopper {
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[a-z0-9][a-z0-9._-]{2,31}$"))]
    pub username: String,
    #[cfg_attr(
        feature = "openapi",
        schema(max_length = 254, pattern = r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    )]
    pub email: String,
    #[cfg_attr(feature = "openapi", schema(min_length = 8, max_length = 128))]
    pub password: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[0-9]{4,8}$"))]
    pub pin: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Shopper {
    pub id: i64,
    pub username: String,
    pub email: String,
    pub status: AccountStatus,
    pub has_pin: bool,
    pub palm_enrolled: bool,
    pub created_at: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum AccountStatus {
    Active,
    Frozen,
}

/// `POST /v1/sessions`: log a shopper in at this kiosk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "method", rename_all = "snake_case")]
pub enum SessionRequest {
    Password {
        #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 32))]
        username: String,
        #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 128))]
        password: String,
    },
    /// A palm template (base64 of the binary codec). May answer `step_up_required`: send
    /// again with `pin`.
    Palm {
        template: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[cfg_attr(feature = "openapi", schema(pattern = r"^[0-9]{4,8}$"))]
        pin: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SessionResponse {
    pub token: String,
    /// RFC 3339.
    pub expires_at: String,
    pub shopper: Shopper,
}

/// `POST /v1/cashier-sessions`: a cashier of this kiosk's merchant signs in with name and
/// PIN. The token goes in the `Cashier-Session` header of deposits and withdrawals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CashierSessionRequest {
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 32))]
    pub name: String,
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[0-9]{4,12}$"))]
    pub pin: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CashierSessionResponse {
    pub token: String,
    /// RFC 3339.
    pub expires_at: String,
    pub cashier: Cashier,
}

/// A cashier: a person who handles the cash at one merchant's kiosks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Cashier {
    pub id: i64,
    pub merchant: String,
    pub name: String,
    pub status: CashierStatus,
    pub created_at: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum CashierStatus {
    Active,
    Disabled,
}

/// `POST /v1/deposits` (cashier session required): cash handed to the cashier, credited
/// to a shopper.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DepositRequest {
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 32))]
    pub username: String,
    pub amount: Money,
}

/// `POST /v1/withdrawals` (shopper session and cashier session required): cash paid out by
/// the cashier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WithdrawalRequest {
    pub amount: Money,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[0-9]{4,8}$"))]
    pub pin: Option<String>,
}

/// `POST /v1/payments` (session required): the shopper pays this kiosk's merchant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PaymentRequest {
    pub amount: Money,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[0-9]{4,8}$"))]
    pub pin: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(max_length = 200))]
    pub description: Option<String>,
}

/// `POST /v1/transfers` (session required): shopper to shopper.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TransferRequest {
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 32))]
    pub to_username: String,
    pub amount: Money,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[0-9]{4,8}$"))]
    pub pin: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(max_length = 200))]
    pub note: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum TxKind {
    Deposit,
    Withdrawal,
    Payment,
    Transfer,
    Refund,
}

impl TxKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TxKind::Deposit => "deposit",
            TxKind::Withdrawal => "withdrawal",
            TxKind::Payment => "payment",
            TxKind::Transfer => "transfer",
            TxKind::Refund => "refund",
        }
    }

    pub fn parse(s: &str) -> Option<TxKind> {
        Some(match s {
            "deposit" => TxKind::Deposit,
            "withdrawal" => TxKind::Withdrawal,
            "payment" => TxKind::Payment,
            "transfer" => TxKind::Transfer,
            "refund" => TxKind::Refund,
            _ => return None,
        })
    }
}

/// The result of every money movement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Receipt {
    pub transaction_id: i64,
    pub kind: TxKind,
    pub amount: Money,
    /// Balance of the shopper concerned after the movement (the payer for payments and
    /// transfers, the credited shopper for refunds). Only sent to the shopper's own session
    /// (and to operators): a cash deposit or a palm payment receipt carries none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub balance_after: Option<Money>,
    /// The shopper's username; masked (`a***e`) on a cash deposit receipt.
    pub shopper: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merchant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counterparty: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kiosk_id: Option<String>,
    pub created_at: String,
}

/// `GET /v1/wallet`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Wallet {
    pub shopper: Shopper,
    pub balance: Money,
}

/// One line of a shopper's history, from the shopper's point of view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HistoryItem {
    pub transaction_id: i64,
    pub kind: TxKind,
    /// Signed: positive when money came in.
    pub amount: Money,
    pub balance_after: Money,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counterparty: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub created_at: String,
}

/// `GET /v1/wallet/history?limit=N&before=ID`: newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HistoryPage {
    pub items: Vec<HistoryItem>,
    /// Pass as `before` to get the next (older) page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_before: Option<i64>,
}

/// `GET /v1/merchant/today`: the day's figures for this kiosk's merchant (UTC day).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DailyTotals {
    pub merchant: String,
    pub date: String,
    pub payments_count: i64,
    pub payments_total: Money,
    pub refunds_total: Money,
    pub deposits_total: Money,
    pub withdrawals_total: Money,
    /// Cash that should be in the till from today's deposits and withdrawals.
    pub cash_net: Money,
    /// The same cash by the cashier who handled it, by name; movements recorded before
    /// cashiers existed come last with `cashier_id` null.
    #[serde(default)]
    pub cashiers: Vec<CashierTotals>,
}

/// One cashier's cash of one day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CashierTotals {
    pub cashier_id: Option<i64>,
    /// Empty for movements without a cashier.
    pub name: String,
    pub deposits_count: i64,
    pub deposits_total: Money,
    pub withdrawals_count: i64,
    pub withdrawals_total: Money,
    pub cash_net: Money,
}

/// `POST /v1/palms` (session required): enroll 3-5 templates of the logged-in shopper's palm.
/// Templates are base64 (standard alphabet) of the binary template codec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PalmEnrollRequest {
    #[cfg_attr(feature = "openapi", schema(min_items = 3, max_items = 5))]
    pub templates: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PalmEnrollResponse {
    pub shopper: String,
    pub templates_stored: u32,
}

/// `POST /v1/payments/palm`: identify the palm and pay this kiosk's merchant, one atomic
/// outcome. On `step_up_required` the kiosk asks for the PIN and sends the same template
/// with `pin` under a NEW idempotency key (nothing moved the first time).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PalmPaymentRequest {
    /// Base64 of the template codec, at most 32,772 characters (`invalid_template` past it).
    pub template: String,
    pub amount: Money,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[0-9]{4,8}$"))]
    pub pin: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(max_length = 200))]
    pub description: Option<String>,
}

// ---------------------------------------------------------------- operator role

/// `GET /v1/admin/accounts?q=...&limit=...`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AccountRow {
    pub id: i64,
    pub kind: String,
    pub name: String,
    pub email: Option<String>,
    pub status: AccountStatus,
    pub balance: Money,
    pub palm_enrolled: bool,
    pub created_at: String,
}

/// `POST /v1/admin/accounts/{id}/freeze` and `/unfreeze` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FreezeRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(max_length = 200))]
    pub reason: Option<String>,
}

/// `POST /v1/admin/refunds`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RefundRequest {
    pub payment_id: i64,
    pub amount: Money,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(max_length = 200))]
    pub reason: Option<String>,
}

/// `POST /v1/admin/cashiers`: a new cashier of `merchant` (the merchant name kiosks'
/// certificates carry). The PIN is 4-12 digits; it is stored only as an argon2id hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NewCashier {
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 64))]
    pub merchant: String,
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 32))]
    pub name: String,
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[0-9]{4,12}$"))]
    pub pin: String,
}

/// `POST /v1/wallet/pin`: the session's shopper sets a PIN (4-8 digits), or changes it
/// with the current one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ShopperPinChange {
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[0-9]{4,8}$"))]
    pub pin: String,
    /// Needed when the shopper already has a PIN (counted as a guess at it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[0-9]{4,8}$"))]
    pub current_pin: Option<String>,
}

/// `POST /v1/admin/cashiers/{id}/pin`: the cashier's new PIN (4-12 digits).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CashierPinChange {
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[0-9]{4,12}$"))]
    pub pin: String,
}

/// `POST /v1/admin/purge`: what the retention purge deleted (never a transaction, an entry
/// or an account).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PurgeReport {
    pub idempotency: u64,
    pub scans: u64,
    pub sessions: u64,
    pub guess_days: u64,
}

/// `GET /v1/admin/kiosks`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KioskRow {
    pub kiosk_id: String,
    pub merchant: String,
    pub first_seen: String,
    pub last_seen: String,
    pub requests: i64,
}

/// An enrolled palm the server left out of its identification index because its stored
/// templates do not open or decode (a wrong template key, a damaged row): the shopper must
/// enroll again (or the operator deletes the palm).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SkippedPalm {
    pub account_id: i64,
    /// None when the account no longer exists.
    pub username: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ScanOutcome {
    Accepted,
    Rejected,
    StepUp,
    StepUpFailed,
    Enrolled,
    Duplicate,
    BadTemplate,
    RateLimited,
}

impl ScanOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            ScanOutcome::Accepted => "accepted",
            ScanOutcome::Rejected => "rejected",
            ScanOutcome::StepUp => "step_up",
            ScanOutcome::StepUpFailed => "step_up_failed",
            ScanOutcome::Enrolled => "enrolled",
            ScanOutcome::Duplicate => "duplicate",
            ScanOutcome::BadTemplate => "bad_template",
            ScanOutcome::RateLimited => "rate_limited",
        }
    }

    pub fn parse(s: &str) -> Option<ScanOutcome> {
        [
            ScanOutcome::Accepted,
            ScanOutcome::Rejected,
            ScanOutcome::StepUp,
            ScanOutcome::StepUpFailed,
            ScanOutcome::Enrolled,
            ScanOutcome::Duplicate,
            ScanOutcome::BadTemplate,
            ScanOutcome::RateLimited,
        ]
        .into_iter()
        .find(|o| o.as_str() == s)
    }
}

/// `GET /v1/admin/palm-scans?limit=...&before=...`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PalmScanRow {
    pub id: i64,
    pub kiosk_id: String,
    pub at: String,
    pub purpose: String,
    pub outcome: ScanOutcome,
    pub score: Option<f64>,
    pub account: Option<String>,
}

/// `GET /v1/admin/reports/daily?date=YYYY-MM-DD`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DailyReport {
    pub date: String,
    pub merchants: Vec<DailyTotals>,
}

/// `GET /v1/admin/ledger-check`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LedgerCheck {
    pub ok: bool,
    pub accounts_checked: i64,
    pub transactions_checked: i64,
    /// Sum of every account's balance (must be zero).
    pub total_balance_minor: i64,
    /// Transactions whose entries do not sum to zero.
    pub unbalanced_transactions: Vec<i64>,
    /// Accounts whose cached balance differs from the sum of their entries.
    pub mismatches: Vec<BalanceMismatch>,
    /// Shoppers below zero (never allowed).
    pub negative_shoppers: Vec<i64>,
}

impl LedgerCheck {
    /// The findings of a check, with its verdict: every transaction balanced, every cached
    /// balance equal to its entries, no shopper below zero and a grand total of zero.
    pub fn new(
        accounts_checked: i64,
        transactions_checked: i64,
        total_balance_minor: i64,
        unbalanced_transactions: Vec<i64>,
        mismatches: Vec<BalanceMismatch>,
        negative_shoppers: Vec<i64>,
    ) -> Self {
        Self {
            ok: unbalanced_transactions.is_empty()
                && mismatches.is_empty()
                && negative_shoppers.is_empty()
                && total_balance_minor == 0,
            accounts_checked,
            transactions_checked,
            total_balance_minor,
            unbalanced_transactions,
            mismatches,
            negative_shoppers,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BalanceMismatch {
    pub account_id: i64,
    pub cached_minor: i64,
    pub from_entries_minor: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_serialize_as_documented() {
        for code in [
            ErrorCode::InsufficientFunds,
            ErrorCode::IdempotencyMismatch,
            ErrorCode::PalmNotRecognised,
            ErrorCode::StepUpRequired,
            ErrorCode::AccountFrozen,
            ErrorCode::Internal,
        ] {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
        }
        let body = ErrorBody::new(ErrorCode::InvalidAmount, "nope");
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            r#"{"error":{"code":"invalid_amount","message":"nope"}}"#
        );
    }

    #[test]
    fn session_request_is_tagged() {
        let r: SessionRequest =
            serde_json::from_str(r#"{"method":"password","username":"a","password":"b"}"#).unwrap();
        assert_eq!(
            r,
            SessionRequest::Password {
                username: "a".into(),
                password: "b".into()
            }
        );
    }

    #[test]
    fn scan_outcome_round_trips() {
        for o in [ScanOutcome::Accepted, ScanOutcome::StepUpFailed] {
            assert_eq!(ScanOutcome::parse(o.as_str()), Some(o));
        }
    }
}
