//! The API over real TLS sockets with real certificates: mutual TLS refusals, roles,
//! merchant binding, idempotency, authentication policy and bad input.

mod common;

use common::{eur, rand_key, TestServer};
use palmline_server::pki::Pki;
use palmline_shared::api::*;
use palmline_shared::{Currency, Money};
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_refuses_missing_foreign_expired_and_revoked_certificates() {
    let t = TestServer::start().await;
    let pki = t.pki();
    t.register(&t.kiosk("kiosk-a"), "alice", None).await;
    let deposit = json!({"username": "alice", "amount": eur("5.00")}).to_string();
    // The only deposit that gets through is kiosk-b's, before its revocation.
    let desk = t.desk(&t.kiosk("kiosk-b")).await;
    let attempt = |c: Client| {
        let url = t.url("/v1/deposits");
        let body = deposit.clone();
        let desk = desk.clone();
        async move {
            c.post(url)
                .header(IDEMPOTENCY_HEADER, rand_key())
                .header(CASHIER_SESSION_HEADER, desk)
                .body(body)
                .send()
                .await
        }
    };

    // No client certificate at all.
    let mut roots = rustls::RootCertStore::empty();
    for c in palmline_server::tls::read_certs(&pki.ca_cert_path()).unwrap() {
        roots.add(c).unwrap();
    }
    let no_cert = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let anon = Client::builder()
        .tls_backend_preconfigured(no_cert)
        .build()
        .unwrap();
    assert!(
        attempt(anon).await.is_err(),
        "no certificate must be refused"
    );

    // A certificate from another CA.
    let other = tempfile::tempdir().unwrap();
    let other_pki = Pki::new(other.path());
    other_pki.init("rogue CA").unwrap();
    other_pki.issue_kiosk("kiosk-a", "Shop A", 30).unwrap();
    let (c, k) = other_pki.kiosk_paths("kiosk-a");
    assert!(attempt(t.client_for(&c, &k)).await.is_err());

    // An expired certificate from our CA.
    let now = time::OffsetDateTime::now_utc();
    pki.issue_kiosk_with_validity(
        "old-kiosk",
        "Shop A",
        (
            now - time::Duration::days(30),
            now - time::Duration::days(1),
        ),
    )
    .unwrap();
    let (c, k) = pki.kiosk_paths("old-kiosk");
    assert!(attempt(t.client_for(&c, &k)).await.is_err());

    // The server's own certificate is not a client certificate.
    assert!(
        attempt(t.client_for(&pki.server_cert_path(), &pki.server_key_path()))
            .await
            .is_err()
    );

    // A kiosk revoked while the server runs: refused once the CRL is reloaded.
    // `kept` keeps its connection open across the revocation (keep-alive).
    let (c, k) = pki.kiosk_paths("kiosk-b");
    let kept = t.client_for(&c, &k);
    let ok = attempt(kept.clone()).await.unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    let mut reloads = t.running.crl_reloads.clone();
    let seen = *reloads.borrow();
    pki.revoke(&"kiosk:kiosk-b".parse().unwrap()).unwrap();
    // The reloader watches the CRL file; wait for its signal, not for a fixed time.
    tokio::time::timeout(std::time::Duration::from_secs(30), async {
        while *reloads.borrow_and_update() == seen {
            reloads.changed().await.unwrap();
        }
    })
    .await
    .expect("the CRL was not reloaded");
    assert!(attempt(t.client_for(&c, &k)).await.is_err());
    // The connection opened before the revocation is still up, but every request on it is
    // now refused by the API.
    let late = attempt(kept)
        .await
        .expect("the kept-alive connection answers");
    assert_eq!(late.status(), StatusCode::FORBIDDEN);
    let v: Value = late.json().await.unwrap();
    assert_eq!(v["error"]["code"], "forbidden");
    assert!(v["error"]["message"].as_str().unwrap().contains("revoked"));

    // Exactly one deposit got through: the one from the valid kiosk.
    let check = t.ledger().await;
    assert!(check.ok);
    assert_eq!(check.transactions_checked, 1);
    assert_eq!(t.balance_of("alice").await, 500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_are_enforced_and_the_merchant_comes_from_the_certificate() {
    let t = TestServer::start().await;
    let a = t.kiosk("kiosk-a");
    let b = t.kiosk("kiosk-b");
    for path in [
        "/v1/admin/accounts",
        "/v1/admin/kiosks",
        "/v1/admin/palm-scans",
        "/v1/admin/ledger-check",
        "/v1/admin/reports/daily",
    ] {
        let (s, v) = t.get(&a, path, None).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{path}");
        assert_eq!(v["error"]["code"], "forbidden");
    }
    let (s, v) = t
        .post(
            &a,
            "/v1/admin/refunds",
            "r1",
            json!({"payment_id": 1, "amount": eur("1.00")}),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    let (s, _) = t
        .post(
            &t.admin(),
            "/v1/deposits",
            "x",
            json!({"username": "a", "amount": eur("1.00")}),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    t.register(&a, "alice", None).await;
    t.deposit(&a, "alice", "50.00").await;
    let tok = t.token(&a, "alice").await;
    // A body naming another merchant is ignored: the certificate decides.
    let (s, r) = t
        .post_raw(
            &a,
            "/v1/payments",
            Some("pay-1"),
            Some(&tok),
            json!({"amount": eur("20.00"), "merchant": "Shop B", "kiosk_id": "kiosk-b"})
                .to_string()
                .into_bytes(),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["merchant"], "Shop A");
    assert_eq!(r["kiosk_id"], "kiosk-a");
    assert_eq!(t.balance_of("Shop A").await, 2_000);
    // Kiosk B never saw a payment; and a session opened at A is useless at B.
    let (_, today_b) = t.get(&b, "/v1/merchant/today", None).await;
    assert_eq!(today_b["payments_count"], 0);
    let (s, v) = t.get(&b, "/v1/wallet", Some(&tok)).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
    let (_, today_a) = t.get(&a, "/v1/merchant/today", None).await;
    assert_eq!(today_a["payments_count"], 1);
    assert_eq!(today_a["payments_total"], eur("20.00"));
    let (_, kiosks) = t.get(&t.admin(), "/v1/admin/kiosks", None).await;
    let kiosks: Vec<KioskRow> = serde_json::from_value(kiosks).unwrap();
    assert!(kiosks
        .iter()
        .any(|k| k.kiosk_id == "kiosk-a" && k.merchant == "Shop A"));
    let (_, h) = t.get(&a, "/v1/health", None).await;
    assert_eq!(h["merchant"], "Shop A");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_typed_error_and_changes_nothing() {
    let t = TestServer::start().await;
    let a = t.kiosk("kiosk-a");
    t.register(&a, "alice", None).await;
    t.register(&a, "bob", None).await;
    t.deposit(&a, "alice", "10.00").await;
    let tok = t.token(&a, "alice").await;
    let before = t.ledger().await;

    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "/v1/deposits",
            json!({"username": "alice", "amount": eur("0")})
                .to_string()
                .into(),
            "invalid_amount",
        ),
        (
            "/v1/deposits",
            json!({"username": "alice", "amount": eur("-1.00")})
                .to_string()
                .into(),
            "invalid_amount",
        ),
        (
            "/v1/deposits",
            json!({"username": "alice", "amount": eur("99999999999999999999")})
                .to_string()
                .into(),
            "invalid_amount",
        ),
        (
            "/v1/deposits",
            json!({"username": "alice", "amount": eur("1.001")})
                .to_string()
                .into(),
            "invalid_amount",
        ),
        (
            "/v1/deposits",
            json!({"username": "alice", "amount": eur("1e3")})
                .to_string()
                .into(),
            "invalid_amount",
        ),
        (
            "/v1/deposits",
            json!({"username": "alice", "amount": {"amount": 5, "currency": "EUR"}})
                .to_string()
                .into(),
            "invalid_request",
        ),
        (
            "/v1/deposits",
            json!({"username": "alice", "amount": {"amount": "1.00", "currency": "XXX"}})
                .to_string()
                .into(),
            "unsupported_currency",
        ),
        (
            "/v1/deposits",
            json!({"username": "alice", "amount": {"amount": "1.00", "currency": "USD"}})
                .to_string()
                .into(),
            "unsupported_currency",
        ),
        (
            "/v1/deposits",
            json!({"username": "nobody", "amount": eur("1.00")})
                .to_string()
                .into(),
            "unknown_account",
        ),
        (
            "/v1/deposits",
            b"{\"username\": \"alice\", ".to_vec(),
            "malformed_json",
        ),
        ("/v1/deposits", b"not json".to_vec(), "malformed_json"),
        (
            "/v1/deposits",
            json!({"user": "alice"}).to_string().into(),
            "invalid_request",
        ),
        ("/v1/deposits", vec![b' '; 70 * 1024], "body_too_large"),
        (
            "/v1/payments",
            json!({"amount": eur("10.01")}).to_string().into(),
            "insufficient_funds",
        ),
        (
            "/v1/transfers",
            json!({"to_username": "nobody", "amount": eur("1.00")})
                .to_string()
                .into(),
            "unknown_account",
        ),
        (
            "/v1/transfers",
            json!({"to_username": "alice", "amount": eur("1.00")})
                .to_string()
                .into(),
            "same_account",
        ),
        (
            "/v1/withdrawals",
            json!({"amount": eur("20.00")}).to_string().into(),
            "insufficient_funds",
        ),
        (
            "/v1/shoppers",
            json!({"username": "Bad Name", "email": "a@b.cd", "password": "password123"})
                .to_string()
                .into(),
            "invalid_request",
        ),
        (
            "/v1/shoppers",
            json!({"username": "carol", "email": "nope", "password": "password123"})
                .to_string()
                .into(),
            "invalid_request",
        ),
        (
            "/v1/shoppers",
            json!({"username": "carol", "email": "c@b.cd", "password": "short"})
                .to_string()
                .into(),
            "invalid_request",
        ),
        (
            "/v1/shoppers",
            json!({"username": "carol", "email": "c@b.cd", "password": "password123", "pin": "12"})
                .to_string()
                .into(),
            "invalid_request",
        ),
        (
            "/v1/shoppers",
            json!({"username": "alice", "email": "c@b.cd", "password": "password123"})
                .to_string()
                .into(),
            "username_taken",
        ),
    ];
    for (path, body, code) in cases {
        let (s, v) = t
            .post_desk(&a, path, Some(&rand_key()), Some(&tok), body)
            .await;
        assert!(s.is_client_error(), "{path} {code}: got {s} {v}");
        assert_eq!(v["error"]["code"], code, "{path}: {v}");
        assert_eq!(
            s.as_u16(),
            ErrorCode::http_status(serde_json::from_value(v["error"]["code"].clone()).unwrap())
        );
    }
    // Missing idempotency key and missing session.
    let (s, v) = t
        .post_raw(
            &a,
            "/v1/deposits",
            None,
            None,
            json!({"username": "alice", "amount": eur("1.00")})
                .to_string()
                .into(),
        )
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("missing_idempotency_key"))
    );
    let (s, v) = t
        .post_raw(
            &a,
            "/v1/payments",
            Some("k"),
            None,
            json!({"amount": eur("1.00")}).to_string().into(),
        )
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("session_required"))
    );
    let (s, _) = t.get(&a, "/v1/wallet", Some("forged-token")).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, v) = t.get(&a, "/v1/wallet/history?limit=abc", Some(&tok)).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request"))
    );
    let (s, v) = t.get(&a, "/v1/nope", None).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );

    // Frozen accounts: no movement.
    let (_, rows) = t.get(&t.admin(), "/v1/admin/accounts?q=bob", None).await;
    let bob = rows[0]["id"].as_i64().unwrap();
    let (s, v) = t
        .post(
            &t.admin(),
            &format!("/v1/admin/accounts/{bob}/freeze"),
            "f1",
            json!({"reason": "test"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "frozen");
    let (s, v) = t.deposit(&a, "bob", "1.00").await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("account_frozen"))
    );
    let (s, v) = t
        .post_raw(
            &a,
            "/v1/transfers",
            Some("tf"),
            Some(&tok),
            json!({"to_username": "bob", "amount": eur("1.00")})
                .to_string()
                .into(),
        )
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("account_frozen"))
    );
    let (s, v) = t.login(&a, "bob", "password123").await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("account_frozen"))
    );
    let (s, _) = t
        .post(
            &t.admin(),
            "/v1/admin/accounts/999999/freeze",
            "f2",
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    let after = t.ledger().await;
    assert!(after.ok);
    assert_eq!(before.transactions_checked, after.transactions_checked);
    assert_eq!(t.balance_of("alice").await, 1_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_over_http() {
    let t = TestServer::start().await;
    let a = t.kiosk("kiosk-a");
    t.register(&a, "alice", None).await;
    t.deposit(&a, "alice", "100.00").await;
    let tok = t.token(&a, "alice").await;
    let body = json!({"amount": eur("7.50")}).to_string().into_bytes();
    let (s1, r1) = t
        .post_raw(&a, "/v1/payments", Some("p-1"), Some(&tok), body.clone())
        .await;
    assert_eq!(s1, StatusCode::OK);
    // A retry — even with a fresh session, as after a kiosk restart — returns the first answer.
    let (s2, r2) = t
        .post_raw(&a, "/v1/payments", Some("p-1"), Some(&tok), body.clone())
        .await;
    assert_eq!((s1, &r1), (s2, &r2));
    let (s3, v) = t
        .post_raw(
            &a,
            "/v1/payments",
            Some("p-1"),
            Some(&tok),
            json!({"amount": eur("8.00")}).to_string().into(),
        )
        .await;
    assert_eq!(
        (s3, v["error"]["code"].as_str()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("idempotency_mismatch")
        )
    );
    assert_eq!(t.balance_of("alice").await, 9_250);

    // Concurrent duplicates: exactly one effect; the others see the same receipt or 409.
    let mut tasks = Vec::new();
    for _ in 0..12 {
        let c = a.clone();
        let url = t.url("/v1/payments");
        let tok = tok.clone();
        tasks.push(tokio::spawn(async move {
            let r = c
                .post(url)
                .header(IDEMPOTENCY_HEADER, "p-dup")
                .bearer_auth(tok)
                .body(json!({"amount": eur("1.00")}).to_string())
                .send()
                .await
                .unwrap();
            (r.status(), r.json::<Value>().await.unwrap())
        }));
    }
    let mut receipts = Vec::new();
    for task in tasks {
        let (s, v) = task.await.unwrap();
        match s {
            StatusCode::OK => receipts.push(v["transaction_id"].as_i64().unwrap()),
            StatusCode::CONFLICT => assert_eq!(v["error"]["code"], "idempotency_in_flight"),
            other => panic!("unexpected {other} {v}"),
        }
    }
    assert!(!receipts.is_empty());
    assert!(receipts.windows(2).all(|w| w[0] == w[1]), "{receipts:?}");
    assert_eq!(t.balance_of("alice").await, 9_150);
    assert!(t.ledger().await.ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_lockout_pin_policy_history_and_refunds() {
    let t = TestServer::start().await;
    let a = t.kiosk("kiosk-a");
    t.register(&a, "alice", Some("4321")).await;
    t.register(&a, "bob", None).await;
    t.deposit(&a, "alice", "500.00").await;

    // Wrong passwords lock the account after five tries; unknown users look the same.
    let (s, v) = t.login(&a, "ghost", "password123").await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_credentials"))
    );
    for _ in 0..5 {
        let (s, v) = t.login(&a, "bob", "wrong-password").await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("invalid_credentials"))
        );
    }
    let (s, v) = t.login(&a, "bob", "password123").await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("account_locked"))
    );

    // PIN above the threshold (50.00 EUR by default).
    let tok = t.token(&a, "alice").await;
    let pay = |amount: &str, pin: Option<&str>| {
        let mut b = json!({"amount": eur(amount)});
        if let Some(p) = pin {
            b["pin"] = json!(p);
        }
        b.to_string().into_bytes()
    };
    let (s, v) = t
        .post_raw(
            &a,
            "/v1/payments",
            Some("q1"),
            Some(&tok),
            pay("60.00", None),
        )
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("pin_required"))
    );
    let (s, v) = t
        .post_raw(
            &a,
            "/v1/payments",
            Some("q2"),
            Some(&tok),
            pay("60.00", Some("0000")),
        )
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_pin"))
    );
    let (s, v) = t
        .post_raw(
            &a,
            "/v1/payments",
            Some("q3"),
            Some(&tok),
            pay("60.00", Some("4321")),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let payment_id = v["transaction_id"].as_i64().unwrap();
    let (s, _) = t
        .post_raw(
            &a,
            "/v1/payments",
            Some("q4"),
            Some(&tok),
            pay("49.99", None),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, v) = t
        .post_raw(
            &a,
            "/v1/transfers",
            Some("q5"),
            Some(&tok),
            json!({"to_username": "bob", "amount": eur("10.00")})
                .to_string()
                .into(),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = t
        .post_desk(
            &a,
            "/v1/withdrawals",
            Some("q6"),
            Some(&tok),
            json!({"amount": eur("5.00")}).to_string().into(),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");

    // Operator refund, bounded by the payment.
    let admin = t.admin();
    let (s, v) = t
        .post(
            &admin,
            "/v1/admin/refunds",
            "rf1",
            json!({"payment_id": payment_id, "amount": eur("60.01")}),
        )
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("refund_exceeds_payment")
        )
    );
    let (s, v) = t
        .post(
            &admin,
            "/v1/admin/refunds",
            "rf2",
            json!({"payment_id": payment_id, "amount": eur("60.00"), "reason": "damaged"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["kind"], "refund");

    // History: newest first, paged, replays to the balance.
    let (_, w) = t.get(&a, "/v1/wallet", Some(&tok)).await;
    let balance = w["balance"].clone();
    assert_eq!(balance, eur("435.01"));
    let mut all = Vec::new();
    let mut path = "/v1/wallet/history?limit=2".to_string();
    loop {
        let (s, page) = t.get(&a, &path, Some(&tok)).await;
        assert_eq!(s, StatusCode::OK);
        let page: HistoryPage = serde_json::from_value(page).unwrap();
        all.extend(page.items);
        match page.next_before {
            Some(b) => path = format!("/v1/wallet/history?limit=2&before={b}"),
            None => break,
        }
    }
    let kinds: Vec<TxKind> = all.iter().map(|i| i.kind).collect();
    assert_eq!(
        kinds,
        vec![
            TxKind::Refund,
            TxKind::Withdrawal,
            TxKind::Transfer,
            TxKind::Payment,
            TxKind::Payment,
            TxKind::Deposit
        ]
    );
    let sum = all
        .iter()
        .try_fold(Money::zero(Currency::EUR), |acc, i| {
            acc.checked_add(i.amount)
        })
        .unwrap();
    assert_eq!(serde_json::to_value(sum).unwrap(), balance);
    assert_eq!(all[2].counterparty.as_deref(), Some("bob"));

    let (_, report) = t.get(&admin, "/v1/admin/reports/daily", None).await;
    let report: DailyReport = serde_json::from_value(report).unwrap();
    let shop = report
        .merchants
        .iter()
        .find(|m| m.merchant == "Shop A")
        .unwrap();
    assert_eq!(shop.payments_count, 2);
    assert_eq!(shop.refunds_total.minor(), 6_000);
    assert_eq!(shop.cash_net.minor(), 50_000 - 500);
    let (s, _) = t
        .get(&admin, "/v1/admin/reports/daily?date=2026-13-40", None)
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(t.ledger().await.ok);
}

/// The real server on a PostgreSQL ledger (`database = postgres://…`): money moves over
/// mTLS, a retried key replays, and a restarted server finds it all; no SQLite file is made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_a_postgres_ledger() {
    use palmline_server::config::Database;
    let Some(db) = common::pg::fresh_db("serve").await else {
        return;
    };
    let database = Database::parse(&db.url).unwrap();
    let dir = TestServer::prepared_dir();
    let policy = palmline_server::palm::PalmPolicy::default;
    let t = TestServer::start_on(dir, database.clone(), policy(), |_| {}).await;
    let a = t.kiosk("kiosk-a");
    t.register(&a, "alice", None).await;
    t.register(&a, "bob", None).await;
    let (s, v) = t.deposit(&a, "alice", "100.00").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let tok = t.token(&a, "alice").await;
    let body = json!({"amount": eur("7.50")}).to_string().into_bytes();
    let pay = || t.post_raw(&a, "/v1/payments", Some("pg-1"), Some(&tok), body.clone());
    let (s1, r1) = pay().await;
    assert_eq!(s1, StatusCode::OK, "{r1}");
    assert_eq!(pay().await, (s1, r1), "a retry replays the first answer");
    assert_eq!(t.balance_of("alice").await, 9_250);
    assert!(t.ledger().await.ok);
    assert!(!t.dir.path().join("palmline.db").exists(), "no SQLite file");

    let dir = t.stop().await;
    let t = TestServer::start_on(dir, database, policy(), |_| {}).await;
    assert_eq!(t.balance_of("alice").await, 9_250);
    assert_eq!(t.balance_of("bob").await, 0);
    let (s, _) = t.login(&t.kiosk("kiosk-b"), "alice", "password123").await;
    assert_eq!(s, StatusCode::OK, "the shopper is still there");
    let ledger = t.ledger().await;
    assert!(ledger.ok);
    assert_eq!(ledger.transactions_checked, 2);
    t.stop().await;
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_runs_the_retention_purge_now() {
    use palmline_server::store::clock::unix_now;
    use palmline_server::store::Command;
    let t = TestServer::start().await;
    let a = t.kiosk("kiosk-a");
    t.register(&a, "bob", None).await;
    let (_, rows) = t.get(&t.admin(), "/v1/admin/accounts?q=bob", None).await;
    let bob = rows[0]["id"].as_i64().unwrap();
    // Two sessions of bob: one expired a minute ago, one good for an hour.
    for (token, expires_at) in [
        ([7u8; 32], unix_now() - 60),
        ([8u8; 32], unix_now() + 3_600),
    ] {
        let s = Command::CreateSession {
            token_hash: token,
            shopper_id: bob,
            kiosk_id: "kiosk-a".into(),
            expires_at,
        };
        t.running.state.store.execute(None, s).await.unwrap();
    }
    // A kiosk may not purge.
    let (s, _) = t.post(&a, "/v1/admin/purge", "p0", json!({})).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let purge = || async {
        let r = t
            .admin()
            .post(t.url("/v1/admin/purge"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        r.json::<PurgeReport>().await.unwrap()
    };
    let first = purge().await;
    assert_eq!(first.sessions, 1, "{first:?}");
    assert_eq!(
        (first.idempotency, first.scans),
        (0, 0),
        "nothing is that old"
    );
    // Again: nothing left to delete; the live session and the money are untouched.
    assert_eq!(purge().await.sessions, 0);
    let left = t.running.state.store.session([8u8; 32], unix_now()).await;
    assert!(matches!(left, Ok(Some(_))), "{left:?}");
    let check = t.running.state.store.ledger_check().await.unwrap();
    assert!(check.ok);
}
