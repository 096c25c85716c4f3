//! `migrate-store` (issue 13, part 4): a SQLite ledger built through the store API moves to
//! a fresh PostgreSQL database (and back) with every balance, total, count, template and
//! idempotency record equal; a non-empty destination, a missing source, an unreachable
//! server and a broken source are refused and change nothing. The PostgreSQL tests get a
//! database of their own (`common/pg.rs`): skipped loudly without a server, except under
//! `CI=true`, where they fail.

mod common;

use common::ledger::{eur, kiosk, register_with_pin, rt, EUR};
use common::pg;
use palmline_server::limits::{Factor, GuessKey, GuessRules, NoPinGuard, NoPinLimits};
use palmline_server::store::postgres::PgStore;
use palmline_server::store::relocate::{move_ledger, Endpoint, MoveError, Role};
use palmline_server::store::sqlite::SqliteStore;
use palmline_server::store::ScanOutcome;
use palmline_server::store::{Command, Idem, Outcome, Store};
use std::path::{Path, PathBuf};

fn idem(key: &str) -> Idem {
    use sha2::Digest;
    Idem {
        scope: "kiosk:k-Shop A".into(),
        key: key.into(),
        request_hash: sha2::Sha256::digest(key.as_bytes()).into(),
    }
}

/// What the test ledger holds beyond its balances: the sealed templates and the commands
/// sent with idempotency keys (to replay them on the copy).
struct Built {
    shoppers: Vec<i64>,
    idempotent: Vec<(Idem, Command)>,
    scans: usize,
}

fn receipt_id(o: Outcome) -> i64 {
    match o {
        Outcome::Receipt(r) => r.transaction_id,
        o => panic!("not a receipt: {o:?}"),
    }
}

/// A small shop: three shoppers, two merchants, deposits, payments (one without the PIN),
/// a transfer, refunds, a frozen account, an enrolled palm, scans, guesses, a session and
/// idempotency records.
async fn build_ledger(store: &dyn Store) -> Built {
    let ids = [
        register_with_pin(store, "alice").await,
        register_with_pin(store, "bob").await,
        register_with_pin(store, "Carol").await,
    ];
    let mut idempotent = Vec::new();
    let cashier_id = till(store).await;
    for (i, name) in ["alice", "bob", "Carol"].iter().enumerate() {
        let dep = Command::Deposit {
            at: kiosk("Shop A"),
            username: (*name).into(),
            amount: eur(10_000 * (i as i64 + 1)),
            cashier_id,
        };
        let key = idem(&format!("dep-{name}"));
        store.execute(Some(key.clone()), dep.clone()).await.unwrap();
        idempotent.push((key, dep));
    }
    let payment = |shopper_id, merchant: &str, minor| Command::Payment {
        at: kiosk(merchant),
        shopper_id,
        amount: eur(minor),
        description: Some(format!("coffee at {merchant}")),
    };
    let pay = payment(ids[0], "Shop A", 2_500);
    let key = idem("pay-alice");
    let paid = receipt_id(store.execute(Some(key.clone()), pay.clone()).await.unwrap());
    idempotent.push((key, pay));
    store
        .execute(None, payment(ids[1], "Shop B", 4_000))
        .await
        .unwrap();
    let no_pin = Command::WithoutPin {
        guard: NoPinGuard {
            session_hash: None,
            limits: NoPinLimits {
                per_session: eur(5_000),
                per_day: eur(10_000),
            },
            pin_set: true,
        },
        debit: Box::new(payment(ids[2], "Shop B", 1_200)),
    };
    store.execute(None, no_pin).await.unwrap();
    let transfer = Command::Transfer {
        at: None,
        from_shopper_id: ids[2],
        to_username: "alice".into(),
        amount: eur(3_000),
        note: Some("lunch".into()),
    };
    store.execute(None, transfer).await.unwrap();
    for minor in [1_000, 500] {
        let refund = Command::Refund {
            payment_id: paid,
            amount: eur(minor),
            reason: Some("cold".into()),
            operator: "ops".into(),
        };
        store.execute(None, refund).await.unwrap();
    }
    let frozen = Command::SetFrozen {
        account_id: ids[1],
        frozen: true,
    };
    store.execute(None, frozen).await.unwrap();
    let enroll = Command::EnrollPalm {
        shopper_id: ids[0],
        ciphertexts: vec![vec![0xA5; 700], (0..=255u8).collect(), vec![0; 3]],
    };
    store.execute(None, enroll).await.unwrap();
    let touch = Command::TouchKiosk {
        at: kiosk("Shop A"),
    };
    store.execute(None, touch).await.unwrap();
    let scans = log_scans(store, ids[0]).await;
    let guess = Command::ReserveGuess {
        key: GuessKey {
            account_id: ids[1],
            factor: Factor::Pin,
            kiosk_id: "k-Shop A".into(),
        },
        rules: GuessRules::default(),
    };
    store.execute(None, guess).await.unwrap();
    let session = Command::CreateSession {
        token_hash: [9; 32],
        shopper_id: ids[0],
        kiosk_id: "k-Shop A".into(),
        expires_at: i64::MAX / 2,
    };
    store.execute(None, session).await.unwrap();
    let wrong_pin = Command::ReserveCashierGuess {
        cashier_id,
        kiosk_id: "k-Shop A".into(),
        rules: GuessRules::default(),
    };
    store.execute(None, wrong_pin).await.unwrap();
    let cashier_session = Command::CreateCashierSession {
        token_hash: [7; 32],
        cashier_id,
        kiosk_id: "k-Shop A".into(),
        expires_at: i64::MAX / 2,
    };
    store.execute(None, cashier_session).await.unwrap();
    Built {
        shoppers: ids.to_vec(),
        idempotent,
        scans,
    }
}

/// A cashier "Till" of Shop A (and a disabled one, "Old"): its id.
async fn till(store: &dyn Store) -> i64 {
    let mut ids = Vec::new();
    for name in ["Till", "Old"] {
        let add = Command::CreateCashier {
            merchant: "Shop A".into(),
            name: name.into(),
            pin_hash: "$argon2id$v=19$m=8,t=1,p=1$cGlucGlucGlu$aGFzaA".into(),
        };
        match store.execute(None, add).await.unwrap() {
            Outcome::Cashier(c) => ids.push(c.id),
            o => panic!("unexpected {o:?}"),
        }
    }
    let disable = Command::DisableCashier { cashier_id: ids[1] };
    store.execute(None, disable).await.unwrap();
    ids[0]
}

async fn log_scans(store: &dyn Store, shopper: i64) -> usize {
    for (outcome, score) in [
        (ScanOutcome::Enrolled, None),
        (ScanOutcome::Accepted, Some(31.5)),
        (ScanOutcome::Rejected, Some(4.25)),
    ] {
        let scan = Command::LogScan {
            kiosk_id: "k-Shop A".into(),
            purpose: "payment".into(),
            outcome,
            score,
            shopper_id: Some(shopper),
        };
        store.execute(None, scan).await.unwrap();
    }
    3
}

/// More scan rows than one page of the move, straight into the file (keys past a page).
fn add_bulk_scans(db: &Path, n: usize) {
    let c = rusqlite::Connection::open(db).unwrap();
    c.execute(
        "INSERT INTO palm_scans (kiosk_id, at, purpose, outcome, score)
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1)
         SELECT 'k-bulk', '2024-05-01T10:00:00.000000Z', 'login', 'rejected', i / 7.0 FROM n",
        [n as i64],
    )
    .unwrap();
}

/// A SQLite ledger in a temporary directory, built and closed.
fn sqlite_ledger(rt: &tokio::runtime::Runtime) -> (tempfile::TempDir, PathBuf, Built) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("palmline.db");
    let store = SqliteStore::open(&path, EUR).unwrap();
    let mut built = rt.block_on(build_ledger(&store));
    drop(store);
    add_bulk_scans(&path, 2_345);
    built.scans += 2_345;
    (dir, path, built)
}

/// Everything a store shows about the ledger, to compare two stores.
async fn snapshot(store: &dyn Store, shoppers: &[i64]) -> String {
    let check = store.ledger_check().await.unwrap();
    let accounts = store.accounts(None, 1_000).await.unwrap();
    let templates = store.palm_templates(None).await.unwrap();
    let mut wallets = Vec::new();
    for &id in shoppers {
        wallets.push(format!("{:?}", store.wallet(id).await.unwrap()));
        wallets.push(format!("{:?}", store.history(id, None, 100).await.unwrap()));
    }
    let scans = store.palm_scans(None, 50).await.unwrap();
    let today = palmline_server::store::Timestamp::now().date();
    format!(
        "{check:?}\n{accounts:?}\n{templates:?}\n{wallets:?}\n{scans:?}\n{:?}\n{:?}\n{:?}\n{:?}",
        store.kiosks().await.unwrap(),
        store.palm_version().await.unwrap(),
        store.cashiers(None).await.unwrap(),
        store.daily_report(today).await.unwrap()
    )
}

#[test]
fn a_sqlite_ledger_moves_to_postgres_and_back_with_everything_equal() {
    let rt = rt();
    let (dir, path, built) = sqlite_ledger(&rt);
    let Some(db) = rt.block_on(pg::fresh_db("move")) else {
        return;
    };
    let from = Endpoint::Sqlite(path.clone());
    let to = Endpoint::Postgres(db.url.clone());
    let report = rt.block_on(move_ledger(&from, &to)).unwrap();
    assert!(report.ok, "{report:#?}");
    assert_eq!(report.sessions_dropped, 2, "a shopper's and a cashier's");
    assert_eq!(report.source.tables, report.destination.tables);
    let scans = report
        .destination
        .tables
        .iter()
        .find(|t| t.table == "palm_scans");
    assert_eq!(scans.unwrap().rows, built.scans as u64, "every page copied");
    let check = &report.destination.check;
    assert!(check.ok && check.total_balance_minor == 0, "{check:?}");
    assert_eq!(
        check.transactions_checked, 9,
        "3 deposits, 3 payments, a transfer, 2 refunds"
    );

    let sqlite = SqliteStore::open(&path, EUR).unwrap();
    let pg = rt
        .block_on(PgStore::with_pool(db.pool.clone(), EUR))
        .unwrap();
    let before = rt.block_on(snapshot(&sqlite, &built.shoppers));
    assert_eq!(before, rt.block_on(snapshot(&pg, &built.shoppers)));
    assert_eq!(
        rt.block_on(pg.palm_templates(Some(vec![built.shoppers[0]])))
            .unwrap()[0]
            .1,
        vec![vec![0xA5; 700], (0..=255u8).collect(), vec![0; 3]],
        "the sealed bytes as they were"
    );
    let session = rt.block_on(pg.session([9; 32], 0)).unwrap();
    assert!(session.is_none(), "open sessions are dropped");

    replays_and_new_ids_on_the_copy(&rt, &pg, &built);
    moves_back_to_sqlite(&rt, &db.url, dir.path(), &pg, &built);
    drop(pg);
    rt.block_on(db.drop_db());
}

/// Idempotency records replay on the copy (no second effect), and new rows get new ids.
fn replays_and_new_ids_on_the_copy(rt: &tokio::runtime::Runtime, pg: &PgStore, built: &Built) {
    let total_before = rt.block_on(pg.ledger_check()).unwrap();
    for (key, cmd) in &built.idempotent {
        let stored = rt.block_on(pg.replay(key)).unwrap();
        let again = rt.block_on(pg.execute(Some(key.clone()), cmd.clone()));
        assert_eq!(stored, Some(again), "{} replays", key.key);
    }
    let after = rt.block_on(pg.ledger_check()).unwrap();
    assert_eq!(
        after.transactions_checked,
        total_before.transactions_checked
    );
    let pay = Command::Payment {
        at: kiosk("Shop C"),
        shopper_id: built.shoppers[0],
        amount: eur(100),
        description: None,
    };
    let id = receipt_id(rt.block_on(pg.execute(None, pay)).unwrap());
    // Past every copied id (1..=9): an identity left behind would collide, and the insert
    // fail. Not necessarily the very next one: the batched writer reserves an id for each
    // movement of a batch, replays included, and unused ones are gaps, as after a rollback.
    assert!(
        id > total_before.transactions_checked,
        "identity follows the copied ids: {id}"
    );
    let check = rt.block_on(pg.ledger_check()).unwrap();
    assert!(check.ok, "{check:?}");
}

fn moves_back_to_sqlite(
    rt: &tokio::runtime::Runtime,
    url: &str,
    dir: &Path,
    pg: &PgStore,
    built: &Built,
) {
    let back = dir.join("back.db");
    let from = Endpoint::Postgres(url.into());
    let report = rt
        .block_on(move_ledger(&from, &Endpoint::Sqlite(back.clone())))
        .unwrap();
    assert!(report.ok, "{report:#?}");
    let sqlite = SqliteStore::open(&back, EUR).unwrap();
    assert_eq!(
        rt.block_on(snapshot(pg, &built.shoppers)),
        rt.block_on(snapshot(&sqlite, &built.shoppers))
    );
}

/// Text keys sort differently under a language's collation ("a_1" < "A1" < "b-1" in
/// English, byte-wise "A1" < "a_1" < "b-1"): the move and its digests compare them byte-wise
/// on both stores, so a database with such a default collation checks out the same.
#[test]
fn text_keys_compare_alike_under_a_language_collation() {
    let rt = rt();
    let (dir, path, _) = sqlite_ledger(&rt);
    let store = SqliteStore::open(&path, EUR).unwrap();
    let cashiers = rt.block_on(store.cashiers(Some("Shop A"))).unwrap();
    let cashier: Vec<_> = cashiers.iter().filter(|c| c.name == "Till").collect();
    for key in ["b-1", "A1", "a_1", "a 2", "B0", "ä1"] {
        let dep = Command::Deposit {
            at: kiosk("Shop A"),
            username: "alice".into(),
            amount: eur(1),
            cashier_id: cashier[0].id,
        };
        rt.block_on(store.execute(Some(idem(key)), dep)).unwrap();
    }
    drop(store);
    let locale = "TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'";
    let Some(db) = rt.block_on(pg::fresh_db_with("collate", locale)) else {
        return;
    };
    let to = Endpoint::Postgres(db.url.clone());
    let report = rt.block_on(move_ledger(&Endpoint::Sqlite(path), &to));
    let report = report.unwrap_or_else(|e| panic!("{e}: {e:?}"));
    assert!(report.ok, "{report:#?}");
    let back = Endpoint::Sqlite(dir.path().join("back.db"));
    assert!(rt.block_on(move_ledger(&to, &back)).unwrap().ok);
    rt.block_on(db.drop_db());
}

#[test]
fn a_non_empty_postgres_destination_is_refused_and_left_as_it_was() {
    let rt = rt();
    let (_dir, path, built) = sqlite_ledger(&rt);
    let Some(db) = rt.block_on(pg::fresh_db("nonempty")) else {
        return;
    };
    let pg = rt
        .block_on(PgStore::with_pool(db.pool.clone(), EUR))
        .unwrap();
    let other = rt.block_on(register_with_pin(&pg, "zoe"));
    let before = rt.block_on(snapshot(&pg, &[other]));
    let to = Endpoint::Postgres(db.url.clone());
    let err = rt
        .block_on(move_ledger(&Endpoint::Sqlite(path), &to))
        .unwrap_err();
    assert!(
        matches!(
            err,
            MoveError::DestinationNotEmpty {
                table: "accounts",
                rows: 1
            }
        ),
        "{err:?}"
    );
    assert_eq!(rt.block_on(snapshot(&pg, &[other])), before);
    assert!(rt.block_on(pg.shopper_auth("alice")).unwrap().is_none());
    drop((pg, built));
    rt.block_on(db.drop_db());
}

#[test]
fn a_missing_source_file_is_refused_and_not_created() {
    let rt = rt();
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.db");
    let to = Endpoint::Sqlite(dir.path().join("to.db"));
    let err = rt
        .block_on(move_ledger(&Endpoint::Sqlite(missing.clone()), &to))
        .unwrap_err();
    assert!(
        matches!(&err, MoveError::SourceMissing(p) if *p == missing),
        "{err:?}"
    );
    assert!(!missing.exists());
    assert!(
        !dir.path().join("to.db").exists(),
        "nothing opened at the destination"
    );
}

#[test]
fn an_unreachable_postgres_is_a_typed_error() {
    let rt = rt();
    let (_dir, path, _) = sqlite_ledger(&rt);
    // Nothing listens on port 1.
    let to = Endpoint::Postgres("postgres://postgres@127.0.0.1:1/shop".into());
    let err = rt
        .block_on(move_ledger(&Endpoint::Sqlite(path.clone()), &to))
        .unwrap_err();
    assert!(
        matches!(
            err,
            MoveError::Unavailable {
                role: Role::Destination,
                ..
            }
        ),
        "{err:?}"
    );
    let from = Endpoint::Postgres("postgres://postgres@127.0.0.1:1/shop".into());
    let err = rt
        .block_on(move_ledger(&from, &Endpoint::Sqlite(path)))
        .unwrap_err();
    assert!(
        matches!(
            err,
            MoveError::Unavailable {
                role: Role::Source,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn a_sqlite_ledger_moves_to_a_new_sqlite_file_and_not_onto_a_used_one() {
    let rt = rt();
    let (dir, path, built) = sqlite_ledger(&rt);
    let copy = dir.path().join("copy.db");
    let to = Endpoint::Sqlite(copy.clone());
    let report = rt
        .block_on(move_ledger(&Endpoint::Sqlite(path.clone()), &to))
        .unwrap();
    assert!(report.ok, "{report:#?}");
    let (a, b) = (
        SqliteStore::open(&path, EUR).unwrap(),
        SqliteStore::open(&copy, EUR).unwrap(),
    );
    let original = rt.block_on(snapshot(&a, &built.shoppers));
    assert_eq!(original, rt.block_on(snapshot(&b, &built.shoppers)));
    let again = rt.block_on(move_ledger(&Endpoint::Sqlite(path.clone()), &to));
    assert!(
        matches!(again, Err(MoveError::DestinationNotEmpty { .. })),
        "{again:?}"
    );
    let same = rt.block_on(move_ledger(
        &Endpoint::Sqlite(path.clone()),
        &Endpoint::Sqlite(path),
    ));
    assert!(matches!(same, Err(MoveError::SameStore)), "{same:?}");
    assert_eq!(rt.block_on(snapshot(&b, &built.shoppers)), original);
}

#[test]
fn a_source_that_fails_its_ledger_check_is_not_moved() {
    let rt = rt();
    let (dir, path, _) = sqlite_ledger(&rt);
    let c = rusqlite::Connection::open(&path).unwrap();
    c.execute(
        "UPDATE accounts SET balance = balance + 1 WHERE name = 'alice'",
        [],
    )
    .unwrap();
    drop(c);
    // An empty ledger that exists already: the copy into it is rolled back.
    let empty = dir.path().join("empty.db");
    drop(SqliteStore::open(&empty, EUR).unwrap());
    let refused = |to: &Path| {
        let to = Endpoint::Sqlite(to.to_path_buf());
        match rt.block_on(move_ledger(&Endpoint::Sqlite(path.clone()), &to)) {
            Err(MoveError::Mismatch(report)) => report,
            other => panic!("expected a mismatch, got {other:?}"),
        }
    };
    let report = refused(&empty);
    assert!(!report.ok && !report.source.check.ok);
    assert_eq!(report.source.check.mismatches.len(), 1);
    let accounts = rusqlite::Connection::open(&empty)
        .unwrap()
        .query_row("SELECT COUNT(*) FROM accounts", [], |r| r.get::<_, i64>(0))
        .unwrap();
    assert_eq!(accounts, 0, "the destination's transaction was rolled back");
    // A destination the move created is removed again.
    let absent = dir.path().join("absent.db");
    refused(&absent);
    assert!(!absent.exists());
}

/// The command line: both summaries on stdout, exit 0; a used destination or a missing
/// source exits 1 and says why.
#[test]
fn the_cli_prints_both_summaries() {
    let rt = rt();
    let (dir, path, _) = sqlite_ledger(&rt);
    let copy = dir.path().join("copy.db");
    let run = |from: &Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_palmline-server"))
            .args(["--data-dir", dir.path().to_str().unwrap(), "migrate-store"])
            .arg(format!("--from=sqlite:{}", from.display()))
            .arg(format!("--to=sqlite:{}", copy.display()))
            .output()
            .unwrap()
    };
    let out = run(&path);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("every balance matches (7 accounts)"),
        "{stdout}"
    );
    assert!(stdout.contains("moved and committed"), "{stdout}");
    let out = run(&path);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("destination is not empty"));
    let out = run(&dir.path().join("missing.db"));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));
}
