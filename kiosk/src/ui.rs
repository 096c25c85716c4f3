//! Slint glue: renders the state machine into the `Adapter` global, turns UI callbacks into
//! [`Event`]s, and runs the state machine's [`Command`]s on worker threads (network, camera)
//! whose results come back through a channel drained on the UI thread.
//!
//! This is the only module that knows both Slint and the state machine. It holds no
//! business rules: anything that decides belongs in [`crate::app`].

use crate::api::ApiClient;
use crate::app::{
    kind_label, AmountFor, ApiCall, App, CapturePurpose, Command, Event, Guidance, Key, Nav,
    PinFor, RequestId, Screen,
};
use crate::camera::sim::SimControl;
use crate::camera::{CameraStatus, Frame};
use crate::config::format_money;
use crate::worker::{CaptureHandle, CaptureSink};
use crate::{Adapter, AppWindow, Row};
use slint::{
    ComponentHandle, Image, ModelRc, Rgb8Pixel, SharedPixelBuffer, SharedString, VecModel,
};
use std::cell::{Cell, RefCell};
use std::path::PathBuf;
use std::rc::{Rc, Weak};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What worker threads send to the UI thread.
pub enum UiEvent {
    App(Event),
    Captured {
        template: Vec<u8>,
        accepted_at: Instant,
    },
    Preview(SharedPixelBuffer<Rgb8Pixel>),
    Camera(CameraStatus),
}

/// Sends [`UiEvent`]s to the UI thread and wakes it.
#[derive(Clone)]
pub struct Poster {
    tx: Sender<UiEvent>,
    wake: Arc<dyn Fn() + Send + Sync>,
}

impl Poster {
    pub fn post(&self, ev: UiEvent) {
        if self.tx.send(ev).is_ok() {
            (self.wake)();
        }
    }
}

/// A channel whose receiving end the UI thread drains. `wake` is called after each post:
/// in the real kiosk it schedules a drain on the Slint event loop; in tests it does nothing
/// and the test drains explicitly.
pub fn channel(wake: Arc<dyn Fn() + Send + Sync>) -> (Poster, Receiver<UiEvent>) {
    let (tx, rx) = mpsc::channel();
    (Poster { tx, wake }, rx)
}

/// Runs API calls on a small pool of threads.
pub struct Net {
    tx: Sender<(RequestId, ApiCall)>,
}

impl Net {
    pub fn spawn(client: ApiClient, poster: Poster, threads: usize) -> Net {
        let (tx, rx) = mpsc::channel::<(RequestId, ApiCall)>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            let client = client.clone();
            let poster = poster.clone();
            std::thread::Builder::new()
                .name(format!("net-{i}"))
                .spawn(move || loop {
                    let next = rx.lock().expect("net queue").recv();
                    let Ok((id, call)) = next else { return };
                    let result = client.call(&call);
                    poster.post(UiEvent::App(Event::Api { id, result }));
                })
                .expect("spawning a network thread");
        }
        Net { tx }
    }

    fn send(&self, id: RequestId, call: ApiCall) {
        let _ = self.tx.send((id, call));
    }
}

/// Capture sink posting to the UI thread; drops preview frames while one is still waiting
/// to be shown, so a slow UI never builds a queue of stale frames.
pub struct UiSink {
    poster: Poster,
    preview_pending: Arc<AtomicBool>,
    /// Preview width (frames are downscaled to this for display).
    preview_width: u32,
}

impl CaptureSink for UiSink {
    fn preview(&self, frame: &Frame) {
        if self.preview_pending.swap(true, Ordering::AcqRel) {
            return;
        }
        self.poster
            .post(UiEvent::Preview(preview_buffer(frame, self.preview_width)));
    }
    fn guidance(&self, g: Guidance) {
        self.poster.post(UiEvent::App(Event::Guidance(g)));
    }
    fn captured(&self, template: Vec<u8>, accepted_at: Instant) {
        self.poster.post(UiEvent::Captured {
            template,
            accepted_at,
        });
    }
    fn failed(&self, why: String) {
        self.poster.post(UiEvent::App(Event::CaptureFailed(why)));
    }
    fn status(&self, status: CameraStatus) {
        self.poster.post(UiEvent::Camera(status));
    }
}

/// Downscales a frame (nearest neighbour) into an RGB buffer for the preview.
pub fn preview_buffer(frame: &Frame, max_width: u32) -> SharedPixelBuffer<Rgb8Pixel> {
    let step = (frame.width / max_width.max(1)).max(1);
    let (w, h) = (frame.width / step, frame.height / step);
    let mut buf = SharedPixelBuffer::<Rgb8Pixel>::new(w, h);
    let out = buf.make_mut_slice();
    for y in 0..h {
        for x in 0..w {
            let src = ((y * step) * frame.width + x * step) as usize;
            let px = match &frame.rgb {
                Some(rgb) => Rgb8Pixel::new(rgb[src * 3], rgb[src * 3 + 1], rgb[src * 3 + 2]),
                None => {
                    let v = frame.gray[src];
                    Rgb8Pixel::new(v, v, v)
                }
            };
            out[(y * w + x) as usize] = px;
        }
    }
    buf
}

/// Static facts shown by the UI.
#[derive(Clone, Default)]
pub struct UiOptions {
    pub locale: String,
    pub server_url: String,
    pub cert_path: Option<PathBuf>,
    pub extractor: String,
    /// Simulated camera control and the identities offered on the capture screen.
    pub sim: Option<SimControl>,
    pub sim_identities: Vec<String>,
}

/// Figures the benchmarks read.
#[derive(Debug, Default, Clone)]
pub struct UiStats {
    /// From the gate accepting a frame to the result's properties being set on screen.
    pub frame_to_result: Vec<Duration>,
    pub previews_shown: u64,
}

pub struct Kiosk {
    pub window: AppWindow,
    app: RefCell<App>,
    rx: Receiver<UiEvent>,
    net: Net,
    capture: Option<CaptureHandle>,
    opts: UiOptions,
    preview_pending: Arc<AtomicBool>,
    camera_status: RefCell<String>,
    accepted_at: Cell<Option<Instant>>,
    stats: RefCell<UiStats>,
}

/// Frame counter for a preview fps figure in diagnostics.
static PREVIEWS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static CURRENT: RefCell<Option<Weak<Kiosk>>> = const { RefCell::new(None) };
}

/// A wake function for the real event loop: drains the kiosk's channel on the UI thread.
pub fn event_loop_wake() -> Arc<dyn Fn() + Send + Sync> {
    let scheduled = Arc::new(AtomicBool::new(false));
    Arc::new(move || {
        if scheduled.swap(true, Ordering::AcqRel) {
            return; // A drain is already queued; it will see this event too.
        }
        let flag = scheduled.clone();
        let _ = slint::invoke_from_event_loop(move || {
            flag.store(false, Ordering::Release);
            CURRENT.with(|c| {
                if let Some(k) = c.borrow().as_ref().and_then(Weak::upgrade) {
                    k.drain();
                }
            });
        });
    })
}

impl Kiosk {
    /// Wires a window to a state machine. `capture` is `None` when there is no camera
    /// at all (capture then fails with a clear message).
    pub fn new(
        window: AppWindow,
        app: App,
        rx: Receiver<UiEvent>,
        net: Net,
        capture: Option<CaptureHandle>,
        preview_pending: Arc<AtomicBool>,
        opts: UiOptions,
    ) -> Rc<Kiosk> {
        let k = Rc::new(Kiosk {
            window,
            app: RefCell::new(app),
            rx,
            net,
            capture,
            opts,
            preview_pending,
            camera_status: RefCell::new("starting".into()),
            accepted_at: Cell::new(None),
            stats: RefCell::new(UiStats::default()),
        });
        CURRENT.with(|c| *c.borrow_mut() = Some(Rc::downgrade(&k)));
        k.wire();
        let cmds = {
            let mut app = k.app.borrow_mut();
            app.start(Instant::now())
        };
        k.execute(cmds);
        k.render();
        k
    }

    /// Makes a capture sink for this kiosk's channel.
    pub fn sink(poster: Poster, preview_pending: Arc<AtomicBool>) -> UiSink {
        UiSink {
            poster,
            preview_pending,
            preview_width: 320,
        }
    }

    pub fn stats(&self) -> UiStats {
        self.stats.borrow().clone()
    }

    /// The camera's delivered frame rate (0 without a camera).
    pub fn camera_fps(&self) -> f32 {
        self.capture.as_ref().map_or(0.0, |c| c.stats().fps)
    }

    /// Whether the last health check succeeded.
    pub fn is_online(&self) -> bool {
        let app = self.app.borrow();
        app.health().is_some() && !matches!(app.screen(), Screen::Offline { .. })
    }

    pub fn screen(&self) -> Screen {
        self.app.borrow().screen().clone()
    }

    /// Starts the periodic tick that drives timeouts (real event loop only).
    pub fn start_timer(self: &Rc<Self>) -> slint::Timer {
        let timer = slint::Timer::default();
        let weak = Rc::downgrade(self);
        timer.start(
            slint::TimerMode::Repeated,
            Duration::from_millis(250),
            move || {
                if let Some(k) = weak.upgrade() {
                    k.input(Event::Tick);
                }
            },
        );
        timer
    }

    fn wire(self: &Rc<Self>) {
        let adapter = self.window.global::<Adapter>();
        let w = Rc::downgrade(self);
        let with = move |f: &dyn Fn(&Kiosk)| {
            if let Some(k) = w.upgrade() {
                f(&k);
            }
        };
        let h = with.clone();
        adapter.on_nav(move |what| {
            let nav = match what.as_str() {
                "charge" => Nav::Charge,
                "enroll" => Nav::Enroll,
                "wallet" => Nav::Wallet,
                "cashier" => Nav::Cashier,
                "topup" => Nav::CashierTopUp,
                "cashout" => Nav::CashierCashOut,
                "today" => Nav::CashierToday,
                "diagnostics" => Nav::CashierDiagnostics,
                "palm" => Nav::LoginByPalm,
                "password" => Nav::LoginByPassword,
                "send" => Nav::SendMoney,
                "forget" => Nav::ForgetPalm,
                "set-pin" => Nav::SetPin,
                "retry" => Nav::Retry,
                _ => Nav::Cancel,
            };
            h(&|k| k.input(Event::Nav(nav)));
        });
        let h = with.clone();
        adapter.on_key(move |key| {
            let key = match key.as_str() {
                "back" => Key::Backspace,
                "clear" => Key::Clear,
                "enter" => Key::Enter,
                d => match d.parse::<u8>() {
                    Ok(n) if n <= 9 => Key::Digit(n),
                    _ => return,
                },
            };
            h(&|k| k.input(Event::Key(key)));
        });
        let h = with.clone();
        adapter.on_accept_consent(move || h(&|k| k.input(Event::AcceptConsent)));
        let h = with.clone();
        adapter.on_submit_enroll(move |username, email, password, pin| {
            let ev = Event::SubmitEnrollForm {
                username: username.into(),
                email: email.into(),
                password: password.into(),
                pin: pin.into(),
            };
            h(&|k| k.input(ev.clone()));
        });
        let h = with.clone();
        adapter.on_submit_password(move |username, password| {
            let ev = Event::SubmitPassword {
                username: username.into(),
                password: password.into(),
            };
            h(&|k| k.input(ev.clone()));
        });
        let h = with.clone();
        adapter.on_submit_topup_user(move |username| {
            let ev = Event::SubmitTopUpUser {
                username: username.into(),
            };
            h(&|k| k.input(ev.clone()));
        });
        let h = with.clone();
        adapter.on_submit_cashier_name(move |name| {
            let ev = Event::SubmitCashierName { name: name.into() };
            h(&|k| k.input(ev.clone()));
        });
        let h = with.clone();
        adapter.on_submit_transfer(move |to, amount| {
            let ev = Event::SubmitTransfer {
                to: to.into(),
                amount: amount.into(),
            };
            h(&|k| k.input(ev.clone()));
        });
        let h = with.clone();
        adapter.on_sim_present(move |id| {
            h(&|k| {
                if let Some(sim) = &k.opts.sim {
                    sim.present((!id.is_empty()).then_some(id.as_str()));
                    k.window.global::<Adapter>().set_sim_showing(id.clone());
                }
            });
        });
        let h = with;
        adapter.on_osk_key(move |text| {
            h(&|k| {
                use slint::platform::WindowEvent;
                let window = k.window.window();
                window.dispatch_event(WindowEvent::KeyPressed { text: text.clone() });
                window.dispatch_event(WindowEvent::KeyReleased { text: text.clone() });
            });
        });
    }

    /// Feeds one event to the state machine, runs its commands, re-renders.
    pub fn input(&self, ev: Event) {
        let cmds = self.app.borrow_mut().handle(ev, Instant::now());
        self.execute(cmds);
        self.render();
    }

    /// Handles everything the worker threads have posted so far.
    pub fn drain(&self) -> usize {
        let mut n = 0;
        while let Ok(ev) = self.rx.try_recv() {
            self.on_ui_event(ev);
            n += 1;
        }
        n
    }

    /// For tests and the scripted demo: handles posted events (waiting for them) and ticks
    /// until `done` holds for the current screen, or `timeout` passes (the error then holds
    /// the screen it got stuck on).
    pub fn pump_until(
        &self,
        timeout: Duration,
        done: impl Fn(&Screen) -> bool,
    ) -> Result<Screen, Box<Screen>> {
        let deadline = Instant::now() + timeout;
        let mut last_tick = Instant::now();
        loop {
            let screen = self.screen();
            if done(&screen) {
                return Ok(screen);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Box::new(screen));
            }
            let wait = (deadline - now).min(Duration::from_millis(100));
            if let Ok(ev) = self.rx.recv_timeout(wait) {
                self.on_ui_event(ev);
            }
            if last_tick.elapsed() >= Duration::from_millis(100) {
                last_tick = Instant::now();
                self.input(Event::Tick);
            }
        }
    }

    fn on_ui_event(&self, ev: UiEvent) {
        match ev {
            UiEvent::App(e) => self.input(e),
            UiEvent::Captured {
                template,
                accepted_at,
            } => {
                self.accepted_at.set(Some(accepted_at));
                self.input(Event::PalmCaptured { template });
            }
            UiEvent::Preview(buf) => {
                self.preview_pending.store(false, Ordering::Release);
                PREVIEWS.fetch_add(1, Ordering::Relaxed);
                self.stats.borrow_mut().previews_shown += 1;
                if matches!(self.app.borrow().screen(), Screen::Capture { .. }) {
                    self.window
                        .global::<Adapter>()
                        .set_preview(Image::from_rgb8(buf));
                }
            }
            UiEvent::Camera(status) => {
                *self.camera_status.borrow_mut() = status.text();
            }
        }
    }

    fn execute(&self, cmds: Vec<Command>) {
        for c in cmds {
            match c {
                Command::Api { id, call } => self.net.send(id, call),
                Command::StartCapture => match &self.capture {
                    Some(cap) => {
                        // No stale picture from the previous capture.
                        self.window
                            .global::<Adapter>()
                            .set_preview(Image::default());
                        cap.arm();
                    }
                    None => {
                        let cmds = self.app.borrow_mut().handle(
                            Event::CaptureFailed("This kiosk has no camera.".into()),
                            Instant::now(),
                        );
                        self.execute(cmds);
                    }
                },
                Command::StopCapture => {
                    if let Some(cap) = &self.capture {
                        cap.disarm();
                    }
                }
            }
        }
    }

    fn money(&self, m: palmline_shared::money::Money) -> String {
        format_money(m, &self.opts.locale)
    }

    fn render(&self) {
        let app = self.app.borrow();
        let screen = app.screen().clone();
        let a = self.window.global::<Adapter>();
        let merchant = app
            .health()
            .and_then(|h| h.merchant.clone())
            .unwrap_or_else(|| app.settings().merchant_display.clone());
        a.set_merchant(merchant.clone().into());
        a.set_online(!matches!(screen, Screen::Offline { .. }));
        a.set_status_line(
            match app.health() {
                Some(h) => format!(
                    "Online · {} · kiosk {}",
                    self.opts.server_url,
                    h.kiosk_id.clone().unwrap_or_default()
                ),
                None => format!("Connecting to {}", self.opts.server_url),
            }
            .into(),
        );
        a.set_error_text(SharedString::new());
        match &screen {
            Screen::Idle => {}
            Screen::Offline { reason } => a.set_offline_reason(reason.as_str().into()),
            Screen::Amount {
                purpose,
                digits,
                error,
            } => {
                let title = match purpose {
                    AmountFor::Charge => "Amount to charge".to_string(),
                    AmountFor::TopUp { username } => format!("Cash received for {username}"),
                    AmountFor::CashOut { shopper, .. } => format!("Cash to pay out to {shopper}"),
                };
                a.set_amount_title(title.into());
                let currency = app.settings().currency;
                let minor: i64 = digits.parse().unwrap_or(0);
                a.set_amount_text(
                    self.money(palmline_shared::money::Money::from_minor(minor, currency))
                        .into(),
                );
                a.set_error_text(error.clone().unwrap_or_default().into());
            }
            Screen::Capture {
                purpose,
                guidance,
                captured,
                error,
            } => {
                let (title, subtitle, needed) = match purpose {
                    CapturePurpose::Pay { amount } => (
                        format!("Pay {}", self.money(*amount)),
                        format!("to {merchant}"),
                        1,
                    ),
                    CapturePurpose::Login { .. } => {
                        ("Log in with your palm".to_string(), String::new(), 1)
                    }
                    CapturePurpose::Enroll { username, .. } => (
                        format!("Enroll {username}"),
                        "Hold your palm still; lift it and hold it again after each capture."
                            .into(),
                        app.settings().enroll_captures as i32,
                    ),
                };
                a.set_capture_title(title.into());
                a.set_capture_subtitle(subtitle.into());
                a.set_guidance_text(guidance.message().into());
                a.set_guidance_good(*guidance == Guidance::Steady);
                a.set_capture_done(captured.len() as i32);
                a.set_capture_needed(needed);
                a.set_error_text(error.clone().unwrap_or_default().into());
                a.set_sim_enabled(self.opts.sim.is_some());
                a.set_sim_identities(ModelRc::new(VecModel::from(
                    self.opts
                        .sim_identities
                        .iter()
                        .map(|s| SharedString::from(s.as_str()))
                        .collect::<Vec<_>>(),
                )));
                a.set_sim_showing(
                    self.opts
                        .sim
                        .as_ref()
                        .and_then(|s| s.showing())
                        .unwrap_or_default()
                        .into(),
                );
            }
            Screen::Processing { title, cancellable } => {
                a.set_processing_title(title.as_str().into());
                a.set_processing_cancellable(*cancellable);
            }
            Screen::Pin {
                purpose,
                entered,
                attempts_left,
                error,
            } => {
                let title = match purpose {
                    PinFor::Cashier { name } => format!("Cashier PIN for {name}"),
                    PinFor::PalmPay { amount, .. } => {
                        format!("Enter your PIN to pay {}", self.money(*amount))
                    }
                    PinFor::PalmLogin { .. } => "Enter your PIN to log in".into(),
                    PinFor::Withdraw { amount, .. } => {
                        format!("PIN to withdraw {}", self.money(*amount))
                    }
                    PinFor::Transfer { amount, to, .. } => {
                        format!("PIN to send {} to {to}", self.money(*amount))
                    }
                    PinFor::NewPin { .. } => "Choose a new PIN (4-8 digits)".into(),
                    PinFor::CurrentPin { .. } => "Enter your current PIN to change it".into(),
                };
                a.set_pin_title(title.into());
                a.set_pin_dots("● ".repeat(entered.len()).trim_end().into());
                a.set_pin_hint(format!("{attempts_left} attempts left").into());
                a.set_error_text(error.clone().unwrap_or_default().into());
            }
            Screen::Approved(ap) => {
                let r = &ap.receipt;
                let (title, rows): (&str, Vec<(String, String)>) = match r.kind {
                    palmline_shared::api::TxKind::Deposit => (
                        "Cash top-up done",
                        vec![("Credited to".into(), r.shopper.clone())],
                    ),
                    palmline_shared::api::TxKind::Withdrawal => (
                        "Cash-out approved",
                        vec![("Pay out to".into(), ap.shopper_masked.clone())],
                    ),
                    _ => (
                        "Payment approved",
                        vec![
                            ("Merchant".into(), ap.merchant.clone()),
                            ("Shopper".into(), ap.shopper_masked.clone()),
                        ],
                    ),
                };
                // The server sends a balance only to the shopper's own session.
                let balance = r
                    .balance_after
                    .map(|b| ("New balance".into(), self.money(b)));
                let rows: Vec<(String, String)> = rows.into_iter().chain(balance).collect();
                a.set_result_title(title.into());
                a.set_result_amount(self.money(r.amount).into());
                a.set_result_detail(format!("Transaction {}", r.transaction_id).into());
                a.set_result_rows(rows_model(rows.into_iter().map(|(l, v)| (l, v, false))));
                a.set_result_can_retry(false);
            }
            Screen::Declined(d) => {
                a.set_result_title(d.title.as_str().into());
                a.set_result_amount(SharedString::new());
                a.set_result_detail(d.detail.as_str().into());
                a.set_result_rows(rows_model(
                    d.code
                        .map(|c| ("Code".to_string(), c.as_str().to_string(), false))
                        .into_iter(),
                ));
                a.set_result_can_retry(d.retry.is_some());
            }
            Screen::EnrollDone {
                username,
                templates,
            } => {
                a.set_result_title(format!("Welcome, {username}").into());
                a.set_result_amount(SharedString::new());
                a.set_result_detail(
                    format!("{templates} palm captures saved. You can now pay with your palm.")
                        .into(),
                );
                a.set_result_rows(rows_model(std::iter::empty()));
                a.set_result_can_retry(false);
            }
            Screen::EnrollConsent => {}
            Screen::EnrollForm { error }
            | Screen::TopUpUser { error }
            | Screen::CashierName { error } => {
                a.set_error_text(error.clone().unwrap_or_default().into())
            }
            Screen::LoginChoice { then } | Screen::PasswordLogin { then, .. } => {
                a.set_login_title(
                    match then {
                        crate::app::AfterLogin::Wallet => "Open your wallet",
                        crate::app::AfterLogin::CashOut => "Cash-out: shopper logs in",
                    }
                    .into(),
                );
                if let Screen::PasswordLogin { error, .. } = &screen {
                    a.set_error_text(error.clone().unwrap_or_default().into());
                }
            }
            Screen::Wallet(w) | Screen::SendMoney { wallet: w, .. } => {
                a.set_wallet_name(w.shopper.username.as_str().into());
                a.set_wallet_balance(
                    w.balance
                        .map(|b| self.money(b))
                        .unwrap_or_else(|| "…".into())
                        .into(),
                );
                a.set_wallet_notice(w.notice.clone().unwrap_or_default().into());
                a.set_wallet_palm_enrolled(w.shopper.palm_enrolled);
                let rows = w
                    .history
                    .as_ref()
                    .map(|h| {
                        h.items
                            .iter()
                            .map(|i| {
                                let label = match &i.counterparty {
                                    Some(c) => format!("{} · {c}", kind_label(i.kind)),
                                    None => kind_label(i.kind).to_string(),
                                };
                                let date = i.created_at.get(..10).unwrap_or(&i.created_at);
                                (
                                    format!("{label}\n{date}"),
                                    self.money(i.amount),
                                    i.amount.is_positive(),
                                )
                            })
                            .collect::<Vec<_>>()
                    })
                    .unwrap_or_default();
                a.set_wallet_history(rows_model(rows.into_iter()));
                if let Screen::SendMoney { error, .. } = &screen {
                    a.set_error_text(error.clone().unwrap_or_default().into());
                }
            }
            Screen::CashierMenu => {}
            Screen::Today(t) => {
                a.set_info_title("Today's sales".into());
                let rows = match t {
                    Some(t) => {
                        let mut rows = vec![
                            ("Date".into(), t.date.clone(), false),
                            ("Payments".into(), t.payments_count.to_string(), false),
                            ("Payments total".into(), self.money(t.payments_total), true),
                            ("Refunds".into(), self.money(t.refunds_total), false),
                            ("Cash top-ups".into(), self.money(t.deposits_total), false),
                            ("Cash-outs".into(), self.money(t.withdrawals_total), false),
                            ("Cash in the till".into(), self.money(t.cash_net), true),
                        ];
                        // The same cash by the cashier who handled it.
                        for c in &t.cashiers {
                            let who = match c.cashier_id {
                                Some(_) => c.name.clone(),
                                None => "no cashier".into(),
                            };
                            rows.push((format!("  cash by {who}"), self.money(c.cash_net), false));
                        }
                        rows
                    }
                    None => vec![],
                };
                a.set_info_rows(rows_model(rows.into_iter()));
            }
            Screen::Diagnostics(d) => {
                a.set_info_title("Diagnostics".into());
                let mut rows: Vec<(String, String, bool)> = Vec::new();
                match &d.health {
                    None => rows.push(("Server".into(), "checking…".into(), false)),
                    Some(Ok(h)) => {
                        rows.push(("Server".into(), format!("reachable, v{}", h.version), true));
                        rows.push((
                            "Kiosk".into(),
                            h.kiosk_id.clone().unwrap_or_default(),
                            false,
                        ));
                        rows.push((
                            "Merchant".into(),
                            h.merchant.clone().unwrap_or_default(),
                            false,
                        ));
                        rows.push(("PIN above".into(), self.money(h.pin_threshold), false));
                    }
                    Some(Err(e)) => {
                        rows.push(("Server".into(), format!("UNREACHABLE: {e}"), false))
                    }
                }
                rows.push(("Server URL".into(), self.opts.server_url.clone(), false));
                if let Some(p) = &self.opts.cert_path {
                    let v = match crate::api::cert_days_left(p) {
                        Ok(d) if d < 0 => format!("EXPIRED {} days ago", -d),
                        Ok(d) => format!("expires in {d} days"),
                        Err(e) => format!("unreadable: {e}"),
                    };
                    rows.push(("Certificate".into(), v, false));
                }
                rows.push(("Camera".into(), self.camera_status.borrow().clone(), false));
                if let Some(c) = &self.capture {
                    let s = c.stats();
                    rows.push((
                        "Camera frames".into(),
                        format!("{} ({:.1} fps)", s.frames, s.fps),
                        false,
                    ));
                }
                rows.push(("Extractor".into(), self.opts.extractor.clone(), false));
                if let Some(l) = self.stats.borrow().frame_to_result.last() {
                    rows.push((
                        "Last palm to result".into(),
                        format!("{} ms", l.as_millis()),
                        false,
                    ));
                }
                a.set_info_rows(rows_model(rows.into_iter()));
            }
        }
        a.set_screen(screen.name().into());
        drop(app);
        // Frame-to-result: the first result screen after a capture.
        if matches!(
            screen,
            Screen::Approved(_)
                | Screen::Declined(_)
                | Screen::Pin { .. }
                | Screen::Wallet(_)
                | Screen::Amount {
                    purpose: AmountFor::CashOut { .. },
                    ..
                }
        ) {
            if let Some(t) = self.accepted_at.take() {
                let d = t.elapsed();
                tracing::info!("palm accepted to result on screen: {} ms", d.as_millis());
                self.stats.borrow_mut().frame_to_result.push(d);
            }
        }
    }
}

fn rows_model(rows: impl Iterator<Item = (String, String, bool)>) -> ModelRc<Row> {
    ModelRc::new(VecModel::from(
        rows.map(|(label, value, positive)| Row {
            label: label.into(),
            value: value.into(),
            positive,
        })
        .collect::<Vec<_>>(),
    ))
}
