//! Unit tests of the state machine: every screen and transition, timeouts, cancel, network
//! failure and each server error code.

use super::*;
use palmline_shared::api::AccountStatus;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

const EUR: Currency = Currency::EUR;

fn eur(minor: i64) -> Money {
    Money::from_minor(minor, EUR)
}

struct T {
    app: App,
    now: Instant,
}

fn new() -> T {
    let counter = Arc::new(AtomicU64::new(0));
    let app = App::new(
        Settings::default(),
        Box::new(move || format!("k{}", counter.fetch_add(1, Ordering::SeqCst) + 1)),
    );
    T {
        app,
        now: Instant::now(),
    }
}

fn shopper(name: &str) -> Shopper {
    Shopper {
        id: 7,
        username: name.into(),
        email: format!("{name}@example.com"),
        status: AccountStatus::Active,
        has_pin: true,
        palm_enrolled: true,
        created_at: "2026-01-01T00:00:00Z".into(),
    }
}

fn health() -> Health {
    Health {
        status: "ok".into(),
        version: "0.1.0".into(),
        role: "kiosk".into(),
        kiosk_id: Some("k1".into()),
        merchant: Some("Corner Shop".into()),
        currency: "EUR".into(),
        pin_threshold: eur(5000),
        server_time: "now".into(),
    }
}

fn receipt(kind: TxKind, amount: i64, balance: i64) -> Receipt {
    Receipt {
        transaction_id: 42,
        kind,
        amount: eur(amount),
        balance_after: Some(eur(balance)),
        shopper: "alice".into(),
        merchant: Some("Corner Shop".into()),
        counterparty: Some("bob".into()),
        kiosk_id: Some("k1".into()),
        created_at: "now".into(),
    }
}

fn server(code: ErrorCode) -> ApiError {
    ApiError::Server {
        code,
        message: code.as_str().into(),
        retry_after: None,
    }
}

impl T {
    fn ev(&mut self, e: Event) -> Vec<Command> {
        self.app.handle(e, self.now)
    }
    fn nav(&mut self, n: Nav) -> Vec<Command> {
        self.ev(Event::Nav(n))
    }
    fn keys(&mut self, s: &str) {
        for c in s.chars() {
            self.ev(Event::Key(Key::Digit(c.to_digit(10).unwrap() as u8)));
        }
    }
    fn enter(&mut self) -> Vec<Command> {
        self.ev(Event::Key(Key::Enter))
    }
    fn advance(&mut self, d: Duration) -> Vec<Command> {
        self.now += d;
        self.ev(Event::Tick)
    }
    fn reply(&mut self, id: RequestId, r: Result<Reply, ApiError>) -> Vec<Command> {
        self.ev(Event::Api { id, result: r })
    }
    /// Boots with a healthy server.
    fn booted() -> T {
        let mut t = new();
        let cmds = t.app.start(t.now);
        let (id, call) = only_api(&cmds);
        assert_eq!(call, ApiCall::Health);
        t.reply(id, Ok(Reply::Health(health())));
        assert_eq!(t.app.screen(), &Screen::Idle);
        t
    }
    /// Charge `digits` and present a palm; returns the palm payment request.
    fn start_palm_pay(&mut self, digits: &str) -> (RequestId, ApiCall) {
        self.nav(Nav::Charge);
        self.keys(digits);
        let cmds = self.enter();
        assert_eq!(cmds, vec![Command::StartCapture]);
        let cmds = self.ev(Event::PalmCaptured {
            template: vec![1, 2, 3],
        });
        assert_eq!(cmds[0], Command::StopCapture);
        only_api(&cmds[1..])
    }
    fn name(&self) -> &'static str {
        self.app.screen().name()
    }
}

fn only_api(cmds: &[Command]) -> (RequestId, ApiCall) {
    let apis: Vec<_> = cmds
        .iter()
        .filter_map(|c| match c {
            Command::Api { id, call } => Some((*id, call.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(apis.len(), 1, "expected one API call in {cmds:?}");
    apis[0].clone()
}

fn key_of(call: &ApiCall) -> String {
    call.idempotency_key()
        .expect("mutating call has a key")
        .to_string()
}

// ------------------------------------------------------------------ health / offline

#[test]
fn boot_checks_health_and_unreachable_server_shows_offline_then_recovers() {
    let mut t = new();
    let (id, _) = only_api(&t.app.start(t.now));
    t.reply(id, Err(ApiError::Offline("connection refused".into())));
    assert!(matches!(t.app.screen(), Screen::Offline { reason } if reason.contains("refused")));
    // Nothing is checked before the retry period.
    assert!(t.advance(Duration::from_millis(500)).is_empty());
    let cmds = t.advance(Duration::from_secs(3));
    let (id, call) = only_api(&cmds);
    assert_eq!(call, ApiCall::Health);
    t.reply(id, Ok(Reply::Health(health())));
    assert_eq!(t.app.screen(), &Screen::Idle);
    assert_eq!(
        t.app.health().unwrap().merchant.as_deref(),
        Some("Corner Shop")
    );
}

#[test]
fn idle_rechecks_health_periodically_and_goes_offline() {
    let mut t = T::booted();
    let cmds = t.advance(Settings::default().health_every);
    let (id, _) = only_api(&cmds);
    t.reply(id, Err(ApiError::Timeout));
    assert_eq!(t.name(), "offline");
    // The offline screen offers a manual retry too.
    let (id, call) = only_api(&t.nav(Nav::Retry));
    assert_eq!(call, ApiCall::Health);
    t.reply(id, Ok(Reply::Health(health())));
    assert_eq!(t.name(), "idle");
}

#[test]
fn health_failure_mid_flow_does_not_hijack_the_screen() {
    let mut t = T::booted();
    t.nav(Nav::Charge);
    // Health request issued on idle earlier is answered late with an error.
    let mut t2 = new();
    let (id, _) = only_api(&t2.app.start(t2.now));
    t2.nav(Nav::Charge);
    t2.reply(id, Err(ApiError::Offline("down".into())));
    assert_eq!(t2.name(), "amount");
    assert_eq!(t.name(), "amount");
}

#[test]
fn offline_there_is_no_cashier_menu() {
    let mut t = new();
    let (id, _) = only_api(&t.app.start(t.now));
    t.reply(id, Err(ApiError::Offline("down".into())));
    // Only the server can say who is a cashier; there is no local PIN to fall back on.
    assert!(t.nav(Nav::Cashier).is_empty());
    assert_eq!(t.name(), "offline");
}

// ------------------------------------------------------------------ amount keypad

#[test]
fn amount_keypad_edits_digits() {
    let mut t = T::booted();
    t.nav(Nav::Charge);
    t.keys("0012");
    assert!(matches!(t.app.screen(), Screen::Amount { digits, .. } if digits == "12"));
    t.ev(Event::Key(Key::Digit(5)));
    t.ev(Event::Key(Key::Backspace));
    t.keys("34");
    assert!(matches!(t.app.screen(), Screen::Amount { digits, .. } if digits == "1234"));
    assert_eq!(digits_to_money("1234", EUR), Some(eur(1234)));
    t.ev(Event::Key(Key::Clear));
    let cmds = t.enter();
    assert!(cmds.is_empty());
    assert!(matches!(
        t.app.screen(),
        Screen::Amount { error: Some(_), .. }
    ));
    t.keys("1234567890123");
    assert!(
        matches!(t.app.screen(), Screen::Amount { digits, .. } if digits.len() == MAX_AMOUNT_DIGITS)
    );
    t.ev(Event::Key(Key::Digit(11))); // not a digit: ignored
    assert!(
        matches!(t.app.screen(), Screen::Amount { digits, .. } if digits.len() == MAX_AMOUNT_DIGITS)
    );
}

#[test]
fn amount_cancel_and_inactivity_return_to_idle() {
    let mut t = T::booted();
    t.nav(Nav::Charge);
    t.nav(Nav::Cancel);
    assert_eq!(t.name(), "idle");
    t.nav(Nav::Charge);
    // Touching the keypad keeps it alive past the original deadline.
    t.advance(Duration::from_secs(50));
    t.keys("1");
    t.advance(Duration::from_secs(50));
    assert_eq!(t.name(), "amount");
    t.advance(Duration::from_secs(11));
    assert_eq!(t.name(), "idle");
}

// ------------------------------------------------------------------ palm payment

#[test]
fn palm_payment_happy_path() {
    let mut t = T::booted();
    let (id, call) = t.start_palm_pay("1250");
    let ApiCall::PalmPay { req, .. } = &call else {
        panic!("{call:?}")
    };
    assert_eq!(req.amount, eur(1250));
    assert_eq!(req.template, "AQID"); // base64 of [1,2,3]
    assert_eq!(req.pin, None);
    assert!(matches!(
        t.app.screen(),
        Screen::Processing {
            cancellable: false,
            ..
        }
    ));
    // A money movement in flight cannot be cancelled.
    t.nav(Nav::Cancel);
    assert_eq!(t.name(), "processing");
    t.reply(id, Ok(Reply::Receipt(receipt(TxKind::Payment, 1250, 3750))));
    let Screen::Approved(a) = t.app.screen() else {
        panic!("{:?}", t.app.screen())
    };
    assert_eq!(a.shopper_masked, "a***e");
    assert_eq!(a.merchant, "Corner Shop");
    assert_eq!(a.receipt.balance_after, Some(eur(3750)));
    // The result stays up for a while, then idle.
    t.advance(Duration::from_secs(7));
    assert_eq!(t.name(), "approved");
    t.advance(Duration::from_secs(2));
    assert_eq!(t.name(), "idle");
}

#[test]
fn guidance_is_shown_while_capturing() {
    let mut t = T::booted();
    t.nav(Nav::Charge);
    t.keys("5");
    t.enter();
    for g in [
        Guidance::TooFar,
        Guidance::TooClose,
        Guidance::Blurry,
        Guidance::HoldStill,
    ] {
        t.ev(Event::Guidance(g));
        assert!(matches!(t.app.screen(), Screen::Capture { guidance, .. } if *guidance == g));
        assert!(!g.message().is_empty());
    }
}

#[test]
fn capture_cancel_stops_the_camera() {
    let mut t = T::booted();
    t.nav(Nav::Charge);
    t.keys("5");
    t.enter();
    let cmds = t.nav(Nav::Cancel);
    assert!(cmds.contains(&Command::StopCapture));
    assert_eq!(t.name(), "idle");
    // A palm arriving after the capture ended is ignored.
    assert!(t.ev(Event::PalmCaptured { template: vec![1] }).is_empty());
    assert_eq!(t.name(), "idle");
}

#[test]
fn capture_timeout_declines_with_recapture() {
    let mut t = T::booted();
    t.nav(Nav::Charge);
    t.keys("5");
    t.enter();
    let cmds = t.advance(Duration::from_secs(31));
    assert!(cmds.contains(&Command::StopCapture));
    let Screen::Declined(d) = t.app.screen().clone() else {
        panic!()
    };
    assert_eq!(
        d.retry,
        Some(Retry::Recapture(CapturePurpose::Pay { amount: eur(5) }))
    );
    let cmds = t.nav(Nav::Retry);
    assert_eq!(cmds, vec![Command::StartCapture]);
    assert_eq!(t.name(), "capture");
}

#[test]
fn camera_failure_declines() {
    let mut t = T::booted();
    t.nav(Nav::Charge);
    t.keys("5");
    t.enter();
    let cmds = t.ev(Event::CaptureFailed("no camera".into()));
    assert!(cmds.contains(&Command::StopCapture));
    assert!(matches!(t.app.screen(), Screen::Declined(d) if d.detail == "no camera"));
    t.nav(Nav::Retry); // no retry offered: home
    assert_eq!(t.name(), "idle");
}

#[test]
fn step_up_asks_pin_and_resends_with_a_new_key() {
    let mut t = T::booted();
    let (id, first) = t.start_palm_pay("9999");
    t.reply(id, Err(server(ErrorCode::StepUpRequired)));
    assert!(matches!(
        t.app.screen(),
        Screen::Pin {
            purpose: PinFor::PalmPay { .. },
            attempts_left: 3,
            ..
        }
    ));
    t.keys("12");
    let cmds = t.enter();
    assert!(cmds.is_empty(), "short PIN is refused locally");
    assert!(matches!(t.app.screen(), Screen::Pin { error: Some(_), .. }));
    t.keys("4321");
    let (id, second) = only_api(&t.enter());
    let ApiCall::PalmPay { req, .. } = &second else {
        panic!()
    };
    assert_eq!(req.pin.as_deref(), Some("4321"));
    assert_ne!(key_of(&first), key_of(&second));
    t.reply(id, Ok(Reply::Receipt(receipt(TxKind::Payment, 9999, 1))));
    assert_eq!(t.name(), "approved");
}

#[test]
fn pin_required_above_threshold_uses_the_pin_pad() {
    let mut t = T::booted();
    let (id, _) = t.start_palm_pay("500000");
    t.reply(id, Err(server(ErrorCode::PinRequired)));
    assert_eq!(t.name(), "pin");
}

#[test]
fn wrong_pins_run_out() {
    let mut t = T::booted();
    let (id, _) = t.start_palm_pay("100");
    t.reply(id, Err(server(ErrorCode::StepUpRequired)));
    for left in [2u8, 1] {
        t.keys("0000");
        let (id, _) = only_api(&t.enter());
        t.reply(id, Err(server(ErrorCode::InvalidPin)));
        assert!(
            matches!(t.app.screen(), Screen::Pin { attempts_left, error: Some(_), .. } if *attempts_left == left)
        );
    }
    t.keys("0000");
    let (id, _) = only_api(&t.enter());
    t.reply(id, Err(server(ErrorCode::InvalidPin)));
    assert!(matches!(t.app.screen(), Screen::Declined(d) if d.code == Some(ErrorCode::InvalidPin)));
}

#[test]
fn pin_pad_cancel_goes_home() {
    let mut t = T::booted();
    let (id, _) = t.start_palm_pay("100");
    t.reply(id, Err(server(ErrorCode::StepUpRequired)));
    t.nav(Nav::Cancel);
    assert_eq!(t.name(), "idle");
}

#[test]
fn lost_payment_answer_is_retried_with_the_same_key() {
    let mut t = T::booted();
    let (id, first) = t.start_palm_pay("700");
    t.reply(id, Err(ApiError::Timeout));
    let Screen::Declined(d) = t.app.screen().clone() else {
        panic!()
    };
    assert_eq!(d.retry, Some(Retry::Resend(first.clone())));
    let (id, again) = only_api(&t.nav(Nav::Retry));
    assert_eq!(again, first, "identical request, identical idempotency key");
    t.reply(id, Ok(Reply::Receipt(receipt(TxKind::Payment, 700, 300))));
    assert_eq!(t.name(), "approved");
}

#[test]
fn processing_safety_timeout_offers_resend_and_drops_the_late_answer() {
    let mut t = T::booted();
    let (id, first) = t.start_palm_pay("700");
    t.advance(Duration::from_secs(46));
    assert!(
        matches!(t.app.screen(), Screen::Declined(d) if d.retry == Some(Retry::Resend(first.clone())))
    );
    // The original answer arriving now is stale and changes nothing.
    t.reply(id, Ok(Reply::Receipt(receipt(TxKind::Payment, 700, 300))));
    assert_eq!(t.name(), "declined");
    let (_, again) = only_api(&t.nav(Nav::Retry));
    assert_eq!(key_of(&again), key_of(&first));
}

#[test]
fn every_server_error_on_a_palm_payment_is_handled() {
    use ErrorCode as C;
    let all = [
        C::InvalidAmount,
        C::UnsupportedCurrency,
        C::InvalidRequest,
        C::MalformedJson,
        C::BodyTooLarge,
        C::MissingIdempotencyKey,
        C::IdempotencyMismatch,
        C::IdempotencyInFlight,
        C::InsufficientFunds,
        C::UnknownAccount,
        C::UnknownPayment,
        C::RefundExceedsPayment,
        C::AccountFrozen,
        C::UsernameTaken,
        C::InvalidCredentials,
        C::AccountLocked,
        C::PinRequired,
        C::InvalidPin,
        C::SessionRequired,
        C::SessionExpired,
        C::Forbidden,
        C::NotFound,
        C::SameAccount,
        C::PalmNotRecognised,
        C::StepUpRequired,
        C::PalmAlreadyEnrolled,
        C::PalmTemplatesInconsistent,
        C::InvalidTemplate,
        C::RateLimited,
        C::Unavailable,
        C::Internal,
    ];
    for code in all {
        let mut t = T::booted();
        let (id, call) = t.start_palm_pay("300");
        t.reply(id, Err(server(code)));
        match code {
            C::PinRequired | C::StepUpRequired | C::InvalidPin => {
                assert_eq!(t.name(), "pin", "{code}")
            }
            _ => {
                let Screen::Declined(d) = t.app.screen().clone() else {
                    panic!("{code}: {:?}", t.app.screen())
                };
                assert_eq!(d.code, Some(code));
                assert!(!d.title.is_empty());
                let expect_retry = match code {
                    C::PalmNotRecognised | C::InvalidTemplate => {
                        Some(Retry::Recapture(CapturePurpose::Pay { amount: eur(300) }))
                    }
                    C::IdempotencyInFlight | C::Unavailable | C::Internal => {
                        Some(Retry::Resend(call.clone()))
                    }
                    _ => None,
                };
                assert_eq!(d.retry, expect_retry, "{code}");
            }
        }
    }
}

#[test]
fn a_rate_limit_says_how_long_to_wait_when_the_server_says_it() {
    for (retry_after, want) in [
        (Some(30), "Please wait 30 seconds and try again."),
        (None, "Please wait a moment and try again."),
    ] {
        let mut t = T::booted();
        let (id, _) = t.start_palm_pay("300");
        let e = ApiError::Server {
            code: ErrorCode::RateLimited,
            message: "slow down".into(),
            retry_after,
        };
        t.reply(id, Err(e));
        let Screen::Declined(d) = t.app.screen().clone() else {
            panic!("{:?}", t.app.screen())
        };
        assert_eq!(d.detail, want);
    }
}

#[test]
fn insufficient_funds_is_explained() {
    let mut t = T::booted();
    let (id, _) = t.start_palm_pay("300");
    t.reply(id, Err(server(ErrorCode::InsufficientFunds)));
    assert!(matches!(t.app.screen(), Screen::Declined(d) if d.title == "Insufficient funds"));
    t.advance(Duration::from_secs(9));
    assert_eq!(t.name(), "idle");
}

#[test]
fn palm_not_recognised_can_recapture() {
    let mut t = T::booted();
    let (id, _) = t.start_palm_pay("300");
    t.reply(id, Err(server(ErrorCode::PalmNotRecognised)));
    assert_eq!(t.nav(Nav::Retry), vec![Command::StartCapture]);
    let cmds = t.ev(Event::PalmCaptured { template: vec![9] });
    let (_, call) = only_api(&cmds);
    assert!(matches!(call, ApiCall::PalmPay { req, .. } if req.amount == eur(300)));
}

#[test]
fn protocol_error_declines_without_retry() {
    let mut t = T::booted();
    let (id, _) = t.start_palm_pay("300");
    t.reply(id, Err(ApiError::Protocol("garbage".into())));
    assert!(matches!(t.app.screen(), Screen::Declined(d) if d.retry.is_none()));
}

// ------------------------------------------------------------------ enrollment

fn to_enroll_form(t: &mut T) {
    t.nav(Nav::Enroll);
    assert_eq!(t.name(), "enroll-consent");
    t.ev(Event::AcceptConsent);
    assert_eq!(t.name(), "enroll-form");
}

fn form(username: &str, email: &str, password: &str, pin: &str) -> Event {
    Event::SubmitEnrollForm {
        username: username.into(),
        email: email.into(),
        password: password.into(),
        pin: pin.into(),
    }
}

#[test]
fn enrollment_form_validates_locally() {
    let mut t = T::booted();
    to_enroll_form(&mut t);
    for bad in [
        form("ab", "a@b.c", "password1", ""),
        form("bad name", "a@b.c", "password1", ""),
        form("carol", "nope", "password1", ""),
        form("carol", "c@x.org", "short", ""),
        form("carol", "c@x.org", "password1", "12"),
        form("carol", "c@x.org", "password1", "12ab"),
    ] {
        let cmds = t.ev(bad.clone());
        assert!(cmds.is_empty(), "{bad:?}");
        assert!(
            matches!(t.app.screen(), Screen::EnrollForm { error: Some(_) }),
            "{bad:?}"
        );
    }
}

#[test]
fn enrollment_registers_logs_in_and_captures_three_palms() {
    let mut t = T::booted();
    to_enroll_form(&mut t);
    let (id, call) = only_api(&t.ev(form(" carol ", "carol@example.com", "password1", "2468")));
    let ApiCall::Register { req, .. } = &call else {
        panic!()
    };
    assert_eq!(req.username, "carol");
    assert_eq!(req.pin.as_deref(), Some("2468"));
    let (id, call) = only_api(&t.reply(id, Ok(Reply::Shopper(shopper("carol")))));
    assert!(
        matches!(call, ApiCall::Login { req: SessionRequest::Password { ref username, ref password }, .. } if username == "carol" && password == "password1")
    );
    let cmds = t.reply(
        id,
        Ok(Reply::Session {
            token: "tok".into(),
            shopper: shopper("carol"),
        }),
    );
    assert_eq!(cmds, vec![Command::StartCapture]);
    for n in 1..3 {
        let cmds = t.ev(Event::PalmCaptured { template: vec![n] });
        assert!(cmds.is_empty());
        assert!(
            matches!(t.app.screen(), Screen::Capture { captured, .. } if captured.len() == n as usize)
        );
    }
    let cmds = t.ev(Event::PalmCaptured { template: vec![3] });
    assert_eq!(cmds[0], Command::StopCapture);
    let (id, call) = only_api(&cmds);
    let ApiCall::EnrollPalms { token, req, .. } = call else {
        panic!()
    };
    assert_eq!(token, "tok");
    assert_eq!(req.templates, vec!["AQ==", "Ag==", "Aw=="]);
    t.reply(
        id,
        Ok(Reply::Enrolled {
            templates_stored: 3,
        }),
    );
    assert_eq!(
        t.app.screen(),
        &Screen::EnrollDone {
            username: "carol".into(),
            templates: 3
        }
    );
    t.nav(Nav::Cancel);
    assert_eq!(t.name(), "idle");
}

#[test]
fn enrollment_username_taken_returns_to_the_form() {
    let mut t = T::booted();
    to_enroll_form(&mut t);
    let (id, _) = only_api(&t.ev(form("alice", "a@x.org", "password1", "")));
    t.reply(id, Err(server(ErrorCode::UsernameTaken)));
    assert!(matches!(t.app.screen(), Screen::EnrollForm { error: Some(e) } if e.contains("taken")));
}

#[test]
fn enrollment_rejections_are_explained() {
    for code in [
        ErrorCode::PalmAlreadyEnrolled,
        ErrorCode::PalmTemplatesInconsistent,
    ] {
        let mut t = T::booted();
        to_enroll_form(&mut t);
        let (id, _) = only_api(&t.ev(form("dave", "d@x.org", "password1", "")));
        let (id, _) = only_api(&t.reply(id, Ok(Reply::Shopper(shopper("dave")))));
        t.reply(
            id,
            Ok(Reply::Session {
                token: "t".into(),
                shopper: shopper("dave"),
            }),
        );
        t.ev(Event::PalmCaptured { template: vec![1] });
        t.ev(Event::PalmCaptured { template: vec![2] });
        let (id, _) = only_api(&t.ev(Event::PalmCaptured { template: vec![3] }));
        t.reply(id, Err(server(code)));
        assert!(matches!(t.app.screen(), Screen::Declined(d) if d.code == Some(code)));
    }
}

#[test]
fn enrollment_capture_timeout_goes_home() {
    let mut t = T::booted();
    to_enroll_form(&mut t);
    let (id, _) = only_api(&t.ev(form("erin", "e@x.org", "password1", "")));
    let (id, _) = only_api(&t.reply(id, Ok(Reply::Shopper(shopper("erin")))));
    t.reply(
        id,
        Ok(Reply::Session {
            token: "t".into(),
            shopper: shopper("erin"),
        }),
    );
    let cmds = t.advance(Duration::from_secs(31));
    assert!(cmds.contains(&Command::StopCapture));
    assert_eq!(t.name(), "idle");
}

#[test]
fn consent_can_be_declined() {
    let mut t = T::booted();
    t.nav(Nav::Enroll);
    t.nav(Nav::Cancel);
    assert_eq!(t.name(), "idle");
}

// ------------------------------------------------------------------ wallet

fn to_wallet(t: &mut T) -> (RequestId, RequestId) {
    t.nav(Nav::Wallet);
    assert_eq!(t.name(), "login-choice");
    t.nav(Nav::LoginByPassword);
    let (id, _) = only_api(&t.ev(Event::SubmitPassword {
        username: "alice".into(),
        password: "password1".into(),
    }));
    assert!(matches!(
        t.app.screen(),
        Screen::Processing {
            cancellable: true,
            ..
        }
    ));
    let cmds = t.reply(
        id,
        Ok(Reply::Session {
            token: "tok".into(),
            shopper: shopper("alice"),
        }),
    );
    assert_eq!(cmds.len(), 2);
    let ids: Vec<_> = cmds
        .iter()
        .map(|c| match c {
            Command::Api { id, call } => {
                assert!(matches!(
                    call,
                    ApiCall::Wallet { .. } | ApiCall::History { .. }
                ));
                *id
            }
            _ => panic!(),
        })
        .collect();
    (ids[0], ids[1])
}

#[test]
fn password_login_errors_stay_on_the_form() {
    let mut t = T::booted();
    t.nav(Nav::Wallet);
    t.nav(Nav::LoginByPassword);
    assert!(t
        .ev(Event::SubmitPassword {
            username: " ".into(),
            password: "".into()
        })
        .is_empty());
    assert!(matches!(
        t.app.screen(),
        Screen::PasswordLogin { error: Some(_), .. }
    ));
    let (id, _) = only_api(&t.ev(Event::SubmitPassword {
        username: "alice".into(),
        password: "nope".into(),
    }));
    t.reply(id, Err(server(ErrorCode::InvalidCredentials)));
    assert!(
        matches!(t.app.screen(), Screen::PasswordLogin { error: Some(e), .. } if e.contains("Wrong"))
    );
}

#[test]
fn login_can_be_cancelled_and_its_late_answer_is_dropped() {
    let mut t = T::booted();
    t.nav(Nav::Wallet);
    t.nav(Nav::LoginByPassword);
    let (id, _) = only_api(&t.ev(Event::SubmitPassword {
        username: "alice".into(),
        password: "password1".into(),
    }));
    t.nav(Nav::Cancel);
    assert_eq!(t.name(), "idle");
    let cmds = t.reply(
        id,
        Ok(Reply::Session {
            token: "tok".into(),
            shopper: shopper("alice"),
        }),
    );
    assert!(cmds.is_empty());
    assert_eq!(t.name(), "idle");
}

#[test]
fn wallet_shows_balance_and_history() {
    let mut t = T::booted();
    let (a, b) = to_wallet(&mut t);
    t.reply(
        a,
        Ok(Reply::Wallet(Wallet {
            shopper: shopper("alice"),
            balance: eur(4200),
        })),
    );
    t.reply(
        b,
        Ok(Reply::History(HistoryPage {
            items: vec![],
            next_before: None,
        })),
    );
    let Screen::Wallet(w) = t.app.screen() else {
        panic!()
    };
    assert_eq!(w.balance, Some(eur(4200)));
    assert!(w.history.is_some());
    // Inactivity logs the shopper out.
    t.advance(Duration::from_secs(61));
    assert_eq!(t.name(), "idle");
}

#[test]
fn wallet_session_expiry_asks_to_log_in_again() {
    let mut t = T::booted();
    let (a, _) = to_wallet(&mut t);
    t.reply(a, Err(server(ErrorCode::SessionExpired)));
    assert_eq!(t.name(), "login-choice");
}

#[test]
fn palm_login_with_step_up() {
    let mut t = T::booted();
    t.nav(Nav::Wallet);
    assert_eq!(t.nav(Nav::LoginByPalm), vec![Command::StartCapture]);
    let (id, first) = only_api(&t.ev(Event::PalmCaptured { template: vec![1] }));
    assert!(matches!(
        &first,
        ApiCall::Login {
            req: SessionRequest::Palm { pin: None, .. },
            ..
        }
    ));
    t.reply(id, Err(server(ErrorCode::StepUpRequired)));
    t.keys("1111");
    let (id, second) = only_api(&t.enter());
    assert!(
        matches!(&second, ApiCall::Login { req: SessionRequest::Palm { pin: Some(p), .. }, .. } if p == "1111")
    );
    assert_ne!(key_of(&first), key_of(&second));
    let cmds = t.reply(
        id,
        Ok(Reply::Session {
            token: "tok".into(),
            shopper: shopper("alice"),
        }),
    );
    assert_eq!(cmds.len(), 2);
    assert_eq!(t.name(), "wallet");
}

#[test]
fn send_money_with_pin_returns_to_a_refreshed_wallet() {
    let mut t = T::booted();
    to_wallet(&mut t);
    t.nav(Nav::SendMoney);
    assert_eq!(t.name(), "send-money");
    assert!(t
        .ev(Event::SubmitTransfer {
            to: "bob".into(),
            amount: "1.234".into()
        })
        .is_empty());
    assert!(matches!(
        t.app.screen(),
        Screen::SendMoney { error: Some(_), .. }
    ));
    let (id, first) = only_api(&t.ev(Event::SubmitTransfer {
        to: "bob".into(),
        amount: "12.50".into(),
    }));
    assert!(
        matches!(&first, ApiCall::Transfer { req, token, .. } if req.amount == eur(1250) && token == "tok")
    );
    t.reply(id, Err(server(ErrorCode::PinRequired)));
    t.keys("2468");
    let (id, second) = only_api(&t.enter());
    assert!(matches!(&second, ApiCall::Transfer { req, .. } if req.pin.as_deref() == Some("2468")));
    assert_ne!(key_of(&first), key_of(&second));
    let cmds = t.reply(id, Ok(Reply::Receipt(receipt(TxKind::Transfer, 1250, 100))));
    assert_eq!(cmds.len(), 2, "balance and history are reloaded");
    assert!(
        matches!(t.app.screen(), Screen::Wallet(w) if w.notice.as_deref().unwrap().contains("bob") && w.shopper.username == "alice")
    );
}

#[test]
fn send_money_errors_stay_on_the_form() {
    for code in [
        ErrorCode::UnknownAccount,
        ErrorCode::SameAccount,
        ErrorCode::InsufficientFunds,
    ] {
        let mut t = T::booted();
        to_wallet(&mut t);
        t.nav(Nav::SendMoney);
        let (id, _) = only_api(&t.ev(Event::SubmitTransfer {
            to: "zed".into(),
            amount: "1".into(),
        }));
        t.reply(id, Err(server(code)));
        assert!(
            matches!(t.app.screen(), Screen::SendMoney { error: Some(_), .. }),
            "{code}"
        );
        t.nav(Nav::Cancel);
        assert_eq!(t.name(), "wallet");
    }
}

#[test]
fn forget_palm_from_the_wallet() {
    let mut t = T::booted();
    to_wallet(&mut t);
    let (id, call) = only_api(&t.nav(Nav::ForgetPalm));
    assert!(matches!(call, ApiCall::DeletePalm { .. }));
    t.reply(id, Ok(Reply::Deleted));
    assert!(matches!(t.app.screen(), Screen::Wallet(w) if !w.shopper.palm_enrolled));
}

#[test]
fn set_pin_from_the_wallet_asks_the_current_one_when_there_is_one() {
    let mut t = T::booted();
    to_wallet(&mut t);
    t.nav(Nav::SetPin);
    assert!(matches!(
        t.app.screen(),
        Screen::Pin {
            purpose: PinFor::NewPin { .. },
            ..
        }
    ));
    t.keys("2468");
    let (id, call) = only_api(&t.enter());
    let ApiCall::SetPin { key, req, .. } = call else {
        panic!("{call:?}")
    };
    assert_eq!(
        (req.pin.as_str(), req.current_pin.as_deref()),
        ("2468", None)
    );
    // The shopper has a PIN already: the server wants it, the pad asks for it.
    t.reply(id, Err(server(ErrorCode::PinRequired)));
    assert!(
        matches!(t.app.screen(), Screen::Pin { purpose: PinFor::CurrentPin { new_pin, .. }, .. } if new_pin == "2468")
    );
    t.keys("1357");
    let (id, call) = only_api(&t.enter());
    let ApiCall::SetPin { key: key2, req, .. } = call else {
        panic!("{call:?}")
    };
    assert_ne!(key, key2, "a resend with a PIN is a new request");
    assert_eq!(
        (req.pin.as_str(), req.current_pin.as_deref()),
        ("2468", Some("1357"))
    );
    t.reply(id, Ok(Reply::PinSet));
    assert!(
        matches!(t.app.screen(), Screen::Wallet(w) if w.notice.as_deref() == Some("Your PIN is set"))
    );
}

#[test]
fn pin_not_set_tells_the_shopper_where_to_set_one() {
    let mut t = T::booted();
    let (id, _) = t.start_palm_pay("500000");
    t.reply(id, Err(server(ErrorCode::PinNotSet)));
    assert!(
        matches!(t.app.screen(), Screen::Declined(d) if d.code == Some(ErrorCode::PinNotSet) && d.detail.contains("Set PIN"))
    );
}

// ------------------------------------------------------------------ cashier

fn cashier_session(name: &str) -> Reply {
    Reply::CashierSession {
        token: format!("desk-{name}"),
        cashier: Cashier {
            id: 3,
            merchant: "Corner Shop".into(),
            name: name.into(),
            status: palmline_shared::api::CashierStatus::Active,
            created_at: "2026-01-01T00:00:00Z".into(),
        },
    }
}

/// Signs the cashier "Ann" in through the server (name, PIN pad, the server's session).
fn unlock_cashier(t: &mut T) {
    t.nav(Nav::Cashier);
    assert_eq!(t.name(), "cashier-name");
    t.ev(Event::SubmitCashierName {
        name: " Ann ".into(),
    });
    assert!(matches!(
        t.app.screen(),
        Screen::Pin {
            purpose: PinFor::Cashier { name },
            ..
        } if name == "Ann"
    ));
    t.keys("246810");
    let (id, call) = only_api(&t.enter());
    assert_eq!(
        call,
        ApiCall::CashierLogin {
            req: CashierSessionRequest {
                name: "Ann".into(),
                pin: "246810".into()
            }
        }
    );
    assert!(!call.moves_money() && call.idempotency_key().is_none());
    t.reply(id, Ok(cashier_session("Ann")));
    assert_eq!(t.name(), "cashier-menu");
    assert_eq!(t.app.cashier().map(|c| c.token.as_str()), Some("desk-Ann"));
}

#[test]
fn a_cashier_name_is_asked_for_and_bounded() {
    let mut t = T::booted();
    t.nav(Nav::Cashier);
    for bad in ["", "   ", &"x".repeat(33)] {
        t.ev(Event::SubmitCashierName { name: bad.into() });
        assert!(
            matches!(t.app.screen(), Screen::CashierName { error: Some(_) }),
            "{bad:?}"
        );
    }
    t.nav(Nav::Cancel);
    assert_eq!(t.name(), "idle");
}

#[test]
fn the_cashier_pin_is_checked_by_the_server_and_attempts_run_out() {
    let mut t = T::booted();
    t.nav(Nav::Cashier);
    t.ev(Event::SubmitCashierName { name: "Ann".into() });
    // Nothing is checked locally: every PIN goes to the server.
    for left in [2u8, 1] {
        t.keys("9999");
        let (id, call) = only_api(&t.enter());
        assert!(matches!(call, ApiCall::CashierLogin { .. }));
        t.reply(id, Err(server(ErrorCode::InvalidCredentials)));
        assert!(matches!(
            t.app.screen(),
            Screen::Pin {
                purpose: PinFor::Cashier { .. },
                attempts_left,
                error: Some(_),
                ..
            } if *attempts_left == left
        ));
    }
    t.keys("9999");
    let (id, _) = only_api(&t.enter());
    t.reply(id, Err(server(ErrorCode::InvalidCredentials)));
    assert_eq!(t.name(), "declined");
    assert!(t.app.cashier().is_none());
    // A locked or disabled cashier is told so.
    for (code, title) in [
        (ErrorCode::AccountLocked, "Cashier locked"),
        (ErrorCode::CashierDisabled, "Cashier disabled"),
    ] {
        let mut t = T::booted();
        t.nav(Nav::Cashier);
        t.ev(Event::SubmitCashierName { name: "Ann".into() });
        t.keys("1234");
        let (id, _) = only_api(&t.enter());
        t.reply(id, Err(server(code)));
        assert!(matches!(t.app.screen(), Screen::Declined(d) if d.title == title));
        assert!(t.app.cashier().is_none());
    }
}

#[test]
fn a_cashier_pin_may_have_twelve_digits() {
    let mut t = T::booted();
    t.nav(Nav::Cashier);
    t.ev(Event::SubmitCashierName { name: "Ann".into() });
    t.keys("12345678901234");
    let (_, call) = only_api(&t.enter());
    assert!(matches!(call, ApiCall::CashierLogin { req } if req.pin == "123456789012"));
}

#[test]
fn the_cashier_session_is_dropped_when_the_kiosk_goes_idle() {
    let mut t = T::booted();
    unlock_cashier(&mut t);
    t.now += t.app.settings().inactivity + Duration::from_secs(1);
    t.ev(Event::Tick);
    assert_eq!(t.name(), "idle");
    assert!(t.app.cashier().is_none(), "the token is forgotten");
    t.nav(Nav::Cashier);
    assert_eq!(t.name(), "cashier-name", "signing in again");
}

#[test]
fn an_ended_cashier_session_asks_to_sign_in_again() {
    let mut t = T::booted();
    unlock_cashier(&mut t);
    t.nav(Nav::CashierTopUp);
    t.ev(Event::SubmitTopUpUser {
        username: "alice".into(),
    });
    t.keys("100");
    let (id, _) = only_api(&t.enter());
    t.reply(id, Err(server(ErrorCode::CashierSessionExpired)));
    assert!(matches!(
        t.app.screen(),
        Screen::CashierName { error: Some(_) }
    ));
    assert!(t.app.cashier().is_none());
}

#[test]
fn cash_top_up() {
    let mut t = T::booted();
    unlock_cashier(&mut t);
    t.nav(Nav::CashierTopUp);
    t.ev(Event::SubmitTopUpUser {
        username: "".into(),
    });
    assert!(matches!(
        t.app.screen(),
        Screen::TopUpUser { error: Some(_) }
    ));
    t.ev(Event::SubmitTopUpUser {
        username: "alice".into(),
    });
    assert!(matches!(
        t.app.screen(),
        Screen::Amount {
            purpose: AmountFor::TopUp { .. },
            ..
        }
    ));
    t.keys("2000");
    let (id, call) = only_api(&t.enter());
    assert!(
        matches!(&call, ApiCall::Deposit { req, cashier, .. } if req.username == "alice" && req.amount == eur(2000) && cashier == "desk-Ann")
    );
    t.reply(id, Ok(Reply::Receipt(receipt(TxKind::Deposit, 2000, 5000))));
    assert_eq!(t.name(), "approved");
}

#[test]
fn top_up_to_unknown_shopper_is_declined() {
    let mut t = T::booted();
    unlock_cashier(&mut t);
    t.nav(Nav::CashierTopUp);
    t.ev(Event::SubmitTopUpUser {
        username: "ghost".into(),
    });
    t.keys("1");
    let (id, _) = only_api(&t.enter());
    t.reply(id, Err(server(ErrorCode::UnknownAccount)));
    assert!(matches!(t.app.screen(), Screen::Declined(d) if d.title == "Unknown shopper"));
}

#[test]
fn cash_out_logs_the_shopper_in_first() {
    let mut t = T::booted();
    unlock_cashier(&mut t);
    t.nav(Nav::CashierCashOut);
    assert_eq!(
        t.app.screen(),
        &Screen::LoginChoice {
            then: AfterLogin::CashOut
        }
    );
    t.nav(Nav::LoginByPalm);
    let (id, _) = only_api(&t.ev(Event::PalmCaptured { template: vec![4] }));
    t.reply(
        id,
        Ok(Reply::Session {
            token: "tok".into(),
            shopper: shopper("alice"),
        }),
    );
    assert!(matches!(
        t.app.screen(),
        Screen::Amount {
            purpose: AmountFor::CashOut { .. },
            ..
        }
    ));
    t.keys("1000");
    let (id, call) = only_api(&t.enter());
    assert!(
        matches!(&call, ApiCall::Withdraw { token, req, cashier, .. } if token == "tok" && req.amount == eur(1000) && cashier == "desk-Ann")
    );
    t.reply(id, Err(server(ErrorCode::PinRequired)));
    t.keys("1357");
    let (id, call) = only_api(&t.enter());
    assert!(matches!(&call, ApiCall::Withdraw { req, .. } if req.pin.as_deref() == Some("1357")));
    t.reply(id, Ok(Reply::Receipt(receipt(TxKind::Withdrawal, 1000, 0))));
    assert_eq!(t.name(), "approved");
}

#[test]
fn cash_out_network_failure_resends_the_same_withdrawal() {
    let mut t = T::booted();
    unlock_cashier(&mut t);
    t.nav(Nav::CashierCashOut);
    t.nav(Nav::LoginByPassword);
    let (id, _) = only_api(&t.ev(Event::SubmitPassword {
        username: "alice".into(),
        password: "password1".into(),
    }));
    t.reply(
        id,
        Ok(Reply::Session {
            token: "tok".into(),
            shopper: shopper("alice"),
        }),
    );
    t.keys("500");
    let (id, first) = only_api(&t.enter());
    t.reply(id, Err(ApiError::Timeout));
    let (id, again) = only_api(&t.nav(Nav::Retry));
    assert_eq!(first, again);
    t.reply(id, Ok(Reply::Receipt(receipt(TxKind::Withdrawal, 500, 0))));
    assert_eq!(t.name(), "approved");
}

#[test]
fn todays_sales_and_back_to_menu() {
    let mut t = T::booted();
    unlock_cashier(&mut t);
    let (id, call) = only_api(&t.nav(Nav::CashierToday));
    assert_eq!(call, ApiCall::Today);
    let totals = DailyTotals {
        merchant: "Corner Shop".into(),
        date: "2026-11-24".into(),
        payments_count: 3,
        payments_total: eur(3000),
        refunds_total: eur(0),
        deposits_total: eur(10000),
        withdrawals_total: eur(500),
        cash_net: eur(9500),
        cashiers: Vec::new(),
    };
    t.reply(id, Ok(Reply::Today(totals.clone())));
    assert_eq!(t.app.screen(), &Screen::Today(Some(totals)));
    t.nav(Nav::Cancel);
    assert_eq!(t.name(), "cashier-menu");
    // Leaving to idle signs the cashier out.
    t.nav(Nav::Cancel);
    assert_eq!(t.name(), "idle");
    assert!(t.app.cashier().is_none());
    t.nav(Nav::Cashier);
    assert_eq!(t.name(), "cashier-name");
}

#[test]
fn diagnostics_show_health_or_its_error() {
    let mut t = T::booted();
    unlock_cashier(&mut t);
    let (id, _) = only_api(&t.nav(Nav::CashierDiagnostics));
    t.reply(id, Err(ApiError::Offline("refused".into())));
    assert!(
        matches!(t.app.screen(), Screen::Diagnostics(d) if matches!(&d.health, Some(Err(e)) if e.contains("refused")))
    );
    t.nav(Nav::Cancel);
    let (id, _) = only_api(&t.nav(Nav::CashierDiagnostics));
    t.reply(id, Ok(Reply::Health(health())));
    assert!(matches!(t.app.screen(), Screen::Diagnostics(d) if matches!(d.health, Some(Ok(_)))));
}

#[test]
fn non_money_network_failure_has_no_resend() {
    let mut t = T::booted();
    unlock_cashier(&mut t);
    let (id, _) = only_api(&t.nav(Nav::CashierToday));
    t.reply(id, Err(ApiError::Offline("down".into())));
    assert!(
        matches!(t.app.screen(), Screen::Declined(d) if d.retry.is_none() && d.title == "Connection problem")
    );
}

#[test]
fn unexpected_reply_kind_is_declined_not_trusted() {
    let mut t = T::booted();
    let (id, _) = t.start_palm_pay("100");
    t.reply(id, Ok(Reply::Deleted));
    assert!(matches!(t.app.screen(), Screen::Declined(d) if d.title == "Unexpected answer"));
}

#[test]
fn masking_names() {
    assert_eq!(mask_name("alice"), "a***e");
    assert_eq!(mask_name("al"), "a***");
    assert_eq!(mask_name(""), "");
}
