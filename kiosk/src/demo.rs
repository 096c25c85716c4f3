//! `palmline-kiosk demo`: a server on embedded SQLite with a fresh PKI, a kiosk certificate,
//! a merchant and a few shoppers (with enrolled palms when palm extraction is available),
//! then the kiosk: a window with the simulated camera where there is a display, or a
//! scripted enrollment → top-up → palm payment → wallet run that prints each step.
//!
//! The scripted run drives the same state machine the window does, through the same API
//! client and capture thread; only the rendering differs.

use crate::api::ApiClient;
use crate::app::{ApiCall, ApiError, App, Command, Event, Key, Nav, Reply, Screen, Settings};
use crate::camera::sim::{SimCamera, SimControl};
use crate::camera::{Camera, CameraStatus, Frame};
use crate::config::{format_money, CameraConfig, CameraSource, Config, KioskConfig, ServerConfig};
use crate::extract::{ExtractError, PalmExtractor};
use crate::quality::{GateConfig, QualityGate};
use crate::server_proc::{self, ServerProcess};
use crate::worker::{self, CaptureSink};
use anyhow::{bail, Context, Result};
use palmline_shared::api::{
    CashierSessionRequest, DepositRequest, ErrorCode, PalmEnrollRequest, RegisterShopper,
    SessionRequest,
};
use palmline_shared::money::{Currency, Money};
use std::collections::VecDeque;
use std::path::Path;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const DEMO_KIOSK: &str = "demo-kiosk-1";
pub const DEMO_MERCHANT: &str = "Corner Cafe";
pub const DEMO_PASSWORD: &str = "palmline-demo";
/// Seeded shoppers: (username, PIN).
pub const DEMO_SHOPPERS: &[(&str, &str)] = &[("alice", "1111"), ("bob", "2222"), ("carol", "3333")];
/// The demo merchant's cashier (name, PIN), created by the operator CLI at start-up.
pub const DEMO_CASHIER: (&str, &str) = ("Dana", "2580");

/// A running demo backend: the server child and a kiosk config pointing at it.
pub struct Backend {
    pub server: ServerProcess,
    pub config: Config,
}

/// Starts the server in `data_dir` (PKI created on first use) and writes `kiosk.toml` there.
pub fn start_backend(data_dir: &Path, env: &[(&str, &str)]) -> Result<Backend> {
    let bin = server_proc::find_server_binary()?;
    let cert = server_proc::prepare_pki(&bin, data_dir, DEMO_KIOSK, DEMO_MERCHANT)?;
    let server = ServerProcess::start(&bin, data_dir, env)?;
    server_proc::add_cashier(&bin, data_dir, &server.url, DEMO_MERCHANT, DEMO_CASHIER)?;
    let config = Config {
        server: ServerConfig {
            url: server.url.clone(),
            ca: cert.ca,
            cert: cert.cert,
            key: cert.key,
            timeout_ms: 5000,
            connect_timeout_ms: 3000,
            retries: 2,
        },
        kiosk: KioskConfig {
            merchant_display: DEMO_MERCHANT.into(),
            ..KioskConfig::default()
        },
        camera: CameraConfig {
            source: CameraSource::Simulated,
            ..CameraConfig::default()
        },
        quality: Default::default(),
    };
    std::fs::write(data_dir.join("kiosk.toml"), config.to_toml()).context("writing kiosk.toml")?;
    Ok(Backend { server, config })
}

/// Captures `n` templates of a simulated identity, the way the kiosk does (quality gate,
/// then extraction), without a thread. Fails if the extractor cannot work.
pub fn sim_templates(
    identity: &str,
    n: usize,
    extractor: &mut dyn PalmExtractor,
) -> Result<Vec<Vec<u8>>> {
    let control = SimControl::default();
    let mut cam = SimCamera::new(control.clone(), 640, 480, 30);
    cam.open().map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while out.len() < n {
        if Instant::now() > deadline {
            bail!("no usable capture of {identity} in 30 s");
        }
        // Present the hand afresh for every capture, as a shopper lifts it and holds it again.
        control.present(Some(identity));
        let mut gate = QualityGate::new(GateConfig::default());
        loop {
            if Instant::now() > deadline {
                break;
            }
            let f = cam.next_frame().map_err(|e| anyhow::anyhow!("{e}"))?;
            if gate.assess(&f.gray, f.width, f.height).accept {
                match extractor.extract(&f) {
                    Ok(t) => {
                        out.push(t);
                        break;
                    }
                    Err(ExtractError::Quality { .. }) => gate.reset(),
                    Err(e @ ExtractError::Unavailable(_)) => bail!("{e}"),
                }
            }
        }
    }
    Ok(out)
}

fn key() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Registers the demo shoppers (idempotent), tops each up with 100.00 on creation, and
/// enrolls their palms when extraction and the server's palm endpoints are available.
/// Prints what it did.
pub fn seed(
    client: &ApiClient,
    currency: Currency,
    extractor: &mut dyn PalmExtractor,
    say: &mut dyn FnMut(String),
) -> Result<()> {
    let desk = match client.call(&ApiCall::CashierLogin {
        req: CashierSessionRequest {
            name: DEMO_CASHIER.0.into(),
            pin: DEMO_CASHIER.1.into(),
        },
    }) {
        Ok(Reply::CashierSession { token, .. }) => token,
        other => bail!("signing in cashier {}: {other:?}", DEMO_CASHIER.0),
    };
    for (name, pin) in DEMO_SHOPPERS {
        let created = client.call(&ApiCall::Register {
            key: key(),
            req: RegisterShopper {
                username: (*name).into(),
                email: format!("{name}@example.com"),
                password: DEMO_PASSWORD.into(),
                pin: Some((*pin).into()),
            },
        });
        match created {
            Ok(_) => {
                client
                    .call(&ApiCall::Deposit {
                        key: key(),
                        cashier: desk.clone(),
                        req: DepositRequest {
                            username: (*name).into(),
                            amount: Money::from_minor(10_000, currency),
                        },
                    })
                    .map_err(|e| anyhow::anyhow!("top-up of {name}: {e}"))?;
                say(format!(
                    "seeded shopper {name} (password {DEMO_PASSWORD}, PIN {pin}) with {}",
                    Money::from_minor(10_000, currency)
                ));
            }
            Err(ApiError::Server {
                code: ErrorCode::UsernameTaken,
                ..
            }) => say(format!("shopper {name} already exists")),
            Err(e) => bail!("registering {name}: {e}"),
        }
        let Ok(Reply::Session { token, shopper }) = client.call(&ApiCall::Login {
            key: key(),
            req: SessionRequest::Password {
                username: (*name).into(),
                password: DEMO_PASSWORD.into(),
            },
        }) else {
            bail!("logging in {name}");
        };
        if shopper.palm_enrolled {
            continue;
        }
        let templates = match sim_templates(name, 3, extractor) {
            Ok(t) => t,
            Err(e) => {
                say(format!("palm of {name} not enrolled: {e}"));
                continue;
            }
        };
        use base64::Engine as _;
        let b64 = templates
            .iter()
            .map(|t| base64::engine::general_purpose::STANDARD.encode(t))
            .collect();
        match client.call(&ApiCall::EnrollPalms {
            key: key(),
            token,
            req: PalmEnrollRequest { templates: b64 },
        }) {
            Ok(_) => say(format!("enrolled the simulated palm of {name}")),
            Err(e) => say(format!("palm of {name} not enrolled: {e}")),
        }
    }
    Ok(())
}

// ------------------------------------------------------------------ scripted run

enum CapEvent {
    Guidance(crate::app::Guidance),
    Captured(Vec<u8>),
    Failed(String),
}

struct ChanSink(Mutex<Sender<CapEvent>>);
impl CaptureSink for ChanSink {
    fn preview(&self, _frame: &Frame) {}
    fn guidance(&self, g: crate::app::Guidance) {
        let _ = self.0.lock().expect("sink").send(CapEvent::Guidance(g));
    }
    fn captured(&self, template: Vec<u8>, _at: Instant) {
        let _ = self
            .0
            .lock()
            .expect("sink")
            .send(CapEvent::Captured(template));
    }
    fn failed(&self, why: String) {
        let _ = self.0.lock().expect("sink").send(CapEvent::Failed(why));
    }
    fn status(&self, _s: CameraStatus) {}
}

/// Drives the state machine without a window, printing every screen.
pub struct Scripted<'a> {
    app: App,
    client: ApiClient,
    capture: worker::CaptureHandle,
    events: Receiver<CapEvent>,
    pub sim: SimControl,
    locale: String,
    say: &'a mut dyn FnMut(String),
}

impl<'a> Scripted<'a> {
    pub fn new(
        settings: Settings,
        client: ApiClient,
        extractor: Box<dyn PalmExtractor>,
        say: &'a mut dyn FnMut(String),
    ) -> Scripted<'a> {
        let sim = SimControl::default();
        let ctl = sim.clone();
        let (tx, rx) = mpsc::channel();
        let capture = worker::spawn(
            Box::new(move || Box::new(SimCamera::new(ctl, 640, 480, 30)) as Box<dyn Camera>),
            extractor,
            GateConfig::default(),
            ChanSink(Mutex::new(tx)),
        );
        let mut s = Scripted {
            app: App::new(settings, Box::new(key)),
            client,
            capture,
            events: rx,
            sim,
            locale: "en".into(),
            say,
        };
        let cmds = s.app.start(Instant::now());
        s.run(cmds);
        s
    }

    pub fn screen(&self) -> &Screen {
        self.app.screen()
    }

    /// Feeds an event and everything that follows from it synchronously.
    pub fn feed(&mut self, ev: Event) {
        let before = self.app.screen().clone();
        let cmds = self.app.handle(ev, Instant::now());
        self.report(&before);
        self.run(cmds);
    }

    fn run(&mut self, cmds: Vec<Command>) {
        let mut queue: VecDeque<Command> = cmds.into();
        while let Some(c) = queue.pop_front() {
            match c {
                Command::Api { id, call } => {
                    let result = self.client.call(&call);
                    let before = self.app.screen().clone();
                    let more = self.app.handle(Event::Api { id, result }, Instant::now());
                    self.report(&before);
                    queue.extend(more);
                }
                Command::StartCapture => self.capture.arm(),
                Command::StopCapture => self.capture.disarm(),
            }
        }
    }

    pub fn keys(&mut self, digits: &str) {
        for c in digits.chars() {
            if let Some(d) = c.to_digit(10) {
                self.feed(Event::Key(Key::Digit(d as u8)));
            }
        }
    }

    /// While on the capture screen, presents `identity` and waits for the machine to leave
    /// the capture screen (or the timeout).
    pub fn present_palm(&mut self, identity: &str, timeout: Duration) -> Result<()> {
        self.sim.present(Some(identity));
        let deadline = Instant::now() + timeout;
        while matches!(self.app.screen(), Screen::Capture { .. }) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!("no capture within {timeout:?}");
            }
            match self
                .events
                .recv_timeout(left.min(Duration::from_millis(250)))
            {
                Ok(CapEvent::Guidance(g)) => self.feed(Event::Guidance(g)),
                Ok(CapEvent::Captured(t)) => {
                    // Lift the hand between enrollment captures.
                    self.sim.present(None);
                    self.feed(Event::PalmCaptured { template: t });
                    self.sim.present(Some(identity));
                }
                Ok(CapEvent::Failed(why)) => self.feed(Event::CaptureFailed(why)),
                Err(_) => self.feed(Event::Tick),
            }
        }
        self.sim.present(None);
        Ok(())
    }

    fn report(&mut self, before: &Screen) {
        let now = self.app.screen().clone();
        if now.name() == before.name() && !matches!(now, Screen::Capture { .. } | Screen::Wallet(_))
        {
            return;
        }
        if let (Screen::Capture { captured: a, .. }, Screen::Capture { captured: b, .. }) =
            (before, &now)
        {
            if a.len() != b.len() {
                (self.say)(format!("  capture {} accepted", b.len()));
            }
            return;
        }
        let line = match &now {
            Screen::Approved(a) => format!(
                "[approved] {:?} {} for {} at {}; new balance {} (transaction {})",
                a.receipt.kind,
                format_money(a.receipt.amount, &self.locale),
                a.shopper_masked,
                a.merchant,
                a.receipt
                    .balance_after
                    .map_or("not shown".into(), |b| format_money(b, &self.locale)),
                a.receipt.transaction_id
            ),
            Screen::Declined(d) => format!("[declined] {}: {}", d.title, d.detail),
            Screen::Wallet(w) => match (&w.balance, &w.history) {
                (Some(b), Some(h)) => {
                    let mut s = format!(
                        "[wallet] {}: balance {}",
                        w.shopper.username,
                        format_money(*b, &self.locale)
                    );
                    for i in &h.items {
                        s.push_str(&format!(
                            "\n    {:<10} {:>12}  {}",
                            i.kind.as_str(),
                            format_money(i.amount, &self.locale),
                            i.counterparty.clone().unwrap_or_default()
                        ));
                    }
                    s
                }
                _ => return,
            },
            Screen::EnrollDone {
                username,
                templates,
            } => format!("[enrolled] {username} with {templates} palm templates"),
            Screen::Processing { title, .. } => format!("[processing] {title}"),
            Screen::Capture { .. } => "[capture] hold your palm over the camera".into(),
            other => format!("[{}]", other.name()),
        };
        (self.say)(line);
    }

    /// enrollment → top-up → palm payment → wallet view.
    pub fn run_script(&mut self, newcomer: &str) -> Result<()> {
        (self.say)(format!("--- 1. enrollment of {newcomer}"));
        self.feed(Event::Nav(Nav::Enroll));
        self.feed(Event::AcceptConsent);
        self.feed(Event::SubmitEnrollForm {
            username: newcomer.into(),
            email: format!("{newcomer}@example.com"),
            password: DEMO_PASSWORD.into(),
            pin: "4444".into(),
        });
        if matches!(self.app.screen(), Screen::Capture { .. }) {
            self.present_palm(newcomer, Duration::from_secs(30))?;
        }
        let enrolled = matches!(self.app.screen(), Screen::EnrollDone { .. });
        self.feed(Event::Nav(Nav::Cancel));

        (self.say)(format!("--- 2. cash top-up of 50.00 for {newcomer}"));
        self.feed(Event::Nav(Nav::Cashier));
        self.feed(Event::SubmitCashierName {
            name: DEMO_CASHIER.0.into(),
        });
        self.keys(DEMO_CASHIER.1);
        self.feed(Event::Key(Key::Enter));
        self.feed(Event::Nav(Nav::CashierTopUp));
        self.feed(Event::SubmitTopUpUser {
            username: newcomer.into(),
        });
        self.keys("5000");
        self.feed(Event::Key(Key::Enter));
        self.feed(Event::Nav(Nav::Cancel));

        (self.say)("--- 3. palm payment of 12.50".into());
        self.feed(Event::Nav(Nav::Charge));
        self.keys("1250");
        self.feed(Event::Key(Key::Enter));
        self.present_palm(newcomer, Duration::from_secs(30))?;
        if let Screen::Pin { .. } = self.app.screen() {
            (self.say)("  step-up: entering the PIN".into());
            self.keys("4444");
            self.feed(Event::Key(Key::Enter));
        }
        let paid = matches!(self.app.screen(), Screen::Approved(_));
        self.feed(Event::Nav(Nav::Cancel));

        (self.say)("--- 4. wallet view".into());
        self.feed(Event::Nav(Nav::Wallet));
        if enrolled {
            self.feed(Event::Nav(Nav::LoginByPalm));
            self.present_palm(newcomer, Duration::from_secs(30))?;
            if let Screen::Pin { .. } = self.app.screen() {
                self.keys("4444");
                self.feed(Event::Key(Key::Enter));
            }
        } else {
            self.feed(Event::Nav(Nav::LoginByPassword));
            self.feed(Event::SubmitPassword {
                username: newcomer.into(),
                password: DEMO_PASSWORD.into(),
            });
        }
        let wallet = matches!(self.app.screen(), Screen::Wallet(_));
        self.feed(Event::Nav(Nav::Cancel));
        if !(enrolled && paid && wallet) {
            bail!("scripted run incomplete: enrolled={enrolled} paid={paid} wallet={wallet}");
        }
        Ok(())
    }
}
