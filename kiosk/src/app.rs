//! The kiosk's behaviour as a plain state machine: screens, transitions, timeouts, cancel,
//! network failures and every server error code.
//!
//! No Slint, no threads, no clocks, no I/O: [`App::handle`] takes an [`Event`] and the
//! current time and returns the [`Command`]s the runtime must carry out (API calls, camera
//! capture). The UI only renders [`App::screen`]. Keeping it pure is what lets every
//! transition be unit-tested and what makes "never charge twice" checkable: the
//! idempotency key of a money movement is chosen here, once, and reused on every retry of
//! the same request.

use palmline_shared::api::{
    Cashier, CashierSessionRequest, DailyTotals, DepositRequest, ErrorCode, Health, HistoryPage,
    PalmEnrollRequest, PalmPaymentRequest, PaymentRequest, Receipt, RegisterShopper,
    SessionRequest, Shopper, ShopperPinChange, TransferRequest, TxKind, Wallet, WithdrawalRequest,
};
use palmline_shared::money::{Currency, Money};
use std::time::{Duration, Instant};

/// Correlates a [`Command::Api`] with its [`Event::Api`] answer. Answers to requests the
/// machine no longer waits for (the shopper cancelled, a timeout fired) are dropped.
pub type RequestId = u64;

/// Everything the kiosk asks the server. Mutating calls carry their idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiCall {
    Health,
    Register {
        key: String,
        req: RegisterShopper,
    },
    Login {
        key: String,
        req: SessionRequest,
    },
    /// A cashier signs in (name and PIN checked by the server). Not idempotency-keyed.
    CashierLogin {
        req: CashierSessionRequest,
    },
    /// Cash in, taken by the cashier whose session token is `cashier`.
    Deposit {
        key: String,
        cashier: String,
        req: DepositRequest,
    },
    /// Cash out for the shopper of session `token`, paid by the cashier of `cashier`.
    Withdraw {
        key: String,
        token: String,
        cashier: String,
        req: WithdrawalRequest,
    },
    Pay {
        key: String,
        token: String,
        req: PaymentRequest,
    },
    PalmPay {
        key: String,
        req: PalmPaymentRequest,
    },
    Transfer {
        key: String,
        token: String,
        req: TransferRequest,
    },
    Wallet {
        token: String,
    },
    History {
        token: String,
        limit: u32,
        before: Option<i64>,
    },
    Today,
    EnrollPalms {
        key: String,
        token: String,
        req: PalmEnrollRequest,
    },
    DeletePalm {
        key: String,
        token: String,
    },
    SetPin {
        key: String,
        token: String,
        req: ShopperPinChange,
    },
}

impl ApiCall {
    /// Whether the call moves money (its outcome matters even when the answer is lost).
    pub fn moves_money(&self) -> bool {
        matches!(
            self,
            ApiCall::Deposit { .. }
                | ApiCall::Withdraw { .. }
                | ApiCall::Pay { .. }
                | ApiCall::PalmPay { .. }
                | ApiCall::Transfer { .. }
        )
    }

    pub fn idempotency_key(&self) -> Option<&str> {
        match self {
            ApiCall::Register { key, .. }
            | ApiCall::Login { key, .. }
            | ApiCall::Deposit { key, .. }
            | ApiCall::Withdraw { key, .. }
            | ApiCall::Pay { key, .. }
            | ApiCall::PalmPay { key, .. }
            | ApiCall::Transfer { key, .. }
            | ApiCall::EnrollPalms { key, .. }
            | ApiCall::DeletePalm { key, .. }
            | ApiCall::SetPin { key, .. } => Some(key),
            _ => None,
        }
    }
}

/// A successful answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Health(Health),
    Shopper(Shopper),
    Session { token: String, shopper: Shopper },
    CashierSession { token: String, cashier: Cashier },
    Receipt(Receipt),
    Wallet(Wallet),
    History(HistoryPage),
    Today(DailyTotals),
    Enrolled { templates_stored: u32 },
    Deleted,
    PinSet,
}

/// Why a call failed, as far as the state machine needs to know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// The server could not be reached at all: nothing was sent.
    #[error("server unreachable: {0}")]
    Offline(String),
    /// Sent, but no answer in time (after the client's own retries): the outcome is unknown.
    #[error("no answer from the server in time")]
    Timeout,
    /// The server answered with a typed error (and, for `rate_limited` / `unavailable`, the
    /// seconds its `Retry-After` header asks the kiosk to wait).
    #[error("{code}: {message}")]
    Server {
        code: ErrorCode,
        message: String,
        retry_after: Option<u32>,
    },
    /// An answer that is not what the API promises.
    #[error("unexpected answer: {0}")]
    Protocol(String),
}

/// What a `rate_limited` answer tells the shopper: how long to wait when the server said.
fn wait_then_retry(e: &ApiError) -> String {
    match e.retry_after() {
        Some(s) => format!("Please wait {s} seconds and try again."),
        None => "Please wait a moment and try again.".into(),
    }
}

impl ApiError {
    /// The server's `Retry-After`, in seconds, when it sent one.
    pub fn retry_after(&self) -> Option<u32> {
        match self {
            ApiError::Server { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ApiError::Server { code, .. } => Some(*code),
            _ => None,
        }
    }
    /// Network-level failure (as opposed to a server verdict).
    pub fn is_network(&self) -> bool {
        matches!(self, ApiError::Offline(_) | ApiError::Timeout)
    }
}

/// What the camera worker tells the shopper about the frame it sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Guidance {
    #[default]
    NoHand,
    TooClose,
    TooFar,
    TooDark,
    TooBright,
    Blurry,
    HoldStill,
    /// Good frame; holding steady for the gate to accept it.
    Steady,
}

impl Guidance {
    pub fn message(self) -> &'static str {
        match self {
            Guidance::NoHand => "Hold your palm over the camera",
            Guidance::TooClose => "Too close - move your hand back a little",
            Guidance::TooFar => "Too far - bring your hand closer",
            Guidance::TooDark => "Too dark - open your hand towards the light",
            Guidance::TooBright => "Too bright - tilt your hand slightly",
            Guidance::Blurry => "Blurry - hold your hand flat",
            Guidance::HoldStill => "Hold still",
            Guidance::Steady => "Good - keep still",
        }
    }
}

/// Why the camera is being asked for a palm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CapturePurpose {
    /// Cashier sale: identify and pay.
    Pay { amount: Money },
    /// Wallet (or cash-out) login by palm.
    Login { then: AfterLogin },
    /// Enrollment: capture `needed` templates.
    Enroll { token: String, username: String },
}

/// Where a successful login leads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterLogin {
    Wallet,
    CashOut,
}

/// Keys of the numeric pads (amount and PIN).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    Digit(u8),
    Backspace,
    Clear,
    Enter,
}

/// Top-level buttons and menu entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Charge,
    Enroll,
    Wallet,
    Cashier,
    CashierTopUp,
    CashierCashOut,
    CashierToday,
    CashierDiagnostics,
    LoginByPalm,
    LoginByPassword,
    SendMoney,
    ForgetPalm,
    /// Set a PIN, or change it (the current one is asked for when there is one).
    SetPin,
    /// "Try again" on a declined screen.
    Retry,
    /// Back / Cancel / Done: leaves the current flow.
    Cancel,
}

/// Inputs to the machine.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The clock moved; timeouts fire here.
    Tick,
    Nav(Nav),
    Key(Key),
    AcceptConsent,
    SubmitEnrollForm {
        username: String,
        email: String,
        password: String,
        pin: String,
    },
    SubmitPassword {
        username: String,
        password: String,
    },
    SubmitTopUpUser {
        username: String,
    },
    /// The cashier sign-in form: who is signing in (the PIN pad comes next).
    SubmitCashierName {
        name: String,
    },
    SubmitTransfer {
        to: String,
        amount: String,
    },
    /// The camera worker's opinion of the current frame.
    Guidance(Guidance),
    /// The quality gate accepted a frame and a template was extracted from it.
    PalmCaptured {
        template: Vec<u8>,
    },
    /// Capture cannot work (no camera, extraction unavailable).
    CaptureFailed(String),
    Api {
        id: RequestId,
        result: Result<Reply, ApiError>,
    },
}

/// Outputs: what the runtime must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Api {
        id: RequestId,
        call: ApiCall,
    },
    /// Start looking for palms; the worker answers with `Guidance` and `PalmCaptured`.
    StartCapture,
    StopCapture,
}

/// What a keypad is collecting an amount for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AmountFor {
    Charge,
    TopUp { username: String },
    CashOut { token: String, shopper: String },
}

/// What a PIN is needed for; holds everything needed to resend the request with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PinFor {
    /// A cashier's PIN, checked by the server with the name.
    Cashier {
        name: String,
    },
    PalmPay {
        template: String,
        amount: Money,
    },
    PalmLogin {
        template: String,
        then: AfterLogin,
    },
    Withdraw {
        token: String,
        shopper: String,
        amount: Money,
    },
    Transfer {
        token: String,
        to: String,
        amount: Money,
    },
    /// The shopper's new PIN.
    NewPin {
        wallet: Box<WalletView>,
    },
    /// The current PIN, to change it to `new_pin`.
    CurrentPin {
        wallet: Box<WalletView>,
        new_pin: String,
    },
}

/// A finished money movement, ready to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approval {
    pub receipt: Receipt,
    pub merchant: String,
    pub shopper_masked: String,
}

/// Why something was declined, in the shopper's words, plus whether "Try again" makes sense.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decline {
    pub code: Option<ErrorCode>,
    pub title: String,
    pub detail: String,
    pub retry: Option<Retry>,
}

/// What "Try again" does on a declined screen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Retry {
    /// Resend exactly the same request, same idempotency key: the first one may have
    /// gone through and the server must answer with its result rather than charge again.
    Resend(ApiCall),
    /// Capture the palm again.
    Recapture(CapturePurpose),
}

/// The logged-in shopper in the wallet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalletView {
    pub token: String,
    pub shopper: Shopper,
    pub balance: Option<Money>,
    pub history: Option<HistoryPage>,
    pub notice: Option<String>,
}

/// Diagnostics as far as the machine knows them (the runtime adds certificate/camera facts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiagnosticsView {
    pub health: Option<Result<Health, String>>,
}

/// Everything the UI can show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Screen {
    Idle,
    /// The server cannot be reached; health checks keep running and the screen recovers.
    Offline {
        reason: String,
    },
    Amount {
        purpose: AmountFor,
        /// Digits typed so far (minor units, "ATM style").
        digits: String,
        error: Option<String>,
    },
    Capture {
        purpose: CapturePurpose,
        guidance: Guidance,
        /// Enrollment progress: templates captured so far.
        captured: Vec<String>,
        error: Option<String>,
    },
    Processing {
        title: String,
        cancellable: bool,
    },
    Pin {
        purpose: PinFor,
        entered: String,
        attempts_left: u8,
        error: Option<String>,
    },
    Approved(Approval),
    Declined(Decline),
    EnrollConsent,
    EnrollForm {
        error: Option<String>,
    },
    EnrollDone {
        username: String,
        templates: u32,
    },
    LoginChoice {
        then: AfterLogin,
    },
    PasswordLogin {
        then: AfterLogin,
        error: Option<String>,
    },
    Wallet(WalletView),
    SendMoney {
        wallet: WalletView,
        error: Option<String>,
    },
    /// The cashier sign-in form (name); the PIN pad follows.
    CashierName {
        error: Option<String>,
    },
    CashierMenu,
    TopUpUser {
        error: Option<String>,
    },
    Today(Option<DailyTotals>),
    Diagnostics(DiagnosticsView),
}

impl Screen {
    /// A short stable name, for logs, the scripted demo and tests.
    pub fn name(&self) -> &'static str {
        match self {
            Screen::Idle => "idle",
            Screen::Offline { .. } => "offline",
            Screen::Amount { .. } => "amount",
            Screen::Capture { .. } => "capture",
            Screen::Processing { .. } => "processing",
            Screen::Pin { .. } => "pin",
            Screen::Approved(_) => "approved",
            Screen::Declined(_) => "declined",
            Screen::EnrollConsent => "enroll-consent",
            Screen::EnrollForm { .. } => "enroll-form",
            Screen::EnrollDone { .. } => "enroll-done",
            Screen::LoginChoice { .. } => "login-choice",
            Screen::PasswordLogin { .. } => "password-login",
            Screen::Wallet(_) => "wallet",
            Screen::SendMoney { .. } => "send-money",
            Screen::CashierName { .. } => "cashier-name",
            Screen::CashierMenu => "cashier-menu",
            Screen::TopUpUser { .. } => "topup-user",
            Screen::Today(_) => "today",
            Screen::Diagnostics(_) => "diagnostics",
        }
    }
}

/// Fixed parameters of the machine.
#[derive(Debug, Clone)]
pub struct Settings {
    pub currency: Currency,
    pub merchant_display: String,
    /// Palm captures per enrollment (3-5).
    pub enroll_captures: usize,
    /// A shopper who stops touching the screen for this long is sent back to idle.
    pub inactivity: Duration,
    /// How long approved/declined stay up.
    pub result_display: Duration,
    /// How long a palm capture waits for an acceptable palm.
    pub capture_timeout: Duration,
    /// Safety net when a request never answers (the client's own timeouts come first).
    pub processing_timeout: Duration,
    /// Health check period while idle or offline.
    pub health_every: Duration,
    pub pin_attempts: u8,
    pub history_limit: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            currency: Currency::EUR,
            merchant_display: "Palmline Shop".into(),
            enroll_captures: 3,
            inactivity: Duration::from_secs(60),
            result_display: Duration::from_secs(8),
            capture_timeout: Duration::from_secs(30),
            processing_timeout: Duration::from_secs(45),
            health_every: Duration::from_secs(10),
            pin_attempts: 3,
            history_limit: 10,
        }
    }
}

/// The request the machine is waiting for, and what to do with its answer.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pending {
    id: RequestId,
    call: ApiCall,
    kind: PendingKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PendingKind {
    PalmPay {
        template: String,
        amount: Money,
    },
    PalmLogin {
        template: String,
        then: AfterLogin,
    },
    PasswordLogin {
        then: AfterLogin,
    },
    Register {
        password: String,
    },
    EnrollLogin,
    EnrollPalms {
        username: String,
    },
    CashierLogin {
        name: String,
    },
    Deposit,
    Withdraw {
        token: String,
        shopper: String,
        amount: Money,
    },
    Transfer {
        wallet: Box<WalletView>,
        to: String,
        amount: Money,
    },
    Today,
    Diagnostics,
    DeletePalm {
        wallet: Box<WalletView>,
    },
    SetPin {
        wallet: Box<WalletView>,
        new_pin: String,
    },
}

/// The kiosk state machine.
pub struct App {
    settings: Settings,
    screen: Screen,
    /// When the current screen gives up (inactivity, result display, capture).
    deadline: Option<Instant>,
    pending: Option<Pending>,
    /// Wallet data requests (balance + history) in flight, answered into the wallet screen.
    wallet_reqs: Vec<RequestId>,
    health_req: Option<RequestId>,
    next_health: Option<Instant>,
    health: Option<Health>,
    next_id: RequestId,
    new_key: Box<dyn FnMut() -> String + Send>,
    /// The cashier signed in at this kiosk: held in memory only, dropped when the kiosk
    /// goes back to idle.
    cashier: Option<OnDuty>,
    /// The wallet to return to after a transfer that needed a PIN.
    pin_wallet: Option<WalletView>,
    pin_attempts_left: u8,
    /// What a "Try again" (resend) on the declined screen is waiting for.
    retry_kind: Option<PendingKind>,
    /// Timestamp of the last palm accepted by the gate (for the "frame to result" figure).
    pub last_capture_at: Option<Instant>,
}

/// A cashier signed in through the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnDuty {
    pub token: String,
    pub name: String,
}

fn mask_name(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    match chars.len() {
        0 => String::new(),
        1 | 2 => format!("{}***", chars[0]),
        n => format!("{}***{}", chars[0], chars[n - 1]),
    }
}

/// Converts keypad digits (minor units) to money.
pub fn digits_to_money(digits: &str, currency: Currency) -> Option<Money> {
    if digits.is_empty() {
        return None;
    }
    let minor: i64 = digits.parse().ok()?;
    if minor <= 0 {
        return None;
    }
    Some(Money::from_minor(minor, currency))
}

/// Longest amount the keypad accepts (in digits of minor units).
pub const MAX_AMOUNT_DIGITS: usize = 9;
/// PIN length bounds.
pub const PIN_MIN: usize = 4;
pub const PIN_MAX: usize = 8;
/// A cashier's PIN may be longer than a shopper's.
pub const CASHIER_PIN_MAX: usize = palmline_shared::api::CASHIER_PIN_MAX;
const MAX_CASHIER_NAME_CHARS: usize = palmline_shared::api::MAX_CASHIER_NAME_CHARS;

impl App {
    /// `new_key` makes idempotency keys (UUIDs in the kiosk, a counter in tests).
    pub fn new(settings: Settings, new_key: Box<dyn FnMut() -> String + Send>) -> App {
        App {
            settings,
            screen: Screen::Idle,
            deadline: None,
            pending: None,
            wallet_reqs: Vec::new(),
            health_req: None,
            next_health: None,
            health: None,
            next_id: 1,
            new_key,
            cashier: None,
            pin_wallet: None,
            pin_attempts_left: 0,
            retry_kind: None,
            last_capture_at: None,
        }
    }

    pub fn screen(&self) -> &Screen {
        &self.screen
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn health(&self) -> Option<&Health> {
        self.health.as_ref()
    }

    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Whether a request the machine waits for is in flight.
    pub fn is_waiting(&self) -> bool {
        self.pending.is_some()
    }

    /// First thing to call: checks the server.
    pub fn start(&mut self, now: Instant) -> Vec<Command> {
        let mut out = Vec::new();
        self.check_health(now, &mut out);
        out
    }

    /// Feeds one event; returns what to do.
    pub fn handle(&mut self, event: Event, now: Instant) -> Vec<Command> {
        let mut out = Vec::new();
        match event {
            Event::Tick => self.on_tick(now, &mut out),
            Event::Api { id, result } => self.on_api(id, result, now, &mut out),
            Event::Guidance(g) => {
                if let Screen::Capture { guidance, .. } = &mut self.screen {
                    *guidance = g;
                }
            }
            Event::PalmCaptured { template } => self.on_palm(template, now, &mut out),
            Event::CaptureFailed(why) => {
                if let Screen::Capture { .. } = self.screen {
                    out.push(Command::StopCapture);
                    self.decline(None, "Palm capture unavailable", &why, None, now);
                }
            }
            other => {
                // Any touch counts as activity.
                self.touch(now);
                self.on_input(other, now, &mut out);
            }
        }
        out
    }

    fn touch(&mut self, now: Instant) {
        if self.deadline.is_some() && self.is_interactive() {
            self.deadline = Some(now + self.settings.inactivity);
        }
    }

    fn is_interactive(&self) -> bool {
        !matches!(
            self.screen,
            Screen::Approved(_)
                | Screen::Declined(_)
                | Screen::Capture { .. }
                | Screen::EnrollDone { .. }
        )
    }

    fn id(&mut self) -> RequestId {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    fn key(&mut self) -> String {
        (self.new_key)()
    }

    fn go(&mut self, screen: Screen, now: Instant) {
        let timeout = match &screen {
            Screen::Idle | Screen::Offline { .. } => None,
            Screen::Approved(_) | Screen::Declined(_) | Screen::EnrollDone { .. } => {
                Some(self.settings.result_display)
            }
            Screen::Capture { .. } => Some(self.settings.capture_timeout),
            Screen::Processing { .. } => Some(self.settings.processing_timeout),
            _ => Some(self.settings.inactivity),
        };
        self.deadline = timeout.map(|t| now + t);
        if matches!(screen, Screen::Idle) {
            self.cashier = None;
            self.wallet_reqs.clear();
            self.next_health = Some(now);
        }
        self.screen = screen;
    }

    fn home(&mut self, now: Instant, out: &mut Vec<Command>) {
        if matches!(self.screen, Screen::Capture { .. }) {
            out.push(Command::StopCapture);
        }
        self.pending = None;
        self.pin_attempts_left = 0;
        self.go(Screen::Idle, now);
        self.check_health(now, out);
    }

    fn send(
        &mut self,
        call: ApiCall,
        kind: PendingKind,
        title: &str,
        now: Instant,
        out: &mut Vec<Command>,
    ) {
        let id = self.id();
        let cancellable = !call.moves_money();
        self.pending = Some(Pending {
            id,
            call: call.clone(),
            kind,
        });
        out.push(Command::Api { id, call });
        self.go(
            Screen::Processing {
                title: title.into(),
                cancellable,
            },
            now,
        );
    }

    fn check_health(&mut self, now: Instant, out: &mut Vec<Command>) {
        if self.health_req.is_some() {
            return;
        }
        let id = self.id();
        self.health_req = Some(id);
        self.next_health = Some(now + self.settings.health_every);
        out.push(Command::Api {
            id,
            call: ApiCall::Health,
        });
    }

    fn start_capture(&mut self, purpose: CapturePurpose, now: Instant, out: &mut Vec<Command>) {
        out.push(Command::StartCapture);
        self.go(
            Screen::Capture {
                purpose,
                guidance: Guidance::NoHand,
                captured: Vec::new(),
                error: None,
            },
            now,
        );
    }

    fn decline(
        &mut self,
        code: Option<ErrorCode>,
        title: &str,
        detail: &str,
        retry: Option<Retry>,
        now: Instant,
    ) {
        self.go(
            Screen::Declined(Decline {
                code,
                title: title.into(),
                detail: detail.into(),
                retry,
            }),
            now,
        );
    }

    fn on_tick(&mut self, now: Instant, out: &mut Vec<Command>) {
        if matches!(self.screen, Screen::Idle | Screen::Offline { .. })
            && self.next_health.is_some_and(|t| now >= t)
        {
            self.check_health(now, out);
        }
        let Some(deadline) = self.deadline else {
            return;
        };
        if now < deadline {
            return;
        }
        match self.screen.clone() {
            Screen::Processing { .. } => {
                // The request never answered within the safety net. For money movements the
                // outcome is unknown: offer to resend the same request (same key).
                if let Some(p) = self.pending.take() {
                    let retry = p.call.moves_money().then(|| Retry::Resend(p.call.clone()));
                    self.retry_kind = Some(p.kind.clone());
                    self.decline(
                        None,
                        "No answer from the server",
                        "The result is not known yet. Try again to check - you will not be charged twice.",
                        retry,
                        now,
                    );
                } else {
                    self.home(now, out);
                }
            }
            Screen::Capture { purpose, .. } => {
                out.push(Command::StopCapture);
                if matches!(purpose, CapturePurpose::Enroll { .. }) {
                    self.home(now, out);
                } else {
                    self.decline(
                        None,
                        "No palm seen",
                        "Nobody held a palm over the camera in time.",
                        Some(Retry::Recapture(purpose)),
                        now,
                    );
                }
            }
            _ => self.home(now, out),
        }
    }

    fn on_input(&mut self, ev: Event, now: Instant, out: &mut Vec<Command>) {
        if let Event::Nav(Nav::Cancel) = ev {
            self.on_cancel(now, out);
            return;
        }
        match (self.screen.clone(), ev) {
            (Screen::Idle, Event::Nav(Nav::Charge)) => self.go(
                Screen::Amount {
                    purpose: AmountFor::Charge,
                    digits: String::new(),
                    error: None,
                },
                now,
            ),
            (Screen::Idle, Event::Nav(Nav::Enroll)) => self.go(Screen::EnrollConsent, now),
            (Screen::Idle, Event::Nav(Nav::Wallet)) => self.go(
                Screen::LoginChoice {
                    then: AfterLogin::Wallet,
                },
                now,
            ),
            // Only the server can say who is a cashier: offline there is no cashier menu.
            (Screen::Idle, Event::Nav(Nav::Cashier)) => {
                self.go(Screen::CashierName { error: None }, now)
            }
            (Screen::CashierName { .. }, Event::SubmitCashierName { name }) => {
                let name = name.trim().to_string();
                if name.is_empty() || name.chars().count() > MAX_CASHIER_NAME_CHARS {
                    let error = format!(
                        "Enter your cashier name (1 to {MAX_CASHIER_NAME_CHARS} characters)"
                    );
                    self.go(Screen::CashierName { error: Some(error) }, now);
                } else {
                    self.pin_attempts_left = self.settings.pin_attempts;
                    self.go(
                        Screen::Pin {
                            purpose: PinFor::Cashier { name },
                            entered: String::new(),
                            attempts_left: self.settings.pin_attempts,
                            error: None,
                        },
                        now,
                    );
                }
            }
            (
                Screen::Amount {
                    purpose, digits, ..
                },
                Event::Key(k),
            ) => self.on_amount_key(purpose, digits, k, now, out),
            (
                Screen::Pin {
                    purpose,
                    entered,
                    attempts_left,
                    ..
                },
                Event::Key(k),
            ) => self.on_pin_key(purpose, entered, attempts_left, k, now, out),
            (Screen::EnrollConsent, Event::AcceptConsent) => {
                self.go(Screen::EnrollForm { error: None }, now)
            }
            (
                Screen::EnrollForm { .. },
                Event::SubmitEnrollForm {
                    username,
                    email,
                    password,
                    pin,
                },
            ) => self.on_enroll_form(username, email, password, pin, now, out),
            (Screen::LoginChoice { then }, Event::Nav(Nav::LoginByPalm)) => {
                self.start_capture(CapturePurpose::Login { then }, now, out)
            }
            (Screen::LoginChoice { then }, Event::Nav(Nav::LoginByPassword)) => {
                self.go(Screen::PasswordLogin { then, error: None }, now)
            }
            (Screen::PasswordLogin { then, .. }, Event::SubmitPassword { username, password }) => {
                if username.trim().is_empty() || password.is_empty() {
                    self.go(
                        Screen::PasswordLogin {
                            then,
                            error: Some("Enter your username and password".into()),
                        },
                        now,
                    );
                    return;
                }
                let key = self.key();
                self.send(
                    ApiCall::Login {
                        key,
                        req: SessionRequest::Password {
                            username: username.trim().into(),
                            password,
                        },
                    },
                    PendingKind::PasswordLogin { then },
                    "Logging in",
                    now,
                    out,
                );
            }
            (Screen::Wallet(w), Event::Nav(Nav::SendMoney)) => self.go(
                Screen::SendMoney {
                    wallet: w,
                    error: None,
                },
                now,
            ),
            (Screen::Wallet(w), Event::Nav(Nav::SetPin)) => {
                self.pin_attempts_left = self.settings.pin_attempts;
                self.go(
                    Screen::Pin {
                        purpose: PinFor::NewPin {
                            wallet: Box::new(w),
                        },
                        entered: String::new(),
                        attempts_left: self.settings.pin_attempts,
                        error: None,
                    },
                    now,
                );
            }
            (Screen::Wallet(w), Event::Nav(Nav::ForgetPalm)) => {
                let key = self.key();
                self.send(
                    ApiCall::DeletePalm {
                        key,
                        token: w.token.clone(),
                    },
                    PendingKind::DeletePalm {
                        wallet: Box::new(w),
                    },
                    "Removing your palm",
                    now,
                    out,
                );
            }
            (Screen::SendMoney { wallet, .. }, Event::SubmitTransfer { to, amount }) => {
                let to = to.trim().to_string();
                let parsed = Money::parse_positive(amount.trim(), self.settings.currency);
                match parsed {
                    _ if to.is_empty() => self.go(
                        Screen::SendMoney {
                            wallet,
                            error: Some("Enter who to send to".into()),
                        },
                        now,
                    ),
                    Err(e) => self.go(
                        Screen::SendMoney {
                            wallet,
                            error: Some(format!("Amount: {e}")),
                        },
                        now,
                    ),
                    Ok(amount) => self.transfer(wallet, to, amount, None, now, out),
                }
            }
            (Screen::CashierMenu, Event::Nav(Nav::CashierTopUp)) => {
                self.go(Screen::TopUpUser { error: None }, now)
            }
            (Screen::CashierMenu, Event::Nav(Nav::CashierCashOut)) => self.go(
                Screen::LoginChoice {
                    then: AfterLogin::CashOut,
                },
                now,
            ),
            (Screen::CashierMenu, Event::Nav(Nav::CashierToday)) => self.send(
                ApiCall::Today,
                PendingKind::Today,
                "Loading today's sales",
                now,
                out,
            ),
            (Screen::CashierMenu, Event::Nav(Nav::CashierDiagnostics)) => {
                self.open_diagnostics(now, out)
            }
            (Screen::TopUpUser { .. }, Event::SubmitTopUpUser { username }) => {
                let username = username.trim().to_string();
                if username.is_empty() {
                    self.go(
                        Screen::TopUpUser {
                            error: Some("Enter the shopper's username".into()),
                        },
                        now,
                    );
                } else {
                    self.go(
                        Screen::Amount {
                            purpose: AmountFor::TopUp { username },
                            digits: String::new(),
                            error: None,
                        },
                        now,
                    );
                }
            }
            (Screen::Declined(d), Event::Nav(Nav::Retry)) => match d.retry {
                Some(Retry::Resend(call)) => self.resend(call, now, out),
                Some(Retry::Recapture(purpose)) => self.start_capture(purpose, now, out),
                None => self.home(now, out),
            },
            (Screen::Approved(_), Event::Nav(_)) | (Screen::EnrollDone { .. }, Event::Nav(_)) => {
                self.home(now, out)
            }
            (Screen::Offline { .. }, Event::Nav(Nav::Retry)) => self.check_health(now, out),
            _ => {} // Not meaningful on this screen: ignore.
        }
    }

    /// Sends again a request whose outcome is unknown, under the SAME idempotency key.
    fn resend(&mut self, call: ApiCall, now: Instant, out: &mut Vec<Command>) {
        let kind = self.retry_kind.take().unwrap_or(PendingKind::Deposit);
        self.send(call, kind, "Checking the result", now, out);
    }

    fn on_cancel(&mut self, now: Instant, out: &mut Vec<Command>) {
        match self.screen.clone() {
            Screen::Processing { cancellable, .. } => {
                if cancellable {
                    self.home(now, out);
                }
                // A money movement in flight cannot be cancelled: wait for its answer.
            }
            Screen::SendMoney { wallet, .. } => self.go(Screen::Wallet(wallet), now),
            Screen::TopUpUser { .. } | Screen::Today(_) | Screen::Diagnostics(_)
                if self.cashier.is_some() =>
            {
                self.go(Screen::CashierMenu, now)
            }
            Screen::Amount {
                purpose: AmountFor::TopUp { .. },
                ..
            } if self.cashier.is_some() => self.go(Screen::CashierMenu, now),
            _ => self.home(now, out),
        }
    }

    fn on_amount_key(
        &mut self,
        purpose: AmountFor,
        mut digits: String,
        k: Key,
        now: Instant,
        out: &mut Vec<Command>,
    ) {
        let mut error = None;
        match k {
            Key::Digit(d) if d <= 9 => {
                if digits.len() < MAX_AMOUNT_DIGITS && !(digits.is_empty() && d == 0) {
                    digits.push(char::from(b'0' + d));
                }
            }
            Key::Digit(_) => {}
            Key::Backspace => {
                digits.pop();
            }
            Key::Clear => digits.clear(),
            Key::Enter => match digits_to_money(&digits, self.settings.currency) {
                None => error = Some("Enter an amount".to_string()),
                Some(amount) => {
                    match purpose {
                        AmountFor::Charge => {
                            self.start_capture(CapturePurpose::Pay { amount }, now, out)
                        }
                        AmountFor::TopUp { username } => {
                            let Some(cashier) = self.cashier.clone() else {
                                self.go(Screen::CashierName { error: None }, now);
                                return;
                            };
                            let key = self.key();
                            self.send(
                                ApiCall::Deposit {
                                    key,
                                    cashier: cashier.token,
                                    req: DepositRequest { username, amount },
                                },
                                PendingKind::Deposit,
                                "Crediting cash",
                                now,
                                out,
                            );
                        }
                        AmountFor::CashOut { token, shopper } => {
                            self.withdraw(token, shopper, amount, None, now, out)
                        }
                    }
                    return;
                }
            },
        }
        self.go(
            Screen::Amount {
                purpose,
                digits,
                error,
            },
            now,
        );
    }

    fn on_pin_key(
        &mut self,
        purpose: PinFor,
        mut entered: String,
        attempts_left: u8,
        k: Key,
        now: Instant,
        out: &mut Vec<Command>,
    ) {
        match k {
            Key::Digit(d) if d <= 9 => {
                let max = match purpose {
                    PinFor::Cashier { .. } => CASHIER_PIN_MAX,
                    _ => PIN_MAX,
                };
                if entered.len() < max {
                    entered.push(char::from(b'0' + d));
                }
            }
            Key::Digit(_) => {}
            Key::Backspace => {
                entered.pop();
            }
            Key::Clear => entered.clear(),
            Key::Enter => {
                if entered.len() < PIN_MIN {
                    self.go(
                        Screen::Pin {
                            purpose,
                            entered: String::new(),
                            attempts_left,
                            error: Some(format!("The PIN has at least {PIN_MIN} digits")),
                        },
                        now,
                    );
                    return;
                }
                self.submit_pin(purpose, entered, now, out);
                return;
            }
        }
        self.go(
            Screen::Pin {
                purpose,
                entered,
                attempts_left,
                error: None,
            },
            now,
        );
    }

    fn submit_pin(&mut self, purpose: PinFor, pin: String, now: Instant, out: &mut Vec<Command>) {
        match purpose {
            PinFor::Cashier { name } => {
                self.send(
                    ApiCall::CashierLogin {
                        req: CashierSessionRequest {
                            name: name.clone(),
                            pin,
                        },
                    },
                    PendingKind::CashierLogin { name },
                    "Signing in",
                    now,
                    out,
                );
            }
            // Each resend with a PIN is a different request: a NEW idempotency key (the
            // first attempt moved nothing).
            PinFor::PalmPay { template, amount } => {
                self.palm_pay(template, amount, Some(pin), now, out)
            }
            PinFor::PalmLogin { template, then } => {
                self.palm_login(template, then, Some(pin), now, out)
            }
            PinFor::Withdraw {
                token,
                shopper,
                amount,
            } => self.withdraw(token, shopper, amount, Some(pin), now, out),
            PinFor::Transfer { token, to, amount } => {
                let wallet = self.pin_wallet.take().unwrap_or(WalletView {
                    token,
                    shopper: placeholder_shopper(),
                    balance: None,
                    history: None,
                    notice: None,
                });
                self.transfer(wallet, to, amount, Some(pin), now, out)
            }
            PinFor::NewPin { wallet } => self.set_pin(wallet, pin, None, now, out),
            PinFor::CurrentPin { wallet, new_pin } => {
                self.set_pin(wallet, new_pin, Some(pin), now, out)
            }
        }
    }

    /// Sends the shopper's new PIN (with the current one when changing it); a new
    /// idempotency key each time, as every PIN resend is a different request.
    fn set_pin(
        &mut self,
        wallet: Box<WalletView>,
        new_pin: String,
        current_pin: Option<String>,
        now: Instant,
        out: &mut Vec<Command>,
    ) {
        let call = ApiCall::SetPin {
            key: self.key(),
            token: wallet.token.clone(),
            req: ShopperPinChange {
                pin: new_pin.clone(),
                current_pin,
            },
        };
        let kind = PendingKind::SetPin { wallet, new_pin };
        self.send(call, kind, "Saving your PIN", now, out);
    }

    fn open_diagnostics(&mut self, now: Instant, out: &mut Vec<Command>) {
        let id = self.id();
        self.pending = Some(Pending {
            id,
            call: ApiCall::Health,
            kind: PendingKind::Diagnostics,
        });
        out.push(Command::Api {
            id,
            call: ApiCall::Health,
        });
        self.go(Screen::Diagnostics(DiagnosticsView { health: None }), now);
    }

    fn palm_pay(
        &mut self,
        template: String,
        amount: Money,
        pin: Option<String>,
        now: Instant,
        out: &mut Vec<Command>,
    ) {
        let key = self.key();
        let call = ApiCall::PalmPay {
            key,
            req: PalmPaymentRequest {
                template: template.clone(),
                amount,
                pin,
                description: None,
            },
        };
        self.send(
            call,
            PendingKind::PalmPay { template, amount },
            "Processing payment",
            now,
            out,
        );
    }

    fn palm_login(
        &mut self,
        template: String,
        then: AfterLogin,
        pin: Option<String>,
        now: Instant,
        out: &mut Vec<Command>,
    ) {
        let key = self.key();
        let call = ApiCall::Login {
            key,
            req: SessionRequest::Palm {
                template: template.clone(),
                pin,
            },
        };
        self.send(
            call,
            PendingKind::PalmLogin { template, then },
            "Recognising your palm",
            now,
            out,
        );
    }

    fn withdraw(
        &mut self,
        token: String,
        shopper: String,
        amount: Money,
        pin: Option<String>,
        now: Instant,
        out: &mut Vec<Command>,
    ) {
        let Some(cashier) = self.cashier.clone() else {
            self.go(Screen::CashierName { error: None }, now);
            return;
        };
        let key = self.key();
        let call = ApiCall::Withdraw {
            key,
            token: token.clone(),
            cashier: cashier.token,
            req: WithdrawalRequest { amount, pin },
        };
        self.send(
            call,
            PendingKind::Withdraw {
                token,
                shopper,
                amount,
            },
            "Paying out cash",
            now,
            out,
        );
    }

    fn transfer(
        &mut self,
        wallet: WalletView,
        to: String,
        amount: Money,
        pin: Option<String>,
        now: Instant,
        out: &mut Vec<Command>,
    ) {
        let key = self.key();
        let call = ApiCall::Transfer {
            key,
            token: wallet.token.clone(),
            req: TransferRequest {
                to_username: to.clone(),
                amount,
                pin,
                note: None,
            },
        };
        self.send(
            call,
            PendingKind::Transfer {
                wallet: Box::new(wallet),
                to,
                amount,
            },
            "Sending money",
            now,
            out,
        );
    }

    fn on_enroll_form(
        &mut self,
        username: String,
        email: String,
        password: String,
        pin: String,
        now: Instant,
        out: &mut Vec<Command>,
    ) {
        let username = username.trim().to_string();
        let email = email.trim().to_string();
        let error = if username.len() < 3 || username.len() > 32 {
            Some("Username: 3 to 32 characters")
        } else if !username
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
        {
            Some("Username: letters, digits, '.', '_' or '-' only")
        } else if !email.contains('@') || email.len() < 3 {
            Some("Enter a valid email address")
        } else if password.len() < 8 {
            Some("Password: at least 8 characters")
        } else if !pin.is_empty()
            && (pin.len() < PIN_MIN
                || pin.len() > PIN_MAX
                || !pin.chars().all(|c| c.is_ascii_digit()))
        {
            Some("PIN: 4 to 8 digits, or leave it empty")
        } else {
            None
        };
        if let Some(e) = error {
            self.go(
                Screen::EnrollForm {
                    error: Some(e.into()),
                },
                now,
            );
            return;
        }
        let key = self.key();
        self.send(
            ApiCall::Register {
                key,
                req: RegisterShopper {
                    username,
                    email,
                    password: password.clone(),
                    pin: (!pin.is_empty()).then_some(pin),
                },
            },
            PendingKind::Register { password },
            "Creating your account",
            now,
            out,
        );
    }

    fn on_palm(&mut self, template: Vec<u8>, now: Instant, out: &mut Vec<Command>) {
        let Screen::Capture {
            purpose,
            mut captured,
            ..
        } = self.screen.clone()
        else {
            return; // A late frame after the capture ended.
        };
        self.last_capture_at = Some(now);
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD.encode(&template);
        match purpose {
            CapturePurpose::Pay { amount } => {
                out.push(Command::StopCapture);
                self.palm_pay(b64, amount, None, now, out);
            }
            CapturePurpose::Login { then } => {
                out.push(Command::StopCapture);
                self.palm_login(b64, then, None, now, out);
            }
            CapturePurpose::Enroll { token, username } => {
                captured.push(b64);
                if captured.len() >= self.settings.enroll_captures {
                    out.push(Command::StopCapture);
                    let key = self.key();
                    self.send(
                        ApiCall::EnrollPalms {
                            key,
                            token,
                            req: PalmEnrollRequest {
                                templates: captured,
                            },
                        },
                        PendingKind::EnrollPalms { username },
                        "Saving your palm",
                        now,
                        out,
                    );
                } else {
                    // Stay on the capture screen; the deadline restarts for the next capture.
                    self.go(
                        Screen::Capture {
                            purpose: CapturePurpose::Enroll { token, username },
                            guidance: Guidance::NoHand,
                            captured,
                            error: None,
                        },
                        now,
                    );
                }
            }
        }
    }

    fn on_api(
        &mut self,
        id: RequestId,
        result: Result<Reply, ApiError>,
        now: Instant,
        out: &mut Vec<Command>,
    ) {
        if self.health_req == Some(id) {
            self.health_req = None;
            self.on_health(result, now);
            return;
        }
        if let Some(pos) = self.wallet_reqs.iter().position(|r| *r == id) {
            self.wallet_reqs.remove(pos);
            self.on_wallet_data(result, now, out);
            return;
        }
        let Some(p) = self.pending.take_if(|p| p.id == id) else {
            return; // Stale: the shopper cancelled or the screen timed out.
        };
        match result {
            Ok(reply) => self.on_success(p, reply, now, out),
            Err(e) => self.on_failure(p, e, now),
        }
    }

    fn on_health(&mut self, result: Result<Reply, ApiError>, now: Instant) {
        match result {
            Ok(Reply::Health(h)) => {
                self.health = Some(h);
                if let Screen::Offline { .. } = self.screen {
                    self.go(Screen::Idle, now);
                    self.next_health = Some(now + self.settings.health_every);
                }
            }
            Ok(other) => self.mark_offline(format!("unexpected health answer {other:?}"), now),
            Err(e) if e.is_network() => self.mark_offline(e.to_string(), now),
            Err(e) => self.mark_offline(e.to_string(), now),
        }
    }

    fn mark_offline(&mut self, reason: String, now: Instant) {
        // Only the resting screens turn into the offline screen; a shopper mid-flow sees
        // the failure of their own request instead.
        if matches!(self.screen, Screen::Idle | Screen::Offline { .. }) {
            self.screen = Screen::Offline { reason };
            self.deadline = None;
            self.next_health = Some(now + self.settings.health_every.min(Duration::from_secs(3)));
        }
    }

    fn open_wallet(
        &mut self,
        token: String,
        shopper: Shopper,
        notice: Option<String>,
        now: Instant,
        out: &mut Vec<Command>,
    ) {
        let w = WalletView {
            token: token.clone(),
            shopper,
            balance: None,
            history: None,
            notice,
        };
        self.go(Screen::Wallet(w), now);
        self.wallet_reqs.clear();
        let a = self.id();
        let b = self.id();
        self.wallet_reqs.push(a);
        self.wallet_reqs.push(b);
        out.push(Command::Api {
            id: a,
            call: ApiCall::Wallet {
                token: token.clone(),
            },
        });
        out.push(Command::Api {
            id: b,
            call: ApiCall::History {
                token,
                limit: self.settings.history_limit,
                before: None,
            },
        });
    }

    fn on_wallet_data(
        &mut self,
        result: Result<Reply, ApiError>,
        now: Instant,
        out: &mut Vec<Command>,
    ) {
        let Screen::Wallet(mut w) = self.screen.clone() else {
            return;
        };
        match result {
            Ok(Reply::Wallet(wallet)) => {
                w.balance = Some(wallet.balance);
                w.shopper = wallet.shopper;
            }
            Ok(Reply::History(h)) => w.history = Some(h),
            Ok(_) => {}
            Err(ApiError::Server {
                code: ErrorCode::SessionExpired | ErrorCode::SessionRequired,
                ..
            }) => {
                self.go(
                    Screen::LoginChoice {
                        then: AfterLogin::Wallet,
                    },
                    now,
                );
                return;
            }
            Err(e) => w.notice = Some(format!("Could not load: {e}")),
        }
        let _ = out;
        // Keep the wallet's inactivity deadline: data arriving is not shopper activity.
        self.screen = Screen::Wallet(w);
    }

    fn approval(&self, receipt: Receipt) -> Approval {
        Approval {
            merchant: receipt
                .merchant
                .clone()
                .unwrap_or_else(|| self.settings.merchant_display.clone()),
            shopper_masked: mask_name(&receipt.shopper),
            receipt,
        }
    }

    fn on_success(&mut self, p: Pending, reply: Reply, now: Instant, out: &mut Vec<Command>) {
        match (p.kind, reply) {
            (PendingKind::PalmPay { .. } | PendingKind::Deposit, Reply::Receipt(r)) => {
                let a = self.approval(r);
                self.go(Screen::Approved(a), now);
            }
            (PendingKind::Withdraw { .. }, Reply::Receipt(r)) => {
                let a = self.approval(r);
                self.go(Screen::Approved(a), now);
            }
            (PendingKind::Transfer { wallet, .. }, Reply::Receipt(r)) => {
                let notice = format!(
                    "Sent {} to {}",
                    r.amount,
                    r.counterparty.clone().unwrap_or_default()
                );
                self.open_wallet(wallet.token, wallet.shopper, Some(notice), now, out);
            }
            (
                PendingKind::PalmLogin { then, .. } | PendingKind::PasswordLogin { then },
                Reply::Session { token, shopper },
            ) => match then {
                AfterLogin::Wallet => self.open_wallet(token, shopper, None, now, out),
                AfterLogin::CashOut => self.go(
                    Screen::Amount {
                        purpose: AmountFor::CashOut {
                            token,
                            shopper: shopper.username,
                        },
                        digits: String::new(),
                        error: None,
                    },
                    now,
                ),
            },
            (PendingKind::Register { password }, Reply::Shopper(s)) => {
                let key = self.key();
                self.send(
                    ApiCall::Login {
                        key,
                        req: SessionRequest::Password {
                            username: s.username,
                            password,
                        },
                    },
                    PendingKind::EnrollLogin,
                    "Creating your account",
                    now,
                    out,
                );
            }
            (PendingKind::CashierLogin { name }, Reply::CashierSession { token, cashier }) => {
                debug_assert_eq!(cashier.name, name);
                self.pin_attempts_left = 0;
                self.cashier = Some(OnDuty {
                    token,
                    name: cashier.name,
                });
                self.go(Screen::CashierMenu, now);
            }
            (PendingKind::EnrollLogin, Reply::Session { token, shopper }) => self.start_capture(
                CapturePurpose::Enroll {
                    token,
                    username: shopper.username,
                },
                now,
                out,
            ),
            (PendingKind::EnrollPalms { username }, Reply::Enrolled { templates_stored }) => self
                .go(
                    Screen::EnrollDone {
                        username,
                        templates: templates_stored,
                    },
                    now,
                ),
            (PendingKind::Today, Reply::Today(t)) => self.go(Screen::Today(Some(t)), now),
            (PendingKind::Diagnostics, Reply::Health(h)) => {
                self.health = Some(h.clone());
                if let Screen::Diagnostics(d) = &mut self.screen {
                    d.health = Some(Ok(h));
                }
            }
            (PendingKind::SetPin { wallet, .. }, Reply::PinSet) => {
                let notice = Some("Your PIN is set".into());
                self.open_wallet(wallet.token, wallet.shopper, notice, now, out);
            }
            (PendingKind::DeletePalm { wallet }, Reply::Deleted) => {
                let mut shopper = wallet.shopper.clone();
                shopper.palm_enrolled = false;
                self.open_wallet(
                    wallet.token,
                    shopper,
                    Some("Your palm was removed".into()),
                    now,
                    out,
                );
            }
            (_, other) => self.decline(
                None,
                "Unexpected answer",
                &format!("The server sent something unexpected: {other:?}"),
                None,
                now,
            ),
        }
    }

    fn on_failure(&mut self, p: Pending, e: ApiError, now: Instant) {
        use ErrorCode as C;
        let code = e.code();
        // PIN requests first: the same flow for step-up (grey-zone palm match) and for
        // amounts at/above the PIN threshold.
        let pin_for = match &p.kind {
            PendingKind::PalmPay { template, amount } => Some(PinFor::PalmPay {
                template: template.clone(),
                amount: *amount,
            }),
            PendingKind::PalmLogin { template, then } => Some(PinFor::PalmLogin {
                template: template.clone(),
                then: *then,
            }),
            PendingKind::Withdraw {
                token,
                shopper,
                amount,
            } => Some(PinFor::Withdraw {
                token: token.clone(),
                shopper: shopper.clone(),
                amount: *amount,
            }),
            PendingKind::SetPin { wallet, new_pin } => Some(PinFor::CurrentPin {
                wallet: wallet.clone(),
                new_pin: new_pin.clone(),
            }),
            PendingKind::Transfer { wallet, to, amount } => {
                self.pin_wallet = Some((**wallet).clone());
                Some(PinFor::Transfer {
                    token: wallet.token.clone(),
                    to: to.clone(),
                    amount: *amount,
                })
            }
            _ => None,
        };
        if let (Some(purpose), Some(C::StepUpRequired | C::PinRequired | C::InvalidPin)) =
            (pin_for.clone(), code)
        {
            let (attempts_left, error) = match (&self.screen, code) {
                (_, Some(C::InvalidPin)) => (
                    if self.pin_attempts_left == 0 {
                        self.settings.pin_attempts
                    } else {
                        self.pin_attempts_left
                    }
                    .saturating_sub(1),
                    Some("Wrong PIN".to_string()),
                ),
                _ => (self.settings.pin_attempts, None),
            };
            if attempts_left == 0 {
                self.decline(code, "Wrong PIN", "Too many wrong PINs.", None, now);
                return;
            }
            self.pin_attempts_left = attempts_left;
            self.go(
                Screen::Pin {
                    purpose,
                    entered: String::new(),
                    attempts_left,
                    error,
                },
                now,
            );
            return;
        }
        if self.on_cashier_failure(&p.kind, code, now) {
            return;
        }
        // Forms show their errors in place.
        match (&p.kind, code) {
            (PendingKind::PasswordLogin { then }, Some(C::InvalidCredentials)) => {
                self.go(
                    Screen::PasswordLogin {
                        then: *then,
                        error: Some("Wrong username or password".into()),
                    },
                    now,
                );
                return;
            }
            (PendingKind::Register { .. }, Some(C::UsernameTaken)) => {
                self.go(
                    Screen::EnrollForm {
                        error: Some("That username is taken".into()),
                    },
                    now,
                );
                return;
            }
            (PendingKind::Register { .. }, Some(C::InvalidRequest)) => {
                self.go(
                    Screen::EnrollForm {
                        error: Some(format!("Check the form: {e}")),
                    },
                    now,
                );
                return;
            }
            (PendingKind::Transfer { wallet, .. }, Some(c))
                if matches!(
                    c,
                    C::UnknownAccount
                        | C::SameAccount
                        | C::InsufficientFunds
                        | C::InvalidAmount
                        | C::AccountFrozen
                ) =>
            {
                let msg = match c {
                    C::UnknownAccount => "No shopper with that username".to_string(),
                    C::SameAccount => "You cannot send money to yourself".to_string(),
                    C::InsufficientFunds => "Not enough money in your wallet".to_string(),
                    C::AccountFrozen => "That account is frozen".to_string(),
                    _ => format!("{e}"),
                };
                self.go(
                    Screen::SendMoney {
                        wallet: (**wallet).clone(),
                        error: Some(msg),
                    },
                    now,
                );
                return;
            }
            (
                PendingKind::Transfer { .. }
                | PendingKind::DeletePalm { .. }
                | PendingKind::SetPin { .. },
                Some(C::SessionExpired | C::SessionRequired),
            ) => {
                self.go(
                    Screen::LoginChoice {
                        then: AfterLogin::Wallet,
                    },
                    now,
                );
                return;
            }
            (PendingKind::Diagnostics, _) => {
                if let Screen::Diagnostics(d) = &mut self.screen {
                    d.health = Some(Err(e.to_string()));
                }
                return;
            }
            _ => {}
        }
        let recapture = match &p.kind {
            PendingKind::PalmPay { amount, .. } => Some(CapturePurpose::Pay { amount: *amount }),
            PendingKind::PalmLogin { then, .. } => Some(CapturePurpose::Login { then: *then }),
            _ => None,
        };
        let (title, detail, retry): (&str, String, Option<Retry>) = match code {
            None if e.is_network() && p.call.moves_money() => (
                "Connection problem",
                "We could not confirm the result. Try again to check - you will not be charged twice.".into(),
                Some(Retry::Resend(p.call.clone())),
            ),
            None if e.is_network() => ("Connection problem", format!("{e}"), None),
            None => ("Something went wrong", format!("{e}"), None),
            Some(C::InsufficientFunds) => ("Insufficient funds", "The wallet balance is too low for this amount.".into(), None),
            Some(C::PinNotSet) => (
                "PIN needed",
                "This amount needs a PIN. Log in to your wallet and choose Set PIN.".into(),
                None,
            ),
            Some(C::PalmNotRecognised) => (
                "Palm not recognised",
                "Try again, or pay another way.".into(),
                recapture.map(Retry::Recapture),
            ),
            Some(C::InvalidTemplate) => (
                "Could not read the palm",
                "Hold your palm flat and try again.".into(),
                recapture.map(Retry::Recapture),
            ),
            Some(C::AccountFrozen) => ("Account frozen", "This account cannot be used. Ask staff for help.".into(), None),
            Some(C::AccountLocked) => ("Account locked", "Too many failed attempts. Ask staff for help.".into(), None),
            Some(C::InvalidCredentials) => ("Not recognised", "Wrong credentials.".into(), None),
            Some(C::UnknownAccount) => ("Unknown shopper", "No shopper with that username.".into(), None),
            Some(C::InvalidAmount | C::UnsupportedCurrency) => ("Invalid amount", format!("{e}"), None),
            Some(C::RateLimited) => ("Too many attempts", wait_then_retry(&e), None),
            Some(C::SessionExpired | C::SessionRequired) => ("Session expired", "Please log in again.".into(), None),
            Some(C::PalmAlreadyEnrolled) => ("Palm already enrolled", "This palm already belongs to an account.".into(), None),
            Some(C::PalmTemplatesInconsistent) => (
                "Captures did not match",
                match &e {
                    // The server names the capture to retake.
                    ApiError::Server { message, .. } if !message.is_empty() => {
                        format!("{message}. Please enroll again.")
                    }
                    _ => "The palm captures looked like different hands. Please enroll again."
                        .into(),
                },
                None,
            ),
            Some(C::IdempotencyInFlight) => (
                "Still processing",
                "The server is still working on this request. Try again to check.".into(),
                p.call.moves_money().then(|| Retry::Resend(p.call.clone())),
            ),
            Some(C::Unavailable | C::Internal) => (
                "Service unavailable",
                match e.retry_after() {
                    Some(s) => format!("The server could not complete this. Try again in {s} seconds."),
                    None => "The server could not complete this. Try again later.".into(),
                },
                p.call.moves_money().then(|| Retry::Resend(p.call.clone())),
            ),
            Some(c) => ("Declined", format!("{} ({})", e, c.as_str()), None),
        };
        if matches!(retry, Some(Retry::Resend(_))) {
            self.retry_kind = Some(p.kind.clone());
        }
        self.decline(code, title, &detail, retry, now);
    }
}

impl App {
    /// The cashier's own failures: a wrong name or PIN goes back to the PIN pad (a few
    /// tries, then idle; the server counts and locks as well), and a cash-desk request whose
    /// cashier session ended asks the cashier to sign in again. True if handled.
    fn on_cashier_failure(
        &mut self,
        kind: &PendingKind,
        code: Option<ErrorCode>,
        now: Instant,
    ) -> bool {
        use ErrorCode as C;
        match (kind, code) {
            (
                PendingKind::CashierLogin { name },
                Some(C::InvalidCredentials | C::InvalidRequest),
            ) => {
                let left = if self.pin_attempts_left == 0 {
                    self.settings.pin_attempts
                } else {
                    self.pin_attempts_left
                }
                .saturating_sub(1);
                if left == 0 {
                    self.decline(code, "Not signed in", "Too many wrong PINs.", None, now);
                } else {
                    self.pin_attempts_left = left;
                    self.go(
                        Screen::Pin {
                            purpose: PinFor::Cashier { name: name.clone() },
                            entered: String::new(),
                            attempts_left: left,
                            error: Some("Wrong cashier name or PIN".into()),
                        },
                        now,
                    );
                }
                true
            }
            (PendingKind::CashierLogin { .. }, Some(C::AccountLocked)) => {
                self.decline(
                    code,
                    "Cashier locked",
                    "Too many wrong PINs for this cashier. Try again later.",
                    None,
                    now,
                );
                true
            }
            (_, Some(C::CashierDisabled)) => {
                self.cashier = None;
                self.decline(
                    code,
                    "Cashier disabled",
                    "This cashier can no longer sign in. Ask the operator.",
                    None,
                    now,
                );
                true
            }
            (
                PendingKind::Deposit | PendingKind::Withdraw { .. },
                Some(C::CashierSessionExpired | C::CashierSessionRequired),
            ) => {
                self.cashier = None;
                self.go(
                    Screen::CashierName {
                        error: Some("Your cashier sign-in ended: sign in again".into()),
                    },
                    now,
                );
                true
            }
            _ => false,
        }
    }

    /// The cashier signed in, if any.
    pub fn cashier(&self) -> Option<&OnDuty> {
        self.cashier.as_ref()
    }
}

fn placeholder_shopper() -> Shopper {
    Shopper {
        id: 0,
        username: String::new(),
        email: String::new(),
        status: palmline_shared::api::AccountStatus::Active,
        has_pin: false,
        palm_enrolled: false,
        created_at: String::new(),
    }
}

/// Kind label for history rows.
pub fn kind_label(k: TxKind) -> &'static str {
    match k {
        TxKind::Deposit => "Cash top-up",
        TxKind::Withdrawal => "Cash-out",
        TxKind::Payment => "Payment",
        TxKind::Transfer => "Transfer",
        TxKind::Refund => "Refund",
    }
}

#[cfg(test)]
#[path = "app_tests.rs"]
mod tests;
