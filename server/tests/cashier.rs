//! Cashiers (issue 12) against a real server over mutual TLS, on SQLite and (where a
//! PostgreSQL server listens) on PostgreSQL: the cash desk needs a cashier session of the
//! kiosk's own merchant, a cashier's PIN is counted before it is checked and locks, a
//! disabled cashier is refused, the day's report shows cash per cashier, and bad input to
//! the operator endpoints changes nothing.

mod common;

use common::pg::{fresh_db, PgDb};
use common::{eur, rand_key, TestServer};
use palmline_server::api::ApiConfig;
use palmline_server::config::Database;
use palmline_server::palm::PalmPolicy;
use palmline_shared::api::*;
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};

/// A server on SQLite, or on a fresh PostgreSQL database (`None`: no PostgreSQL here,
/// skipped loudly by `fresh_db`).
async fn server(pg: Option<&PgDb>, tune: impl FnOnce(&mut ApiConfig)) -> TestServer {
    let database = match pg {
        Some(db) => Database::Postgres(db.url.clone()),
        None => Database::Sqlite,
    };
    TestServer::start_on(
        TestServer::prepared_dir(),
        database,
        PalmPolicy::default(),
        tune,
    )
    .await
}

/// Runs `test` on SQLite, then on PostgreSQL if a server listens.
macro_rules! on_both_stores {
    ($name:ident, $tag:literal) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                super::$name(None).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                let Some(db) = super::fresh_db($tag).await else {
                    return;
                };
                super::$name(Some(&db)).await;
                db.drop_db().await;
            }
        }
    };
}

on_both_stores!(the_cash_desk_needs_a_cashier_of_this_kiosk, "desk");
on_both_stores!(
    wrong_cashier_pins_are_counted_before_checked_and_lock,
    "cpin"
);
on_both_stores!(a_disabled_cashier_is_refused_everywhere, "cdis");
on_both_stores!(the_day_shows_cash_per_cashier, "cday");
on_both_stores!(bad_cashier_input_is_refused_and_changes_nothing, "cbad");
on_both_stores!(the_operator_unlocks_a_cashier_and_changes_the_pin, "cops");

/// A deposit of `amount` for `who` with this cashier token (`None`: no header).
async fn deposit(
    t: &TestServer,
    c: &Client,
    cashier: Option<&str>,
    who: &str,
    amount: &str,
) -> (StatusCode, Value) {
    let body = json!({"username": who, "amount": eur(amount)}).to_string();
    t.post_as(
        c,
        "/v1/deposits",
        (Some(&rand_key()), None, cashier),
        body.into_bytes(),
    )
    .await
}

async fn withdraw(
    t: &TestServer,
    c: &Client,
    (shopper, cashier): (&str, Option<&str>),
    amount: &str,
) -> (StatusCode, Value) {
    let body = json!({"amount": eur(amount)}).to_string();
    t.post_as(
        c,
        "/v1/withdrawals",
        (Some(&rand_key()), Some(shopper), cashier),
        body.into_bytes(),
    )
    .await
}

/// A new cashier: its id.
async fn hire(t: &TestServer, merchant: &str, name: &str, pin: &str) -> i64 {
    let (s, v) = t.add_cashier(merchant, name, pin).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["status"], "active");
    assert!(v.get("pin_hash").is_none() && !v.to_string().contains(pin));
    v["id"].as_i64().unwrap()
}

/// A cashier's session token at kiosk `c`.
async fn sign_in(t: &TestServer, c: &Client, name: &str, pin: &str) -> String {
    let (s, v) = t.cashier_login(c, name, pin).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v["token"].as_str().unwrap().to_string()
}

/// Every cashier, as the operator lists them.
async fn list(t: &TestServer) -> (StatusCode, Value) {
    t.get(&t.admin(), "/v1/admin/cashiers", None).await
}

/// One cashier's line of a day: id, name, deposits (count, total), withdrawals (count,
/// total), net.
type Line = (Option<i64>, String, i64, String, i64, String, String);

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

async fn the_cash_desk_needs_a_cashier_of_this_kiosk(pg: Option<&PgDb>) {
    let t = server(pg, |_| {}).await;
    let (a, b) = (t.kiosk("kiosk-a"), t.kiosk("kiosk-b"));
    t.register(&a, "alice", Some("4826")).await;
    hire(&t, "Shop A", "Ann", "1357").await;
    let ann = sign_in(&t, &a, "Ann", "1357").await;
    let (s, v) = deposit(&t, &a, Some(&ann), "alice", "30.00").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let before = t.ledger().await;
    assert!(before.ok);

    // No cashier, a forged one: refused with typed errors, nothing moves.
    let (s, v) = deposit(&t, &a, None, "alice", "5.00").await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::UNAUTHORIZED, "cashier_session_required")
    );
    let (s, v) = deposit(&t, &a, Some("forged-token"), "alice", "5.00").await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::UNAUTHORIZED, "cashier_session_expired")
    );
    let shopper = t.token(&a, "alice").await;
    let (s, v) = withdraw(&t, &a, (&shopper, None), "5.00").await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::UNAUTHORIZED, "cashier_session_required")
    );
    // Refused before the PIN rule: a withdrawal without a cashier costs no PIN guess.
    let body = json!({"amount": eur("60.00"), "pin": "0000"}).to_string();
    for _ in 0..6 {
        let (s, v) = t
            .post_as(
                &a,
                "/v1/withdrawals",
                (Some(&rand_key()), Some(&shopper), Some("forged")),
                body.clone().into_bytes(),
            )
            .await;
        assert_eq!(code(&v), "cashier_session_expired", "{s} {v}");
    }
    let (s, v) = t
        .post_as(
            &a,
            "/v1/withdrawals",
            (Some(&rand_key()), Some(&shopper), Some(&ann)),
            json!({"amount": eur("60.00"), "pin": "4826"})
                .to_string()
                .into_bytes(),
        )
        .await;
    assert_eq!(
        code(&v),
        "insufficient_funds",
        "the right PIN still works: {s} {v}"
    );

    // Merchant B's kiosk: Ann is nobody there, and her token is bound to kiosk-a.
    let (s, v) = t.cashier_login(&b, "Ann", "1357").await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::UNAUTHORIZED, "invalid_credentials")
    );
    let (s, v) = deposit(&t, &b, Some(&ann), "alice", "5.00").await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::UNAUTHORIZED, "cashier_session_expired")
    );
    let at_b = t.token(&b, "alice").await;
    let (s, v) = withdraw(&t, &b, (&at_b, Some(&ann)), "5.00").await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::UNAUTHORIZED, "cashier_session_expired")
    );
    // An operator certificate is no cashier either.
    let (s, v) = deposit(&t, &t.admin(), Some(&ann), "alice", "5.00").await;
    assert_eq!((s, code(&v)), (StatusCode::FORBIDDEN, "forbidden"));

    let after = t.ledger().await;
    // (Kiosk-b's first call opened Shop B's accounts, empty: no transaction, no money.)
    assert!(after.ok && after.total_balance_minor == 0, "{after:?}");
    assert_eq!(
        after.transactions_checked, before.transactions_checked,
        "nothing moved"
    );
    assert_eq!(t.balance_of("alice").await, 3_000);

    // Ann's withdrawal at her own till goes through and is hers.
    let (s, v) = withdraw(&t, &a, (&shopper, Some(&ann)), "10.00").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(t.balance_of("alice").await, 2_000);
    t.stop().await;
}

async fn wrong_cashier_pins_are_counted_before_checked_and_lock(pg: Option<&PgDb>) {
    let t = server(pg, |api| {
        api.guesses.lock_after = 5;
        api.guesses.max_per_day = 100;
    })
    .await;
    let a = t.kiosk("kiosk-a");
    hire(&t, "Shop A", "Bo", "246810").await;
    hire(&t, "Shop A", "Cy", "1111").await;
    // One wrong PIN is counted, a right one clears the count.
    let (s, v) = t.cashier_login(&a, "Bo", "000000").await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::UNAUTHORIZED, "invalid_credentials")
    );
    sign_in(&t, &a, "Bo", "246810").await;

    // 48 wrong PINs at once: 5 are checked (and wrong), the rest are refused unchecked.
    let url = t.url("/v1/cashier-sessions");
    let tries: Vec<_> = (0..48)
        .map(|i| {
            let (a, url) = (a.clone(), url.clone());
            let body = json!({"name": "Bo", "pin": format!("{:06}", 900_000 + i)});
            tokio::spawn(async move {
                let r = a.post(url).json(&body).send().await.unwrap();
                let s = r.status();
                (s, r.json::<Value>().await.unwrap_or(Value::Null))
            })
        })
        .collect();
    let mut answers = Vec::new();
    for h in tries {
        answers.push(h.await.unwrap());
    }
    let wrong = answers
        .iter()
        .filter(|(s, v)| *s == StatusCode::UNAUTHORIZED && code(v) == "invalid_credentials")
        .count();
    let locked = answers
        .iter()
        .filter(|(s, v)| *s == StatusCode::FORBIDDEN && code(v) == "account_locked")
        .count();
    assert_eq!((wrong, locked), (5, 43), "{answers:?}");
    // Locked now: even the right PIN is refused, with a Retry-After.
    let resp = a
        .post(t.url("/v1/cashier-sessions"))
        .json(&json!({"name": "Bo", "pin": "246810"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let wait: u64 = resp.headers()[RETRY_AFTER_HEADER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((800..=900).contains(&wait), "{wait}");
    // Another cashier of the same shop is not locked by Bo's guesses.
    sign_in(&t, &a, "Cy", "1111").await;
    // An unknown name is refused like a wrong PIN.
    let (s, v) = t.cashier_login(&a, "Nobody", "1111").await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::UNAUTHORIZED, "invalid_credentials")
    );
    t.stop().await;
}

async fn a_disabled_cashier_is_refused_everywhere(pg: Option<&PgDb>) {
    let t = server(pg, |_| {}).await;
    let a = t.kiosk("kiosk-a");
    t.register(&a, "dora", None).await;
    let id = hire(&t, "Shop A", "Dee", "8080").await;
    let dee = sign_in(&t, &a, "Dee", "8080").await;
    let (s, v) = deposit(&t, &a, Some(&dee), "dora", "12.00").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = t
        .post(
            &t.admin(),
            &format!("/v1/admin/cashiers/{id}/disable"),
            &rand_key(),
            json!({}),
        )
        .await;
    assert_eq!(
        (s, v["status"].as_str()),
        (StatusCode::OK, Some("disabled")),
        "{v}"
    );
    let before = t.ledger().await;
    // Her open session stops working, and she cannot sign in again.
    let (s, v) = deposit(&t, &a, Some(&dee), "dora", "1.00").await;
    assert_eq!((s, code(&v)), (StatusCode::FORBIDDEN, "cashier_disabled"));
    let (s, v) = t.cashier_login(&a, "Dee", "8080").await;
    assert_eq!((s, code(&v)), (StatusCode::FORBIDDEN, "cashier_disabled"));
    assert_eq!(t.ledger().await, before);
    assert_eq!(t.balance_of("dora").await, 1_200);
    // Unknown ids, and kiosks, cannot disable.
    let (s, v) = t
        .post(
            &t.admin(),
            "/v1/admin/cashiers/98765/disable",
            &rand_key(),
            json!({}),
        )
        .await;
    assert_eq!((s, code(&v)), (StatusCode::NOT_FOUND, "unknown_cashier"));
    let (s, v) = t
        .post(
            &a,
            &format!("/v1/admin/cashiers/{id}/disable"),
            &rand_key(),
            json!({}),
        )
        .await;
    assert_eq!((s, code(&v)), (StatusCode::FORBIDDEN, "forbidden"));
    t.stop().await;
}

async fn the_day_shows_cash_per_cashier(pg: Option<&PgDb>) {
    let t = server(pg, |_| {}).await;
    let (a, b) = (t.kiosk("kiosk-a"), t.kiosk("kiosk-b"));
    for who in ["eve", "fay"] {
        t.register(&a, who, None).await;
    }
    let eli = hire(&t, "Shop A", "Eli", "1212").await;
    let flo = hire(&t, "Shop A", "Flo", "3434").await;
    let gus = hire(&t, "Shop B", "Gus", "5656").await;
    let (e, f) = (
        sign_in(&t, &a, "Eli", "1212").await,
        sign_in(&t, &a, "Flo", "3434").await,
    );
    let g = sign_in(&t, &b, "Gus", "5656").await;
    for (token, who, amount) in [
        (&e, "eve", "10.00"),
        (&e, "fay", "5.50"),
        (&f, "eve", "7.00"),
    ] {
        let (s, v) = deposit(&t, &a, Some(token), who, amount).await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }
    let (s, v) = deposit(&t, &b, Some(&g), "fay", "2.00").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let eve = t.token(&a, "eve").await;
    let (s, v) = withdraw(&t, &a, (&eve, Some(&f)), "3.00").await;
    assert_eq!(s, StatusCode::OK, "{v}");

    let (s, v) = t.get(&a, "/v1/merchant/today", None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let today: DailyTotals = serde_json::from_value(v).unwrap();
    let line = |c: &CashierTotals| {
        (
            c.cashier_id,
            c.name.clone(),
            c.deposits_count,
            c.deposits_total.amount_string(),
            c.withdrawals_count,
            c.withdrawals_total.amount_string(),
            c.cash_net.amount_string(),
        )
    };
    let lines: Vec<_> = today.cashiers.iter().map(line).collect();
    let want: Vec<Line> = vec![
        (
            Some(eli),
            "Eli".into(),
            2,
            "15.50".into(),
            0,
            "0.00".into(),
            "15.50".into(),
        ),
        (
            Some(flo),
            "Flo".into(),
            1,
            "7.00".into(),
            1,
            "3.00".into(),
            "4.00".into(),
        ),
    ];
    assert_eq!(lines, want);
    assert_eq!(
        today.cash_net.amount_string(),
        "19.50",
        "the cashiers add up"
    );

    let (s, v) = t.get(&t.admin(), "/v1/admin/reports/daily", None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let report: DailyReport = serde_json::from_value(v).unwrap();
    let shop = |m: &str| report.merchants.iter().find(|t| t.merchant == m).unwrap();
    assert_eq!(shop("Shop A").cashiers, today.cashiers);
    let b_lines: Vec<_> = shop("Shop B").cashiers.iter().map(line).collect();
    let want: Vec<Line> = vec![(
        Some(gus),
        "Gus".into(),
        1,
        "2.00".into(),
        0,
        "0.00".into(),
        "2.00".into(),
    )];
    assert_eq!(b_lines, want);
    t.stop().await;
}

async fn bad_cashier_input_is_refused_and_changes_nothing(pg: Option<&PgDb>) {
    let t = server(pg, |_| {}).await;
    let a = t.kiosk("kiosk-a");
    hire(&t, "Shop A", "Hal", "4455").await;
    let (s, before) = list(&t).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(before.as_array().unwrap().len(), 1, "{before}");
    let long = "z".repeat(5_000);
    let bad = [
        json!({"merchant": "Shop A", "name": "Ivy", "pin": "123"}),
        json!({"merchant": "Shop A", "name": "Ivy", "pin": "1234567890123"}),
        json!({"merchant": "Shop A", "name": "Ivy", "pin": "12a4"}),
        json!({"merchant": "Shop A", "name": "Ivy", "pin": long}),
        json!({"merchant": "Shop A", "name": "", "pin": "1234"}),
        json!({"merchant": "Shop A", "name": " Ivy", "pin": "1234"}),
        json!({"merchant": "Shop A", "name": "I\u{7}vy", "pin": "1234"}),
        json!({"merchant": "Shop A", "name": "é".repeat(33), "pin": "1234"}),
        json!({"merchant": "Shop A", "name": long, "pin": "1234"}),
        json!({"merchant": "", "name": "Ivy", "pin": "1234"}),
        json!({"merchant": long, "name": "Ivy", "pin": "1234"}),
        json!({"merchant": "Shop A", "name": "Ivy"}),
    ];
    for body in bad {
        let (s, v) = t
            .post(&t.admin(), "/v1/admin/cashiers", &rand_key(), body.clone())
            .await;
        assert_eq!(
            (s, code(&v)),
            (StatusCode::BAD_REQUEST, "invalid_request"),
            "{body}"
        );
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.len() < 200 && !msg.contains("zzzz"), "echoes: {msg}");
    }
    let (s, v) = t.add_cashier("Shop A", "Hal", "9999").await;
    assert_eq!((s, code(&v)), (StatusCode::CONFLICT, "cashier_exists"));
    // A kiosk cannot hire.
    let (s, v) = t
        .post(
            &a,
            "/v1/admin/cashiers",
            &rand_key(),
            json!({"merchant": "Shop A", "name": "Ivy", "pin": "1234"}),
        )
        .await;
    assert_eq!((s, code(&v)), (StatusCode::FORBIDDEN, "forbidden"));
    let (_, after) = list(&t).await;
    assert_eq!(after, before, "nothing was created");
    // The same name at another merchant is another cashier.
    hire(&t, "Shop B", "Hal", "4455").await;
    let (_, v) = t
        .get(&t.admin(), "/v1/admin/cashiers?merchant=Shop%20B", None)
        .await;
    let rows: Vec<Cashier> = serde_json::from_value(v).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0].merchant.as_str(), rows[0].name.as_str()),
        ("Shop B", "Hal")
    );

    // Sign-in input is bounded too, and a bad one is no guess.
    for body in [
        json!({"name": "Hal", "pin": "12"}),
        json!({"name": "Hal", "pin": long}),
        json!({"name": long, "pin": "4455"}),
        json!({"name": "Hal"}),
    ] {
        let (s, v) = t
            .post_raw(
                &a,
                "/v1/cashier-sessions",
                None,
                None,
                body.to_string().into_bytes(),
            )
            .await;
        assert_eq!(
            (s, code(&v)),
            (StatusCode::BAD_REQUEST, "invalid_request"),
            "{body}"
        );
    }
    sign_in(&t, &a, "Hal", "4455").await;
    t.stop().await;
}

async fn the_operator_unlocks_a_cashier_and_changes_the_pin(pg: Option<&PgDb>) {
    let t = server(pg, |api| api.guesses.lock_after = 3).await;
    let a = t.kiosk("kiosk-a");
    let bo = hire(&t, "Shop A", "Bo", "246810").await;
    let old_session = sign_in(&t, &a, "Bo", "246810").await;
    let lock_out = |pin: &'static str| {
        let (t, a) = (&t, &a);
        async move {
            for _ in 0..3 {
                t.cashier_login(a, "Bo", pin).await;
            }
            let (s, v) = t.cashier_login(a, "Bo", "246810").await;
            (s, code(&v).to_string())
        }
    };
    assert_eq!(
        lock_out("000000").await,
        (StatusCode::FORBIDDEN, "account_locked".into())
    );
    // A kiosk cannot lift it; the operator can, and the right PIN works again.
    let unlock = format!("/v1/admin/cashiers/{bo}/unlock");
    let (s, _) = t.post(&a, &unlock, "k1", json!({})).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, v) = t.post(&t.admin(), &unlock, "u1", json!({})).await;
    assert_eq!((s, v["id"].as_i64()), (StatusCode::OK, Some(bo)), "{v}");
    sign_in(&t, &a, "Bo", "246810").await;

    // A new PIN: the old one stops working, the open sessions end, the new one signs in.
    let pin = format!("/v1/admin/cashiers/{bo}/pin");
    let (s, v) = t.post(&t.admin(), &pin, "p0", json!({"pin": "12ab"})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (s, v) = t
        .post(&t.admin(), &pin, "p1", json!({"pin": "97531"}))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(!v.to_string().contains("97531"));
    let (s, v) = t.cashier_login(&a, "Bo", "246810").await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::UNAUTHORIZED, "invalid_credentials")
    );
    let (s, v) = deposit(&t, &a, Some(&old_session), "alice", "1.00").await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::UNAUTHORIZED, "cashier_session_expired")
    );
    sign_in(&t, &a, "Bo", "97531").await;
    // Unknown cashiers: 404, nothing created.
    let (s, _) = t
        .post(
            &t.admin(),
            "/v1/admin/cashiers/999999/unlock",
            "u2",
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    t.stop().await;
}
