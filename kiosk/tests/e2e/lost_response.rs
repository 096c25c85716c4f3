//! A payment whose first response is lost is retried with the same idempotency key and
//! charged exactly once.

use crate::common;
use palmline_kiosk::api::{ApiClient, Timeouts, TlsFiles};
use palmline_kiosk::app::{ApiCall, Reply};
use palmline_shared::api::{PaymentRequest, SessionRequest, TxKind};
use palmline_shared::money::Money;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// A proxy in front of the server that drops the first response, and a kiosk client that
/// goes through it (by IP: the server certificate names 127.0.0.1), retrying twice.
fn lossy(cfg: &palmline_kiosk::config::Config) -> (common::LossyProxy, ApiClient) {
    let upstream: SocketAddr = cfg
        .server
        .url
        .trim_start_matches("https://")
        .parse()
        .unwrap();
    let proxy = common::LossyProxy::start(upstream, 1);
    let client = ApiClient::new(
        &format!("https://{}", proxy.addr),
        &TlsFiles {
            ca: &cfg.server.ca,
            cert: &cfg.server.cert,
            key: &cfg.server.key,
        },
        Timeouts {
            request: Duration::from_millis(1500),
            connect: Duration::from_secs(2),
            retries: 2,
            backoff: Duration::from_millis(100),
        },
    )
    .unwrap();
    (proxy, client)
}

#[test]
fn lost_payment_response_is_retried_and_charged_once() {
    let env = common::start();
    let cfg = &env.backend.config;
    let login = env
        .client
        .call(&ApiCall::Login {
            key: "login-1".into(),
            req: SessionRequest::Password {
                username: "alice".into(),
                password: palmline_kiosk::demo::DEMO_PASSWORD.into(),
            },
        })
        .expect("login");
    let Reply::Session { token, .. } = login else {
        panic!("{login:?}")
    };
    let balance = |client: &ApiClient| match client.call(&ApiCall::Wallet {
        token: token.clone(),
    }) {
        Ok(Reply::Wallet(w)) => w.balance,
        other => panic!("{other:?}"),
    };
    let before = balance(&env.client);

    let (proxy, lossy_client) = lossy(cfg);
    let amount = Money::parse("7.25", before.currency()).unwrap();
    let pay = ApiCall::Pay {
        key: "pay-lost-once".into(),
        token: token.clone(),
        req: PaymentRequest {
            amount,
            pin: None,
            description: Some("lost response test".into()),
        },
    };
    let receipt = match lossy_client.call(&pay) {
        Ok(Reply::Receipt(r)) => r,
        other => panic!("payment through the lossy proxy: {other:?}"),
    };
    // The first answer really was produced and thrown away, and a second connection made.
    assert!(
        proxy.dropped_bytes.load(Ordering::SeqCst) > 0,
        "no response was dropped"
    );
    assert!(proxy.connections.load(Ordering::SeqCst) >= 2);
    assert_eq!(receipt.amount, amount);
    assert_eq!(receipt.kind, TxKind::Payment);

    let after = balance(&env.client);
    assert_eq!(
        before.checked_sub(after).unwrap(),
        amount,
        "charged exactly once"
    );
    let history = match env.client.call(&ApiCall::History {
        token: token.clone(),
        limit: 50,
        before: None,
    }) {
        Ok(Reply::History(h)) => h,
        other => panic!("{other:?}"),
    };
    let payments = history
        .items
        .iter()
        .filter(|i| i.kind == TxKind::Payment)
        .count();
    assert_eq!(payments, 1);
    // Sending the same request again (the kiosk's "Try again") still does not charge.
    match env.client.call(&pay) {
        Ok(Reply::Receipt(r)) => assert_eq!(r.transaction_id, receipt.transaction_id),
        other => panic!("{other:?}"),
    }
    assert_eq!(balance(&env.client), after);
}

#[test]
fn unreachable_server_is_reported_offline_and_wrong_ca_is_refused() {
    let env = common::start();
    let cfg = &env.backend.config;
    // Nothing listens on this port any more.
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let files = TlsFiles {
        ca: &cfg.server.ca,
        cert: &cfg.server.cert,
        key: &cfg.server.key,
    };
    let quick = Timeouts {
        request: Duration::from_secs(2),
        connect: Duration::from_secs(1),
        retries: 0,
        backoff: Duration::from_millis(10),
    };
    let c = ApiClient::new(&format!("https://{free}"), &files, quick).unwrap();
    assert!(matches!(
        c.call(&ApiCall::Health),
        Err(palmline_kiosk::app::ApiError::Offline(_))
    ));
    // Pinning: a client trusting another CA refuses the real server.
    let other = tempfile::tempdir().unwrap();
    let bin = palmline_kiosk::server_proc::find_server_binary().unwrap();
    let other_cert =
        palmline_kiosk::server_proc::prepare_pki(&bin, other.path(), "x", "y").unwrap();
    let pinned_elsewhere = ApiClient::new(
        &cfg.server.url,
        &TlsFiles {
            ca: &other_cert.ca,
            cert: &cfg.server.cert,
            key: &cfg.server.key,
        },
        quick,
    )
    .unwrap();
    assert!(pinned_elsewhere.call(&ApiCall::Health).is_err());
    // And the real one works, reporting who we are from the certificate.
    match env.client.call(&ApiCall::Health) {
        Ok(Reply::Health(h)) => {
            assert_eq!(
                h.kiosk_id.as_deref(),
                Some(palmline_kiosk::demo::DEMO_KIOSK)
            );
            assert_eq!(
                h.merchant.as_deref(),
                Some(palmline_kiosk::demo::DEMO_MERCHANT)
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn lost_palm_payment_response_is_retried_and_charged_once() {
    use base64::Engine as _;
    let env = common::start();
    let cfg = &env.backend.config;
    let mut ex = palmline_kiosk::extract::default_extractor();
    let template = palmline_kiosk::demo::sim_templates("bob", 1, ex.as_mut())
        .expect("a capture of bob")
        .remove(0);
    let login = |client: &ApiClient| match client.call(&ApiCall::Login {
        key: uuid::Uuid::new_v4().to_string(),
        req: SessionRequest::Password {
            username: "bob".into(),
            password: palmline_kiosk::demo::DEMO_PASSWORD.into(),
        },
    }) {
        Ok(Reply::Session { token, .. }) => token,
        other => panic!("{other:?}"),
    };
    let balance = |client: &ApiClient| match client.call(&ApiCall::Wallet {
        token: login(client),
    }) {
        Ok(Reply::Wallet(w)) => w.balance,
        other => panic!("{other:?}"),
    };
    let before = balance(&env.client);
    let (proxy, lossy_client) = lossy(cfg);
    let amount = Money::parse("3.10", before.currency()).unwrap();
    let pay = ApiCall::PalmPay {
        key: "palm-pay-lost-once".into(),
        req: palmline_shared::api::PalmPaymentRequest {
            template: base64::engine::general_purpose::STANDARD.encode(&template),
            amount,
            pin: None,
            description: None,
        },
    };
    let receipt = match lossy_client.call(&pay) {
        Ok(Reply::Receipt(r)) => r,
        other => panic!("palm payment through the lossy proxy: {other:?}"),
    };
    assert!(
        proxy.dropped_bytes.load(Ordering::SeqCst) > 0,
        "no response was dropped"
    );
    assert_eq!(receipt.shopper, "bob");
    assert_eq!(
        before.checked_sub(balance(&env.client)).unwrap(),
        amount,
        "charged exactly once"
    );
}
