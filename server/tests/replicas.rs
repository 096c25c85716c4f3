//! Issue 13, part 3: two servers with separate memory on one PostgreSQL database behave as
//! one. Each has its own identification index, which follows enrollments and deletions made
//! through the other within [`FOLLOW_WITHIN`]; lock-outs and idempotency records are rows,
//! so they hold at every replica. Nothing here sleeps to synchronise: waits are poll loops
//! with a deadline. Needs the PostgreSQL of `common/pg.rs` (skipped loudly without one,
//! failing under `CI=true`).

mod common;

use common::palms::{b64, capture, enroll, palm, pay_by_palm};
use common::pg::{fresh_db, PgDb};
use common::{eur, TestServer};
use palmline_server::api::ApiConfig;
use palmline_server::config::Database;
use palmline_server::limits::IdentifyRates;
use palmline_server::palm::PalmPolicy;
use palmline_server::store::{Command, Outcome, PalmVersion, Store};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// The promise: a replica's index follows a change made through another within this.
const FOLLOW_WITHIN: Duration = Duration::from_secs(1);

/// Two replicas on one fresh database. B's data dir is a copy of A's: the same PKI and, as
/// every replica needs, the same template key.
async fn replicas(tag: &str) -> Option<(PgDb, TestServer, TestServer)> {
    replicas_with(tag, PalmPolicy::default(), |_| {}).await
}

/// As [`replicas`], both with this policy and API settings.
async fn replicas_with(
    tag: &str,
    policy: PalmPolicy,
    tune: impl Fn(&mut ApiConfig),
) -> Option<(PgDb, TestServer, TestServer)> {
    let db = fresh_db(tag).await?;
    let pg = || Database::Postgres(db.url.clone());
    let a = TestServer::start_on(TestServer::prepared_dir(), pg(), policy, &tune).await;
    let dir_b = tempfile::tempdir().unwrap();
    copy_dir(a.dir.path(), dir_b.path());
    let b = TestServer::start_on(dir_b, pg(), policy, &tune).await;
    Some((db, a, b))
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Polls `server`'s index until it holds `n` palms; the time it took, or a panic after
/// [`FOLLOW_WITHIN`].
async fn index_holds(server: &TestServer, n: usize) -> Duration {
    let started = Instant::now();
    loop {
        if server.running.state.palm.enrolled() == n {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < FOLLOW_WITHIN,
            "the replica's index holds {} palms, not {n}, {FOLLOW_WITHIN:?} after the change",
            server.running.state.palm.enrolled()
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

async fn delete_palm(t: &TestServer, c: &reqwest::Client, token: &str, key: &str) {
    let resp = c
        .delete(t.url("/v1/palms/me"))
        .bearer_auth(token)
        .header(palmline_shared::api::IDEMPOTENCY_HEADER, key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
}

fn millis(d: &[Duration]) -> String {
    let ms: Vec<String> = d
        .iter()
        .map(|d| format!("{:.1}", d.as_secs_f64() * 1e3))
        .collect();
    ms.join(" ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_enrollment_through_a_pays_through_b_and_a_deletion_through_a_stops_b() {
    let Some((db, a, b)) = replicas("follow").await else {
        return;
    };
    let (ka, kb) = (a.kiosk("kiosk-a"), b.kiosk("kiosk-b"));
    let shoppers: Vec<String> = (0..6).map(|i| format!("shopper{i}")).collect();
    let mut enrolled = Vec::new();
    for (i, name) in shoppers.iter().enumerate() {
        a.register(&ka, name, None).await;
        a.deposit(&ka, name, "50.00").await;
        let token = a.token(&ka, name).await;
        let (s, v) = enroll(&a, &ka, &token, &palm(100 + i as u64), 10 * i as u64).await;
        assert_eq!(s, StatusCode::CREATED, "{name}: {v}");
        enrolled.push(index_holds(&b, i + 1).await);
    }
    // B identifies a palm only A enrolled, and charges the right shopper once.
    let probe = capture(&palm(100), 99);
    let (s, r) = pay_by_palm(&b, &kb, "pay-b-1", &probe, "12.00", None).await;
    assert_eq!(
        (s, r["shopper"].as_str()),
        (StatusCode::OK, Some("shopper0")),
        "{r}"
    );
    assert_eq!(a.balance_of("shopper0").await, 3_800);

    let mut deleted = Vec::new();
    for (i, name) in shoppers.iter().enumerate() {
        let token = a.token(&ka, name).await;
        delete_palm(&a, &ka, &token, &format!("del-{name}")).await;
        deleted.push(index_holds(&b, shoppers.len() - i - 1).await);
    }
    let (s, v) = pay_by_palm(&b, &kb, "pay-b-2", &probe, "1.00", None).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("palm_not_recognised")),
        "{v}"
    );
    assert_eq!(a.balance_of("shopper0").await, 3_800);
    eprintln!(
        "follow latency A -> B, ms: enrollments [{}], deletions [{}]",
        millis(&enrolled),
        millis(&deleted)
    );
    // Each enrollment is logged once, though A's own follower may index it first.
    let (_, log) = b
        .get(&b.admin(), "/v1/admin/palm-scans?limit=100", None)
        .await;
    let logged = log.as_array().unwrap().iter();
    let enrollments = logged.filter(|r| r["outcome"] == "enrolled").count();
    assert_eq!(enrollments, shoppers.len(), "{log}");
    assert!(a.ledger().await.ok && b.ledger().await.ok);
    a.stop().await;
    b.stop().await;
    db.drop_db().await;
}

/// The figure docs/SCALING.md quotes: from a palm change's commit at A to B's index holding
/// it, over `n` enrollments and `n` deletions written straight through A's store.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn follow_latency_from_a_commit_to_the_other_replicas_index() {
    let Some((db, a, b)) = replicas("latency").await else {
        return;
    };
    let n = 40;
    let store = a.running.state.store.clone();
    let mut shoppers = Vec::new();
    for i in 0..n {
        shoppers.push(register(&*store, &format!("s{i}")).await);
    }
    let mut followed = b.running.followed.clone().expect("B follows palm changes");
    let mut latencies = Vec::new();
    for (i, &id) in shoppers.iter().enumerate() {
        let templates: Vec<_> = (0..3).map(|k| capture(&palm(300 + i as u64), k)).collect();
        let ciphertexts = a.running.state.palm.seal_all(id, &templates);
        let enroll = Command::EnrollPalm {
            shopper_id: id,
            ciphertexts,
        };
        latencies.push(change_followed(&*store, &mut followed, enroll).await);
    }
    assert_eq!(b.running.state.palm.enrolled(), n);
    for &id in &shoppers {
        let delete = Command::DeletePalm { shopper_id: id };
        latencies.push(change_followed(&*store, &mut followed, delete).await);
    }
    assert_eq!(b.running.state.palm.enrolled(), 0);
    let (enrollments, deletions) = latencies.split_at_mut(n);
    eprintln!(
        "follow latency (commit at A -> B's index): enrollments {}; deletions {}",
        summary(enrollments),
        summary(deletions)
    );
    a.stop().await;
    b.stop().await;
    db.drop_db().await;
}

/// p50, p90 and the maximum of some durations.
fn summary(d: &mut [Duration]) -> String {
    d.sort();
    let at = |q: f64| d[((d.len() - 1) as f64 * q).round() as usize];
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    format!(
        "p50 {:.1} ms, p90 {:.1} ms, max {:.1} ms (n = {})",
        ms(at(0.5)),
        ms(at(0.9)),
        ms(at(1.0)),
        d.len()
    )
}

async fn register(store: &dyn Store, name: &str) -> i64 {
    let cmd = Command::RegisterShopper {
        username: name.into(),
        email: format!("{name}@example.com"),
        password_hash: "not used".into(),
        pin_hash: None,
    };
    match store.execute(None, cmd).await.unwrap() {
        Outcome::Shopper(s) => s.id,
        other => panic!("{other:?}"),
    }
}

/// Commits `cmd` (a palm change) and waits until B's index holds it: the time from the
/// commit to then, at most [`FOLLOW_WITHIN`].
async fn change_followed(
    store: &dyn Store,
    followed: &mut watch::Receiver<PalmVersion>,
    cmd: Command,
) -> Duration {
    let v = store
        .execute(None, cmd)
        .await
        .unwrap()
        .palm_version()
        .unwrap();
    let committed = Instant::now();
    tokio::time::timeout(FOLLOW_WITHIN, followed.wait_for(|seen| *seen >= v))
        .await
        .expect("B's index followed the change in time")
        .unwrap();
    committed.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_started_later_and_one_that_lost_its_listener_catch_up_by_version() {
    let Some((db, a, b)) = replicas("catchup").await else {
        return;
    };
    let ka = a.kiosk("kiosk-a");
    a.register(&ka, "dora", None).await;
    let token = a.token(&ka, "dora").await;
    let (s, v) = enroll(&a, &ka, &token, &palm(7), 10).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    index_holds(&b, 1).await;
    // Cut B's listening connection from the database side: B reconnects, catches up.
    let admin = db.pool.get().await.unwrap();
    let listeners = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                      WHERE datname = current_database() AND query LIKE 'LISTEN%'";
    let cut = admin.query(listeners, &[]).await.unwrap();
    assert_eq!(cut.len(), 2, "one listening connection per replica");
    delete_palm(&a, &ka, &token, "del-dora").await;
    let (s, v) = enroll(&a, &ka, &token, &palm(8), 20).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    a.deposit(&ka, "dora", "10.00").await;
    // A third replica started now loads the gallery as it is.
    let dir_c = tempfile::tempdir().unwrap();
    copy_dir(a.dir.path(), dir_c.path());
    let pg = Database::Postgres(db.url.clone());
    let c = TestServer::start_on(dir_c, pg, PalmPolicy::default(), |_| {}).await;
    assert_eq!(c.running.loaded.enrolled, 1);
    // B reconnects and catches up on what its cut connection missed: the deletion and the
    // new enrollment (a reconnection waits half a second first, hence the longer deadline).
    let latest = a.running.state.store.palm_version().await.unwrap();
    let mut followed = b.running.followed.clone().expect("B follows palm changes");
    let caught_up = followed.wait_for(|v| *v >= latest);
    tokio::time::timeout(FOLLOW_WITHIN * 2, caught_up)
        .await
        .expect("B caught up after its listener was cut")
        .unwrap();
    let kb = b.kiosk("kiosk-b");
    let (s, r) = pay_by_palm(&b, &kb, "new-palm", &capture(&palm(8), 99), "1.00", None).await;
    assert_eq!(
        (s, r["shopper"].as_str()),
        (StatusCode::OK, Some("dora")),
        "{r}"
    );
    let (s, _) = pay_by_palm(&b, &kb, "old-palm", &capture(&palm(7), 98), "1.00", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "the deleted palm is gone at B");
    for t in [a, b, c] {
        t.stop().await;
    }
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lock_out_counted_at_both_replicas_holds_at_both() {
    let Some((db, a, b)) = replicas("lockout").await else {
        return;
    };
    // The same kiosk reaching either replica (as behind a load balancer).
    let (via_a, via_b) = (a.kiosk("kiosk-a"), b.kiosk("kiosk-a"));
    a.register(&via_a, "carol", None).await;
    for (t, c) in [
        (&a, &via_a),
        (&b, &via_b),
        (&a, &via_a),
        (&b, &via_b),
        (&a, &via_a),
    ] {
        let (s, v) = t.login(c, "carol", "wrong-password").await;
        assert_eq!(v["error"]["code"], "invalid_credentials", "{s} {v}");
    }
    for (t, c) in [(&b, &via_b), (&a, &via_a)] {
        let (s, v) = t.login(c, "carol", "password123").await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (StatusCode::FORBIDDEN, Some("account_locked")),
            "{v}"
        );
    }
    a.stop().await;
    b.stop().await;
    db.drop_db().await;
}

/// The deposit `dep-1` of `body` through `t`, by the cashier of session `desk`.
async fn deposit_at(
    t: &TestServer,
    c: &reqwest::Client,
    desk: &str,
    body: String,
) -> (StatusCode, Value) {
    let at_desk = (Some("dep-1"), None, Some(desk));
    t.post_as(c, "/v1/deposits", at_desk, body.into_bytes())
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_idempotency_key_replayed_across_replicas_has_one_effect() {
    let Some((db, a, b)) = replicas("idem").await else {
        return;
    };
    let (via_a, via_b) = (a.kiosk("kiosk-a"), b.kiosk("kiosk-a"));
    a.register(&via_a, "erin", None).await;
    let body = json!({"username": "erin", "amount": eur("20.00")}).to_string();
    // One cashier session, shared by the replicas (it is a row), for every attempt.
    let desk = a.desk(&via_a).await;
    let dep = |t, c, body: &str| deposit_at(t, c, &desk, body.to_string());
    // Sent to both at once, then again to each: one deposit.
    let (ra, rb) = tokio::join!(dep(&a, &via_a, &body), dep(&b, &via_b, &body));
    let again = [dep(&a, &via_a, &body).await, dep(&b, &via_b, &body).await];
    let tx_of = |(s, v): &(StatusCode, Value)| {
        assert_eq!(*s, StatusCode::OK, "{v}");
        v["transaction_id"].as_i64().unwrap()
    };
    let first = tx_of(&ra);
    for answer in [&rb, &again[0], &again[1]] {
        assert_eq!(tx_of(answer), first);
    }
    assert_eq!(b.balance_of("erin").await, 2_000);
    // The same key with another request is refused at the other replica too.
    let other = json!({"username": "erin", "amount": eur("21.00")}).to_string();
    let (s, v) = dep(&b, &via_b, &other).await;
    assert_eq!(v["error"]["code"], "idempotency_mismatch", "{s} {v}");
    assert_eq!(a.balance_of("erin").await, 2_000);
    a.stop().await;
    b.stop().await;
    db.drop_db().await;
}

/// A stranger's palm at a kiosk, through `t`: the error code it gets.
async fn stranger_at(t: &TestServer, c: &reqwest::Client, attempt: u64) -> String {
    let probe = capture(&palm(9_000), attempt);
    let key = format!("stranger-{attempt}");
    let (_, v) = pay_by_palm(t, c, &key, &probe, "1.00", None).await;
    v["error"]["code"].as_str().unwrap_or("none").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_kiosks_identification_rate_is_one_budget_across_replicas() {
    let lenient = PalmPolicy {
        free_failures: 100,
        ..PalmPolicy::default()
    };
    let rates = |api: &mut ApiConfig| {
        api.identify = IdentifyRates {
            per_kiosk: 4,
            per_merchant: 100,
            window: Duration::from_secs(3600),
        };
    };
    let Some((db, a, b)) = replicas_with("rate", lenient, rates).await else {
        return;
    };
    let (via_a, via_b) = (a.kiosk("kiosk-a"), b.kiosk("kiosk-a"));
    let mut codes = Vec::new();
    for i in 0..6 {
        let (t, c) = if i % 2 == 0 {
            (&a, &via_a)
        } else {
            (&b, &via_b)
        };
        codes.push(stranger_at(t, c, i).await);
    }
    let want: Vec<&str> = ["palm_not_recognised"; 4]
        .into_iter()
        .chain(["rate_limited"; 2])
        .collect();
    assert_eq!(codes, want, "4 per window in all, not 4 per replica");
    a.stop().await;
    b.stop().await;
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_kiosk_slowed_down_at_one_replica_is_slowed_down_at_the_other() {
    let strict = PalmPolicy {
        free_failures: 2,
        ..PalmPolicy::default()
    };
    let Some((db, a, b)) = replicas_with("slow", strict, |_| {}).await else {
        return;
    };
    let (via_a, via_b) = (a.kiosk("kiosk-a"), b.kiosk("kiosk-a"));
    assert_eq!(stranger_at(&a, &via_a, 1).await, "palm_not_recognised");
    assert_eq!(stranger_at(&b, &via_b, 2).await, "palm_not_recognised");
    // Two failures in all: the kiosk waits at both replicas, and other kiosks do not.
    assert_eq!(stranger_at(&b, &via_b, 3).await, "rate_limited");
    assert_eq!(stranger_at(&a, &via_a, 4).await, "rate_limited");
    let other = b.kiosk("kiosk-b");
    assert_eq!(stranger_at(&b, &other, 5).await, "palm_not_recognised");
    a.stop().await;
    b.stop().await;
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_palm_enrolled_at_once_through_both_replicas_gets_one_account() {
    let Some((db, a, b)) = replicas("twins").await else {
        return;
    };
    // Sessions belong to the kiosk that opened them: kiosk A reaches both replicas.
    let (via_a, via_b) = (a.kiosk("kiosk-a"), b.kiosk("kiosk-a"));
    let mut tokens = Vec::new();
    for i in 0..8 {
        let name = format!("twin{i}");
        a.register(&via_a, &name, None).await;
        tokens.push(a.token(&via_a, &name).await);
    }
    let twin = palm(4_242);
    let mut attempts = tokio::task::JoinSet::new();
    for (i, token) in tokens.into_iter().enumerate() {
        let (t, c) = if i % 2 == 0 {
            (&a, &via_a)
        } else {
            (&b, &via_b)
        };
        let (base, c, twin) = (t.base.clone(), c.clone(), twin.clone());
        attempts.spawn(async move {
            let templates: Vec<String> = (0..3)
                .map(|k| b64(&capture(&twin, 10 * i as u64 + k)))
                .collect();
            let resp = c
                .post(format!("{base}/v1/palms"))
                .bearer_auth(token)
                .header(
                    palmline_shared::api::IDEMPOTENCY_HEADER,
                    format!("twin-{i}"),
                )
                .json(&json!({"templates": templates}))
                .send()
                .await
                .unwrap();
            resp.status()
        });
    }
    let mut statuses = Vec::new();
    while let Some(s) = attempts.join_next().await {
        statuses.push(s.unwrap());
    }
    let created = statuses
        .iter()
        .filter(|s| **s == StatusCode::CREATED)
        .count();
    let refused = statuses
        .iter()
        .filter(|s| **s == StatusCode::CONFLICT)
        .count();
    assert_eq!((created, refused), (1, 7), "{statuses:?}");
    assert_eq!(a.running.state.store.palm_owners().await.unwrap().len(), 1);
    a.stop().await;
    b.stop().await;
    db.drop_db().await;
}
