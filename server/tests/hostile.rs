//! Issue 12: what a hostile kiosk, shopper or passer-by could do, each as an attack against
//! a real server over mutual TLS, asserting that it is now refused. The races run dozens of
//! concurrent requests; nothing here sleeps to synchronise.

mod common;

use common::palms::{b64, capture, palm};
use common::{eur, rand_key, TestServer};
use futures_like::join_all;
use palmline_server::palm::PalmPolicy;
use palmline_shared::api::*;
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Duration;

/// `join_all` without a futures dependency: spawn each, await each.
mod futures_like {
    pub async fn join_all<T: Send + 'static>(
        fs: Vec<impl std::future::Future<Output = T> + Send + 'static>,
    ) -> Vec<T> {
        let handles: Vec<_> = fs.into_iter().map(tokio::spawn).collect();
        let mut out = Vec::with_capacity(handles.len());
        for h in handles {
            out.push(h.await.unwrap());
        }
        out
    }
}

/// One answer: status, error code (if any), `Retry-After` seconds (if any), body.
#[derive(Debug, Clone)]
struct Answer {
    status: StatusCode,
    code: Option<String>,
    retry_after: Option<u64>,
    body: Value,
}

async fn send(req: reqwest::RequestBuilder) -> Answer {
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let retry_after = resp
        .headers()
        .get(RETRY_AFTER_HEADER)
        .map(|v| v.to_str().unwrap().parse::<u64>().unwrap());
    let text = resp.text().await.unwrap();
    let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    let code = body["error"]["code"].as_str().map(str::to_string);
    Answer {
        status,
        code,
        retry_after,
        body,
    }
}

fn post(
    c: &Client,
    url: String,
    key: Option<&str>,
    token: Option<&str>,
    body: Value,
) -> reqwest::RequestBuilder {
    let mut r = c.post(url).json(&body);
    if let Some(k) = key {
        r = r.header(IDEMPOTENCY_HEADER, k);
    }
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    r
}

fn login_body(name: &str, password: &str) -> Value {
    json!({"method": "password", "username": name, "password": password})
}

async fn login(t: &TestServer, c: &Client, name: &str, password: &str) -> Answer {
    send(post(
        c,
        t.url("/v1/sessions"),
        None,
        None,
        login_body(name, password),
    ))
    .await
}

/// Sends `n` copies of a request built by `make(i)` at once; counts answers by code
/// (`"ok"` for a success).
async fn flood(
    n: usize,
    make: impl Fn(usize) -> reqwest::RequestBuilder,
) -> (HashMap<String, usize>, Vec<Answer>) {
    let answers = join_all((0..n).map(|i| send(make(i))).collect()).await;
    let mut counts = HashMap::new();
    for a in &answers {
        let k = a.code.clone().unwrap_or_else(|| "ok".into());
        *counts.entry(k).or_insert(0) += 1;
    }
    (counts, answers)
}

fn count(counts: &HashMap<String, usize>, code: &str) -> usize {
    counts.get(code).copied().unwrap_or(0)
}

/// A kiosk of `merchant` issued while the server runs (the CA trusts it at once).
fn extra_kiosk(t: &TestServer, id: &str, merchant: &str) -> Client {
    t.pki().issue_kiosk(id, merchant, 30).unwrap();
    t.kiosk(id)
}

// ------------------------------------------------------------------ 1. lock-out races

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_wrong_passwords_are_evaluated_at_most_up_to_the_lock() {
    let t = TestServer::start_tuned(PalmPolicy::default(), |api| api.hash_concurrency = 2).await;
    let a = t.kiosk("kiosk-a");
    t.register(&a, "bob", None).await;
    let url = t.url("/v1/sessions");
    let (counts, answers) = flood(64, |i| {
        post(
            &a,
            url.clone(),
            None,
            None,
            login_body("bob", &format!("wrong-{i}")),
        )
    })
    .await;
    // Before: 33 of 64 were checked against the hash. Now the 5th reservation locks.
    assert_eq!(count(&counts, "invalid_credentials"), 5, "{counts:?}");
    assert_eq!(count(&counts, "account_locked"), 59, "{counts:?}");
    assert!(answers
        .iter()
        .filter(|a| a.code.as_deref() == Some("account_locked"))
        .all(|a| a.status == StatusCode::FORBIDDEN && a.retry_after.is_some_and(|s| s > 800)));
    // The semaphore in front of argon2 held: never more than 2 hashes at once.
    let peak = t.running.state.hasher.peak();
    assert!((1..=2).contains(&peak), "peak concurrent hashes {peak}");
    // The right password at this kiosk is refused too: the lock is real.
    assert_eq!(
        login(&t, &a, "bob", "password123").await.code.as_deref(),
        Some("account_locked")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lock_at_one_kiosk_spares_the_others_until_the_daily_cap_with_back_off() {
    let t = TestServer::start().await;
    let (a, b) = (t.kiosk("kiosk-a"), t.kiosk("kiosk-b"));
    t.register(&a, "carol", None).await;
    for _ in 0..5 {
        assert_eq!(
            login(&t, &a, "carol", "nope-nope").await.code.as_deref(),
            Some("invalid_credentials")
        );
    }
    let locked_a = login(&t, &a, "carol", "password123").await;
    assert_eq!(locked_a.code.as_deref(), Some("account_locked"));
    let first_lock = locked_a.retry_after.unwrap();
    assert!((800..=900).contains(&first_lock), "{first_lock}");

    // A stranger at kiosk A does not lock carol out at kiosk B.
    let ok = login(&t, &b, "carol", "password123").await;
    assert_eq!(ok.status, StatusCode::OK, "{:?}", ok.body);

    // But the guesses add up across kiosks: 5 more at B reach the day's cap of 10, and
    // B's lock (the second of the day) lasts twice as long.
    let url = t.url("/v1/sessions");
    let (counts, _) = flood(32, |i| {
        post(
            &b,
            url.clone(),
            None,
            None,
            login_body("carol", &format!("x-{i}-guess")),
        )
    })
    .await;
    assert_eq!(count(&counts, "invalid_credentials"), 5, "{counts:?}");
    let locked_b = login(&t, &b, "carol", "password123").await;
    assert_eq!(locked_b.code.as_deref(), Some("account_locked"));
    let second_lock = locked_b.retry_after.unwrap();
    assert!(
        (1700..=1800).contains(&second_lock),
        "back-off: {second_lock}"
    );

    // A third kiosk, never used: the account-wide cap for today.
    let c = extra_kiosk(&t, "kiosk-c", "Shop C");
    let capped = login(&t, &c, "carol", "password123").await;
    assert_eq!(
        capped.code.as_deref(),
        Some("account_locked"),
        "{:?}",
        capped.body
    );
    assert!(capped.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("today"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_operator_lifts_a_lock_early_and_only_for_that_shopper() {
    let t = TestServer::start().await;
    let a = t.kiosk("kiosk-a");
    t.register(&a, "dave", None).await;
    t.register(&a, "erin", None).await;
    for name in ["dave", "erin"] {
        for _ in 0..5 {
            login(&t, &a, name, "nope-nope").await;
        }
        let locked = login(&t, &a, name, "password123").await;
        assert_eq!(locked.code.as_deref(), Some("account_locked"), "{name}");
    }
    let (_, rows) = t.get(&t.admin(), "/v1/admin/accounts?q=dave", None).await;
    let dave = rows[0]["id"].as_i64().unwrap();
    // A kiosk may not lift it.
    let (s, _) = t
        .post(
            &a,
            &format!("/v1/admin/accounts/{dave}/unlock"),
            "u0",
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(
        login(&t, &a, "dave", "password123").await.code.as_deref(),
        Some("account_locked")
    );
    // The operator can; the right password works at once, erin stays locked.
    let (s, v) = t
        .post(
            &t.admin(),
            &format!("/v1/admin/accounts/{dave}/unlock"),
            "u1",
            json!({"reason": "called the help desk"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["id"].as_i64(), Some(dave));
    assert_eq!(
        login(&t, &a, "dave", "password123").await.status,
        StatusCode::OK
    );
    assert_eq!(
        login(&t, &a, "erin", "password123").await.code.as_deref(),
        Some("account_locked")
    );
    // Today's guesses were given back: five more wrong ones before the next lock.
    for _ in 0..5 {
        assert_eq!(
            login(&t, &a, "dave", "nope-nope").await.code.as_deref(),
            Some("invalid_credentials")
        );
    }
    assert_eq!(
        login(&t, &a, "dave", "password123").await.code.as_deref(),
        Some("account_locked")
    );
    // Unknown or non-shopper ids change nothing.
    let (s, v) = t
        .post(
            &t.admin(),
            "/v1/admin/accounts/999999/unlock",
            "u2",
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
}

// ------------------------------------------------------------------ 2. PIN not forgiven

async fn pay(t: &TestServer, c: &Client, tok: &str, amount: &str, pin: Option<&str>) -> Answer {
    let mut body = json!({"amount": eur(amount)});
    if let Some(p) = pin {
        body["pin"] = json!(p);
    }
    send(post(
        c,
        t.url("/v1/payments"),
        Some(&rand_key()),
        Some(tok),
        body,
    ))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pin_guesses_are_not_forgiven_by_a_password_login() {
    let t = TestServer::start().await;
    let a = t.kiosk("kiosk-a");
    t.register(&a, "dave", Some("4321")).await;
    t.deposit(&a, "dave", "500.00").await;
    // The issue's attack: 4 wrong PINs, log in again with the password, repeat.
    let mut evaluated = 0;
    let mut locked = 0;
    for round in 0..5 {
        let tok = t.token(&a, "dave").await;
        for i in 0..4 {
            let guess = format!("{:04}", round * 4 + i);
            match pay(&t, &a, &tok, "60.00", Some(&guess))
                .await
                .code
                .as_deref()
            {
                Some("invalid_pin") => evaluated += 1,
                Some("account_locked") => locked += 1,
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    assert_eq!(
        evaluated, 5,
        "only 5 wrong PINs in a row are checked at one kiosk"
    );
    assert_eq!(locked, 15);
    assert_eq!(t.balance_of("dave").await, 50_000, "nothing moved");
    // The password factor was never locked by the PIN's failures.
    assert_eq!(
        login(&t, &a, "dave", "password123").await.status,
        StatusCode::OK
    );
    // And the right PIN at this kiosk is refused while the PIN is locked here.
    let tok = t.token(&a, "dave").await;
    assert_eq!(
        pay(&t, &a, &tok, "60.00", Some("4321"))
            .await
            .code
            .as_deref(),
        Some("account_locked")
    );
}

// ------------------------------------------------------------------ 3. receipts

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deposit_receipt_from_any_kiosk_shows_no_balance() {
    let t = TestServer::start().await;
    let (a, b) = (t.kiosk("kiosk-a"), t.kiosk("kiosk-b"));
    t.register(&a, "erin", None).await;
    t.deposit(&a, "erin", "321.00").await;
    // A kiosk of another merchant deposits 0.01 to learn erin's balance.
    let key = rand_key();
    let body = json!({"username": "erin", "amount": eur("0.01")});
    for _ in 0..2 {
        // The replay of the same key is redacted too.
        let desk = t.desk(&b).await;
        let r = send(
            post(&b, t.url("/v1/deposits"), Some(&key), None, body.clone())
                .header(CASHIER_SESSION_HEADER, desk),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        let receipt: Receipt = serde_json::from_value(r.body.clone()).unwrap();
        assert_eq!(receipt.balance_after, None, "{:?}", r.body);
        assert!(r.body.get("balance_after").is_none());
        assert_eq!(receipt.shopper, "e***n");
        assert_eq!(receipt.amount.minor(), 1);
        assert!(!r.body.to_string().contains("321."));
    }
    // erin's own session still sees her balance on her receipts.
    let tok = t.token(&a, "erin").await;
    let own = pay(&t, &a, &tok, "1.00", None).await;
    let receipt: Receipt = serde_json::from_value(own.body).unwrap();
    assert_eq!(receipt.balance_after.map(|m| m.minor()), Some(32_001));
}

// ------------------------------------------------------------------ 4. cumulative limits

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn spending_without_the_pin_is_capped_per_session_and_per_day() {
    let t = TestServer::start().await;
    let a = t.kiosk("kiosk-a");
    t.register(&a, "frank", Some("2580")).await;
    t.deposit(&a, "frank", "900.00").await;
    // The issue's attack: 12 × 49.99 in one session, each under the 50.00 threshold.
    let tok = t.token(&a, "frank").await;
    let url = t.url("/v1/payments");
    let (counts, _) = flood(12, |_| {
        post(
            &a,
            url.clone(),
            Some(&rand_key()),
            Some(&tok),
            json!({"amount": eur("49.99")}),
        )
    })
    .await;
    assert_eq!(count(&counts, "ok"), 2, "100.00 per session: {counts:?}");
    assert_eq!(count(&counts, "pin_required"), 10, "{counts:?}");
    // With the PIN the shopper goes on.
    assert_eq!(
        pay(&t, &a, &tok, "49.99", Some("2580")).await.status,
        StatusCode::OK
    );
    // A new session: the session limit starts again, but the day's 200.00 does not.
    let tok2 = t.token(&a, "frank").await;
    assert_eq!(
        pay(&t, &a, &tok2, "49.99", None).await.status,
        StatusCode::OK
    );
    assert_eq!(
        pay(&t, &a, &tok2, "49.99", None).await.status,
        StatusCode::OK
    );
    let tok3 = t.token(&a, "frank").await;
    let over_day = pay(&t, &a, &tok3, "49.99", None).await;
    assert_eq!(
        over_day.code.as_deref(),
        Some("pin_required"),
        "day limit across sessions"
    );
    // Cash-outs and transfers count as well.
    let w = send(
        post(
            &a,
            t.url("/v1/withdrawals"),
            Some(&rand_key()),
            Some(&tok3),
            json!({"amount": eur("5.00")}),
        )
        .header(CASHIER_SESSION_HEADER, t.desk(&a).await),
    )
    .await;
    assert_eq!(w.code.as_deref(), Some("pin_required"));
    assert_eq!(t.balance_of("frank").await, 90_000 - 5 * 4_999);
    assert!(t.ledger().await.ok);
}

async fn set_pin(
    t: &TestServer,
    c: &Client,
    tok: &str,
    pin: &str,
    current: Option<&str>,
) -> Answer {
    let mut body = json!({ "pin": pin });
    if let Some(cur) = current {
        body["current_pin"] = json!(cur);
    }
    send(post(
        c,
        t.url("/v1/wallet/pin"),
        Some(&rand_key()),
        Some(tok),
        body,
    ))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_shopper_without_a_pin_has_the_same_limits_until_setting_one() {
    let t = TestServer::start().await;
    let a = t.kiosk("kiosk-a");
    t.register(&a, "gina", None).await;
    t.deposit(&a, "gina", "900.00").await;
    let tok = t.token(&a, "gina").await;
    // At the threshold there is no PIN to ask for: refused, and nothing moves.
    let big = pay(&t, &a, &tok, "50.00", None).await;
    assert_eq!(big.code.as_deref(), Some("pin_not_set"), "{big:?}");
    assert_eq!(big.status, StatusCode::FORBIDDEN);
    // Under it, the session's 100.00 without a PIN, then `pin_not_set` too.
    let (counts, _) = flood(4, |_| {
        let body = json!({"amount": eur("49.99")});
        post(
            &a,
            t.url("/v1/payments"),
            Some(&rand_key()),
            Some(&tok),
            body,
        )
    })
    .await;
    assert_eq!(count(&counts, "ok"), 2, "{counts:?}");
    assert_eq!(count(&counts, "pin_not_set"), 2, "{counts:?}");
    assert_eq!(t.balance_of("gina").await, 90_000 - 2 * 4_999);
    // Setting a PIN needs only the session the first time; then the PIN pays.
    assert_eq!(
        set_pin(&t, &a, &tok, "1357", None).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        pay(&t, &a, &tok, "60.00", Some("1357")).await.status,
        StatusCode::OK
    );
    assert_eq!(
        pay(&t, &a, &tok, "60.00", None).await.code.as_deref(),
        Some("pin_required")
    );
    // Changing it needs the current one: missing, wrong (a counted guess), then right.
    let missing = set_pin(&t, &a, &tok, "2468", None).await;
    assert_eq!(missing.code.as_deref(), Some("pin_required"));
    let wrong = set_pin(&t, &a, &tok, "2468", Some("0000")).await;
    assert_eq!(wrong.code.as_deref(), Some("invalid_pin"));
    let right = set_pin(&t, &a, &tok, "2468", Some("1357")).await;
    assert_eq!(right.status, StatusCode::NO_CONTENT);
    assert_eq!(
        pay(&t, &a, &tok, "60.00", Some("1357"))
            .await
            .code
            .as_deref(),
        Some("invalid_pin")
    );
    assert_eq!(
        pay(&t, &a, &tok, "60.00", Some("2468")).await.status,
        StatusCode::OK
    );
    // Bad input changes nothing: a malformed PIN, and no session at all.
    let bad = set_pin(&t, &a, &tok, "12a4", Some("2468")).await;
    assert_eq!(bad.code.as_deref(), Some("invalid_request"));
    assert_eq!(
        set_pin(&t, &a, "nope", "9999", None).await.code.as_deref(),
        Some("session_expired")
    );
    assert_eq!(
        pay(&t, &a, &tok, "60.00", Some("2468")).await.status,
        StatusCode::OK
    );
    assert_eq!(t.balance_of("gina").await, 90_000 - 2 * 4_999 - 3 * 6_000);
    assert!(t.ledger().await.ok);
}

// ------------------------------------------------------------------ 5. identification rate

async fn palm_login(
    t: &TestServer,
    c: &Client,
    probe: &palmline_shared::palm::Template,
    pin: Option<&str>,
) -> Answer {
    let mut body = json!({"method": "palm", "template": b64(probe)});
    if let Some(p) = pin {
        body["pin"] = json!(p);
    }
    send(post(c, t.url("/v1/sessions"), None, None, body)).await
}

async fn enroll(t: &TestServer, c: &Client, tok: &str, seed: u64) -> Answer {
    let p = palm(seed);
    let templates: Vec<String> = (0..3).map(|i| b64(&capture(&p, seed * 10 + i))).collect();
    send(post(
        c,
        t.url("/v1/palms"),
        Some(&rand_key()),
        Some(tok),
        json!({"templates": templates}),
    ))
    .await
}

async fn scan_count(t: &TestServer) -> usize {
    let (_, v) = t
        .get(&t.admin(), "/v1/admin/palm-scans?limit=1000", None)
        .await;
    v.as_array().unwrap().len()
}

/// Failures never slow a kiosk down here: only the identification rate is under test.
fn patient() -> PalmPolicy {
    PalmPolicy {
        free_failures: 10_000,
        ..PalmPolicy::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_identification_flood_gets_429_with_retry_after_and_success_resets_nothing() {
    let t = TestServer::start_tuned(patient(), |api| {
        api.identify.per_kiosk = 5;
        api.identify.per_merchant = 8;
        // An hour's window: no token comes back while the test runs, however slow.
        api.identify.window = Duration::from_secs(3600);
    })
    .await;
    let (a, b) = (t.kiosk("kiosk-a"), t.kiosk("kiosk-b"));
    t.register(&a, "gina", None).await;
    let tok = t.token(&a, "gina").await;
    // Enrollment's duplicate check is 1:N identification: 3 captures, 3 attempts.
    let e = enroll(&t, &a, &tok, 7).await;
    assert_eq!(e.status, StatusCode::CREATED, "{:?}", e.body);
    let gina = capture(&palm(7), 99);
    assert_eq!(palm_login(&t, &a, &gina, None).await.status, StatusCode::OK);
    // One token left at kiosk A; the success above gave nothing back.
    assert_eq!(
        palm_login(&t, &a, &capture(&palm(500), 1), None)
            .await
            .code
            .as_deref(),
        Some("palm_not_recognised")
    );
    let limited = palm_login(&t, &a, &gina, None).await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.code.as_deref(), Some("rate_limited"));
    // One token per 720 s at 5 an hour.
    assert!(
        limited
            .retry_after
            .is_some_and(|s| (600..=720).contains(&s)),
        "{limited:?}"
    );

    // The merchant's budget (8) is shared by its kiosks: 5 used at A, 3 left for kiosk C.
    let c = extra_kiosk(&t, "kiosk-c", "Shop A");
    let url = t.url("/v1/payments/palm");
    let stranger = b64(&capture(&palm(501), 2));
    let (counts, answers) = flood(24, |_| {
        post(
            &c,
            url.clone(),
            Some(&rand_key()),
            None,
            json!({"template": stranger, "amount": eur("1.00")}),
        )
    })
    .await;
    assert_eq!(count(&counts, "palm_not_recognised"), 3, "{counts:?}");
    assert_eq!(count(&counts, "rate_limited"), 21, "{counts:?}");
    assert!(answers
        .iter()
        .filter(|a| a.status == StatusCode::TOO_MANY_REQUESTS)
        .all(|a| a.retry_after.is_some_and(|s| s >= 1)));

    // Another merchant's kiosk is not affected, and every refusal is in the scan log.
    assert_eq!(palm_login(&t, &b, &gina, None).await.status, StatusCode::OK);
    let (_, log) = t
        .get(&t.admin(), "/v1/admin/palm-scans?limit=1000", None)
        .await;
    let limited_logged = log
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["outcome"] == "rate_limited")
        .count();
    assert_eq!(limited_logged, 22);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn step_up_answers_cost_attempts_and_step_up_pins_lock_per_kiosk() {
    // Every recognised palm lands in the grey zone (accept unreachable).
    let policy = PalmPolicy {
        accept: 100_000,
        ..patient()
    };
    let t = TestServer::start_tuned(policy, |api| {
        api.identify.per_kiosk = 80;
        api.identify.per_merchant = 200;
        api.identify.window = Duration::from_secs(3600);
    })
    .await;
    let (a, b) = (t.kiosk("kiosk-a"), t.kiosk("kiosk-b"));
    t.register(&a, "hank", Some("1357")).await;
    let tok = t.token(&a, "hank").await;
    assert_eq!(enroll(&t, &a, &tok, 9).await.status, StatusCode::CREATED);
    let hank = capture(&palm(9), 77);
    assert_eq!(
        palm_login(&t, &a, &hank, None).await.code.as_deref(),
        Some("step_up_required")
    );

    // 64 wrong step-up PINs at once: 5 checked, the rest refused before argon2.
    let url = t.url("/v1/sessions");
    let probe = b64(&hank);
    let (counts, _) = flood(64, |i| {
        post(
            &a,
            url.clone(),
            None,
            None,
            json!({"method": "palm", "template": probe, "pin": format!("{:04}", 2000 + i)}),
        )
    })
    .await;
    assert_eq!(count(&counts, "invalid_pin"), 5, "{counts:?}");
    assert_eq!(count(&counts, "account_locked"), 59, "{counts:?}");
    // The right PIN is refused at kiosk A, works at kiosk B; the password was never locked.
    assert_eq!(
        palm_login(&t, &a, &hank, Some("1357"))
            .await
            .code
            .as_deref(),
        Some("account_locked")
    );
    assert_eq!(
        palm_login(&t, &b, &hank, Some("1357")).await.status,
        StatusCode::OK
    );
    assert_eq!(
        login(&t, &a, "hank", "password123").await.status,
        StatusCode::OK
    );

    // Each of those answers revealed a match, and each cost an identification attempt:
    // 3 (enrollment) + 1 + 64 + 1 at kiosk A; 11 of its 80 are left.
    let (counts, _) = flood(20, |_| {
        post(
            &a,
            url.clone(),
            None,
            None,
            json!({"method": "palm", "template": probe}),
        )
    })
    .await;
    assert_eq!(count(&counts, "step_up_required"), 11, "{counts:?}");
    assert_eq!(count(&counts, "rate_limited"), 9, "{counts:?}");
}

// ------------------------------------------------------------------ 6. bounded fields

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_long_fields_are_refused_before_any_work_and_never_echoed() {
    let t = TestServer::start().await;
    let a = t.kiosk("kiosk-a");
    t.register(&a, "ivan", Some("8642")).await;
    t.deposit(&a, "ivan", "50.00").await;
    let tok = t.token(&a, "ivan").await;
    let scans_before = scan_count(&t).await;
    let ledger_before = t.ledger().await.transactions_checked;
    let long = "z".repeat(20_000);
    let probe = b64(&capture(&palm(3), 1));
    let attacks: Vec<(&str, Option<&str>, Value)> = vec![
        (
            "/v1/payments/palm",
            None,
            json!({"template": probe, "amount": eur("1.00"), "description": long}),
        ),
        (
            "/v1/payments",
            Some(&tok),
            json!({"amount": eur("1.00"), "description": long}),
        ),
        (
            "/v1/transfers",
            Some(&tok),
            json!({"to_username": "ivan2", "amount": eur("1.00"), "note": long}),
        ),
        (
            "/v1/transfers",
            Some(&tok),
            json!({"to_username": long, "amount": eur("1.00")}),
        ),
        (
            "/v1/deposits",
            None,
            json!({"username": long, "amount": eur("1.00")}),
        ),
        ("/v1/sessions", None, login_body(&long, "password123")),
        ("/v1/sessions", None, login_body("ivan", &long)),
        (
            "/v1/sessions",
            None,
            json!({"method": "palm", "template": "A".repeat(40_000)}),
        ),
        (
            "/v1/sessions",
            None,
            json!({"method": "palm", "template": probe, "pin": long}),
        ),
        (
            "/v1/shoppers",
            None,
            json!({"username": long, "email": "a@b.co", "password": "password123"}),
        ),
        (
            "/v1/shoppers",
            None,
            json!({"username": "jack", "email": format!("{long}@b.co"), "password": "password123"}),
        ),
        (
            "/v1/payments",
            Some(&tok),
            json!({"amount": {"amount": long, "currency": "EUR"}}),
        ),
        (
            "/v1/payments",
            Some(&tok),
            json!({"amount": eur("60.00"), "pin": long}),
        ),
    ];
    let desk = t.desk(&a).await;
    for (path, token, body) in attacks {
        let r = send(
            post(&a, t.url(path), Some(&rand_key()), token, body)
                .header(CASHIER_SESSION_HEADER, &desk),
        )
        .await;
        assert!(r.status.is_client_error(), "{path}: {:?}", r.status);
        let code = r.code.clone().unwrap_or_default();
        assert!(
            ["invalid_request", "invalid_template", "invalid_amount"].contains(&code.as_str()),
            "{path}: {code}"
        );
        let msg = r.body["error"]["message"].as_str().unwrap();
        assert!(
            msg.len() < 200 && !msg.contains("zzzzzzzz"),
            "{path} echoes: {msg}"
        );
    }
    let refund = json!({"payment_id": 1, "amount": eur("1.00"), "reason": long});
    let r = send(post(
        &t.admin(),
        t.url("/v1/admin/refunds"),
        Some(&rand_key()),
        None,
        refund,
    ))
    .await;
    assert_eq!(
        r.code.as_deref(),
        Some("invalid_request"),
        "checked before the payment is looked up"
    );
    // Nothing changed: no identification ran, no money moved, nobody registered, and the
    // session is still good.
    assert_eq!(scan_count(&t).await, scans_before);
    assert_eq!(t.ledger().await.transactions_checked, ledger_before);
    let (_, rows) = t.get(&t.admin(), "/v1/admin/accounts?q=jack", None).await;
    assert_eq!(rows.as_array().unwrap().len(), 0);
    assert_eq!(
        pay(&t, &a, &tok, "60.00", None).await.code.as_deref(),
        Some("pin_required")
    );
}

// ------------------------------------------------------------------ 7. junk enrollment

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_copies_of_one_random_template_do_not_enroll() {
    let t = TestServer::start().await;
    let a = t.kiosk("kiosk-a");
    t.register(&a, "judy", None).await;
    let tok = t.token(&a, "judy").await;
    let junk = b64(&capture(&palm(4242), 1));
    let r = send(post(
        &a,
        t.url("/v1/palms"),
        Some(&rand_key()),
        Some(&tok),
        json!({"templates": [junk, junk, junk]}),
    ))
    .await;
    assert_eq!(
        r.code.as_deref(),
        Some("palm_templates_inconsistent"),
        "{:?}",
        r.body
    );
    let (_, rows) = t.get(&t.admin(), "/v1/admin/accounts?q=judy", None).await;
    assert_eq!(rows[0]["palm_enrolled"], false);
}

// ------------------------------------------------------------------ 8. PKI

/// Waits until the server has reloaded its CRL `seen` times or more (the reloader's
/// signal, never a fixed sleep).
async fn crl_reloaded_after(t: &TestServer, seen: u64) {
    let mut reloads = t.running.crl_reloads.clone();
    tokio::time::timeout(Duration::from_secs(30), async {
        while *reloads.borrow_and_update() == seen {
            reloads.changed().await.unwrap();
        }
    })
    .await
    .expect("the CRL was not reloaded");
}

async fn health(c: Client, t: &TestServer) -> Result<StatusCode, reqwest::Error> {
    c.get(t.url("/v1/health")).send().await.map(|r| r.status())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kiosk_id_is_reissued_only_by_replacing_and_revoking_the_old_certificate() {
    let t = TestServer::start().await;
    let pki = t.pki();
    let (c, k) = pki.kiosk_paths("kiosk-b");
    let old_pem = std::fs::read(&c).unwrap();
    let err = pki.issue_kiosk("kiosk-b", "Shop B", 30).unwrap_err();
    assert!(err.to_string().contains("--replace"), "{err}");
    assert_eq!(
        std::fs::read(&c).unwrap(),
        old_pem,
        "a refusal writes nothing"
    );
    // Keep the old certificate and key, as a thief of the old kiosk would.
    let stolen = tempfile::tempdir().unwrap();
    let (sc, sk) = (stolen.path().join("c.pem"), stolen.path().join("k.pem"));
    std::fs::copy(&c, &sc).unwrap();
    std::fs::copy(&k, &sk).unwrap();
    assert_eq!(
        health(t.client_for(&sc, &sk), &t).await.unwrap(),
        StatusCode::OK
    );
    let seen = *t.running.crl_reloads.borrow();
    let r = pki.replace_kiosk("kiosk-b", "Shop B", 30).unwrap();
    assert_eq!(r.revoked.len(), 1);
    crl_reloaded_after(&t, seen).await;
    assert!(
        health(t.client_for(&sc, &sk), &t).await.is_err(),
        "the replaced certificate fails the handshake"
    );
    assert_eq!(
        health(t.kiosk("kiosk-b"), &t).await.unwrap(),
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_a_kiosk_by_role_leaves_the_admin_of_the_same_name_working() {
    let t = TestServer::start().await;
    let pki = t.pki();
    pki.issue_admin("kiosk-a", 30).unwrap();
    let (ac, ak) = pki.admin_paths("kiosk-a");
    assert!(
        "kiosk-a"
            .parse::<palmline_server::pki::RevokeTarget>()
            .is_err(),
        "a bare name is refused: it could mean either role"
    );
    let seen = *t.running.crl_reloads.borrow();
    let target = "kiosk:kiosk-a".parse().unwrap();
    assert_eq!(pki.revoke(&target).unwrap().len(), 1);
    crl_reloaded_after(&t, seen).await;
    assert!(health(t.kiosk("kiosk-a"), &t).await.is_err());
    let admin = t.client_for(&ac, &ak);
    let (s, _) = t.get(&admin, "/v1/admin/kiosks", None).await;
    assert_eq!(s, StatusCode::OK, "the admin named kiosk-a is untouched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_runs_without_the_ca_key_and_takes_a_crl_signed_offline() {
    let dir = TestServer::prepared_dir();
    let pki = palmline_server::pki::Pki::new(dir.path());
    // The operator's offline copy of the PKI keeps the CA key; the server's has none.
    let offline = tempfile::tempdir().unwrap();
    let off_pki = offline.path().join("pki");
    std::fs::create_dir_all(&off_pki).unwrap();
    for f in ["ca.pem", "ca.key", "index.json", "crl.pem"] {
        std::fs::copy(pki.dir().join(f), off_pki.join(f)).unwrap();
    }
    std::fs::remove_file(pki.ca_key_path()).unwrap();
    let t = TestServer::start_in(dir, PalmPolicy::default(), |_| {}).await;
    assert_eq!(
        health(t.kiosk("kiosk-b"), &t).await.unwrap(),
        StatusCode::OK
    );
    assert!(
        t.pki().issue_kiosk("kiosk-c", "Shop C", 30).is_err(),
        "nothing can be issued where the server runs"
    );
    let seen = *t.running.crl_reloads.borrow();
    let off = palmline_server::pki::Pki::new(offline.path());
    off.revoke(&"kiosk:kiosk-b".parse().unwrap()).unwrap();
    std::fs::copy(off.crl_path(), t.pki().crl_path()).unwrap();
    crl_reloaded_after(&t, seen).await;
    assert!(health(t.kiosk("kiosk-b"), &t).await.is_err());
    assert_eq!(
        health(t.kiosk("kiosk-a"), &t).await.unwrap(),
        StatusCode::OK
    );
    assert!(!t.pki().ca_key_path().exists());
}

// ------------------------------------------------------------------ 9. start-up

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_that_does_not_open_is_skipped_at_start_up_and_reported() {
    let t = TestServer::start().await;
    let a = t.kiosk("kiosk-a");
    for (name, seed) in [("kim", 71), ("lee", 72)] {
        t.register(&a, name, None).await;
        let tok = t.token(&a, name).await;
        let r = enroll(&t, &a, &tok, seed).await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    }
    drop(a);
    let dir = t.stop().await;
    let db = rusqlite::Connection::open(dir.path().join("palmline.db")).unwrap();
    let damaged = db
        .execute(
            "UPDATE palm_templates SET ciphertext = X'01020304' WHERE idx = 1 AND account_id =
               (SELECT id FROM accounts WHERE name = 'kim')",
            [],
        )
        .unwrap();
    assert_eq!(damaged, 1);
    drop(db);
    let t = TestServer::start_in(dir, PalmPolicy::default(), |_| {}).await;
    assert_eq!(t.running.loaded.enrolled, 1);
    assert_eq!(t.running.loaded.skipped, 1);
    let a = t.kiosk("kiosk-a");
    let lee = palm_login(&t, &a, &capture(&palm(72), 9_999), None).await;
    assert_eq!(lee.status, StatusCode::OK, "{:?}", lee.body);
    let kim = palm_login(&t, &a, &capture(&palm(71), 9_999), None).await;
    assert_eq!(kim.code.as_deref(), Some("palm_not_recognised"));

    // The operator lists whom to ask to enroll again; a kiosk may not.
    let (s, v) = t.get(&t.admin(), "/v1/admin/palms/skipped", None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let rows = v.as_array().unwrap();
    assert_eq!(rows.len(), 1, "{v}");
    assert_eq!(rows[0]["username"], "kim");
    let kim_id = rows[0]["account_id"].as_i64().unwrap();
    let (s, _) = t.get(&a, "/v1/admin/palms/skipped", None).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // Once the palm is deleted (so that kim can enroll again), the list is empty.
    let path = format!("/v1/admin/accounts/{kim_id}/palm");
    let deleted = t
        .admin()
        .delete(t.url(&path))
        .header("Idempotency-Key", rand_key())
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    let (_, v) = t.get(&t.admin(), "/v1/admin/palms/skipped", None).await;
    assert_eq!(v, json!([]));
    let r = enroll(&t, &a, &t.token(&a, "kim").await, 71).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
}

// ------------------------------------------------------------------ 10. enrollment races

fn enroll_body(seed: u64) -> Value {
    let p = palm(seed);
    let templates: Vec<String> = (0..3).map(|i| b64(&capture(&p, seed * 10 + i))).collect();
    json!({"templates": templates})
}

fn count_code(answers: &[Answer], code: &str) -> usize {
    answers
        .iter()
        .filter(|r| r.code.as_deref() == Some(code))
        .count()
}

fn delete_palm(t: &TestServer, c: &Client, tok: &str, key: &str) -> reqwest::RequestBuilder {
    c.delete(t.url("/v1/palms/me"))
        .header(IDEMPOTENCY_HEADER, key)
        .bearer_auth(tok)
}

/// No identification limit gets in the way of the races below.
async fn roomy() -> TestServer {
    TestServer::start_tuned(patient(), |api| {
        api.identify.per_kiosk = 10_000;
        api.identify.per_merchant = 10_000;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replayed_palm_deletion_never_removes_a_palm_enrolled_since() {
    let t = roomy().await;
    let a = t.kiosk("kiosk-a");
    t.register(&a, "mia", None).await;
    let tok = t.token(&a, "mia").await;
    let enroll_url = t.url("/v1/palms");
    let first = send(post(
        &a,
        enroll_url.clone(),
        Some("e1"),
        Some(&tok),
        enroll_body(81),
    ))
    .await;
    assert_eq!(first.status, StatusCode::CREATED);
    let gone = send(delete_palm(&t, &a, &tok, "d1")).await;
    assert_eq!(gone.status, StatusCode::NO_CONTENT);
    let probe = capture(&palm(81), 5_000);
    let absent = palm_login(&t, &a, &probe, None).await;
    assert_eq!(absent.code.as_deref(), Some("palm_not_recognised"));
    // Enroll again while 24 replays of the old deletion arrive, then once more after.
    let mut reqs: Vec<reqwest::RequestBuilder> =
        (0..24).map(|_| delete_palm(&t, &a, &tok, "d1")).collect();
    reqs.insert(
        12,
        post(
            &a,
            enroll_url.clone(),
            Some("e2"),
            Some(&tok),
            enroll_body(81),
        ),
    );
    let mut answers = join_all(reqs.into_iter().map(send).collect()).await;
    assert_eq!(answers.remove(12).status, StatusCode::CREATED);
    // Replays of one key at once: each is replayed or told the key is in flight.
    let replayed = answers
        .iter()
        .filter(|r| r.status == StatusCode::NO_CONTENT)
        .count();
    let in_flight = count_code(&answers, "idempotency_in_flight");
    assert!(replayed >= 1 && replayed + in_flight == 24, "{answers:?}");
    assert_eq!(
        send(delete_palm(&t, &a, &tok, "d1")).await.status,
        StatusCode::NO_CONTENT
    );
    let back = palm_login(&t, &a, &probe, None).await;
    assert_eq!(
        back.status,
        StatusCode::OK,
        "the new enrollment stays: {:?}",
        back.body
    );
    // And the other way round: a replayed enrollment does not bring a deleted palm back.
    assert_eq!(
        send(delete_palm(&t, &a, &tok, "d2")).await.status,
        StatusCode::NO_CONTENT
    );
    let replay = send(post(
        &a,
        enroll_url,
        Some("e2"),
        Some(&tok),
        enroll_body(81),
    ))
    .await;
    assert_eq!(replay.status, StatusCode::CREATED);
    let after = palm_login(&t, &a, &probe, None).await;
    assert_eq!(after.code.as_deref(), Some("palm_not_recognised"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_enrollments_of_one_palm_let_exactly_one_through() {
    let t = roomy().await;
    let a = t.kiosk("kiosk-a");
    let mut tokens = Vec::new();
    for i in 0..16 {
        let name = format!("twin{i:02}");
        t.register(&a, &name, None).await;
        tokens.push(t.token(&a, &name).await);
    }
    let url = t.url("/v1/palms");
    let (counts, answers) = flood(16, |i| {
        post(
            &a,
            url.clone(),
            Some(&rand_key()),
            Some(&tokens[i]),
            enroll_body(91),
        )
    })
    .await;
    assert_eq!(count(&counts, "ok"), 1, "{answers:?}");
    assert_eq!(count(&counts, "palm_already_enrolled"), 15, "{counts:?}");
    let (_, rows) = t.get(&t.admin(), "/v1/admin/accounts?q=twin", None).await;
    let enrolled = rows
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["palm_enrolled"] == true)
        .count();
    assert_eq!(enrolled, 1, "one palm, one account");
}
