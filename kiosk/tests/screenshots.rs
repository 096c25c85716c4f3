//! A real kiosk window (winit + the software renderer) under a display — Xvfb in CI — driven
//! through the main screens against a real server, saving a PNG of each into
//! `assets/screenshots/` at 800×480 and a few at 1024×600.
//!
//! Runs as its own `main` (harness = false) because a window's event loop wants the main
//! thread. Without a display it says so and does nothing.

#[path = "e2e/common.rs"]
mod common;

use palmline_kiosk::app::{Guidance, Screen, Settings};
use palmline_kiosk::ui::{Kiosk, UiOptions};
use palmline_kiosk::{extract, runtime, AppWindow};
use slint::ComponentHandle;
use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

thread_local! {
    static PHASE2: Rc<RefCell<Option<slint::Timer>>> = Rc::default();
}

fn save(k: &Kiosk, dir: &Path, name: &str, want: (u32, u32)) -> PathBuf {
    let shot = k.window.window().take_snapshot().expect("snapshot");
    assert_eq!((shot.width(), shot.height()), want, "{name}: window size");
    let img = image::RgbaImage::from_raw(shot.width(), shot.height(), shot.as_bytes().to_vec())
        .expect("snapshot buffer");
    // Not blank: a dark theme still has bright text on it.
    let bright = img
        .pixels()
        .filter(|p| p.0[0] > 200 || p.0[1] > 200)
        .count();
    assert!(bright > 200, "{name}: the screenshot looks empty");
    let path = dir.join(format!("{name}.png"));
    image::DynamicImage::ImageRgba8(img)
        .to_rgb8()
        .save(&path)
        .expect("saving png");
    println!("saved {}", path.display());
    path
}

fn main() {
    if std::env::var_os("DISPLAY").is_none() && std::env::var_os("WAYLAND_DISPLAY").is_none() {
        println!("screenshots: skipped, no display (scripts/test runs this under xvfb-run)");
        return;
    }
    // A real window with the software renderer, as on the device.
    std::env::set_var("SLINT_BACKEND", "winit-software");
    let env = common::start();
    // The README's pictures are refreshed on request only; a plain test run writes to target/.
    let out = if std::env::var_os("PALMLINE_UPDATE_SCREENSHOTS").is_some() {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../assets/screenshots")
    } else {
        Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots")
    };
    std::fs::create_dir_all(&out).unwrap();
    let cfg = env.backend.config.clone();
    let (camera, sim, _) = runtime::camera_from(&cfg).unwrap();
    let extractor = extract::default_extractor();
    let settings = Settings {
        health_every: Duration::from_secs(1),
        ..runtime::settings_from(&cfg).unwrap()
    };
    let parts = runtime::Parts {
        settings,
        client: runtime::client_from(&cfg).unwrap(),
        camera: Some(camera),
        ui: UiOptions {
            locale: "en".into(),
            server_url: cfg.server.url.clone(),
            cert_path: Some(cfg.server.cert.clone()),
            extractor: extractor.name(),
            sim: sim.clone(),
            sim_identities: vec![
                "alice".into(),
                "bob".into(),
                "carol".into(),
                "stranger".into(),
            ],
        },
        gate: cfg.quality,
        extractor,
    };
    let window = AppWindow::new().expect("a window");
    let k = runtime::build(window, parts, Arc::new(|| {}));
    k.window.show().unwrap();
    let sim = sim.expect("simulated camera");
    let env = Rc::new(RefCell::new(Some(env)));
    let saved: Rc<RefCell<Vec<PathBuf>>> = Rc::default();
    let (k2, saved2, env2) = (k.clone(), saved.clone(), env.clone());
    slint::Timer::single_shot(Duration::from_millis(300), move || {
        let k = k2;
        let small = (800, 480);
        let shot = |name: &str, size| saved2.borrow_mut().push(save(&k, &out, name, size));
        let nav = |n| k.input(palmline_kiosk::app::Event::Nav(n));
        let keys = |s: &str| {
            for c in s.chars() {
                k.input(palmline_kiosk::app::Event::Key(
                    palmline_kiosk::app::Key::Digit(c.to_digit(10).unwrap() as u8),
                ));
            }
        };
        let enter = || {
            k.input(palmline_kiosk::app::Event::Key(
                palmline_kiosk::app::Key::Enter,
            ))
        };
        use palmline_kiosk::app::Nav;
        k.pump_until(WAIT, |s| matches!(s, Screen::Idle) && k.is_online())
            .expect("online");
        shot("01-idle", small);
        nav(Nav::Charge);
        keys("1250");
        shot("02-amount", small);
        enter();
        sim.present(Some("alice"));
        k.pump_until(
            WAIT,
            |s| matches!(s, Screen::Capture { guidance, .. } if *guidance != Guidance::NoHand),
        )
        .ok();
        k.pump_until(Duration::from_secs(2), |_| k.stats().previews_shown > 10)
            .ok();
        shot("03-capture", small);
        let end = k.pump_until(WAIT, |s| {
            !matches!(s, Screen::Capture { .. } | Screen::Processing { .. })
        });
        shot(
            if matches!(end, Ok(Screen::Approved(_))) {
                "04-approved"
            } else {
                "04-result"
            },
            small,
        );
        nav(Nav::Cancel);
        sim.present(None);
        // The cashier signs in: name, then the PIN pad (the same pad as the step-up PIN).
        nav(Nav::Cashier);
        shot("05-cashier-name", small);
        k.input(palmline_kiosk::app::Event::SubmitCashierName {
            name: palmline_kiosk::demo::DEMO_CASHIER.0.into(),
        });
        keys(&palmline_kiosk::demo::DEMO_CASHIER.1[..2]);
        shot("05-pin", small);
        keys(&palmline_kiosk::demo::DEMO_CASHIER.1[2..]);
        enter();
        k.pump_until(WAIT, |s| matches!(s, Screen::CashierMenu))
            .expect("cashier signed in");
        shot("06-cashier", small);
        nav(Nav::CashierToday);
        k.pump_until(WAIT, |s| matches!(s, Screen::Today(Some(_))))
            .expect("today");
        shot("07-today", small);
        nav(Nav::Cancel);
        nav(Nav::CashierDiagnostics);
        k.pump_until(
            WAIT,
            |s| matches!(s, Screen::Diagnostics(d) if d.health.is_some()),
        )
        .expect("diagnostics");
        shot("08-diagnostics", small);
        nav(Nav::Cancel);
        nav(Nav::Cancel);
        nav(Nav::Enroll);
        shot("09-enroll-consent", small);
        k.input(palmline_kiosk::app::Event::AcceptConsent);
        shot("10-enroll-form", small);
        nav(Nav::Cancel);
        nav(Nav::Wallet);
        nav(Nav::LoginByPassword);
        k.input(palmline_kiosk::app::Event::SubmitPassword {
            username: "alice".into(),
            password: palmline_kiosk::demo::DEMO_PASSWORD.into(),
        });
        k.pump_until(
            WAIT,
            |s| matches!(s, Screen::Wallet(w) if w.history.is_some() && w.balance.is_some()),
        )
        .expect("wallet");
        shot("11-wallet", small);
        // The same screens at 1024×600: resize, then continue once the event loop has
        // applied the new size (checked, not assumed).
        k.window
            .window()
            .set_size(slint::PhysicalSize::new(1024, 600));
        let phase2 = slint::Timer::default();
        let (k3, saved3, out3, sim3, env3) = (
            k.clone(),
            saved2.clone(),
            out.clone(),
            sim.clone(),
            env2.clone(),
        );
        let mut done = false;
        phase2.start(
            slint::TimerMode::Repeated,
            Duration::from_millis(50),
            move || {
                let k = &k3;
                if done || k.window.window().size() != slint::PhysicalSize::new(1024, 600) {
                    return;
                }
                done = true;
                let big = (1024, 600);
                let shot = |name: &str, size| saved3.borrow_mut().push(save(k, &out3, name, size));
                let nav = |n| k.input(palmline_kiosk::app::Event::Nav(n));
                shot("12-wallet-1024x600", big);
                nav(Nav::Cancel);
                shot("13-idle-1024x600", big);
                nav(Nav::Charge);
                for d in [3u8, 0, 0] {
                    k.input(palmline_kiosk::app::Event::Key(
                        palmline_kiosk::app::Key::Digit(d),
                    ));
                }
                k.input(palmline_kiosk::app::Event::Key(
                    palmline_kiosk::app::Key::Enter,
                ));
                sim3.present(Some("bob"));
                k.pump_until(WAIT, |s| {
                matches!(s, Screen::Capture { guidance, .. } if *guidance != Guidance::NoHand)
            })
            .ok();
                shot("14-capture-1024x600", big);
                nav(Nav::Cancel);
                sim3.present(None);
                // Offline: stop the server; the kiosk notices on its next health check.
                drop(env3.borrow_mut().take());
                k.pump_until(WAIT, |s| matches!(s, Screen::Offline { .. }))
                    .expect("offline screen");
                shot("15-offline-1024x600", big);
                slint::quit_event_loop().unwrap();
            },
        );
        *PHASE2.with(|p| p.clone()).borrow_mut() = Some(phase2);
    });
    slint::run_event_loop().expect("event loop");
    let n = saved.borrow().len();
    assert_eq!(n, 16, "all screenshots saved");
    println!("screenshots: {n} saved");
    drop(k);
    drop(env);
}
