//! `GET /v1/admin/metrics` over real mTLS: what a few kiosk requests leave in the Prometheus
//! output, who may read it, and that no secret ever appears in it.

mod common;

use common::palms::{b64, capture, palm};
use common::{eur, rand_key, TestServer};
use palmline_server::palm::PalmPolicy;
use reqwest::{Client, StatusCode};
use serde_json::json;
use std::time::Duration;

/// The value of the sample named exactly `series` (name and labels), if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let (name, value) = l.rsplit_once(' ')?;
        (name == series).then(|| value.parse().unwrap())
    })
}

fn must(text: &str, series: &str) -> f64 {
    sample(text, series).unwrap_or_else(|| panic!("{series} missing from\n{text}"))
}

async fn scrape(t: &TestServer, c: &Client) -> (StatusCode, String, String) {
    let resp = c.get(t.url("/v1/admin/metrics")).send().await.unwrap();
    let status = resp.status();
    let ctype = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, ctype, resp.text().await.unwrap())
}

async fn palm_pay(t: &TestServer, c: &Client, template: &str) -> StatusCode {
    let body = json!({"template": template, "amount": eur("1.00")});
    t.post_raw(
        c,
        "/v1/payments/palm",
        Some(&rand_key()),
        None,
        body.to_string().into_bytes(),
    )
    .await
    .0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_scrape_shows_requests_latency_writer_limits_and_no_secrets() {
    let t = TestServer::start_tuned(PalmPolicy::default(), |api| {
        api.guesses.lock_after = 2;
        api.identify.per_kiosk = 1;
        api.identify.window = Duration::from_secs(3600);
    })
    .await;
    let k = t.kiosk("kiosk-a");
    t.register(&k, "alice", Some("4826")).await;
    let (s, _) = t.deposit(&k, "alice", "20.00").await;
    assert_eq!(s, StatusCode::OK);
    let token = t.token(&k, "alice").await;
    // Refused: wrong passwords until this kiosk is locked for alice's password.
    for _ in 0..2 {
        assert_eq!(
            t.login(&k, "alice", "wrong-horse-9").await.0,
            StatusCode::UNAUTHORIZED
        );
    }
    let (s, v) = t.login(&k, "alice", "wrong-horse-9").await;
    assert_eq!(v["error"]["code"], "account_locked", "{s} {v}");
    // A palm nobody enrolled, then one over the kiosk's identification rate.
    let probe = b64(&capture(&palm(77), 1));
    assert_eq!(palm_pay(&t, &k, &probe).await, StatusCode::NOT_FOUND);
    assert_eq!(
        palm_pay(&t, &k, &probe).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    // An operator path with an account id in it: labelled by its template.
    let (s, _) = t
        .post(
            &t.admin(),
            "/v1/admin/accounts/987654/freeze",
            &rand_key(),
            json!({}),
        )
        .await;
    assert!(s.is_client_error(), "{s}");

    // A kiosk certificate gets the refusal every operator endpoint gives.
    let kiosk_scrape = k.get(t.url("/v1/admin/metrics")).send().await.unwrap();
    assert_eq!(kiosk_scrape.status(), StatusCode::FORBIDDEN);
    let refusal: serde_json::Value = kiosk_scrape.json().await.unwrap();
    let (_, other) = t.get(&k, "/v1/admin/kiosks", None).await;
    assert_eq!(refusal, other);
    assert_eq!(refusal["error"]["code"], "forbidden");

    let (status, ctype, text) = scrape(&t, &t.admin()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(ctype.starts_with("application/openmetrics-text"), "{ctype}");
    assert!(text.ends_with("# EOF\n"));

    let requests = |method: &str, route: &str, status: u16| {
        format!(
            r#"palmline_http_requests_total{{method="{method}",route="{route}",status="{status}"}}"#
        )
    };
    assert_eq!(must(&text, &requests("POST", "/v1/shoppers", 201)), 1.0);
    assert_eq!(must(&text, &requests("POST", "/v1/deposits", 200)), 1.0);
    assert_eq!(must(&text, &requests("POST", "/v1/sessions", 200)), 1.0);
    assert_eq!(must(&text, &requests("POST", "/v1/sessions", 401)), 2.0);
    assert_eq!(must(&text, &requests("POST", "/v1/sessions", 403)), 1.0);
    assert_eq!(
        must(&text, &requests("POST", "/v1/payments/palm", 404)),
        1.0
    );
    assert_eq!(
        must(&text, &requests("POST", "/v1/payments/palm", 429)),
        1.0
    );
    assert_eq!(must(&text, &requests("GET", "/v1/admin/metrics", 403)), 1.0);
    assert_eq!(must(&text, &requests("GET", "/v1/admin/kiosks", 403)), 1.0);
    assert!(sample(&text, &requests("POST", "/v1/deposits", 201)).is_none());
    let freeze = r#"route="/v1/admin/accounts/{id}/freeze""#;
    assert!(text.lines().any(|l| l.contains(freeze)), "{text}");
    assert!(!text.contains("987654"), "a raw path leaked into a label");

    // Latency histogram: one observation per request of the route, in buckets.
    let latency =
        r#"palmline_http_request_duration_seconds_count{method="POST",route="/v1/sessions"}"#;
    assert_eq!(must(&text, latency), 4.0);
    let inf = r#"palmline_http_request_duration_seconds_bucket{le="+Inf",method="POST",route="/v1/sessions"}"#;
    let inf_alt = r#"palmline_http_request_duration_seconds_bucket{method="POST",route="/v1/sessions",le="+Inf"}"#;
    assert_eq!(
        sample(&text, inf).or(sample(&text, inf_alt)),
        Some(4.0),
        "{text}"
    );

    // The writer committed every mutation above in batches.
    let batches = must(&text, "palmline_writer_batch_size_count");
    assert!(batches >= 3.0, "{batches}");
    assert!(must(&text, "palmline_writer_batch_size_sum") >= batches);
    assert_eq!(
        must(&text, "palmline_writer_commit_duration_seconds_count"),
        batches
    );

    // Identification ran once (the second palm was refused before it).
    assert_eq!(must(&text, "palmline_identify_duration_seconds_count"), 1.0);
    assert_eq!(must(&text, "palmline_identify_shortlist_size_count"), 1.0);
    assert_eq!(must(&text, "palmline_identify_verified_palms_count"), 1.0);
    // Nobody is enrolled: nothing to verify.
    assert_eq!(must(&text, "palmline_identify_verified_palms_sum"), 0.0);
    // Limits.
    let lock = r#"palmline_guess_lockouts_total{factor="password",scope="kiosk"}"#;
    assert_eq!(must(&text, lock), 1.0);
    let limited = r#"palmline_rate_limited_total{limit="identify_rate"}"#;
    assert_eq!(must(&text, limited), 1.0);
    // Kiosks last seen: kiosk-a a moment ago; kiosk-b never called.
    let seen = must(
        &text,
        r#"palmline_kiosk_last_seen_timestamp_seconds{kiosk_id="kiosk-a"}"#,
    );
    let now = time::OffsetDateTime::now_utc().unix_timestamp() as f64;
    assert!((now - 120.0..=now + 1.0).contains(&seen), "{seen} vs {now}");
    assert!(!text.contains("kiosk-b"));

    // No secret, name or template in the output (the PIN's digits could occur in a float
    // sum, so it is looked for in the labels only).
    for secret in [
        "password123",
        "wrong-horse-9",
        token.as_str(),
        &probe[..24],
        "alice",
    ] {
        assert!(!text.contains(secret), "{secret:?} appears in the metrics");
    }
    let labels = text
        .lines()
        .filter_map(|l| Some(l.split_once('{')?.1.rsplit_once('}')?.0));
    for l in labels {
        assert!(!l.contains("4826"), "the PIN appears in labels {l}");
    }
}
