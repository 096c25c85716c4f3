//! `palmline-kiosk bench`: the kiosk's figures for BENCHMARKS.md, measured in a real window
//! on a running event loop (nothing blocks the UI thread while measuring):
//! - preview frame rate: camera frames that reach the UI thread and are set on the preview
//!   image while the capture screen is up;
//! - time from the frame the quality gate accepts to the result on screen (palm payments
//!   against a local server: extraction, HTTPS + mTLS, identification, ledger, rendering);
//! - the kiosk process's memory (resident now and peak).

use crate::app::{Event, Key, Nav, Screen};
use crate::ui::Kiosk;
use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Results of one run.
#[derive(Debug, Clone, Default)]
pub struct BenchReport {
    pub preview_fps: f64,
    pub camera_fps: f32,
    pub frame_to_result_ms: Vec<f64>,
    pub approved: usize,
    pub declined: Vec<String>,
    pub rss_kib: u64,
    pub peak_rss_kib: u64,
}

impl BenchReport {
    pub fn percentile(&self, p: f64) -> Option<f64> {
        let mut v = self.frame_to_result_ms.clone();
        if v.is_empty() {
            return None;
        }
        v.sort_by(|a, b| a.total_cmp(b));
        let idx = ((v.len() - 1) as f64 * p).round() as usize;
        Some(v[idx])
    }
}

/// `VmRSS` and `VmHWM` of this process in KiB.
pub fn memory_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

enum Phase {
    WaitOnline,
    PreviewStart,
    Preview { since: Instant, shown: u64 },
    PayStart,
    PayCapture,
    PayWait,
    Done,
}

/// Runs the benchmark inside the window's event loop; returns when it quits.
pub fn run(
    kiosk: Rc<Kiosk>,
    sim: crate::camera::sim::SimControl,
    identity: String,
    payments: usize,
    preview_secs: u64,
) -> BenchReport {
    let report = Rc::new(RefCell::new(BenchReport::default()));
    let phase = Rc::new(RefCell::new(Phase::WaitOnline));
    let done_payments = Rc::new(RefCell::new(0usize));
    let timer = slint::Timer::default();
    let (k, r, ph, n) = (
        kiosk.clone(),
        report.clone(),
        phase.clone(),
        done_payments.clone(),
    );
    let started = Instant::now();
    timer.start(
        slint::TimerMode::Repeated,
        Duration::from_millis(10),
        move || {
            let mut phase = ph.borrow_mut();
            let screen = k.screen();
            match &*phase {
                Phase::WaitOnline => {
                    if k.is_online() {
                        *phase = Phase::PreviewStart;
                    } else if started.elapsed() > Duration::from_secs(60) {
                        r.borrow_mut().declined.push("server not reachable".into());
                        *phase = Phase::Done;
                    }
                }
                Phase::PreviewStart => {
                    // Capture screen with no hand: the preview runs, nothing gets accepted.
                    sim.present(None);
                    k.input(Event::Nav(Nav::Charge));
                    k.input(Event::Key(Key::Digit(1)));
                    k.input(Event::Key(Key::Enter));
                    *phase = Phase::Preview {
                        since: Instant::now(),
                        shown: k.stats().previews_shown,
                    };
                }
                Phase::Preview { since, shown } => {
                    if since.elapsed() >= Duration::from_secs(preview_secs) {
                        let frames = k.stats().previews_shown - shown;
                        let mut rep = r.borrow_mut();
                        rep.preview_fps = frames as f64 / since.elapsed().as_secs_f64();
                        rep.camera_fps = k.camera_fps();
                        drop(rep);
                        k.input(Event::Nav(Nav::Cancel));
                        *phase = Phase::PayStart;
                    }
                }
                Phase::PayStart => {
                    if *n.borrow() >= payments {
                        *phase = Phase::Done;
                        return;
                    }
                    if matches!(screen, Screen::Idle) {
                        sim.present(None);
                        k.input(Event::Nav(Nav::Charge));
                        for d in [1u8, 0, 0] {
                            k.input(Event::Key(Key::Digit(d)));
                        }
                        k.input(Event::Key(Key::Enter));
                        *phase = Phase::PayCapture;
                    }
                }
                Phase::PayCapture => {
                    sim.present(Some(&identity));
                    *phase = Phase::PayWait;
                }
                Phase::PayWait => match screen {
                    Screen::Approved(_) | Screen::Declined(_) | Screen::Pin { .. } => {
                        let mut rep = r.borrow_mut();
                        match &screen {
                            Screen::Approved(_) => rep.approved += 1,
                            Screen::Declined(d) => {
                                rep.declined.push(format!("{}: {}", d.title, d.detail))
                            }
                            _ => rep.declined.push("PIN asked".into()),
                        }
                        drop(rep);
                        *n.borrow_mut() += 1;
                        sim.present(None);
                        k.input(Event::Nav(Nav::Cancel));
                        *phase = Phase::PayStart;
                    }
                    _ => {}
                },
                Phase::Done => {
                    let mut rep = r.borrow_mut();
                    rep.frame_to_result_ms = k
                        .stats()
                        .frame_to_result
                        .iter()
                        .map(|d| d.as_secs_f64() * 1000.0)
                        .collect();
                    let (rss, peak) = memory_kib();
                    rep.rss_kib = rss;
                    rep.peak_rss_kib = peak;
                    let _ = slint::quit_event_loop();
                }
            }
        },
    );
    let _ = slint::run_event_loop_until_quit();
    drop(timer);
    let out = report.borrow().clone();
    out
}
