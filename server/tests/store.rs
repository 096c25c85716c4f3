//! The ledger store's contract, written once against `dyn Store` (SQLite now; the
//! PostgreSQL backend will run the same functions).

use palmline_server::store::sqlite::SqliteStore;
use palmline_server::store::{Command, Idem, KioskRef, LedgerError, Outcome, Store};
use palmline_shared::api::{Receipt, TxKind};
use palmline_shared::{Currency, Money};
use proptest::prelude::*;
use std::sync::Arc;

const EUR: Currency = Currency::EUR;

fn eur(minor: i64) -> Money {
    Money::from_minor(minor, EUR)
}

fn sqlite() -> (tempfile::TempDir, Arc<dyn Store>) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("ledger.db"), EUR).unwrap();
    (dir, Arc::new(store))
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn kiosk(merchant: &str) -> KioskRef {
    KioskRef {
        kiosk_id: format!("k-{merchant}"),
        merchant: merchant.to_string(),
    }
}

fn idem(key: &str, body: &str) -> Idem {
    use sha2::Digest;
    Idem {
        scope: "kiosk:test".into(),
        key: key.into(),
        request_hash: sha2::Sha256::digest(body.as_bytes()).into(),
    }
}

async fn register(store: &dyn Store, name: &str) -> i64 {
    match store
        .execute(
            None,
            Command::RegisterShopper {
                username: name.into(),
                email: format!("{name}@example.com"),
                password_hash: "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaA".into(),
                pin_hash: None,
            },
        )
        .await
        .unwrap()
    {
        Outcome::Shopper(s) => s.id,
        o => panic!("unexpected {o:?}"),
    }
}

async fn deposit(store: &dyn Store, name: &str, minor: i64) -> Result<Outcome, LedgerError> {
    store
        .execute(
            None,
            Command::Deposit {
                at: kiosk("shop"),
                username: name.into(),
                amount: eur(minor),
            },
        )
        .await
}

fn receipt(o: Outcome) -> Receipt {
    match o {
        Outcome::Receipt(r) => r,
        o => panic!("not a receipt: {o:?}"),
    }
}

/// The invariants every state of the ledger must satisfy.
async fn assert_invariants(store: &dyn Store, shoppers: &[i64]) {
    let check = store.ledger_check().await.unwrap();
    assert!(check.ok, "ledger check failed: {check:?}");
    assert_eq!(store.total_balance().await.unwrap(), 0);
    for &id in shoppers {
        let wallet = store.wallet(id).await.unwrap();
        assert!(wallet.balance.minor() >= 0);
        // The whole history, paged, replays to the balance.
        let mut sum = 0i64;
        let mut before = None;
        let mut newest_after = None;
        loop {
            let page = store.history(id, before, 7).await.unwrap();
            for item in &page.items {
                newest_after.get_or_insert(item.balance_after.minor());
                sum += item.amount.minor();
            }
            match page.next_before {
                Some(b) => before = Some(b),
                None => break,
            }
        }
        assert_eq!(
            sum,
            wallet.balance.minor(),
            "history does not replay to balance"
        );
        if let Some(after) = newest_after {
            assert_eq!(after, wallet.balance.minor());
        }
    }
}

#[test]
fn money_moves_and_balances_follow() {
    let (_d, store) = sqlite();
    rt().block_on(async {
        let a = register(&*store, "alice").await;
        let b = register(&*store, "bob").await;
        let r = receipt(deposit(&*store, "alice", 10_000).await.unwrap());
        assert_eq!(r.balance_after, Some(eur(10_000)));
        assert_eq!(r.merchant.as_deref(), Some("shop"));
        let pay = receipt(
            store
                .execute(
                    None,
                    Command::Payment {
                        at: kiosk("shop"),
                        shopper_id: a,
                        amount: eur(2_500),
                        description: Some("coffee".into()),
                    },
                )
                .await
                .unwrap(),
        );
        assert_eq!(pay.balance_after, Some(eur(7_500)));
        let t = receipt(
            store
                .execute(
                    None,
                    Command::Transfer {
                        at: None,
                        from_shopper_id: a,
                        to_username: "bob".into(),
                        amount: eur(500),
                        note: None,
                    },
                )
                .await
                .unwrap(),
        );
        assert_eq!(t.counterparty.as_deref(), Some("bob"));
        assert_eq!(store.wallet(b).await.unwrap().balance, eur(500));
        // Refunds never exceed what remains of the payment.
        let refund = |amount| Command::Refund {
            payment_id: pay.transaction_id,
            amount: eur(amount),
            reason: None,
            operator: "ops".into(),
        };
        store.execute(None, refund(2_000)).await.unwrap();
        assert!(matches!(
            store.execute(None, refund(501)).await,
            Err(LedgerError::RefundExceedsPayment(_))
        ));
        store.execute(None, refund(500)).await.unwrap();
        assert!(matches!(
            store.execute(None, refund(1)).await,
            Err(LedgerError::RefundExceedsPayment(_))
        ));
        assert!(matches!(
            store
                .execute(
                    None,
                    Command::Refund {
                        payment_id: t.transaction_id,
                        amount: eur(1),
                        reason: None,
                        operator: "ops".into()
                    }
                )
                .await,
            Err(LedgerError::UnknownPayment)
        ));
        assert_eq!(store.wallet(a).await.unwrap().balance, eur(9_500));
        let day = store
            .merchant_day("shop", &r.created_at[..10])
            .await
            .unwrap();
        assert_eq!(day.payments_count, 1);
        assert_eq!(day.payments_total, eur(2_500));
        assert_eq!(day.refunds_total, eur(2_500));
        assert_eq!(day.deposits_total, eur(10_000));
        assert_invariants(&*store, &[a, b]).await;
    });
}

#[test]
fn rejected_operations_change_nothing() {
    let (_d, store) = sqlite();
    rt().block_on(async {
        let a = register(&*store, "alice").await;
        register(&*store, "bob").await;
        deposit(&*store, "alice", 1_000).await.unwrap();
        let before = store.ledger_check().await.unwrap();
        let pay = |minor| Command::Payment {
            at: kiosk("shop"),
            shopper_id: a,
            amount: eur(minor),
            description: None,
        };
        assert_eq!(
            store.execute(None, pay(1_001)).await,
            Err(LedgerError::InsufficientFunds)
        );
        assert!(matches!(
            store.execute(None, pay(0)).await,
            Err(LedgerError::InvalidAmount(_))
        ));
        assert!(matches!(
            store.execute(None, pay(-5)).await,
            Err(LedgerError::InvalidAmount(_))
        ));
        assert!(matches!(
            store
                .execute(
                    None,
                    Command::Payment {
                        at: kiosk("shop"),
                        shopper_id: a,
                        amount: Money::from_minor(5, Currency::USD),
                        description: None
                    }
                )
                .await,
            Err(LedgerError::UnsupportedCurrency(_))
        ));
        assert!(matches!(
            deposit(&*store, "nobody", 5).await,
            Err(LedgerError::UnknownAccount(_))
        ));
        assert!(matches!(
            store
                .execute(
                    None,
                    Command::Transfer {
                        at: None,
                        from_shopper_id: a,
                        to_username: "alice".into(),
                        amount: eur(1),
                        note: None
                    }
                )
                .await,
            Err(LedgerError::SameAccount)
        ));
        assert_eq!(
            store
                .execute(
                    None,
                    Command::RegisterShopper {
                        username: "alice".into(),
                        email: "x@y.zz".into(),
                        password_hash: "h".into(),
                        pin_hash: None
                    }
                )
                .await,
            Err(LedgerError::UsernameTaken)
        );
        // Frozen: no money moves in or out.
        store
            .execute(
                None,
                Command::SetFrozen {
                    account_id: a,
                    frozen: true,
                },
            )
            .await
            .unwrap();
        assert_eq!(
            store.execute(None, pay(1)).await,
            Err(LedgerError::AccountFrozen)
        );
        assert_eq!(
            deposit(&*store, "alice", 1).await,
            Err(LedgerError::AccountFrozen)
        );
        let after = store.ledger_check().await.unwrap();
        assert_eq!(before.transactions_checked, after.transactions_checked);
        assert_eq!(store.wallet(a).await.unwrap().balance, eur(1_000));
    });
}

#[test]
fn idempotent_retries_move_nothing() {
    let (_d, store) = sqlite();
    rt().block_on(async {
        register(&*store, "alice").await;
        let cmd = || Command::Deposit {
            at: kiosk("shop"),
            username: "alice".into(),
            amount: eur(700),
        };
        let first = store.execute(Some(idem("k1", "a")), cmd()).await.unwrap();
        let again = store.execute(Some(idem("k1", "a")), cmd()).await.unwrap();
        assert_eq!(first, again, "a retry returns the first response");
        assert_eq!(
            store.execute(Some(idem("k1", "b")), cmd()).await,
            Err(LedgerError::IdempotencyMismatch)
        );
        // Another caller may use the same key for its own request.
        let mut other = idem("k1", "a");
        other.scope = "kiosk:other".into();
        store.execute(Some(other), cmd()).await.unwrap();
        let a = store.shopper_auth("alice").await.unwrap().unwrap().id;
        assert_eq!(store.wallet(a).await.unwrap().balance, eur(1_400));
        // A domain error is the final answer too: a retry gets it again, even once the
        // money would be there.
        let pay = |minor| Command::Payment {
            at: kiosk("shop"),
            shopper_id: a,
            amount: eur(minor),
            description: None,
        };
        assert_eq!(
            store.execute(Some(idem("p1", "x")), pay(5_000)).await,
            Err(LedgerError::InsufficientFunds)
        );
        deposit(&*store, "alice", 10_000).await.unwrap();
        assert_eq!(
            store.execute(Some(idem("p1", "x")), pay(5_000)).await,
            Err(LedgerError::InsufficientFunds)
        );
        assert!(store.replay(&idem("p1", "x")).await.unwrap().is_some());
        assert!(store.replay(&idem("nope", "x")).await.unwrap().is_none());
    });
}

#[test]
fn concurrent_duplicates_have_one_effect() {
    let (_d, store) = sqlite();
    let rt = rt();
    let a = rt.block_on(async {
        let a = register(&*store, "alice").await;
        deposit(&*store, "alice", 100_000).await.unwrap();
        a
    });
    let results: Vec<_> = rt.block_on(async {
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let s = store.clone();
                tokio::spawn(async move {
                    s.execute(
                        Some(idem("same", "body")),
                        Command::Payment {
                            at: kiosk("shop"),
                            shopper_id: a,
                            amount: eur(1_000),
                            description: None,
                        },
                    )
                    .await
                })
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap().unwrap());
        }
        out
    });
    assert!(results.windows(2).all(|w| w[0] == w[1]));
    rt.block_on(async {
        assert_eq!(store.wallet(a).await.unwrap().balance, eur(99_000));
        assert_invariants(&*store, &[a]).await;
    });
}

#[test]
fn thirty_two_threads_keep_the_invariants() {
    let (_d, store) = sqlite();
    let rt = rt();
    let names: Vec<String> = (0..16).map(|i| format!("shopper{i:02}")).collect();
    let ids: Vec<i64> = rt.block_on(async {
        let mut ids = Vec::new();
        for n in &names {
            ids.push(register(&*store, n).await);
            deposit(&*store, n, 5_000).await.unwrap();
        }
        ids
    });
    let handle = rt.handle().clone();
    let threads: Vec<_> = (0..32u64)
        .map(|t| {
            let store = store.clone();
            let handle = handle.clone();
            let ids = ids.clone();
            let names = names.clone();
            std::thread::spawn(move || {
                let mut rng = t
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let mut next = move || {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    rng
                };
                let mut storage_errors = 0;
                for _ in 0..60 {
                    let from = ids[(next() % ids.len() as u64) as usize];
                    let amount = eur((next() % 900 + 1) as i64);
                    let cmd = if next() % 2 == 0 {
                        Command::Payment {
                            at: kiosk(if next() % 2 == 0 { "shop" } else { "bakery" }),
                            shopper_id: from,
                            amount,
                            description: None,
                        }
                    } else {
                        Command::Transfer {
                            at: None,
                            from_shopper_id: from,
                            to_username: names[(next() % names.len() as u64) as usize].clone(),
                            amount,
                            note: None,
                        }
                    };
                    match handle.block_on(store.execute(None, cmd)) {
                        Ok(_)
                        | Err(LedgerError::InsufficientFunds)
                        | Err(LedgerError::SameAccount) => {}
                        Err(e) => {
                            eprintln!("unexpected: {e}");
                            storage_errors += 1;
                        }
                    }
                }
                storage_errors
            })
        })
        .collect();
    let errors: i32 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(
        errors, 0,
        "no storage error (e.g. database is locked) may reach a caller"
    );
    rt.block_on(assert_invariants(&*store, &ids));
}

#[derive(Debug, Clone)]
enum Op {
    Deposit(usize, i64),
    Withdraw(usize, i64),
    Pay(usize, usize, i64),
    Transfer(usize, usize, i64),
    Refund(usize, i64),
    Freeze(usize, bool),
}

fn op() -> impl Strategy<Value = Op> {
    let amount = prop_oneof![1i64..1_000, 1i64..100_000, Just(i64::MAX / 4)];
    prop_oneof![
        (0usize..4, amount.clone()).prop_map(|(s, a)| Op::Deposit(s, a)),
        (0usize..4, amount.clone()).prop_map(|(s, a)| Op::Withdraw(s, a)),
        (0usize..4, 0usize..2, amount.clone()).prop_map(|(s, m, a)| Op::Pay(s, m, a)),
        (0usize..4, 0usize..4, amount.clone()).prop_map(|(s, t, a)| Op::Transfer(s, t, a)),
        (0usize..8, amount).prop_map(|(p, a)| Op::Refund(p, a)),
        (0usize..4, any::<bool>()).prop_map(|(s, f)| Op::Freeze(s, f)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn random_operation_sequences_keep_the_books(ops in proptest::collection::vec(op(), 1..60)) {
        let (_d, store) = sqlite();
        rt().block_on(async {
            let names = ["ann", "ben", "cat", "dan"];
            let mut ids = Vec::new();
            for n in names {
                ids.push(register(&*store, n).await);
            }
            let merchants = ["shop", "bakery"];
            let mut payments: Vec<i64> = Vec::new();
            for op in ops {
                let cmd = match op {
                    Op::Deposit(s, a) => Command::Deposit { at: kiosk("shop"), username: names[s].into(), amount: eur(a) },
                    Op::Withdraw(s, a) => Command::Withdrawal { at: kiosk("bakery"), shopper_id: ids[s], amount: eur(a) },
                    Op::Pay(s, m, a) => Command::Payment { at: kiosk(merchants[m]), shopper_id: ids[s], amount: eur(a), description: None },
                    Op::Transfer(s, t, a) => Command::Transfer { at: None, from_shopper_id: ids[s], to_username: names[t].into(), amount: eur(a), note: None },
                    Op::Refund(p, a) => match payments.get(p) {
                        Some(&id) => Command::Refund { payment_id: id, amount: eur(a), reason: None, operator: "ops".into() },
                        None => continue,
                    },
                    Op::Freeze(s, f) => Command::SetFrozen { account_id: ids[s], frozen: f },
                };
                match store.execute(None, cmd).await {
                    Ok(Outcome::Receipt(r)) => {
                        if r.kind == TxKind::Payment { payments.push(r.transaction_id); }
                    }
                    Ok(_) => {}
                    Err(LedgerError::Storage(e)) => panic!("storage error: {e}"),
                    Err(_) => {}
                }
            }
            assert_invariants(&*store, &ids).await;
        });
    }
}

#[test]
fn ledger_check_catches_tampering_and_schema_refuses_negative_shoppers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path, EUR).unwrap());
    let rt = rt();
    let a = rt.block_on(async {
        let a = register(&*store, "alice").await;
        deposit(&*store, "alice", 1_000).await.unwrap();
        assert!(store.ledger_check().await.unwrap().ok);
        a
    });
    let raw = rusqlite::Connection::open(&path).unwrap();
    raw.busy_timeout(std::time::Duration::from_secs(5)).unwrap();
    // The schema itself refuses a negative shopper balance.
    let err = raw
        .execute("UPDATE accounts SET balance = -1 WHERE id = ?1", [a])
        .unwrap_err();
    assert!(err.to_string().contains("CHECK"), "{err}");
    raw.execute(
        "UPDATE accounts SET balance = balance + 5 WHERE id = ?1",
        [a],
    )
    .unwrap();
    let check = rt.block_on(store.ledger_check()).unwrap();
    assert!(!check.ok);
    assert_eq!(check.total_balance_minor, 5);
    assert_eq!(check.mismatches.len(), 1);
    assert_eq!(check.mismatches[0].account_id, a);
    assert_eq!(
        check.mismatches[0].cached_minor - check.mismatches[0].from_entries_minor,
        5
    );
}

#[test]
fn backup_is_a_consistent_copy() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path, EUR).unwrap());
    let rt = rt();
    rt.block_on(async {
        register(&*store, "alice").await;
        deposit(&*store, "alice", 4_200).await.unwrap();
    });
    let out = dir.path().join("backup.db");
    palmline_server::store::sqlite::backup(&path, &out).unwrap();
    assert!(
        palmline_server::store::sqlite::backup(&path, &out).is_err(),
        "never overwrites"
    );
    let copy: Arc<dyn Store> = Arc::new(SqliteStore::open(&out, EUR).unwrap());
    rt.block_on(async {
        let check = copy.ledger_check().await.unwrap();
        assert!(check.ok);
        assert_eq!(check.transactions_checked, 1);
        let a = copy.shopper_auth("alice").await.unwrap().unwrap().id;
        assert_eq!(copy.wallet(a).await.unwrap().balance, eur(4_200));
    });
}

#[test]
fn template_rekey_goes_page_by_page_and_is_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let rt = rt();
    let expected: Vec<(i64, Vec<Vec<u8>>)> = rt.block_on(async {
        let store = SqliteStore::open(&path, EUR).unwrap();
        let mut palms = Vec::new();
        for n in 0..5u8 {
            let id = register(&store, &format!("shopper{n}")).await;
            let cts: Vec<Vec<u8>> = (0..3u8).map(|i| vec![n, i, 0xAA, 0xBB]).collect();
            store
                .execute(
                    None,
                    Command::EnrollPalm {
                        shopper_id: id,
                        ciphertexts: cts.clone(),
                    },
                )
                .await
                .unwrap();
            palms.push((id, cts));
        }
        palms
    });
    let stored = |path: &std::path::Path| {
        let store = SqliteStore::open(path, EUR).unwrap();
        rt.block_on(store.palm_templates(None)).unwrap()
    };
    assert_eq!(stored(&path), expected);

    // A failure on the 8th of 15 rows (in the 4th page of 2) rolls back the pages before it.
    let mut seen = 0;
    let err = palmline_server::store::sqlite::rekey_templates(&path, 2, |_, _, ct| {
        seen += 1;
        anyhow::ensure!(seen < 8, "cannot open");
        Ok(ct.iter().rev().copied().collect())
    })
    .unwrap_err();
    assert!(err.to_string().contains("cannot open"));
    assert_eq!(stored(&path), expected, "nothing changed");

    // Every row is visited exactly once, across page boundaries that split palms.
    let mut visited = Vec::new();
    let palms = palmline_server::store::sqlite::rekey_templates(&path, 2, |a, i, ct| {
        visited.push((a, i));
        Ok(ct.iter().rev().copied().collect())
    })
    .unwrap();
    assert_eq!(palms, 5);
    let want_rows: Vec<(i64, usize)> = expected
        .iter()
        .flat_map(|(a, cts)| (0..cts.len()).map(move |i| (*a, i)))
        .collect();
    assert_eq!(visited, want_rows);
    let reversed: Vec<(i64, Vec<Vec<u8>>)> = expected
        .iter()
        .map(|(a, cts)| {
            (
                *a,
                cts.iter()
                    .map(|c| c.iter().rev().copied().collect())
                    .collect(),
            )
        })
        .collect();
    assert_eq!(stored(&path), reversed);
}

#[test]
fn purge_drops_what_is_past_its_retention_and_keeps_the_rest_and_the_ledger() {
    use palmline_server::retention::{purge, Retention};
    use palmline_server::store::sqlite::unix_now;
    use palmline_server::store::Purged;
    rt().block_on(async {
        let (dir, store) = sqlite();
        let alice = register(&*store, "alice").await;
        for key in ["old", "new"] {
            let dep = Command::Deposit {
                at: kiosk("shop"),
                username: "alice".into(),
                amount: eur(1_000),
            };
            store.execute(Some(idem(key, key)), dep).await.unwrap();
        }
        let now = unix_now();
        for (token, expires_at) in [([1; 32], now - 10), ([2; 32], now + 3_600)] {
            let s = Command::CreateSession {
                token_hash: token,
                shopper_id: alice,
                kiosk_id: "k".into(),
                expires_at,
            };
            store.execute(None, s).await.unwrap();
        }
        let scan = || Command::LogScan {
            kiosk_id: "k".into(),
            purpose: "login".into(),
            outcome: palmline_shared::api::ScanOutcome::Rejected,
            score: None,
            shopper_id: Some(alice),
        };
        store.execute(None, scan()).await.unwrap();
        // Backdate: one idempotency record, 12,000 scans (more than one purge batch) and a
        // past day's guess count; today's guess count stays.
        let mut db = rusqlite::Connection::open(dir.path().join("ledger.db")).unwrap();
        let tx = db.transaction().unwrap();
        let long_ago = "2020-01-01T00:00:00.000000Z";
        tx.execute(
            "UPDATE idempotency SET created_at = ?1 WHERE key = 'old'",
            [long_ago],
        )
        .unwrap();
        for _ in 0..12_000 {
            tx.execute(
                "INSERT INTO palm_scans (kiosk_id, at, purpose, outcome) VALUES ('k', ?1, 'login', 'rejected')",
                [long_ago],
            )
            .unwrap();
        }
        let today = &palmline_server::store::sqlite::now_text()[..10];
        for day in ["2020-01-01", today] {
            tx.execute(
                "INSERT INTO auth_day (account_id, secret, day, guesses) VALUES (?1, 'password', ?2, 3)",
                rusqlite::params![alice, day],
            )
            .unwrap();
        }
        tx.commit().unwrap();
        let rows = |table: &str| -> i64 {
            db.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
                .unwrap()
        };
        let ledger_before = (rows("transactions"), rows("entries"));

        let p = purge(&*store, Retention::default(), unix_now()).await.unwrap();
        let expected = Purged {
            idempotency: 1,
            scans: 12_000,
            sessions: 1,
            guess_days: 1,
        };
        assert_eq!(p, expected);
        assert!(store.replay(&idem("old", "old")).await.unwrap().is_none());
        assert!(store.replay(&idem("new", "new")).await.unwrap().is_some());
        assert_eq!(rows("palm_scans"), 1, "the recent scan stays");
        assert_eq!(rows("sessions"), 1, "the live session stays");
        assert_eq!(rows("auth_day"), 1, "today's guesses stay");
        assert_eq!((rows("transactions"), rows("entries")), ledger_before);
        assert!(store.ledger_check().await.unwrap().ok);
        let again = purge(&*store, Retention::default(), unix_now()).await.unwrap();
        assert_eq!(again, Purged::default());
        // A shorter retention reaches the recent rows too.
        let soon = Retention::from_days(1, 1);
        let later = unix_now() + 2 * 86_400;
        let p = purge(&*store, soon, later).await.unwrap();
        assert_eq!((p.idempotency, p.scans), (1, 1));
        assert_eq!((rows("transactions"), rows("entries")), ledger_before);
    });
}

// ------------------------------------------------------------------ PostgreSQL (schema only)

#[path = "common/pg.rs"]
mod pg;

/// Table and column names of a SQLite database (its migrations applied by the store).
fn sqlite_columns(path: &std::path::Path) -> std::collections::BTreeSet<(String, String)> {
    let c = rusqlite::Connection::open(path).unwrap();
    let mut s = c
        .prepare(
            "SELECT m.name, p.name FROM sqlite_master m, pragma_table_info(m.name) p
             WHERE m.type = 'table'",
        )
        .unwrap();
    let rows = s
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    rows
}

#[test]
fn postgres_schema_mirrors_sqlite() {
    rt().block_on(async {
        let Some(db) = pg::fresh_db("schema").await else {
            return;
        };
        use palmline_server::store::postgres;
        assert_eq!(postgres::migrate(&db.pool).await.unwrap(), 1);
        // A second run (another replica starting) finds nothing to do.
        assert_eq!(postgres::migrate(&db.pool).await.unwrap(), 1);
        let client = db.pool.get().await.unwrap();
        let pg: std::collections::BTreeSet<(String, String)> = client
            .query(
                "SELECT table_name::text, column_name::text FROM information_schema.columns
                 WHERE table_schema = 'public' AND table_name <> 'schema_version'",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        drop(client);

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.db");
        drop(SqliteStore::open(&path, EUR).unwrap());
        let unused = [("accounts", "failed_auth"), ("accounts", "locked_until")];
        let lite: std::collections::BTreeSet<(String, String)> = sqlite_columns(&path)
            .into_iter()
            .filter(|(t, c)| !unused.contains(&(t.as_str(), c.as_str())))
            .collect();
        assert_eq!(pg, lite, "PostgreSQL and SQLite schemas differ");
        db.drop_db().await;
    });
}
