//! The ledger store's contract, written once against `dyn Store` and run on both stores:
//! each contract function takes a runtime and a store, and `on_both_stores!` makes a
//! `sqlite_store::NAME` and a `postgres_store::NAME` test of it. The PostgreSQL ones get a
//! fresh database each (`common/pg.rs`): without a server they are skipped loudly, except
//! under `CI=true`, where they fail.

use palmline_server::ledger::{AccountKind, Status, TxKind};
use palmline_server::store::postgres::{MoneyPath, PgStore};
use palmline_server::store::sqlite::SqliteStore;
use palmline_server::store::Receipt;
use palmline_server::store::{Command, Idem, LedgerError, Outcome, Store};
use palmline_shared::{Currency, Money};
use proptest::prelude::*;
use std::sync::Arc;

fn sqlite() -> (tempfile::TempDir, Arc<dyn Store>) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("ledger.db"), EUR).unwrap();
    (dir, Arc::new(store))
}

type Rt = tokio::runtime::Runtime;

/// Runs a contract on a fresh SQLite store.
fn on_sqlite(test: impl FnOnce(&Rt, Arc<dyn Store>)) {
    let (_dir, store) = sqlite();
    test(&rt(), store);
}

/// Runs a contract on a fresh PostgreSQL database (skipped loudly when there is no server,
/// outside CI). A failing test leaves its database behind, named with its process id.
fn on_postgres(tag: &str, test: impl FnOnce(&Rt, Arc<dyn Store>)) {
    on_postgres_with(tag, MoneyPath::PerCommand, test)
}

/// As [`on_postgres`], the store's money commands going through its group commit.
fn on_postgres_grouped(tag: &str, test: impl FnOnce(&Rt, Arc<dyn Store>)) {
    on_postgres_with(tag, MoneyPath::Grouped, test)
}

/// As [`on_postgres`], payments and transfers going through the batched writer.
fn on_postgres_batched(tag: &str, test: impl FnOnce(&Rt, Arc<dyn Store>)) {
    on_postgres_with(tag, MoneyPath::Batched, test)
}

fn on_postgres_with(tag: &str, path: MoneyPath, test: impl FnOnce(&Rt, Arc<dyn Store>)) {
    let rt = rt();
    // Database names stay well under PostgreSQL's 63 bytes.
    let Some(db) = rt.block_on(pg::fresh_db(&tag[..tag.len().min(24)])) else {
        return;
    };
    let store = rt
        .block_on(PgStore::with_pool_path(db.pool.clone(), EUR, path))
        .unwrap();
    test(&rt, Arc::new(store));
    rt.block_on(db.drop_db());
}

/// One `#[test]` per store for each contract function.
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod sqlite_store {
            $( #[test] fn $name() { super::on_sqlite(super::$name) } )*
        }
        mod postgres_store {
            $( #[test] fn $name() { super::on_postgres(stringify!($name), super::$name) } )*
        }
        mod postgres_grouped_store {
            $( #[test] fn $name() { super::on_postgres_grouped(stringify!($name), super::$name) } )*
        }
        mod postgres_batched_store {
            $( #[test] fn $name() { super::on_postgres_batched(stringify!($name), super::$name) } )*
        }
    };
}

on_both_stores!(
    money_moves_and_balances_follow,
    rejected_operations_change_nothing,
    idempotent_retries_move_nothing,
    concurrent_duplicates_have_one_effect,
    thirty_two_threads_keep_the_invariants,
    guesses_are_counted_once_each_under_concurrency,
    no_pin_limits_hold_under_concurrency,
    palm_changes_take_increasing_versions,
    palm_changes_since_a_version_come_in_order_with_their_state,
    reads_report_what_was_written,
);

fn idem(key: &str, body: &str) -> Idem {
    use sha2::Digest;
    Idem {
        scope: "kiosk:test".into(),
        key: key.into(),
        request_hash: sha2::Sha256::digest(body.as_bytes()).into(),
    }
}

/// The id of `merchant`'s till cashier, created on first use.
async fn cashier(store: &dyn Store, merchant: &str) -> i64 {
    let found = store.cashiers(Some(merchant)).await.unwrap();
    if let Some(c) = found.iter().find(|c| c.name == "Till") {
        return c.id;
    }
    let add = Command::CreateCashier {
        merchant: merchant.into(),
        name: "Till".into(),
        pin_hash: "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaA".into(),
    };
    match store.execute(None, add).await.unwrap() {
        Outcome::Cashier(c) => c.id,
        o => panic!("unexpected {o:?}"),
    }
}

async fn deposit(store: &dyn Store, name: &str, minor: i64) -> Result<Outcome, LedgerError> {
    let cashier_id = cashier(store, "shop").await;
    store
        .execute(
            None,
            Command::Deposit {
                at: kiosk("shop"),
                username: name.into(),
                amount: eur(minor),
                cashier_id,
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

fn money_moves_and_balances_follow(rt: &Rt, store: Arc<dyn Store>) {
    rt.block_on(async {
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
            .merchant_day("shop", r.created_at.date())
            .await
            .unwrap();
        assert_eq!(day.payments_count, 1);
        assert_eq!(day.payments_total, eur(2_500));
        assert_eq!(day.refunds_total, eur(2_500));
        assert_eq!(day.deposits_total, eur(10_000));
        assert_invariants(&*store, &[a, b]).await;
    });
}

fn rejected_operations_change_nothing(rt: &Rt, store: Arc<dyn Store>) {
    rt.block_on(async {
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

fn idempotent_retries_move_nothing(rt: &Rt, store: Arc<dyn Store>) {
    rt.block_on(async {
        register(&*store, "alice").await;
        let cashier_id = cashier(&*store, "shop").await;
        let cmd = || Command::Deposit {
            at: kiosk("shop"),
            username: "alice".into(),
            amount: eur(700),
            cashier_id,
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

fn concurrent_duplicates_have_one_effect(rt: &Rt, store: Arc<dyn Store>) {
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

fn thirty_two_threads_keep_the_invariants(rt: &Rt, store: Arc<dyn Store>) {
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
    fn random_operation_sequences_keep_the_books_sqlite(ops in proptest::collection::vec(op(), 1..60)) {
        on_sqlite(|rt, store| keeps_the_books(rt, store, ops));
    }

    #[test]
    fn random_operation_sequences_keep_the_books_postgres(ops in proptest::collection::vec(op(), 1..60)) {
        on_postgres("ops", |rt, store| keeps_the_books(rt, store, ops));
    }

    #[test]
    fn random_operation_sequences_keep_the_books_postgres_batched(ops in proptest::collection::vec(op(), 1..60)) {
        on_postgres_batched("ops_batched", |rt, store| keeps_the_books(rt, store, ops));
    }
}

/// The books balance after any sequence of operations, whatever each one's answer.
fn keeps_the_books(rt: &Rt, store: Arc<dyn Store>, ops: Vec<Op>) {
    rt.block_on(async {
        let names = ["ann", "ben", "cat", "dan"];
        let mut ids = Vec::new();
        for n in names {
            ids.push(register(&*store, n).await);
        }
        let merchants = ["shop", "bakery"];
        let desks = (
            cashier(&*store, "shop").await,
            cashier(&*store, "bakery").await,
        );
        let mut payments: Vec<i64> = Vec::new();
        for op in ops {
            let cmd = match op {
                Op::Deposit(s, a) => Command::Deposit {
                    at: kiosk("shop"),
                    username: names[s].into(),
                    amount: eur(a),
                    cashier_id: desks.0,
                },
                Op::Withdraw(s, a) => Command::Withdrawal {
                    at: kiosk("bakery"),
                    shopper_id: ids[s],
                    amount: eur(a),
                    cashier_id: desks.1,
                },
                Op::Pay(s, m, a) => Command::Payment {
                    at: kiosk(merchants[m]),
                    shopper_id: ids[s],
                    amount: eur(a),
                    description: None,
                },
                Op::Transfer(s, t, a) => Command::Transfer {
                    at: None,
                    from_shopper_id: ids[s],
                    to_username: names[t].into(),
                    amount: eur(a),
                    note: None,
                },
                Op::Refund(p, a) => match payments.get(p) {
                    Some(&id) => Command::Refund {
                        payment_id: id,
                        amount: eur(a),
                        reason: None,
                        operator: "ops".into(),
                    },
                    None => continue,
                },
                Op::Freeze(s, f) => Command::SetFrozen {
                    account_id: ids[s],
                    frozen: f,
                },
            };
            match store.execute(None, cmd).await {
                Ok(Outcome::Receipt(r)) => {
                    if r.kind == TxKind::Payment {
                        payments.push(r.transaction_id);
                    }
                }
                Ok(_) => {}
                Err(e @ (LedgerError::Storage(_) | LedgerError::Unavailable { .. })) => {
                    panic!("storage error: {e}")
                }
                Err(_) => {}
            }
        }
        assert_invariants(&*store, &ids).await;
    });
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
fn template_rekey_goes_page_by_page_and_is_all_or_nothing_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    rt().block_on(async {
        let store = SqliteStore::open(&path, EUR).unwrap();
        rekey_contract(&store, Rekeyer::Sqlite(&path)).await;
    });
}

#[test]
fn template_rekey_goes_page_by_page_and_is_all_or_nothing_postgres() {
    rt().block_on(async {
        let Some(db) = pg::fresh_db("rekey").await else {
            return;
        };
        let store = PgStore::with_pool(db.pool.clone(), EUR).await.unwrap();
        rekey_contract(&store, Rekeyer::Postgres(&db.pool)).await;
        drop(store);
        db.drop_db().await;
    });
}

/// `templates rekey` on either store.
enum Rekeyer<'a> {
    Sqlite(&'a std::path::Path),
    Postgres(&'a deadpool_postgres::Pool),
}

impl Rekeyer<'_> {
    async fn run(
        &self,
        page: usize,
        f: impl FnMut(i64, usize, &[u8]) -> anyhow::Result<Vec<u8>>,
    ) -> anyhow::Result<usize> {
        match self {
            Rekeyer::Sqlite(path) => palmline_server::store::sqlite::rekey_templates(path, page, f),
            Rekeyer::Postgres(pool) => {
                palmline_server::store::postgres::rekey::rekey_templates(pool, page, f).await
            }
        }
    }
}

async fn rekey_contract(store: &dyn Store, rekey: Rekeyer<'_>) {
    let mut expected: Vec<(i64, Vec<Vec<u8>>)> = Vec::new();
    for n in 0..5u8 {
        let id = register(store, &format!("shopper{n}")).await;
        let cts: Vec<Vec<u8>> = (0..3u8).map(|i| vec![n, i, 0xAA, 0xBB]).collect();
        let enroll = Command::EnrollPalm {
            shopper_id: id,
            ciphertexts: cts.clone(),
        };
        store.execute(None, enroll).await.unwrap();
        expected.push((id, cts));
    }
    assert_eq!(store.palm_templates(None).await.unwrap(), expected);

    // A failure on the 8th of 15 rows (in the 4th page of 2) rolls back the pages before it.
    let mut seen = 0;
    let err = rekey
        .run(2, |_, _, ct| {
            seen += 1;
            anyhow::ensure!(seen < 8, "cannot open");
            Ok(ct.iter().rev().copied().collect())
        })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("cannot open"));
    assert_eq!(
        store.palm_templates(None).await.unwrap(),
        expected,
        "nothing changed"
    );

    // Every row is visited exactly once, across page boundaries that split palms.
    let mut visited = Vec::new();
    let palms = rekey
        .run(2, |a, i, ct| {
            visited.push((a, i));
            Ok(ct.iter().rev().copied().collect())
        })
        .await
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
            let cts = cts.iter().map(|c| c.iter().rev().copied().collect());
            (*a, cts.collect())
        })
        .collect();
    assert_eq!(store.palm_templates(None).await.unwrap(), reversed);
}

/// SQL on a store's database behind the store's back, for what no command does
/// (backdating rows); the statements are written to run on both.
enum Raw {
    Sqlite(std::path::PathBuf),
    Postgres(deadpool_postgres::Pool),
}

impl Raw {
    async fn exec(&self, sql: &str) {
        match self {
            Raw::Sqlite(path) => {
                let c = rusqlite::Connection::open(path).unwrap();
                c.busy_timeout(std::time::Duration::from_secs(5)).unwrap();
                c.execute_batch(sql).unwrap();
            }
            Raw::Postgres(pool) => pool.get().await.unwrap().batch_execute(sql).await.unwrap(),
        }
    }

    async fn rows(&self, table: &str) -> i64 {
        let sql = format!("SELECT COUNT(*) FROM {table}");
        match self {
            Raw::Sqlite(path) => rusqlite::Connection::open(path)
                .unwrap()
                .query_row(&sql, [], |r| r.get(0))
                .unwrap(),
            Raw::Postgres(pool) => pool
                .get()
                .await
                .unwrap()
                .query_one(&sql, &[])
                .await
                .unwrap()
                .get(0),
        }
    }
}

#[test]
fn purge_drops_what_is_past_its_retention_and_keeps_the_rest_and_the_ledger_sqlite() {
    let (dir, store) = sqlite();
    purge_contract(&rt(), store, Raw::Sqlite(dir.path().join("ledger.db")));
}

#[test]
fn purge_drops_what_is_past_its_retention_and_keeps_the_rest_and_the_ledger_postgres() {
    let rt = rt();
    let Some(db) = rt.block_on(pg::fresh_db("purge")) else {
        return;
    };
    let store = rt
        .block_on(PgStore::with_pool(db.pool.clone(), EUR))
        .unwrap();
    purge_contract(&rt, Arc::new(store), Raw::Postgres(db.pool.clone()));
    rt.block_on(db.drop_db());
}

fn purge_contract(rt: &Rt, store: Arc<dyn Store>, raw: Raw) {
    use palmline_server::retention::{purge, Retention};
    use palmline_server::store::clock::{now_text, unix_now};
    use palmline_server::store::Purged;
    rt.block_on(async {
        let alice = register(&*store, "alice").await;
        let cashier_id = cashier(&*store, "shop").await;
        for key in ["old", "new"] {
            let dep = Command::Deposit {
                at: kiosk("shop"),
                username: "alice".into(),
                amount: eur(1_000),
                cashier_id,
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
            let c = Command::CreateCashierSession {
                token_hash: token,
                cashier_id,
                kiosk_id: "k".into(),
                expires_at,
            };
            store.execute(None, c).await.unwrap();
        }
        let scan = || Command::LogScan {
            kiosk_id: "k".into(),
            purpose: "login".into(),
            outcome: palmline_server::store::ScanOutcome::Rejected,
            score: None,
            shopper_id: Some(alice),
        };
        store.execute(None, scan()).await.unwrap();
        // Backdate: one idempotency record, 12,000 scans (more than one purge batch) and a
        // past day's guess count; today's guess count stays.
        let long_ago = "2020-01-01T00:00:00.000000Z";
        let today = &now_text()[..10];
        raw.exec(&format!(
            "UPDATE idempotency SET created_at = '{long_ago}' WHERE key = 'old';
             INSERT INTO palm_scans (kiosk_id, at, purpose, outcome)
               WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 12000)
               SELECT 'k', '{long_ago}', 'login', 'rejected' FROM n;
             INSERT INTO auth_day (account_id, secret, day, guesses)
               VALUES ({alice}, 'password', '2020-01-01', 3), ({alice}, 'password', '{today}', 3);"
        ))
        .await;
        let ledger_before = (raw.rows("transactions").await, raw.rows("entries").await);
        assert_eq!(raw.rows("palm_scans").await, 12_001);

        let p = purge(&*store, Retention::default(), unix_now())
            .await
            .unwrap();
        let expected = Purged {
            idempotency: 1,
            scans: 12_000,
            sessions: 2, // a shopper's and a cashier's
            guess_days: 1,
        };
        assert_eq!(p, expected);
        assert!(store.replay(&idem("old", "old")).await.unwrap().is_none());
        assert!(store.replay(&idem("new", "new")).await.unwrap().is_some());
        assert_eq!(raw.rows("palm_scans").await, 1, "the recent scan stays");
        assert_eq!(raw.rows("sessions").await, 1, "the live session stays");
        assert_eq!(raw.rows("cashier_sessions").await, 1, "the live one stays");
        assert_eq!(raw.rows("auth_day").await, 1, "today's guesses stay");
        let ledger_now = (raw.rows("transactions").await, raw.rows("entries").await);
        assert_eq!(ledger_now, ledger_before);
        assert!(store.ledger_check().await.unwrap().ok);
        let again = purge(&*store, Retention::default(), unix_now())
            .await
            .unwrap();
        assert_eq!(again, Purged::default());
        // A shorter retention reaches the recent rows too.
        let soon = Retention::from_days(1, 1);
        let later = unix_now() + 2 * 86_400;
        let p = purge(&*store, soon, later).await.unwrap();
        assert_eq!((p.idempotency, p.scans), (1, 1));
        let ledger_now = (raw.rows("transactions").await, raw.rows("entries").await);
        assert_eq!(ledger_now, ledger_before);
    });
}

/// Runs `n` commands at once (made by `cmd(i)`) and returns their answers in order.
async fn all_at_once(
    store: &Arc<dyn Store>,
    n: usize,
    cmd: impl Fn(usize) -> Command,
) -> Vec<Result<Outcome, LedgerError>> {
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let (s, c) = (store.clone(), cmd(i));
            tokio::spawn(async move { s.execute(None, c).await })
        })
        .collect();
    let mut out = Vec::with_capacity(n);
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

fn guesses_are_counted_once_each_under_concurrency(rt: &Rt, store: Arc<dyn Store>) {
    use palmline_server::limits::{Factor, Grant, GuessKey, GuessRules};
    rt.block_on(async {
        let a = register(&*store, "alice").await;
        let key = |account_id, kiosk: &str| GuessKey {
            account_id,
            factor: Factor::Pin,
            kiosk_id: kiosk.into(),
        };
        let rules = |lock_after| GuessRules {
            lock_after,
            lock_secs: 60,
            max_lock_secs: 600,
            max_per_day: 7,
        };
        let reserve = |k: GuessKey, r: GuessRules| Command::ReserveGuess { key: k, rules: r };
        let grant = |o: Result<Outcome, LedgerError>| match o {
            Ok(Outcome::Guess(g)) => g,
            o => panic!("not a grant: {o:?}"),
        };
        // 24 guesses at once from three kiosks: exactly the day's budget of 7 is granted.
        let kiosks = ["k1", "k2", "k3"];
        let answers = all_at_once(&store, 24, |i| reserve(key(a, kiosks[i % 3]), rules(100))).await;
        let granted = answers
            .into_iter()
            .map(grant)
            .filter(|g| {
                assert!(matches!(g, Grant::Granted | Grant::DailyCapReached), "{g:?}");
                *g == Grant::Granted
            })
            .count();
        assert_eq!(granted, 7);
        // A right guess gives one back to the day's budget, and only one.
        let right = Command::GuessRight { key: key(a, "k1") };
        assert_eq!(store.execute(None, right).await, Ok(Outcome::Done));
        let again = |k| store.execute(None, reserve(k, rules(100)));
        assert_eq!(grant(again(key(a, "k2")).await), Grant::Granted);
        assert_eq!(grant(again(key(a, "k3")).await), Grant::DailyCapReached);

        // Three wrong guesses at once at one kiosk lock it there, and only there.
        let b = register(&*store, "bob").await;
        let answers = all_at_once(&store, 3, |_| reserve(key(b, "k1"), rules(3))).await;
        assert!(answers.into_iter().all(|o| grant(o) == Grant::Granted));
        let locked = grant(store.execute(None, reserve(key(b, "k1"), rules(3))).await);
        assert!(matches!(locked, Grant::LockedHere { until } if until > palmline_server::store::clock::unix_now()));
        let elsewhere = store.execute(None, reserve(key(b, "k2"), rules(3))).await;
        assert_eq!(grant(elsewhere), Grant::Granted);

        // The operator lifts bob's locks: k1 grants again, and alice's spent budget stays.
        let lift = |account_id| store.execute(None, Command::LiftLocks { account_id });
        assert!(matches!(lift(b).await, Ok(Outcome::Account(r)) if r.id == b));
        assert_eq!(grant(again(key(b, "k1")).await), Grant::Granted);
        assert_eq!(grant(again(key(a, "k1")).await), Grant::DailyCapReached);
        // Lifting alice's gives her day's budget back.
        assert!(lift(a).await.is_ok());
        assert_eq!(grant(again(key(a, "k1")).await), Grant::Granted);
        // Only shoppers: unknown ids and merchants are refused.
        assert!(matches!(lift(999_999).await, Err(LedgerError::UnknownAccount(_))));
    });
}

fn no_pin_limits_hold_under_concurrency(rt: &Rt, store: Arc<dyn Store>) {
    use palmline_server::limits::{NoPinGuard, NoPinLimits};
    rt.block_on(async {
        let a = register(&*store, "alice").await;
        deposit(&*store, "alice", 100_000).await.unwrap();
        let limits = NoPinLimits {
            per_session: eur(3_000),
            per_day: eur(5_000),
        };
        let pay = |session_hash| Command::WithoutPin {
            guard: NoPinGuard {
                session_hash,
                limits,
                pin_set: true,
            },
            debit: Box::new(Command::Payment {
                at: kiosk("shop"),
                shopper_id: a,
                amount: eur(1_000),
                description: None,
            }),
        };
        let count = |answers: Vec<Result<Outcome, LedgerError>>| {
            let mut ok = 0;
            for a in answers {
                match a {
                    Ok(Outcome::Receipt(_)) => ok += 1,
                    Err(LedgerError::PinRequired) => {}
                    o => panic!("unexpected {o:?}"),
                }
            }
            ok
        };
        // Eight payments of 10.00 at once in one session limited to 30.00: three pass.
        let in_session = all_at_once(&store, 8, |_| pay(Some([7; 32]))).await;
        assert_eq!(count(in_session), 3);
        // Palm payments (no session) count toward the day's 50.00: two more pass.
        let by_palm = all_at_once(&store, 6, |_| pay(None)).await;
        assert_eq!(count(by_palm), 2);
        assert_eq!(store.wallet(a).await.unwrap().balance, eur(95_000));
        // Only a debit can be made without the PIN.
        let not_a_debit = Command::WithoutPin {
            guard: NoPinGuard {
                session_hash: None,
                limits,
                pin_set: true,
            },
            debit: Box::new(Command::Deposit {
                at: kiosk("shop"),
                username: "alice".into(),
                amount: eur(1),
                cashier_id: cashier(&*store, "shop").await,
            }),
        };
        assert!(matches!(
            store.execute(None, not_a_debit).await,
            Err(LedgerError::Storage(_))
        ));
        assert_invariants(&*store, &[a]).await;
    });
}

fn palm_changes_take_increasing_versions(rt: &Rt, store: Arc<dyn Store>) {
    use palmline_server::store::PalmVersion;
    rt.block_on(async {
        let mut ids = Vec::new();
        for n in 0..6 {
            ids.push(register(&*store, &format!("palm{n}")).await);
        }
        assert_eq!(store.palm_version().await.unwrap(), PalmVersion(0));
        let cts = |id: i64| vec![vec![id as u8, 1], vec![id as u8, 2]];
        let enroll = |i: usize| Command::EnrollPalm {
            shopper_id: ids[i],
            ciphertexts: cts(ids[i]),
        };
        let mut versions: Vec<u64> = all_at_once(&store, ids.len(), enroll)
            .await
            .into_iter()
            .map(|o| o.unwrap().palm_version().expect("a palm version").0)
            .collect();
        versions.sort_unstable();
        assert_eq!(versions, (1..=6).collect::<Vec<u64>>(), "one version each");
        assert_eq!(store.palm_version().await.unwrap(), PalmVersion(6));
        assert_eq!(store.palm_owners().await.unwrap(), ids);
        let some = store
            .palm_templates(Some(vec![ids[2], ids[0]]))
            .await
            .unwrap();
        assert_eq!(some, vec![(ids[2], cts(ids[2])), (ids[0], cts(ids[0]))]);
        let gone = store
            .execute(None, Command::DeletePalm { shopper_id: ids[0] })
            .await;
        assert_eq!(gone.unwrap().palm_version(), Some(PalmVersion(7)));
        assert_eq!(store.palm_templates(None).await.unwrap().len(), 5);
        assert!(!store.wallet(ids[0]).await.unwrap().shopper.palm_enrolled);
        assert!(store.wallet(ids[1]).await.unwrap().shopper.palm_enrolled);
        let freeze = Command::SetFrozen {
            account_id: ids[1],
            frozen: true,
        };
        store.execute(None, freeze).await.unwrap();
        assert_eq!(
            store.execute(None, enroll(1)).await,
            Err(LedgerError::AccountFrozen)
        );
        let nobody = Command::EnrollPalm {
            shopper_id: 999_999,
            ciphertexts: vec![vec![1]],
        };
        assert!(matches!(
            store.execute(None, nobody).await,
            Err(LedgerError::UnknownAccount(_))
        ));
        assert_eq!(store.palm_version().await.unwrap(), PalmVersion(7));
    });
}

/// What a replica's follower reads: each palm changed after a version, once, as it is now.
fn palm_changes_since_a_version_come_in_order_with_their_state(rt: &Rt, store: Arc<dyn Store>) {
    use palmline_server::store::{PalmChange, PalmState, PalmVersion};
    rt.block_on(async {
        let (a, b) = (register(&*store, "pa").await, register(&*store, "pb").await);
        let enroll = |id: i64, tag: u8| Command::EnrollPalm {
            shopper_id: id,
            ciphertexts: vec![vec![tag, 0], vec![tag, 1]],
        };
        for cmd in [enroll(a, 1), enroll(b, 2), enroll(a, 3)] {
            store.execute(None, cmd).await.unwrap();
        }
        store
            .execute(None, Command::DeletePalm { shopper_id: b })
            .await
            .unwrap();
        let change = |account, v, state| PalmChange {
            account,
            version: PalmVersion(v),
            state,
        };
        let a_now = PalmState::Enrolled(vec![vec![3, 0], vec![3, 1]]);
        let all = store.palm_changes(PalmVersion(0), 10).await.unwrap();
        let want = vec![
            change(a, 3, a_now.clone()),
            change(b, 4, PalmState::Deleted),
        ];
        assert_eq!(all, want, "only each palm's latest change, by version");
        let page = store.palm_changes(PalmVersion(0), 1).await.unwrap();
        assert_eq!(page, want[..1]);
        let after = store.palm_changes(PalmVersion(3), 10).await.unwrap();
        assert_eq!(after, want[1..]);
        assert!(store
            .palm_changes(PalmVersion(4), 10)
            .await
            .unwrap()
            .is_empty());
    });
}

fn reads_report_what_was_written(rt: &Rt, store: Arc<dyn Store>) {
    use palmline_server::store::clock::unix_now;
    use palmline_server::store::{ScanOutcome, Timestamp};
    rt.block_on(async {
        let a = register(&*store, "alice").await;
        register(&*store, "bob").await;
        deposit(&*store, "alice", 5_000).await.unwrap();
        for _ in 0..2 {
            let touch = Command::TouchKiosk { at: kiosk("shop") };
            store.execute(None, touch).await.unwrap();
        }
        let pay = Command::Payment {
            at: kiosk("bakery"),
            shopper_id: a,
            amount: eur(1_200),
            description: Some("bread".into()),
        };
        store.execute(None, pay).await.unwrap();

        let kiosks = store.kiosks().await.unwrap();
        assert_eq!(kiosks.len(), 1);
        assert_eq!(
            (kiosks[0].kiosk_id.as_str(), kiosks[0].merchant.as_str()),
            ("k-shop", "shop")
        );
        assert_eq!(kiosks[0].requests, 2);
        let found = store.accounts(Some("ali"), 10).await.unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(
            (found[0].name.as_str(), found[0].balance),
            ("alice", eur(3_800))
        );
        assert!(
            store.accounts(Some("%"), 10).await.unwrap().is_empty(),
            "% is literal"
        );
        let kinds: Vec<AccountKind> = store
            .accounts(None, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.kind)
            .collect();
        assert_eq!(
            kinds,
            [
                AccountKind::Shopper,
                AccountKind::Shopper,
                AccountKind::Merchant,
                AccountKind::Merchant
            ],
            "no tills"
        );
        let frozen = store
            .execute(
                None,
                Command::SetFrozen {
                    account_id: a,
                    frozen: true,
                },
            )
            .await;
        match frozen.unwrap() {
            Outcome::Account(row) => {
                assert_eq!(row.status, Status::Frozen)
            }
            o => panic!("not an account: {o:?}"),
        }
        assert!(store.shopper_auth("alice").await.unwrap().unwrap().frozen);
        assert_eq!(
            store.shopper_auth_by_id(a).await.unwrap().unwrap().username,
            "alice"
        );
        assert!(store.shopper_auth("nobody").await.unwrap().is_none());

        let today = Timestamp::now().date();
        let report = store.daily_report(today).await.unwrap();
        let names: Vec<&str> = report
            .merchants
            .iter()
            .map(|m| m.merchant.as_str())
            .collect();
        assert_eq!(names, ["bakery", "shop"]);
        assert_eq!(report.merchants[0].payments_total, eur(1_200));
        assert_eq!(report.merchants[1].deposits_total, eur(5_000));
        assert_eq!(report.merchants[1].cash_net, eur(5_000));
        let unseen = store.merchant_day("nowhere", today).await.unwrap();
        assert_eq!((unseen.payments_count, unseen.payments_total), (0, eur(0)));
        // The calendar's last day has no end to count up to.
        assert!(store.merchant_day("shop", time::Date::MAX).await.is_err());

        let now = unix_now();
        let session = Command::CreateSession {
            token_hash: [9; 32],
            shopper_id: a,
            kiosk_id: "k-shop".into(),
            expires_at: now + 60,
        };
        store.execute(None, session).await.unwrap();
        let s = store
            .session([9; 32], now)
            .await
            .unwrap()
            .expect("a live session");
        assert_eq!((s.shopper_id, s.kiosk_id.as_str()), (a, "k-shop"));
        assert!(
            store.session([9; 32], now + 120).await.unwrap().is_none(),
            "expired"
        );
        assert!(store.session([8; 32], now).await.unwrap().is_none());

        for (outcome, who) in [
            (ScanOutcome::Rejected, None),
            (ScanOutcome::Accepted, Some(a)),
        ] {
            let scan = Command::LogScan {
                kiosk_id: "k-shop".into(),
                purpose: "payment".into(),
                outcome,
                score: who.map(|_| 42.5),
                shopper_id: who,
            };
            store.execute(None, scan).await.unwrap();
        }
        let scans = store.palm_scans(None, 10).await.unwrap();
        assert_eq!(scans.len(), 2);
        assert_eq!(
            (
                scans[0].outcome,
                scans[0].account.as_deref(),
                scans[0].score
            ),
            (ScanOutcome::Accepted, Some("alice"), Some(42.5))
        );
        let older = store.palm_scans(Some(scans[0].id), 10).await.unwrap();
        assert_eq!(older.len(), 1);
        assert_eq!(
            (older[0].outcome, older[0].account.as_deref()),
            (ScanOutcome::Rejected, None)
        );
    });
}

// ------------------------------------------------------------------ PostgreSQL (schema only)

#[path = "common/pg.rs"]
mod pg;

#[path = "common/ledger.rs"]
mod ledger;
use ledger::{eur, kiosk, register, rt, EUR};

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
        let latest = postgres::MIGRATIONS.len();
        assert_eq!(postgres::migrate(&db.pool).await.unwrap(), latest);
        // A second run (another replica starting) finds nothing to do.
        assert_eq!(postgres::migrate(&db.pool).await.unwrap(), latest);
        let client = db.pool.get().await.unwrap();
        let pg: std::collections::BTreeSet<(String, String)> = client
            .query(
                "SELECT table_name::text, column_name::text FROM information_schema.columns
                 WHERE table_schema = 'public' AND table_name NOT IN
                   ('schema_version', 'rate_buckets', 'kiosk_failures')",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        drop(client);
        // Only replicas share the identification limits' counts (`replicas.sql`); one SQLite
        // server keeps them in memory.

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.db");
        drop(SqliteStore::open(&path, EUR).unwrap());
        // Column for column, now that SQLite's migration 6 dropped the unused lock columns.
        let lite = sqlite_columns(&path);
        assert_eq!(pg, lite, "PostgreSQL and SQLite schemas differ");
        db.drop_db().await;
    });
}

// ------------------------------------------------------------------ PostgreSQL only

/// Two stores on one database stand for two server replicas: a key retried at both at once
/// runs once, because the in-flight guard is a row, not a process's memory.
#[test]
fn postgres_replicas_share_the_in_flight_guard() {
    rt().block_on(async {
        let Some(db) = pg::fresh_db("replicas").await else {
            return;
        };
        let a: Arc<dyn Store> = Arc::new(PgStore::with_pool(db.pool.clone(), EUR).await.unwrap());
        let b: Arc<dyn Store> = Arc::new(PgStore::open(&db.url, EUR, 4).await.unwrap());
        let alice = register(&*a, "alice").await;
        deposit(&*b, "alice", 10_000).await.unwrap();
        let pay = || Command::Payment {
            at: kiosk("shop"),
            shopper_id: alice,
            amount: eur(1_000),
            description: None,
        };
        let tasks: Vec<_> = (0..12)
            .map(|i| {
                let s = if i % 2 == 0 { a.clone() } else { b.clone() };
                let cmd = pay();
                tokio::spawn(async move { s.execute(Some(idem("once", "body")), cmd).await })
            })
            .collect();
        let mut answers = Vec::new();
        for t in tasks {
            answers.push(t.await.unwrap().unwrap());
        }
        assert!(answers.windows(2).all(|w| w[0] == w[1]), "one answer");
        assert_eq!(a.wallet(alice).await.unwrap().balance, eur(9_000));
        assert_eq!(
            b.execute(Some(idem("once", "other body")), pay()).await,
            Err(LedgerError::IdempotencyMismatch)
        );
        assert_invariants(&*b, &[alice]).await;
        db.drop_db().await;
    });
}

#[test]
fn postgres_unreachable_is_a_typed_unavailable_error() {
    rt().block_on(async {
        // Port 1 of this machine: nobody listens there.
        let url = "postgres://postgres@127.0.0.1:1/palmline";
        let err = PgStore::open(url, EUR, 1).await.err().expect("no server");
        match err {
            LedgerError::Unavailable { fault, .. } => {
                assert_eq!(fault, palmline_server::store::StorageFault::Unreachable)
            }
            e => panic!("not an unavailable store: {e:?}"),
        }
    });
}

#[test]
fn postgres_ledger_check_catches_tampering_and_schema_refuses_negative_shoppers() {
    rt().block_on(async {
        let Some(db) = pg::fresh_db("tamper").await else {
            return;
        };
        let store = PgStore::with_pool(db.pool.clone(), EUR).await.unwrap();
        let a = register(&store, "alice").await;
        deposit(&store, "alice", 1_000).await.unwrap();
        assert!(store.ledger_check().await.unwrap().ok);
        let raw = db.pool.get().await.unwrap();
        // The schema itself refuses a negative shopper balance.
        let err = raw
            .execute("UPDATE accounts SET balance = -1 WHERE id = $1", &[&a])
            .await
            .unwrap_err();
        assert_eq!(
            err.code(),
            Some(&tokio_postgres::error::SqlState::CHECK_VIOLATION)
        );
        raw.execute(
            "UPDATE accounts SET balance = balance + 5 WHERE id = $1",
            &[&a],
        )
        .await
        .unwrap();
        drop(raw);
        let check = store.ledger_check().await.unwrap();
        assert!(!check.ok);
        assert_eq!(check.total_balance_minor, 5);
        assert_eq!(check.mismatches.len(), 1);
        assert_eq!(check.mismatches[0].account_id, a);
        assert_eq!(
            check.mismatches[0].cached_minor - check.mismatches[0].from_entries_minor,
            5
        );
        db.drop_db().await;
    });
}

/// The batched writer decides a batch's movements in order against the balances the earlier
/// ones left: a refused one (insufficient funds) changes nothing and the later ones in the
/// same batch still go through; keys of a batch replay their first answer. The batch is
/// made by holding a row lock from another connection, so the writer's first batch waits
/// while the next four queue up behind it (their one shared timestamp shows they were one).
#[test]
fn postgres_batch_refuses_one_and_goes_on_and_its_keys_replay() {
    rt().block_on(async {
        let Some(db) = pg::fresh_db("batch").await else {
            return;
        };
        let pg = PgStore::with_pool_path(db.pool.clone(), EUR, MoneyPath::Batched);
        let pg = Arc::new(pg.await.unwrap());
        let store: Arc<dyn Store> = pg.clone();
        let (ann, ben, cat) = (
            register(&*store, "ann").await,
            register(&*store, "ben").await,
            register(&*store, "cat").await,
        );
        deposit(&*store, "ann", 1_000).await.unwrap();
        let blocker = hold_row_lock(&db.url, cat).await;
        let pay = |shopper_id, minor| Command::Payment {
            at: kiosk("shop"),
            shopper_id,
            amount: eur(minor),
            description: None,
        };
        let send = |from_shopper_id, to: &str, minor| Command::Transfer {
            at: None,
            from_shopper_id,
            to_username: to.into(),
            amount: eur(minor),
            note: None,
        };
        // The store has one writer (`batch::WRITERS`), now stuck on `cat`.
        let first = stuck_behind(&pg, &blocker, pay(cat, 1)).await;
        let refused_key = idem("refused", "ann sends 5.00 to ben");
        let sent_key = idem("sent", "ann sends 3.00 to ben");
        let batch = [
            queue(&pg, None, pay(ann, 600)).await,
            queue(&pg, Some(refused_key.clone()), send(ann, "ben", 500)).await,
            queue(&pg, Some(sent_key.clone()), send(ann, "ben", 300)).await,
            queue(&pg, None, pay(ben, 300)).await,
        ];
        blocker.batch_execute("ROLLBACK").await.unwrap();
        assert_eq!(first.await.unwrap(), Err(LedgerError::InsufficientFunds));
        let mut answers = Vec::new();
        for t in batch {
            answers.push(t.await.unwrap());
        }
        assert_eq!(answers[1], Err(LedgerError::InsufficientFunds));
        let moved: Vec<Receipt> = [0, 2, 3]
            .iter()
            .map(|&i| receipt(answers[i].clone().unwrap()))
            .collect();
        assert!(
            moved.iter().all(|r| r.created_at == moved[0].created_at),
            "the four were not one batch: {moved:?}"
        );
        assert_eq!(moved[0].balance_after, Some(eur(400)));
        assert_eq!(moved[1].balance_after, Some(eur(100)));
        assert_eq!(moved[2].balance_after, Some(eur(0)));
        for (id, minor) in [(ann, 100), (ben, 0), (cat, 0)] {
            assert_eq!(store.wallet(id).await.unwrap().balance, eur(minor));
        }
        // Replays answer as the batch did, even once the money would be there.
        deposit(&*store, "ann", 10_000).await.unwrap();
        let again = store.execute(Some(refused_key.clone()), send(ann, "ben", 500));
        assert_eq!(again.await, Err(LedgerError::InsufficientFunds));
        let again = store.execute(Some(sent_key.clone()), send(ann, "ben", 300));
        assert_eq!(again.await, answers[2]);
        assert_eq!(
            store.replay(&sent_key).await.unwrap(),
            Some(answers[2].clone())
        );
        let other = store.execute(Some(idem("sent", "another body")), send(ann, "ben", 1));
        assert_eq!(other.await, Err(LedgerError::IdempotencyMismatch));
        assert_eq!(store.wallet(ann).await.unwrap().balance, eur(10_100));
        // A merchant seen for the first time: the batch hands the payment to the
        // per-command path (which creates the merchant), its key released for it.
        let new_key = idem("new-merchant", "ann pays 1.00 at a new shop");
        let at_new = Command::Payment {
            at: kiosk("new-shop"),
            shopper_id: ann,
            amount: eur(100),
            description: None,
        };
        let paid = store.execute(Some(new_key.clone()), at_new.clone()).await;
        assert_eq!(
            receipt(paid.clone().unwrap()).merchant.as_deref(),
            Some("new-shop")
        );
        assert_eq!(store.execute(Some(new_key), at_new).await, paid);
        assert_eq!(store.wallet(ann).await.unwrap().balance, eur(10_000));
        assert_invariants(&*store, &[ann, ben, cat]).await;
        drop(store);
        drop(pg);
        db.drop_db().await;
    });
}

/// Debits without the PIN go through the batch: each is decided against what the shopper
/// and the session spent before the batch and earlier in it, and recorded for the next.
#[test]
fn postgres_batch_holds_the_no_pin_limits() {
    use palmline_server::limits::{NoPinGuard, NoPinLimits};
    rt().block_on(async {
        let Some(db) = pg::fresh_db("batch_nopin").await else {
            return;
        };
        let pg = PgStore::with_pool_path(db.pool.clone(), EUR, MoneyPath::Batched);
        let pg = Arc::new(pg.await.unwrap());
        let store: Arc<dyn Store> = pg.clone();
        let (ann, _ben, cat) = (
            register(&*store, "ann").await,
            register(&*store, "ben").await,
            register(&*store, "cat").await,
        );
        deposit(&*store, "ann", 5_000).await.unwrap();
        let limits = NoPinLimits {
            per_session: eur(1_000),
            per_day: eur(1_500),
        };
        let without_pin = |session: Option<u8>, debit: Command| Command::WithoutPin {
            guard: NoPinGuard {
                session_hash: session.map(|s| [s; 32]),
                limits,
                pin_set: true,
            },
            debit: Box::new(debit),
        };
        let pay = |shopper_id, minor| Command::Payment {
            at: kiosk("shop"),
            shopper_id,
            amount: eur(minor),
            description: None,
        };
        let send = |minor| Command::Transfer {
            at: None,
            from_shopper_id: ann,
            to_username: "ben".into(),
            amount: eur(minor),
            note: None,
        };
        let blocker = hold_row_lock(&db.url, cat).await;
        let first = stuck_behind(&pg, &blocker, pay(cat, 1)).await;
        let batch = [
            queue(&pg, None, without_pin(Some(1), pay(ann, 600))).await,
            queue(&pg, None, without_pin(Some(1), send(500))).await,
            queue(&pg, None, without_pin(Some(1), send(400))).await,
            queue(&pg, None, without_pin(None, pay(ann, 600))).await,
            queue(&pg, None, without_pin(None, pay(ann, 500))).await,
        ];
        blocker.batch_execute("ROLLBACK").await.unwrap();
        assert_eq!(first.await.unwrap(), Err(LedgerError::InsufficientFunds));
        let mut answers = Vec::new();
        for t in batch {
            answers.push(t.await.unwrap());
        }
        // The session's 10.00 and then the day's 15.00 are reached inside the batch.
        assert_eq!(answers[1], Err(LedgerError::PinRequired));
        assert_eq!(answers[3], Err(LedgerError::PinRequired));
        let moved: Vec<Receipt> = [0, 2, 4]
            .iter()
            .map(|&i| receipt(answers[i].clone().unwrap()))
            .collect();
        assert!(
            moved.iter().all(|r| r.created_at == moved[0].created_at),
            "the five were not one batch: {moved:?}"
        );
        assert_eq!(moved[2].balance_after, Some(eur(3_500)));
        // Recorded: the next batch (another session) finds the day spent.
        let later = store.execute(None, without_pin(Some(2), pay(ann, 1))).await;
        assert_eq!(later, Err(LedgerError::PinRequired));
        let c = db.pool.get().await.unwrap();
        let sums = c
            .query_one(
                "SELECT count(*), SUM(amount)::BIGINT,
                        SUM(amount) FILTER (WHERE session_hash IS NOT NULL)::BIGINT
                 FROM no_pin_debits WHERE account_id = $1",
                &[&ann],
            )
            .await
            .unwrap();
        assert_eq!((sums.get::<_, i64>(0), sums.get::<_, i64>(1)), (3, 1_500));
        assert_eq!(sums.get::<_, i64>(2), 1_000);
        assert_eq!(store.wallet(ann).await.unwrap().balance, eur(3_500));
        drop(c);
        drop(store);
        drop(pg);
        db.drop_db().await;
    });
}

type Pending = tokio::task::JoinHandle<Result<Outcome, LedgerError>>;

/// Runs `cmd` on the batched writer and returns once its batch waits for the row `blocker`
/// holds (the writer is then busy, and what is sent next queues behind it).
async fn stuck_behind(
    pg: &Arc<PgStore>,
    blocker: &tokio_postgres::Client,
    cmd: Command,
) -> Pending {
    let store = pg.clone();
    let task = tokio::spawn(async move { store.execute(None, cmd).await });
    wait_for_a_lock_wait(blocker).await;
    task
}

/// Sends `cmd` to the batched writer and returns once it waits in the queue, so that the
/// next batch takes the movements in the order they were sent.
async fn queue(pg: &Arc<PgStore>, idem: Option<Idem>, cmd: Command) -> Pending {
    let before = pg.queued_movements();
    let store = pg.clone();
    let task = tokio::spawn(async move { store.execute(idem, cmd).await });
    for _ in 0..5_000 {
        if pg.queued_movements() > before {
            return task;
        }
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    panic!("the movement never reached the batched writer's queue");
}

/// A connection of its own holding `account`'s row lock in an open transaction.
async fn hold_row_lock(url: &str, account: i64) -> tokio_postgres::Client {
    let (c, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    c.batch_execute("BEGIN").await.unwrap();
    c.execute(
        "SELECT 1 FROM accounts WHERE id = $1 FOR UPDATE",
        &[&account],
    )
    .await
    .unwrap();
    c
}

/// Until some other backend of this database waits for a lock.
async fn wait_for_a_lock_wait(c: &tokio_postgres::Client) {
    for _ in 0..200 {
        let waiting: i64 = c
            .query_one(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if waiting > 0 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("the batch never waited for the held lock");
}

/// A payment's answer as a server stored it before the store spoke domain types (taken from
/// the idempotency table of a run of that server): a replay must decode it and answer
/// exactly what it holds, on either store.
const RECORD_BEFORE_DOMAIN_TYPES: &str = r#"{"Ok":{"Receipt":{"transaction_id":2,"kind":"payment","amount":{"amount":"12.50","currency":"EUR"},"balance_after":{"amount":"37.50","currency":"EUR"},"shopper":"alice","merchant":"Corner Cafe","kiosk_id":"till-1","created_at":"2026-12-02T13:21:23.156216Z"}}}"#;

fn stored_records_of_before_replay_alike(rt: &Rt, store: Arc<dyn Store>, raw: Raw) {
    use palmline_server::store::Timestamp;
    rt.block_on(async {
        let a = register(&*store, "alice").await;
        deposit(&*store, "alice", 5_000).await.unwrap();
        let pay = || Command::Payment {
            at: kiosk("shop"),
            shopper_id: a,
            amount: eur(1_250),
            description: Some("coffee".into()),
        };
        let key = idem("before", "pay");
        store.execute(Some(key.clone()), pay()).await.unwrap();
        let record = RECORD_BEFORE_DOMAIN_TYPES.replace('\'', "''");
        raw.exec(&format!(
            "UPDATE idempotency SET result = '{record}' WHERE key = 'before'"
        ))
        .await;
        // What the record holds (not what this run paid: the answer is the stored one).
        let want = Receipt {
            transaction_id: 2,
            kind: TxKind::Payment,
            amount: eur(1_250),
            balance_after: Some(eur(3_750)),
            shopper: "alice".into(),
            merchant: Some("Corner Cafe".into()),
            counterparty: None,
            kiosk_id: Some("till-1".into()),
            created_at: Timestamp::parse("2026-12-02T13:21:23.156216Z").unwrap(),
        };
        let replayed = store.replay(&key).await.unwrap().unwrap();
        assert_eq!(replayed, Ok(Outcome::Receipt(want.clone())));
        let again = store.execute(Some(key), pay()).await.unwrap();
        assert_eq!(again, Outcome::Receipt(want));
    });
}

#[test]
fn stored_records_of_before_replay_alike_sqlite() {
    let (dir, store) = sqlite();
    stored_records_of_before_replay_alike(&rt(), store, Raw::Sqlite(dir.path().join("ledger.db")));
}

#[test]
fn stored_records_of_before_replay_alike_postgres() {
    let rt = rt();
    let Some(db) = rt.block_on(pg::fresh_db("before")) else {
        return;
    };
    let store = rt
        .block_on(PgStore::with_pool(db.pool.clone(), EUR))
        .unwrap();
    stored_records_of_before_replay_alike(&rt, Arc::new(store), Raw::Postgres(db.pool.clone()));
    rt.block_on(db.drop_db());
}
