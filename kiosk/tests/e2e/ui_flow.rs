//! The UI under Slint's testing backend, clicked by accessible labels, against a real
//! server, with the simulated camera.

use crate::common;
use i_slint_backend_testing::ElementHandle;
use palmline_kiosk::app::{ApiCall, Reply, Screen};
use palmline_kiosk::demo::{DEMO_CASHIER, DEMO_PASSWORD};
use palmline_kiosk::ui::{Kiosk, UiOptions};
use palmline_kiosk::{extract, runtime, Adapter, AppWindow};
use palmline_shared::api::SessionRequest;
use palmline_shared::money::Money;
use slint::ComponentHandle;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

fn kiosk(env: &common::Env) -> Rc<Kiosk> {
    let cfg = &env.backend.config;
    let (camera, sim, _) = runtime::camera_from(cfg).unwrap();
    let extractor = extract::default_extractor();
    let parts = runtime::Parts {
        settings: runtime::settings_from(cfg).unwrap(),
        client: runtime::client_from(cfg).unwrap(),
        camera: Some(camera),
        ui: UiOptions {
            locale: "en".into(),
            server_url: cfg.server.url.clone(),
            cert_path: Some(cfg.server.cert.clone()),
            extractor: extractor.name(),
            sim,
            sim_identities: vec![
                "alice".into(),
                "bob".into(),
                "erin".into(),
                "stranger".into(),
            ],
        },
        gate: cfg.quality,
        extractor,
    };
    let window = AppWindow::new().unwrap();
    // The test drains the kiosk's channel itself (pump_until): no event loop here.
    let k = runtime::build(window, parts, Arc::new(|| {}));
    k.pump_until(WAIT, |s| matches!(s, Screen::Idle))
        .expect("online at start");
    k
}

/// Clicks the one element with this accessible label.
fn click(k: &Kiosk, label: &str) {
    let found: Vec<_> = ElementHandle::find_by_accessible_label(&k.window, label).collect();
    assert_eq!(
        found.len(),
        1,
        "exactly one element labelled {label:?} on {:?}",
        k.screen().name()
    );
    found[0].invoke_accessible_default_action();
}

fn set_field(k: &Kiosk, label: &str, value: &str) {
    let found: Vec<_> = ElementHandle::find_by_accessible_label(&k.window, label)
        .filter(|e| e.accessible_value().is_some())
        .collect();
    assert!(!found.is_empty(), "no text field labelled {label:?}");
    found[0].set_accessible_value(value);
}

fn balance(env: &common::Env, user: &str) -> Money {
    let Ok(Reply::Session { token, .. }) = env.client.call(&ApiCall::Login {
        key: uuid::Uuid::new_v4().to_string(),
        req: SessionRequest::Password {
            username: user.into(),
            password: DEMO_PASSWORD.into(),
        },
    }) else {
        panic!("login {user}")
    };
    match env.client.call(&ApiCall::Wallet { token }) {
        Ok(Reply::Wallet(w)) => w.balance,
        other => panic!("{other:?}"),
    }
}

/// One test function: the testing backend is per thread, and the flows share a server.
#[test]
fn kiosk_ui_against_a_real_server() {
    i_slint_backend_testing::init_no_event_loop();
    let env = common::start();
    let k = kiosk(&env);
    let adapter = k.window.global::<Adapter>();
    assert_eq!(adapter.get_screen(), "idle");
    assert!(adapter.get_merchant().contains("Corner Cafe"));

    // ---- cashier: cash top-up for bob, once the cashier has signed in with the server
    let bob_before = balance(&env, "bob");
    click(&k, "Cashier");
    assert_eq!(adapter.get_screen(), "cashier-name");
    set_field(&k, "Cashier name", DEMO_CASHIER.0);
    click(&k, "Next");
    assert_eq!(adapter.get_screen(), "pin");
    // A wrong PIN is refused by the server and the pad comes back.
    for d in ["9", "9", "9", "9", "OK"] {
        click(&k, d);
    }
    k.pump_until(WAIT, |s| matches!(s, Screen::Pin { error: Some(_), .. }))
        .unwrap_or_else(|s| panic!("wrong cashier PIN: stuck on {}", s.name()));
    assert_eq!(adapter.get_error_text(), "Wrong cashier name or PIN");
    for d in DEMO_CASHIER.1.chars() {
        click(&k, &d.to_string());
    }
    assert_eq!(adapter.get_pin_dots(), "● ● ● ●");
    click(&k, "OK");
    k.pump_until(WAIT, |s| matches!(s, Screen::CashierMenu))
        .unwrap_or_else(|s| panic!("cashier sign-in: stuck on {}", s.name()));
    click(&k, "Cash top-up");
    set_field(&k, "Shopper username", "bob");
    click(&k, "Next");
    assert_eq!(adapter.get_screen(), "amount");
    for d in ["2", "0", "0", "0"] {
        click(&k, d);
    }
    assert_eq!(adapter.get_amount_text(), "€20.00");
    click(&k, "Confirm");
    k.pump_until(WAIT, |s| matches!(s, Screen::Approved(_)))
        .unwrap_or_else(|s| panic!("top-up not approved: {}", s.name()));
    assert_eq!(adapter.get_result_title(), "Cash top-up done");
    assert_eq!(adapter.get_result_amount(), "€20.00");
    click(&k, "Done");
    assert_eq!(adapter.get_screen(), "idle");
    let bob_after = balance(&env, "bob");
    assert_eq!(bob_after.checked_sub(bob_before).unwrap().minor(), 2000);

    // ---- wallet by password: balance and history shown
    click(&k, "My wallet");
    click(&k, "Log in with password");
    // The username field has focus and the on-screen keyboard is up: type on it.
    for key in ["Key b", "Key o", "Key b"] {
        click(&k, key);
    }
    click(&k, "Key x");
    click(&k, "Key Backspace");
    let typed: Vec<_> = ElementHandle::find_by_accessible_label(&k.window, "Username")
        .filter_map(|e| e.accessible_value())
        .collect();
    assert_eq!(typed, vec![slint::SharedString::from("bob")]);
    set_field(&k, "Password", DEMO_PASSWORD);
    click(&k, "Log in");
    k.pump_until(
        WAIT,
        |s| matches!(s, Screen::Wallet(w) if w.balance.is_some() && w.history.is_some()),
    )
    .unwrap_or_else(|s| panic!("wallet not shown: {}", s.name()));
    assert_eq!(adapter.get_wallet_name(), "bob");
    assert_eq!(
        adapter.get_wallet_balance(),
        palmline_kiosk::config::format_money(bob_after, "en")
    );
    assert!(slint::Model::row_count(&adapter.get_wallet_history()) >= 2);
    click(&k, "Log out");
    assert_eq!(adapter.get_screen(), "idle");

    // ---- a whole palm payment: amount keypad, simulated palm, approved
    let alice_before = balance(&env, "alice");
    click(&k, "Charge");
    for d in ["1", "2", "5", "0"] {
        click(&k, d);
    }
    click(&k, "Delete");
    click(&k, "0");
    assert_eq!(adapter.get_amount_text(), "€12.50");
    click(&k, "Confirm");
    assert_eq!(adapter.get_screen(), "capture");
    assert!(adapter.get_capture_title().contains("€12.50"));
    // The live preview is running before any hand is shown.
    k.pump_until(WAIT, |_| k.stats().previews_shown >= 3).ok();
    assert!(
        k.stats().previews_shown >= 3,
        "preview frames reach the screen"
    );
    click(&k, "Show palm alice");
    let end = k
        .pump_until(WAIT, |s| {
            matches!(s, Screen::Approved(_) | Screen::Declined(_))
        })
        .unwrap_or_else(|s| panic!("no result: stuck on {}", s.name()));
    assert!(
        matches!(end, Screen::Approved(_)),
        "palm payment: {} / {}",
        adapter.get_result_title(),
        adapter.get_result_detail()
    );
    assert_eq!(adapter.get_result_title(), "Payment approved");
    assert_eq!(adapter.get_result_amount(), "€12.50");
    let alice_after = balance(&env, "alice");
    assert_eq!(alice_before.checked_sub(alice_after).unwrap().minor(), 1250);
    assert!(!k.stats().frame_to_result.is_empty());
    click(&k, "Done");

    // ---- at/above the PIN threshold (€50 on this server) the server asks for the PIN:
    // the PIN pad comes up, alice types hers, the payment goes through.
    let alice_before = balance(&env, "alice");
    click(&k, "Charge");
    for d in ["5", "0", "0", "0"] {
        click(&k, d);
    }
    click(&k, "Confirm");
    click(&k, "Show palm alice");
    k.pump_until(WAIT, |s| {
        matches!(
            s,
            Screen::Pin { .. } | Screen::Approved(_) | Screen::Declined(_)
        )
    })
    .unwrap_or_else(|s| panic!("no PIN pad: stuck on {}", s.name()));
    assert_eq!(
        adapter.get_screen(),
        "pin",
        "{}",
        adapter.get_result_title()
    );
    assert!(adapter.get_pin_title().contains("€50.00"));
    for d in ["1", "1", "1", "1"] {
        click(&k, d);
    }
    click(&k, "OK");
    k.pump_until(WAIT, |s| {
        matches!(s, Screen::Approved(_) | Screen::Declined(_))
    })
    .unwrap_or_else(|s| panic!("no result after the PIN: stuck on {}", s.name()));
    assert_eq!(adapter.get_result_title(), "Payment approved");
    assert_eq!(
        alice_before
            .checked_sub(balance(&env, "alice"))
            .unwrap()
            .minor(),
        5000
    );
    click(&k, "Done");

    // ---- enrollment at the kiosk: consent, form, three palm captures; then erin pays by palm
    click(&k, "Enroll");
    click(&k, "I agree");
    set_field(&k, "Username", "erin");
    set_field(&k, "Email", "erin@example.com");
    set_field(&k, "Password", DEMO_PASSWORD);
    set_field(&k, "PIN (optional)", "5555");
    click(&k, "Continue");
    k.pump_until(WAIT, |s| matches!(s, Screen::Capture { .. }))
        .unwrap_or_else(|s| panic!("no capture after the form: stuck on {}", s.name()));
    assert_eq!(adapter.get_capture_needed(), 3);
    click(&k, "Show palm erin");
    k.pump_until(WAIT, |s| {
        matches!(s, Screen::EnrollDone { .. } | Screen::Declined(_))
    })
    .unwrap_or_else(|s| panic!("enrollment: stuck on {}", s.name()));
    assert_eq!(
        adapter.get_result_title(),
        "Welcome, erin",
        "{}",
        adapter.get_result_detail()
    );
    click(&k, "Done");
    // A cash top-up so erin can pay, then a palm payment.
    // The cashier signed out when the kiosk went idle: sign in again.
    click(&k, "Cashier");
    set_field(&k, "Cashier name", DEMO_CASHIER.0);
    click(&k, "Next");
    for d in DEMO_CASHIER.1.chars() {
        click(&k, &d.to_string());
    }
    click(&k, "OK");
    k.pump_until(WAIT, |s| matches!(s, Screen::CashierMenu))
        .unwrap_or_else(|s| panic!("cashier sign-in: stuck on {}", s.name()));
    click(&k, "Cash top-up");
    set_field(&k, "Shopper username", "erin");
    click(&k, "Next");
    for d in ["1", "0", "0", "0", "Confirm"] {
        click(&k, d);
    }
    k.pump_until(WAIT, |s| matches!(s, Screen::Approved(_)))
        .unwrap_or_else(|s| panic!("top-up: {}", s.name()));
    click(&k, "Done");
    click(&k, "Charge");
    for d in ["2", "5", "0", "Confirm"] {
        click(&k, d);
    }
    click(&k, "Show palm erin");
    k.pump_until(WAIT, |s| {
        matches!(
            s,
            Screen::Approved(_) | Screen::Declined(_) | Screen::Pin { .. }
        )
    })
    .unwrap_or_else(|s| panic!("erin's payment: stuck on {}", s.name()));
    assert_eq!(adapter.get_result_title(), "Payment approved");
    assert_eq!(balance(&env, "erin").minor(), 750);
    click(&k, "Done");

    // ---- an unknown palm is never charged without a PIN: declined, or asked for the PIN
    // of whoever it resembles (step-up), which the stranger cannot give.
    let before: Vec<Money> = ["alice", "bob", "carol"]
        .iter()
        .map(|u| balance(&env, u))
        .collect();
    click(&k, "Charge");
    click(&k, "5");
    click(&k, "Confirm");
    click(&k, "Show palm stranger");
    let end = k
        .pump_until(WAIT, |s| {
            matches!(
                s,
                Screen::Declined(_) | Screen::Approved(_) | Screen::Pin { .. }
            )
        })
        .unwrap_or_else(|s| panic!("stranger: stuck on {}", s.name()));
    match end {
        Screen::Declined(_) => {
            assert_eq!(adapter.get_result_title(), "Palm not recognised");
            click(&k, "Done");
        }
        Screen::Pin { .. } => {
            assert!(adapter.get_pin_title().contains("PIN"));
            click(&k, "Cancel");
        }
        other => panic!("a stranger's palm was approved: {}", other.name()),
    }
    assert_eq!(adapter.get_screen(), "idle");
    let after: Vec<Money> = ["alice", "bob", "carol"]
        .iter()
        .map(|u| balance(&env, u))
        .collect();
    assert_eq!(before, after, "nobody was charged for the stranger");
}
