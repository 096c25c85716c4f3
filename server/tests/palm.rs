//! Palm enrollment, 1:N identification and paying by palm, over real mTLS sockets.
//!
//! Templates come from a small synthetic template model (a palm = a set of keypoints with
//! descriptors; a capture = that set under a small similarity transform, with jitter, bit
//! noise, dropped and spurious points), so these tests exercise the server's logic with the
//! real matcher without linking OpenCV. The image pipeline is tested in `shared` and `lab`.

mod common;

use common::palms::{b64, capture, enroll, palm, pay_by_palm, turned, Palm};
use common::{eur, rand_key, TestServer};
use palmline_server::identify::index::HashIndex;
use palmline_server::identify::{CandidateIndex, ExhaustiveIndex};
use palmline_server::palm::{PalmPolicy, PalmService, TemplateKey, Verdict};
use palmline_server::store::postgres::PgStore;
use palmline_server::store::sqlite::SqliteStore;
use palmline_server::store::{Command, Store};
use palmline_shared::palm::Template;
use palmline_shared::Currency;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::sync::Arc;

async fn scans(t: &TestServer) -> Vec<Value> {
    let (_, v) = t
        .get(&t.admin(), "/v1/admin/palm-scans?limit=100", None)
        .await;
    v.as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enroll_identify_pay_and_refuse_strangers_and_duplicates() {
    let t = TestServer::start().await;
    let k = t.kiosk("kiosk-a");
    let (alice_palm, bob_palm, stranger) = (palm(1), palm(2), palm(3));
    for (name, p, seed) in [("alice", &alice_palm, 10), ("bob", &bob_palm, 20)] {
        t.register(&k, name, None).await;
        t.deposit(&k, name, "100.00").await;
        let tok = t.token(&k, name).await;
        let (s, v) = enroll(&t, &k, &tok, p, seed).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        assert_eq!(v["templates_stored"], 3);
    }

    // The right shopper pays.
    let (s, r) = pay_by_palm(&t, &k, "pp-1", &capture(&alice_palm, 99), "12.00", None).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["shopper"], "alice");
    let (s, r) = pay_by_palm(&t, &k, "pp-2", &capture(&bob_palm, 98), "3.00", None).await;
    assert_eq!((s, r["shopper"].as_str()), (StatusCode::OK, Some("bob")));
    // A retried palm payment charges once.
    let (s, again) = pay_by_palm(&t, &k, "pp-1", &capture(&alice_palm, 99), "12.00", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        again["transaction_id"],
        r["transaction_id"].as_i64().unwrap() - 1
    );
    assert_eq!(t.balance_of("alice").await, 8_800);
    assert_eq!(t.balance_of("bob").await, 9_700);

    // A palm nobody enrolled is refused and nothing moves.
    let (s, v) = pay_by_palm(&t, &k, "pp-3", &capture(&stranger, 7), "1.00", None).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("palm_not_recognised"))
    );
    // A broken template is a typed error.
    let (s, v) = t
        .post_raw(
            &k,
            "/v1/payments/palm",
            Some("pp-4"),
            None,
            json!({"template": "AAAA", "amount": eur("1.00")})
                .to_string()
                .into_bytes(),
        )
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_template"))
    );

    // Palm login gives the same kind of session as a password login.
    let (s, v) = t
        .post_raw(
            &k,
            "/v1/sessions",
            None,
            None,
            json!({"method": "palm", "template": b64(&capture(&bob_palm, 97))})
                .to_string()
                .into_bytes(),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["shopper"]["username"], "bob");
    assert_eq!(v["shopper"]["palm_enrolled"], true);
    let (s, w) = t.get(&k, "/v1/wallet", v["token"].as_str()).await;
    assert_eq!((s, w["balance"].clone()), (StatusCode::OK, eur("97.00")));

    // Carol cannot enroll Alice's palm.
    t.register(&k, "carol", None).await;
    let tok = t.token(&k, "carol").await;
    let (s, v) = enroll(&t, &k, &tok, &alice_palm, 50).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("palm_already_enrolled"))
    );
    // Captures of different palms are not one enrollment.
    let mixed = vec![
        b64(&capture(&stranger, 1)),
        b64(&capture(&palm(4), 2)),
        b64(&capture(&palm(5), 3)),
    ];
    let (s, v) = t
        .post_raw(
            &k,
            "/v1/palms",
            Some(&rand_key()),
            Some(&tok),
            json!({"templates": mixed}).to_string().into_bytes(),
        )
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("palm_templates_inconsistent")
        )
    );
    // One template sent three times is not three captures (random bytes would pass as a
    // palm that way); a stranger's capture among good ones is named for a retake.
    let one = b64(&capture(&palm(6), 1));
    let other = b64(&capture(&palm(7), 9));
    let good: Vec<String> = (1..3).map(|i| b64(&capture(&palm(6), i))).collect();
    for (templates, named) in [
        (
            vec![one.clone(), one.clone(), one.clone()],
            "capture 2 is a copy of capture 1",
        ),
        (
            vec![good[0].clone(), other, good[1].clone()],
            "retake capture 2",
        ),
    ] {
        let (s, v) = t
            .post_raw(
                &k,
                "/v1/palms",
                Some(&rand_key()),
                Some(&tok),
                json!({ "templates": templates }).to_string().into_bytes(),
            )
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.contains(named), "{message}");
    }
    let (s, _) = t
        .post_raw(
            &k,
            "/v1/palms",
            Some(&rand_key()),
            Some(&tok),
            json!({"templates": [b64(&capture(&stranger, 1))]})
                .to_string()
                .into_bytes(),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    // Every attempt is in the palm-scan log.
    let log = scans(&t).await;
    let outcomes: Vec<&str> = log.iter().map(|r| r["outcome"].as_str().unwrap()).collect();
    for o in [
        "enrolled",
        "accepted",
        "rejected",
        "bad_template",
        "duplicate",
    ] {
        assert!(outcomes.contains(&o), "{o} missing from {outcomes:?}");
    }
    assert!(log.iter().any(|r| r["outcome"] == "accepted"
        && r["account"] == "alice"
        && r["kiosk_id"] == "kiosk-a"));

    // Deleting a palm (the shopper's right) makes it unknown at once.
    let tok = t.token(&k, "alice").await;
    let resp = k
        .delete(t.url("/v1/palms/me"))
        .bearer_auth(&tok)
        .header(palmline_shared::api::IDEMPOTENCY_HEADER, "del-1")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let (s, _) = pay_by_palm(&t, &k, "pp-5", &capture(&alice_palm, 77), "1.00", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // ...and free to enroll again, now for Carol (it is her right hand after all).
    let (s, v) = enroll(&t, &k, &t.token(&k, "carol").await, &alice_palm, 60).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert!(t.ledger().await.ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn templates_are_ciphertext_at_rest_and_the_index_survives_a_restart() {
    let t = TestServer::start().await;
    let k = t.kiosk("kiosk-a");
    t.register(&k, "alice", None).await;
    let tok = t.token(&k, "alice").await;
    let p = palm(11);
    let (s, _) = enroll(&t, &k, &tok, &p, 1).await;
    assert_eq!(s, StatusCode::CREATED);
    let raw = rusqlite::Connection::open(t.dir.path().join("palmline.db")).unwrap();
    let rows: Vec<Vec<u8>> = raw
        .prepare("SELECT ciphertext FROM palm_templates")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(rows.len(), 3);
    let plain = capture(&p, 1).encode();
    for ct in &rows {
        assert!(
            !ct.windows(4).any(|w| w == b"PLMT"),
            "template magic visible in the database"
        );
        assert!(
            !ct.windows(32).any(|w| plain.windows(32).any(|p| p == w)),
            "plaintext visible"
        );
    }
    // A fresh service with the key from the data dir rebuilds the index from the store.
    let store = SqliteStore::open(&t.dir.path().join("palmline.db"), Currency::EUR).unwrap();
    let key = TemplateKey::load(&t.dir.path().join("template.key")).unwrap();
    let svc = PalmService::new(
        key,
        PalmPolicy::default(),
        Box::new(ExhaustiveIndex::default()),
    );
    assert_eq!(svc.load(&store).await.unwrap().enrolled, 1);
    let id = svc.identify(&store, &capture(&p, 42), None).await.unwrap();
    assert_eq!(id.decision, Verdict::Accept);
    // With the wrong key nothing can be read: the palm is left out and reported.
    let wrong = PalmService::new(
        TemplateKey::from_bytes(&[9; 32]).unwrap(),
        PalmPolicy::default(),
        Box::new(ExhaustiveIndex::default()),
    );
    let loaded = wrong.load(&store).await.unwrap();
    assert_eq!((loaded.enrolled, loaded.skipped), (0, 1));
    // The operator sees it without reading the log: the `palms_skipped` gauge.
    assert_eq!(wrong.metrics.skipped.get(), 1);
    assert_eq!(svc.metrics.skipped.get(), 0);
    assert_eq!(wrong.enrolled(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grey_zone_asks_for_the_pin_and_counts_wrong_pins() {
    // An accept level no match reaches puts every recognised palm in the grey zone; the
    // kiosk slow-down is out of the way (wrong PINs count towards it, and only time resets
    // it), so that the PIN's own lock is what the end of the test sees.
    let policy = PalmPolicy {
        accept: 100_000,
        free_failures: 1_000,
        ..PalmPolicy::default()
    };
    let t = TestServer::start_with(policy).await;
    let k = t.kiosk("kiosk-a");
    t.register(&k, "alice", Some("2468")).await;
    t.deposit(&k, "alice", "20.00").await;
    let tok = t.token(&k, "alice").await;
    let p = palm(21);
    let (s, v) = enroll(&t, &k, &tok, &p, 1).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let probe = capture(&p, 5);
    let (s, v) = pay_by_palm(&t, &k, "g-1", &probe, "5.00", None).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("step_up_required"))
    );
    let (s, v) = pay_by_palm(&t, &k, "g-2", &probe, "5.00", Some("0000")).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_pin"))
    );
    assert_eq!(t.balance_of("alice").await, 2_000, "nothing moved");
    let (s, v) = pay_by_palm(&t, &k, "g-3", &probe, "5.00", Some("2468")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(t.balance_of("alice").await, 1_500);
    let log = scans(&t).await;
    let outcomes: Vec<&str> = log.iter().map(|r| r["outcome"].as_str().unwrap()).collect();
    assert!(
        outcomes.contains(&"step_up") && outcomes.contains(&"step_up_failed"),
        "{outcomes:?}"
    );
    // Wrong step-up PINs count towards the step-up lock at this kiosk (the right PIN above
    // reset that count): five in a row and even the right PIN is refused here. The
    // password is another factor and stays usable (issue 12: factors never share a count).
    for i in 0..5 {
        let (s, _) = pay_by_palm(&t, &k, &format!("g-x{i}"), &probe, "1.00", Some("1111")).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
    }
    let (s, v) = pay_by_palm(&t, &k, "g-y", &probe, "1.00", Some("2468")).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("account_locked"))
    );
    let (s, _) = t.login(&k, "alice", "password123").await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kiosk_that_keeps_failing_is_slowed_down() {
    let t = TestServer::start().await;
    let k = t.kiosk("kiosk-a");
    let policy = PalmPolicy::default();
    for i in 0..policy.free_failures {
        let (s, _) = pay_by_palm(
            &t,
            &k,
            &format!("f{i}"),
            &capture(&palm(100 + i as u64), 1),
            "1.00",
            None,
        )
        .await;
        assert_eq!(s, StatusCode::NOT_FOUND);
    }
    let (s, v) = pay_by_palm(&t, &k, "f-last", &capture(&palm(999), 1), "1.00", None).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::TOO_MANY_REQUESTS, Some("rate_limited"))
    );
    // Another kiosk is not affected.
    let (s, _) = pay_by_palm(
        &t,
        &t.kiosk("kiosk-b"),
        "f-b",
        &capture(&palm(998), 1),
        "1.00",
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_stays_consistent_under_concurrent_enroll_delete_identify() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&dir.path().join("db"), Currency::EUR).unwrap());
    let svc = PalmService::new(
        TemplateKey::from_bytes(&[3; 32]).unwrap(),
        PalmPolicy::default(),
        palmline_server::identify::default_index(),
    );
    let mut ids = Vec::new();
    for i in 0..12 {
        let o = store
            .execute(
                None,
                Command::RegisterShopper {
                    username: format!("u{i:02}"),
                    email: format!("u{i}@x.io"),
                    password_hash: "h".into(),
                    pin_hash: None,
                },
            )
            .await
            .unwrap();
        let palmline_server::store::Outcome::Shopper(s) = o else {
            unreachable!()
        };
        ids.push(s.id);
    }
    let palms: Vec<Palm> = (0..12).map(|i| palm(500 + i)).collect();
    // Even shoppers stay enrolled throughout; odd ones are enrolled and deleted repeatedly.
    for (i, id) in ids.iter().enumerate().filter(|(i, _)| i % 2 == 0) {
        let ts: Vec<Template> = (0..3).map(|s| capture(&palms[i], s)).collect();
        let v = store
            .execute(
                None,
                Command::EnrollPalm {
                    shopper_id: *id,
                    ciphertexts: svc.seal_all(*id, &ts),
                },
            )
            .await
            .unwrap()
            .palm_version()
            .unwrap();
        assert!(svc.index_insert(*id, v, &ts));
    }
    let mut tasks = Vec::new();
    for (i, id) in ids.iter().copied().enumerate().filter(|(i, _)| i % 2 == 1) {
        let (svc, store, p) = (svc.clone(), store.clone(), palms[i].clone());
        tasks.push(tokio::spawn(async move {
            for round in 0..5 {
                let ts: Vec<Template> = (0..3).map(|s| capture(&p, round * 10 + s)).collect();
                let v = store
                    .execute(
                        None,
                        Command::EnrollPalm {
                            shopper_id: id,
                            ciphertexts: svc.seal_all(id, &ts),
                        },
                    )
                    .await
                    .unwrap()
                    .palm_version()
                    .unwrap();
                assert!(svc.index_insert(id, v, &ts));
                let v = store
                    .execute(None, Command::DeletePalm { shopper_id: id })
                    .await
                    .unwrap()
                    .palm_version()
                    .unwrap();
                assert!(svc.index_remove(id, v));
            }
        }));
    }
    for round in 0..4 {
        for (i, id) in ids.iter().enumerate().filter(|(i, _)| i % 2 == 0) {
            let got = svc
                .identify(&*store, &capture(&palms[i], 1000 + round), None)
                .await
                .unwrap();
            assert_eq!(
                got.best.map(|b| b.0),
                Some(*id),
                "stable palms stay identifiable"
            );
            assert_eq!(got.decision, Verdict::Accept);
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(svc.enrolled(), 6);
    for (i, _) in ids.iter().enumerate().filter(|(i, _)| i % 2 == 1) {
        let got = svc
            .identify(&*store, &capture(&palms[i], 7), None)
            .await
            .unwrap();
        assert_eq!(got.decision, Verdict::Reject, "deleted palms are gone");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn template_key_rotation_reencrypts_everything_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = palmline_server::store::sqlite::open_in(dir.path(), Currency::EUR).unwrap();
    rotation_contract(&store, Rotate::Sqlite(dir.path())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn template_key_rotation_reencrypts_everything_postgres() {
    let Some(db) = common::pg::fresh_db("rotation").await else {
        return;
    };
    let store = PgStore::with_pool(db.pool.clone(), Currency::EUR)
        .await
        .unwrap();
    rotation_contract(&store, Rotate::Postgres(&db.url)).await;
    drop(store);
    db.drop_db().await;
}

/// `templates rekey` as the CLI runs it, on either store.
enum Rotate<'a> {
    Sqlite(&'a std::path::Path),
    Postgres(&'a str),
}

impl Rotate<'_> {
    async fn run(&self, old: &TemplateKey, new: &TemplateKey) -> anyhow::Result<usize> {
        match self {
            Rotate::Sqlite(dir) => palmline_server::palm::rekey(dir, old, new),
            Rotate::Postgres(url) => palmline_server::palm::rekey_postgres(url, old, new).await,
        }
    }
}

async fn rotation_contract(store: &dyn Store, rotate: Rotate<'_>) {
    let old = TemplateKey::from_bytes(&[1; 32]).unwrap();
    let new = TemplateKey::from_bytes(&[2; 32]).unwrap();
    let service = |key: &TemplateKey| {
        PalmService::new(
            key.clone(),
            PalmPolicy::default(),
            Box::new(ExhaustiveIndex::default()),
        )
    };
    let svc = service(&old);
    let p = palm(77);
    let ids = enroll_all(store, &svc, std::slice::from_ref(&p)).await;
    assert_eq!(rotate.run(&old, &new).await.unwrap(), 1);
    let with_new = service(&new);
    assert_eq!(with_new.load(store).await.unwrap().enrolled, 1);
    let found = with_new
        .identify(store, &capture(&p, 9), None)
        .await
        .unwrap();
    assert_eq!(found.best.map(|b| b.0), Some(ids[0]));
    assert_eq!(
        service(&old).load(store).await.unwrap().skipped,
        1,
        "the old key no longer opens anything"
    );
    // Rekeying with the wrong current key fails and changes nothing.
    assert!(rotate.run(&old, &new).await.is_err());
    assert_eq!(with_new.load(store).await.unwrap().enrolled, 1);
}

/// Registers `palms.len()` shoppers and enrolls each palm (3 captures) in `store` and `svc`.
async fn enroll_all(store: &dyn Store, svc: &PalmService, palms: &[Palm]) -> Vec<i64> {
    let mut ids = Vec::new();
    for (i, p) in palms.iter().enumerate() {
        let register = Command::RegisterShopper {
            username: format!("t{i:02}"),
            email: format!("t{i}@x.io"),
            password_hash: "h".into(),
            pin_hash: None,
        };
        let palmline_server::store::Outcome::Shopper(s) =
            store.execute(None, register).await.unwrap()
        else {
            unreachable!()
        };
        let ts: Vec<Template> = (0..3).map(|c| capture(p, c)).collect();
        let enroll = Command::EnrollPalm {
            shopper_id: s.id,
            ciphertexts: svc.seal_all(s.id, &ts),
        };
        let v = store.execute(None, enroll).await.unwrap();
        assert!(svc.index_insert(s.id, v.palm_version().unwrap(), &ts));
        ids.push(s.id);
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_palm_cut_at_the_wrong_angle_is_found_by_the_second_stage() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("db"), Currency::EUR).unwrap();
    let svc = PalmService::new(
        TemplateKey::from_bytes(&[4; 32]).unwrap(),
        PalmPolicy::default(),
        palmline_server::identify::default_index(),
    );
    let palms: Vec<Palm> = (0..100).map(|i| palm(700 + i)).collect();
    let ids = enroll_all(&store, &svc, &palms).await;
    // The same index alone: its keys carry the keypoints' angles, so a probe turned by 135°
    // or 250° is not in the first shortlist; the turned query brings it in.
    let mut first = HashIndex::default();
    for (p, id) in palms.iter().zip(&ids) {
        first.insert(*id, &(0..3).map(|c| capture(p, c)).collect::<Vec<_>>());
    }
    let shortlist = PalmPolicy::default().shortlist + 1;
    for (i, deg) in [(3, 135.0), (17, 250.0), (31, 0.0)] {
        let probe = turned(&capture(&palms[i], 77), deg);
        let in_first = first.candidates(&probe, shortlist).contains(&ids[i]);
        assert_eq!(in_first, deg == 0.0, "palm {i} turned by {deg}°");
        let id = svc.identify(&store, &probe, None).await.unwrap();
        assert_eq!(
            id.decision,
            Verdict::Accept,
            "palm {i} turned by {deg}°: {id:?}"
        );
        assert_eq!(id.best.map(|b| b.0), Some(ids[i]));
    }
    // A stranger, turned or not, is still nobody.
    for deg in [0.0, 135.0] {
        // (capture seeds 0..3 are the enrollment ones: their spurious points are shared)
        let probe = turned(&capture(&palm(9_999), 78), deg);
        let id = svc.identify(&store, &probe, None).await.unwrap();
        assert_eq!(
            id.decision,
            Verdict::Reject,
            "stranger turned by {deg}°: {id:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verification_stops_at_a_clear_palm_and_reads_the_whole_shortlist_for_a_stranger() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("db"), Currency::EUR).unwrap();
    let policy = PalmPolicy::default();
    let svc = PalmService::new(
        TemplateKey::from_bytes(&[5; 32]).unwrap(),
        policy,
        palmline_server::identify::default_index(),
    );
    let palms: Vec<Palm> = (0..60).map(|i| palm(1_300 + i)).collect();
    let ids = enroll_all(&store, &svc, &palms).await;
    let verified = |svc: &PalmService| svc.metrics.verified.sum() as usize;

    let mut before = 0;
    for i in [0, 21, 59] {
        let id = svc
            .identify(&store, &capture(&palms[i], 50), None)
            .await
            .unwrap();
        assert_eq!(id.decision, Verdict::Accept, "palm {i}: {id:?}");
        assert_eq!(id.best.map(|b| b.0), Some(ids[i]));
        assert!(id.best.unwrap().1 >= policy.clear(), "{id:?}");
        // The palm was the index's first candidate (or nearly): nothing after it was read.
        let now = verified(&svc);
        assert!(
            now - before <= 4,
            "palm {i}: {} palms verified",
            now - before
        );
        before = now;
    }
    // A stranger: every shortlisted palm is verified (and the turned query's too).
    let id = svc
        .identify(&store, &capture(&palm(9_998), 50), None)
        .await
        .unwrap();
    assert_eq!(id.decision, Verdict::Reject, "{id:?}");
    assert!(
        verified(&svc) - before >= policy.shortlist,
        "a stranger got {} verifications",
        verified(&svc) - before
    );
    assert_eq!(svc.metrics.verified.count(), 4);
}
