//! The SQLite store: WAL, foreign keys, `synchronous=FULL`, versioned migrations.
//!
//! SQLite has one writer, so every mutation goes through one writer thread that takes a
//! batch of pending commands, applies each in its own savepoint (a rejected one rolls back
//! alone), commits the batch once and only then acknowledges each caller: one fsync carries
//! many transfers (group commit). Reads use a small pool of read-only connections on the
//! blocking thread pool. Nothing here ever runs SQLite on an async worker thread.

use super::{
    AccountRow, BalanceMismatch, Cashier, CashierAuth, CashierSessionInfo, Command, Cutoffs,
    DailyReport, DailyTotals, FaultWatch, HistoryItem, HistoryPage, Idem, KioskRef, KioskRow,
    LedgerCheck, LedgerError, Outcome, PalmChange, PalmScanRow, PalmVersion, Purged, ScanOutcome,
    SessionInfo, Shopper, ShopperAuth, StorageFault, Store, StoredResult, Timestamp, Wallet,
};
use crate::ledger::{self, AccountKind, Leg, PaymentState, Plan, TxKind};
use crate::limits::{self, Grant, GuessCounts, GuessKey, GuessRules, NoPinGuard};
use crate::metrics::WriterMetrics;
use async_trait::async_trait;
use palmline_shared::{Currency, Money};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Migrations, applied in order; `PRAGMA user_version` is the number applied.
pub(crate) const MIGRATIONS: &[&str] = &[
    include_str!("schema.sql"),
    include_str!("schema2.sql"),
    include_str!("schema3.sql"),
    include_str!("schema4.sql"),
    include_str!("schema5.sql"),
    include_str!("schema6.sql"),
];

/// Most commands one group commit carries.
const MAX_BATCH: usize = 512;

/// Tells a caller the fate of its batch: `Ok` once the batch is durable, else why not.
type Reply = Box<dyn FnOnce(Result<(), LedgerError>) + Send>;
/// A unit of work for the writer: runs inside a savepoint, says whether to keep its changes
/// (`Err`: roll them back, and why), and returns the acknowledgement to send once the
/// batch's fate is known.
type Job =
    Box<dyn FnOnce(Result<&Connection, LedgerError>) -> (Result<(), LedgerError>, Reply) + Send>;

pub struct SqliteStore {
    writer: mpsc::SyncSender<Job>,
    /// The latest group commit's storage health, kept by the writer thread.
    faults: FaultWatch,
    readers: Arc<Mutex<Vec<Connection>>>,
    path: PathBuf,
    currency: Currency,
    /// Shared with the writer thread, which observes every group commit.
    metrics: WriterMetrics,
}

fn storage(e: impl std::fmt::Display) -> LedgerError {
    LedgerError::Storage(e.to_string())
}

/// A SQLite error as a [`LedgerError`]: [`LedgerError::Unavailable`] for what a retry may
/// cure once the disk has room, the file is writable or the other writer is done; anything
/// else (a bug, a damaged file) stays `Storage`.
pub(crate) fn db(e: rusqlite::Error) -> LedgerError {
    use rusqlite::ErrorCode as C;
    let fault = match e.sqlite_error_code() {
        Some(C::DiskFull) => StorageFault::DiskFull,
        Some(C::ReadOnly) => StorageFault::ReadOnly,
        Some(C::DatabaseBusy | C::DatabaseLocked) => StorageFault::Busy,
        Some(C::SystemIoFailure | C::CannotOpen) => StorageFault::Io,
        Some(C::DatabaseCorrupt | C::NotADatabase) => {
            tracing::error!(error = %e, "the SQLite database is damaged");
            return LedgerError::Storage(e.to_string());
        }
        _ => return LedgerError::Storage(e.to_string()),
    };
    let extended = match &e {
        rusqlite::Error::SqliteFailure(f, _) => f.extended_code,
        _ => 0,
    };
    LedgerError::unavailable(fault, format!("sqlite {extended}: {e}"))
}

/// An I/O fault of the writer told apart when the file system says why: an I/O error
/// while the database file cannot be opened for writing is a read-only file, directory or
/// volume (EROFS, EACCES, EPERM of an immutable file), not a failing disk.
fn refine(e: LedgerError, path: &Path) -> LedgerError {
    match e {
        LedgerError::Unavailable {
            fault: StorageFault::Io,
            detail,
        } => {
            let mut wal = path.as_os_str().to_owned();
            wal.push("-wal");
            let wal = PathBuf::from(wal);
            let probe = |p: &Path| std::fs::OpenOptions::new().append(true).open(p);
            let denied = [path, wal.as_path()]
                .into_iter()
                .find_map(|p| match probe(p) {
                    Err(io)
                        if matches!(
                            io.kind(),
                            std::io::ErrorKind::PermissionDenied
                                | std::io::ErrorKind::ReadOnlyFilesystem
                        ) =>
                    {
                        Some(io)
                    }
                    _ => None,
                });
            match denied {
                Some(io) => LedgerError::unavailable(
                    StorageFault::ReadOnly,
                    format!("{detail} (file not writable: {io})"),
                ),
                None => LedgerError::unavailable(StorageFault::Io, detail),
            }
        }
        other => other,
    }
}

// The clock moved to `store::clock` (both stores use it); these paths stay for callers.
use super::clock::{day_bounds, today, ts_of};
pub use super::clock::{format_ts, now_text, unix_now};
use super::receipt::{receipt, status_of, Parties};

pub(crate) fn open(path: &Path, read_only: bool) -> rusqlite::Result<Connection> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.execute_batch("PRAGMA foreign_keys = ON; PRAGMA synchronous = FULL;")?;
    Ok(conn)
}

pub(crate) fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    conn.pragma_update(None, "journal_mode", "WAL")?;
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}

impl SqliteStore {
    /// Opens (creating and migrating if needed) the database at `path`.
    pub fn open(path: &Path, currency: Currency) -> Result<SqliteStore, LedgerError> {
        SqliteStore::open_with_batch(path, currency, MAX_BATCH)
    }

    /// As [`SqliteStore::open`], with at most `max_batch` commands per commit (1 = one
    /// commit, one fsync per command: the baseline the benchmark compares against).
    pub fn open_with_batch(
        path: &Path,
        currency: Currency,
        max_batch: usize,
    ) -> Result<SqliteStore, LedgerError> {
        let mut conn = open(path, false).map_err(db)?;
        migrate(&mut conn).map_err(db)?;
        let (tx, rx) = mpsc::sync_channel::<Job>(4096);
        let metrics = WriterMetrics::default();
        let writer = Writer {
            conn,
            path: path.to_path_buf(),
            metrics: metrics.clone(),
            faults: FaultWatch::default(),
        };
        let faults = writer.faults.clone();
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || writer.run(rx, max_batch.max(1)))
            .map_err(storage)?;
        Ok(SqliteStore {
            writer: tx,
            faults,
            metrics,
            readers: Arc::new(Mutex::new(Vec::new())),
            path: path.to_path_buf(),
            currency,
        })
    }

    /// Runs `f` on the writer inside a savepoint of the next group commit. An `Err` rolls
    /// back `f`'s changes alone; the answer arrives only once the batch is durable.
    async fn write<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<R, LedgerError> + Send + 'static,
    ) -> Result<R, LedgerError> {
        let (tx, rx) = tokio::sync::oneshot::channel::<Result<R, LedgerError>>();
        let job: Job = Box::new(move |conn| {
            let res = conn.and_then(f);
            let keep = res.as_ref().map(|_| ()).map_err(Clone::clone);
            let reply: Reply = Box::new(move |commit| {
                let _ = tx.send(commit.and(res));
            });
            (keep, reply)
        });
        let sender = self.writer.clone();
        // A full queue blocks: do that on the blocking pool, not on an async worker.
        tokio::task::spawn_blocking(move || sender.send(job))
            .await
            .map_err(storage)?
            .map_err(|_| LedgerError::Storage("writer thread has stopped".into()))?;
        rx.await
            .map_err(|_| LedgerError::Storage("writer dropped the request".into()))?
    }

    /// Runs `f` on a pooled read-only connection on the blocking pool.
    async fn read<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<R, LedgerError> + Send + 'static,
    ) -> Result<R, LedgerError> {
        let pool = self.readers.clone();
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let conn = pool.lock().expect("reader pool poisoned").pop();
            let conn = match conn {
                Some(c) => c,
                None => open(&path, true).map_err(db)?,
            };
            let res = f(&conn);
            let mut pool = pool.lock().expect("reader pool poisoned");
            if pool.len() < 16 {
                pool.push(conn);
            }
            res
        })
        .await
        .map_err(storage)?
    }
}

/// The writer thread's state: the one read-write connection and what it reports.
struct Writer {
    conn: Connection,
    path: PathBuf,
    metrics: WriterMetrics,
    faults: FaultWatch,
}

impl Writer {
    /// Group commits until every sender is gone. A batch that fails (disk full, file not
    /// writable, busy) fails as a whole and the thread goes on: the next batch starts a
    /// new transaction on the same connection, which works again once the cause is gone.
    fn run(self, rx: mpsc::Receiver<Job>, max_batch: usize) {
        while let Ok(first) = rx.recv() {
            let mut batch = vec![first];
            while batch.len() < max_batch {
                match rx.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            self.metrics.batch_size.observe(batch.len() as f64);
            let size = batch.len();
            let (fate, replies) = self.apply(batch);
            let fate = fate.map_err(|e| refine(e, &self.path));
            self.faults.observe(&fate);
            if let Err(e) = &fate {
                tracing::error!(error = %e, fault = ?e.fault(), jobs = size, "group commit failed; none of its requests was acknowledged");
            }
            for reply in replies {
                reply(fate.clone());
            }
        }
    }

    /// Runs a batch in one transaction, each job in its own savepoint, and commits it.
    /// Returns the batch's fate and every job's reply. Jobs not run (the transaction was
    /// lost before their turn) have already been told the error.
    fn apply(&self, batch: Vec<Job>) -> (Result<(), LedgerError>, Vec<Reply>) {
        let conn = &self.conn;
        let mut replies = Vec::with_capacity(batch.len());
        let mut jobs = batch.into_iter();
        let mut fate = conn.execute_batch("BEGIN IMMEDIATE").map_err(db);
        if fate.is_ok() {
            for job in jobs.by_ref() {
                if let Err(e) = conn.execute_batch("SAVEPOINT job") {
                    let e = db(e);
                    replies.push(job(Err(e.clone())).1);
                    fate = Err(e);
                    break;
                }
                let (kept, reply) = job(Ok(conn));
                replies.push(reply);
                if let Err(e) = self.end_savepoint(kept) {
                    fate = Err(e);
                    break;
                }
            }
        }
        fate = match fate {
            Ok(()) => self.commit(),
            Err(e) => {
                if !conn.is_autocommit() {
                    let _ = conn.execute_batch("ROLLBACK");
                }
                Err(e)
            }
        };
        if let Err(e) = &fate {
            for job in jobs {
                let (_, reply) = job(Err(e.clone()));
                reply(Err(e.clone()));
            }
        }
        (fate, replies)
    }

    /// Keeps or rolls back one job's savepoint. `Err` when the batch's transaction is gone
    /// (SQLite rolls it all back by itself on some errors, such as SQLITE_FULL): what the
    /// jobs before did is lost with it, so the whole batch must fail.
    fn end_savepoint(&self, kept: Result<(), LedgerError>) -> Result<(), LedgerError> {
        let conn = &self.conn;
        let lost = || {
            kept.clone()
                .err()
                .filter(|e| e.fault().is_some())
                .unwrap_or_else(|| {
                    LedgerError::Storage("SQLite ended the group's transaction".into())
                })
        };
        if conn.is_autocommit() {
            return Err(lost());
        }
        let end = if kept.is_ok() {
            "RELEASE job"
        } else {
            "ROLLBACK TO job; RELEASE job"
        };
        if let Err(e) = conn.execute_batch(end) {
            tracing::error!(error = %e, "savepoint end failed");
            return Err(if conn.is_autocommit() { lost() } else { db(e) });
        }
        Ok(())
    }

    fn commit(&self) -> Result<(), LedgerError> {
        let started = std::time::Instant::now();
        let commit = self.conn.execute_batch("COMMIT").map_err(db);
        self.metrics
            .commit_seconds
            .observe(started.elapsed().as_secs_f64());
        if commit.is_err() && !self.conn.is_autocommit() {
            // Still open (SQLITE_BUSY leaves it so): give the locks back.
            let _ = self.conn.execute_batch("ROLLBACK");
        }
        commit
    }
}

// ------------------------------------------------------------------ loading accounts

/// An account as loaded for the ledger core, with the name receipts show.
struct Acct {
    name: String,
    core: ledger::Account,
}

/// A store timestamp column (TEXT) read back as a [`Timestamp`].
impl rusqlite::types::FromSql for Timestamp {
    fn column_result(v: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        Timestamp::parse(v.as_str()?).map_err(|e| rusqlite::types::FromSqlError::Other(Box::new(e)))
    }
}

/// A text column read by `parse` (an enum's `parse`); anything it refuses is an error.
fn text_as<T>(
    r: &rusqlite::Row<'_>,
    i: usize,
    parse: impl FnOnce(&str) -> Option<T>,
) -> rusqlite::Result<T> {
    let text: String = r.get(i)?;
    parse(&text).ok_or_else(|| {
        let why = format!("unexpected value {text:?}");
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, why.into())
    })
}

const ACCOUNT_COLUMNS: &str = "SELECT id, name, kind, status, balance, currency FROM accounts";

fn row_acct(r: &rusqlite::Row<'_>) -> rusqlite::Result<Acct> {
    let bad = |i: usize, what: &str, v: &str| {
        rusqlite::Error::FromSqlConversionFailure(
            i,
            rusqlite::types::Type::Text,
            format!("{what} {v:?}").into(),
        )
    };
    let kind: String = r.get(2)?;
    let status: String = r.get(3)?;
    let currency: String = r.get(5)?;
    Ok(Acct {
        name: r.get(1)?,
        core: ledger::Account {
            id: r.get(0)?,
            kind: AccountKind::parse(&kind).ok_or_else(|| bad(2, "account kind", &kind))?,
            status: ledger::Status::parse(&status).ok_or_else(|| bad(3, "status", &status))?,
            balance: r.get(4)?,
            currency: Currency::from_code(&currency).map_err(|_| bad(5, "currency", &currency))?,
        },
    })
}

/// The one account matching `filter` (a `WHERE` clause over `accounts`), if any.
fn load_account(
    c: &Connection,
    filter: &str,
    p: impl rusqlite::Params,
) -> Result<Option<Acct>, LedgerError> {
    c.prepare_cached(&format!("{ACCOUNT_COLUMNS} WHERE {filter}"))
        .and_then(|mut s| s.query_row(p, row_acct).optional())
        .map_err(db)
}

fn shopper_by_name(c: &Connection, name: &str) -> Result<Acct, LedgerError> {
    load_account(c, "kind = 'shopper' AND name = ?1", [name])?
        .ok_or_else(|| LedgerError::UnknownAccount(name.to_string()))
}

fn shopper_by_id(c: &Connection, id: i64) -> Result<Acct, LedgerError> {
    load_account(c, "kind = 'shopper' AND id = ?1", [id])?
        .ok_or_else(|| LedgerError::UnknownAccount(format!("#{id}")))
}

/// A merchant's account and its till.
struct MerchantAccts {
    account: Acct,
    till: Acct,
}

impl MerchantAccts {
    fn core(&self) -> ledger::Merchant<'_> {
        ledger::Merchant {
            account: &self.account.core,
            till: &self.till.core,
        }
    }
}

/// The merchant's account and its cash till, created on first sight of a kiosk.
fn merchant_accounts(
    c: &Connection,
    merchant: &str,
    currency: Currency,
) -> Result<MerchantAccts, LedgerError> {
    let account = match load_account(c, "kind = 'merchant' AND name = ?1", [merchant])? {
        Some(m) => m,
        None => create_merchant(c, merchant, currency)?,
    };
    let till = load_account(c, "kind = 'till' AND merchant_id = ?1", [account.core.id])?
        .ok_or_else(|| LedgerError::Storage(format!("merchant {merchant} has no till")))?;
    Ok(MerchantAccts { account, till })
}

fn create_merchant(
    c: &Connection,
    merchant: &str,
    currency: Currency,
) -> Result<Acct, LedgerError> {
    let now = now_text();
    c.execute(
        "INSERT INTO accounts (kind, name, currency, created_at) VALUES ('merchant', ?1, ?2, ?3)",
        params![merchant, currency.code(), now],
    )
    .map_err(db)?;
    let id = c.last_insert_rowid();
    c.execute(
        "INSERT INTO accounts (kind, name, currency, merchant_id, created_at) VALUES ('till', ?1, ?2, ?3, ?4)",
        params![format!("till:{merchant}"), currency.code(), id, now],
    )
    .map_err(db)?;
    load_account(c, "id = ?1", [id])?
        .ok_or_else(|| LedgerError::Storage("merchant vanished".into()))
}

/// A payment as a refund needs it, with what was already refunded of it.
fn payment_state(c: &Connection, id: i64, cur: Currency) -> Result<PaymentState, LedgerError> {
    let (paid, shopper, merchant): (i64, i64, i64) = c
        .query_row(
            "SELECT amount, shopper_id, merchant_id FROM transactions WHERE id = ?1 AND kind = 'payment'",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()
        .map_err(db)?
        .ok_or(LedgerError::UnknownPayment)?;
    let refunded: i64 = c
        .query_row(
            "SELECT COALESCE(SUM(amount), 0) FROM transactions WHERE kind = 'refund' AND ref_tx_id = ?1",
            [id],
            |r| r.get(0),
        )
        .map_err(db)?;
    Ok(PaymentState {
        id,
        paid: Money::from_minor(paid, cur),
        shopper,
        merchant,
        refunded,
    })
}

// ------------------------------------------------------------------ persisting a plan

/// Writes what the core decided: the transaction, then each leg's entry and balance.
/// Returns the transaction's id and timestamp.
fn persist(c: &Connection, plan: &Plan) -> Result<(i64, Timestamp), LedgerError> {
    let now = Timestamp::now();
    let tx = &plan.tx;
    c.prepare_cached(
        "INSERT INTO transactions (kind, amount, currency, shopper_id, other_id, merchant_id, kiosk_id, ref_tx_id, description, created_by, created_at, cashier_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    )
    .and_then(|mut s| {
        s.execute(params![
            tx.kind.as_str(),
            tx.amount.minor(),
            tx.amount.currency().code(),
            tx.shopper,
            tx.other,
            tx.merchant,
            tx.kiosk_id,
            tx.refers_to,
            tx.description,
            tx.created_by,
            now.to_text(),
            tx.cashier
        ])
    })
    .map_err(db)?;
    let tx_id = c.last_insert_rowid();
    for leg in &plan.legs {
        persist_leg(c, tx_id, leg)?;
    }
    Ok((tx_id, now))
}

/// One leg: the balance moves from what the core saw to what it decided (compare-and-set:
/// the writer is alone, so a miss means a bug, never a lost update), and its entry.
fn persist_leg(c: &Connection, tx_id: i64, leg: &Leg) -> Result<(), LedgerError> {
    let n = c
        .prepare_cached("UPDATE accounts SET balance = ?1 WHERE id = ?2 AND balance = ?3")
        .and_then(|mut s| s.execute(params![leg.after, leg.account, leg.before]))
        .map_err(|e| match e {
            // The schema's own guard: a shopper can never go below zero.
            rusqlite::Error::SqliteFailure(f, _)
                if f.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                LedgerError::InsufficientFunds
            }
            e => storage(e),
        })?;
    if n != 1 {
        return Err(LedgerError::Storage(format!(
            "account #{} changed under the ledger",
            leg.account
        )));
    }
    c.prepare_cached(
        "INSERT INTO entries (tx_id, account_id, amount, balance_after) VALUES (?1, ?2, ?3, ?4)",
    )
    .and_then(|mut s| s.execute(params![tx_id, leg.account, leg.delta, leg.after]))
    .map_err(db)?;
    Ok(())
}

// ------------------------------------------------------------------ money commands

/// A cashier as the ledger core checks it.
fn cashier_core(c: &Connection, id: i64) -> Result<ledger::Cashier, LedgerError> {
    c.prepare_cached("SELECT merchant_id, status FROM cashiers WHERE id = ?1")
        .and_then(|mut s| {
            s.query_row([id], |r| {
                Ok(ledger::Cashier {
                    id,
                    merchant: r.get(0)?,
                    active: r.get::<_, String>(1)? == "active",
                })
            })
            .optional()
        })
        .map_err(storage)?
        .ok_or(LedgerError::UnknownCashier)
}

fn deposit(
    c: &Connection,
    cur: Currency,
    at: KioskRef,
    (username, cashier): (&str, i64),
    amount: Money,
) -> Result<Outcome, LedgerError> {
    let amount = ledger::check_amount(amount, cur)?;
    let cashier = cashier_core(c, cashier)?;
    let shopper = shopper_by_name(c, username)?;
    let m = merchant_accounts(c, &at.merchant, cur)?;
    let plan = ledger::deposit(amount, &shopper.core, m.core(), &at.kiosk_id, &cashier)?;
    kiosk_receipt(c, &plan, shopper.name, m.account.name, at.kiosk_id)
}

fn withdrawal(
    c: &Connection,
    cur: Currency,
    at: KioskRef,
    (shopper_id, cashier): (i64, i64),
    amount: Money,
) -> Result<Outcome, LedgerError> {
    let amount = ledger::check_amount(amount, cur)?;
    let cashier = cashier_core(c, cashier)?;
    let shopper = shopper_by_id(c, shopper_id)?;
    let m = merchant_accounts(c, &at.merchant, cur)?;
    let plan = ledger::withdrawal(amount, &shopper.core, m.core(), &at.kiosk_id, &cashier)?;
    kiosk_receipt(c, &plan, shopper.name, m.account.name, at.kiosk_id)
}

fn payment(
    c: &Connection,
    cur: Currency,
    at: KioskRef,
    shopper_id: i64,
    amount: Money,
    description: Option<String>,
) -> Result<Outcome, LedgerError> {
    let amount = ledger::check_amount(amount, cur)?;
    let shopper = shopper_by_id(c, shopper_id)?;
    let m = merchant_accounts(c, &at.merchant, cur)?;
    let plan = ledger::payment(amount, &shopper.core, m.core(), &at.kiosk_id, description)?;
    kiosk_receipt(c, &plan, shopper.name, m.account.name, at.kiosk_id)
}

fn transfer(
    c: &Connection,
    cur: Currency,
    at: Option<KioskRef>,
    from_shopper_id: i64,
    to_username: &str,
    amount: Money,
    note: Option<String>,
) -> Result<Outcome, LedgerError> {
    let amount = ledger::check_amount(amount, cur)?;
    let from = shopper_by_id(c, from_shopper_id)?;
    let to = shopper_by_name(c, to_username)?;
    let kiosk = at.map(|k| k.kiosk_id);
    let plan = ledger::transfer(amount, &from.core, &to.core, kiosk.clone(), note)?;
    let (id, now) = persist(c, &plan)?;
    let parties = Parties {
        shopper: from.name,
        merchant: None,
        counterparty: Some(to.name),
        kiosk_id: kiosk,
    };
    Ok(Outcome::Receipt(receipt(id, now, &plan, parties)))
}

fn refund(
    c: &Connection,
    cur: Currency,
    payment_id: i64,
    amount: Money,
    reason: Option<String>,
    operator: String,
) -> Result<Outcome, LedgerError> {
    let amount = ledger::check_amount(amount, cur)?;
    let payment = payment_state(c, payment_id, cur)?;
    let shopper = shopper_by_id(c, payment.shopper)?;
    let merchant = load_account(c, "id = ?1", [payment.merchant])?
        .ok_or_else(|| LedgerError::Storage(format!("payment #{payment_id} has no merchant")))?;
    let plan = ledger::refund(
        amount,
        &payment,
        &shopper.core,
        &merchant.core,
        reason,
        operator,
    )?;
    let (id, now) = persist(c, &plan)?;
    let parties = Parties {
        shopper: shopper.name,
        merchant: Some(merchant.name),
        counterparty: None,
        kiosk_id: None,
    };
    Ok(Outcome::Receipt(receipt(id, now, &plan, parties)))
}

/// A movement at a kiosk (deposit, withdrawal, payment), persisted, and its receipt.
fn kiosk_receipt(
    c: &Connection,
    plan: &Plan,
    shopper: String,
    merchant: String,
    kiosk_id: String,
) -> Result<Outcome, LedgerError> {
    let (id, now) = persist(c, plan)?;
    let parties = Parties {
        shopper,
        merchant: Some(merchant),
        counterparty: None,
        kiosk_id: Some(kiosk_id),
    };
    Ok(Outcome::Receipt(receipt(id, now, plan, parties)))
}

// ------------------------------------------------------------------ other commands

fn shopper_view(c: &Connection, id: i64) -> Result<Shopper, LedgerError> {
    c.prepare_cached(
        "SELECT id, name, email, status, pin_hash IS NOT NULL, created_at,
                EXISTS (SELECT 1 FROM palm_templates p WHERE p.account_id = accounts.id)
         FROM accounts WHERE id = ?1 AND kind = 'shopper'",
    )
    .and_then(|mut s| {
        s.query_row([id], |r| {
            Ok(Shopper {
                id: r.get(0)?,
                username: r.get(1)?,
                email: r.get::<_, Option<String>>(2)?.unwrap_or_default(),
                status: status_of(&r.get::<_, String>(3)?),
                has_pin: r.get(4)?,
                palm_enrolled: r.get(6)?,
                created_at: r.get(5)?,
            })
        })
        .optional()
    })
    .map_err(db)?
    .ok_or_else(|| LedgerError::UnknownAccount(format!("#{id}")))
}

/// Applies one command inside the caller's savepoint: money commands go through the ledger
/// core ([`crate::ledger`]); the rest are plain record keeping.
fn apply(c: &Connection, cur: Currency, cmd: Command) -> Result<Outcome, LedgerError> {
    match cmd {
        Command::RegisterShopper {
            username,
            email,
            password_hash,
            pin_hash,
        } => register_shopper(
            c,
            cur,
            &username,
            &email,
            &password_hash,
            pin_hash.as_deref(),
        ),
        Command::Deposit {
            at,
            username,
            amount,
            cashier_id,
        } => deposit(c, cur, at, (&username, cashier_id), amount),
        Command::Withdrawal {
            at,
            shopper_id,
            amount,
            cashier_id,
        } => withdrawal(c, cur, at, (shopper_id, cashier_id), amount),
        Command::Payment {
            at,
            shopper_id,
            amount,
            description,
        } => payment(c, cur, at, shopper_id, amount, description),
        Command::Transfer {
            at,
            from_shopper_id,
            to_username,
            amount,
            note,
        } => transfer(c, cur, at, from_shopper_id, &to_username, amount, note),
        Command::Refund {
            payment_id,
            amount,
            reason,
            operator,
        } => refund(c, cur, payment_id, amount, reason, operator),
        Command::SetFrozen { account_id, frozen } => set_frozen(c, cur, account_id, frozen),
        Command::LiftLocks { account_id } => lift_locks(c, cur, account_id),
        Command::CreateSession {
            token_hash,
            shopper_id,
            kiosk_id,
            expires_at,
        } => create_session(c, &token_hash, shopper_id, &kiosk_id, expires_at),
        Command::ReserveGuess { key, rules } => reserve_guess(c, &key, rules).map(Outcome::Guess),
        Command::GuessRight { key } => guess_right(c, &key).map(|()| Outcome::Done),
        Command::WithoutPin { guard, debit } => without_pin(c, cur, &guard, *debit),
        Command::TouchKiosk { at } => touch_kiosk(c, cur, &at),
        Command::CreateCashier {
            merchant,
            name,
            pin_hash,
        } => create_cashier(c, cur, &merchant, &name, &pin_hash),
        Command::DisableCashier { cashier_id } => disable_cashier(c, cashier_id),
        Command::SetShopperPin {
            shopper_id,
            pin_hash,
        } => set_shopper_pin(c, shopper_id, &pin_hash),
        Command::ResetCashier {
            cashier_id,
            pin_hash,
        } => reset_cashier(c, cashier_id, pin_hash.as_deref()),
        Command::ReserveCashierGuess {
            cashier_id,
            kiosk_id,
            rules,
        } => reserve_cashier_guess(c, cashier_id, &kiosk_id, rules).map(Outcome::Guess),
        Command::CashierGuessRight { cashier_id } => {
            cashier_guess_right(c, cashier_id).map(|()| Outcome::Done)
        }
        Command::CreateCashierSession {
            token_hash,
            cashier_id,
            kiosk_id,
            expires_at,
        } => create_cashier_session(c, &token_hash, cashier_id, &kiosk_id, expires_at),
        Command::EnrollPalm {
            shopper_id,
            ciphertexts,
        } => enroll_palm(c, shopper_id, &ciphertexts),
        Command::DeletePalm { shopper_id } => delete_palm(c, shopper_id),
        Command::Purge { cutoffs, batch } => Ok(Outcome::Purged(purge(c, cutoffs, batch)?)),
        Command::LogScan {
            kiosk_id,
            purpose,
            outcome,
            score,
            shopper_id,
        } => log_scan(c, &kiosk_id, &purpose, outcome, score, shopper_id),
    }
}

fn register_shopper(
    c: &Connection,
    cur: Currency,
    username: &str,
    email: &str,
    password_hash: &str,
    pin_hash: Option<&str>,
) -> Result<Outcome, LedgerError> {
    let r = c.execute(
        "INSERT INTO accounts (kind, name, email, password_hash, pin_hash, currency, created_at)
         VALUES ('shopper', ?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            username,
            email,
            password_hash,
            pin_hash,
            cur.code(),
            now_text()
        ],
    );
    match r {
        Ok(_) => {}
        Err(rusqlite::Error::SqliteFailure(f, _))
            if f.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            return Err(LedgerError::UsernameTaken)
        }
        Err(e) => return Err(storage(e)),
    }
    Ok(Outcome::Shopper(shopper_view(c, c.last_insert_rowid())?))
}

fn set_frozen(
    c: &Connection,
    cur: Currency,
    account_id: i64,
    frozen: bool,
) -> Result<Outcome, LedgerError> {
    let status = if frozen {
        ledger::Status::Frozen
    } else {
        ledger::Status::Active
    };
    let n = c
        .execute(
            "UPDATE accounts SET status = ?1 WHERE id = ?2 AND kind IN ('shopper', 'merchant')",
            params![status.as_str(), account_id],
        )
        .map_err(db)?;
    if n == 0 {
        return Err(LedgerError::UnknownAccount(format!("#{account_id}")));
    }
    Ok(Outcome::Account(account_row(c, account_id, cur)?))
}

fn set_shopper_pin(
    c: &Connection,
    shopper_id: i64,
    pin_hash: &str,
) -> Result<Outcome, LedgerError> {
    let n = c
        .execute(
            "UPDATE accounts SET pin_hash = ?2 WHERE id = ?1 AND kind = 'shopper'",
            params![shopper_id, pin_hash],
        )
        .map_err(db)?;
    if n == 0 {
        return Err(LedgerError::UnknownAccount(format!("#{shopper_id}")));
    }
    Ok(Outcome::Done)
}

fn lift_locks(c: &Connection, cur: Currency, account_id: i64) -> Result<Outcome, LedgerError> {
    let shopper: Option<i64> = c
        .query_row(
            "SELECT id FROM accounts WHERE id = ?1 AND kind = 'shopper'",
            params![account_id],
            |r| r.get(0),
        )
        .optional()
        .map_err(db)?;
    if shopper.is_none() {
        return Err(LedgerError::UnknownAccount(format!("#{account_id}")));
    }
    c.execute(
        "DELETE FROM auth_kiosk WHERE account_id = ?1",
        params![account_id],
    )
    .map_err(db)?;
    c.execute(
        "DELETE FROM auth_day WHERE account_id = ?1 AND day = ?2",
        params![account_id, today()],
    )
    .map_err(db)?;
    Ok(Outcome::Account(account_row(c, account_id, cur)?))
}

fn create_session(
    c: &Connection,
    token_hash: &[u8; 32],
    shopper_id: i64,
    kiosk_id: &str,
    expires_at: i64,
) -> Result<Outcome, LedgerError> {
    c.execute(
        "DELETE FROM sessions WHERE expires_at < ?1",
        [unix_now() - 3600],
    )
    .map_err(db)?;
    c.execute(
        "INSERT INTO sessions (token_hash, account_id, kiosk_id, expires_at, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![&token_hash[..], shopper_id, kiosk_id, expires_at, now_text()],
    )
    .map_err(db)?;
    Ok(Outcome::Done)
}

// ------------------------------------------------------------------ cashiers

const CASHIER_COLUMNS: &str = "SELECT c.id, a.name, c.name, c.status, c.created_at, c.pin_hash
     FROM cashiers c JOIN accounts a ON a.id = c.merchant_id";

fn row_cashier(r: &rusqlite::Row<'_>) -> rusqlite::Result<(Cashier, String)> {
    Ok((
        Cashier {
            id: r.get(0)?,
            merchant: r.get(1)?,
            name: r.get(2)?,
            status: super::cashier_status(&r.get::<_, String>(3)?),
            created_at: r.get(4)?,
        },
        r.get(5)?,
    ))
}

/// Cashiers matching `filter` (a condition over `cashiers c` and `accounts a`), by merchant
/// then name, with their PIN hashes.
fn cashiers_where(
    c: &Connection,
    filter: &str,
    p: impl rusqlite::Params,
) -> Result<Vec<(Cashier, String)>, LedgerError> {
    let sql = format!("{CASHIER_COLUMNS} WHERE {filter} ORDER BY a.name, c.name, c.id");
    c.prepare_cached(&sql)
        .and_then(|mut s| s.query_map(p, row_cashier)?.collect())
        .map_err(storage)
}

fn cashier_by_id(c: &Connection, id: i64) -> Result<Cashier, LedgerError> {
    cashiers_where(c, "c.id = ?1", [id])?
        .pop()
        .map(|(cashier, _)| cashier)
        .ok_or(LedgerError::UnknownCashier)
}

fn create_cashier(
    c: &Connection,
    cur: Currency,
    merchant: &str,
    name: &str,
    pin_hash: &str,
) -> Result<Outcome, LedgerError> {
    let merchant_id = merchant_accounts(c, merchant, cur)?.account.core.id;
    let r = c.execute(
        "INSERT INTO cashiers (merchant_id, name, pin_hash, created_at) VALUES (?1, ?2, ?3, ?4)",
        params![merchant_id, name, pin_hash, now_text()],
    );
    match r {
        Ok(_) => {}
        Err(rusqlite::Error::SqliteFailure(f, _))
            if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE =>
        {
            return Err(LedgerError::CashierExists)
        }
        Err(e) => return Err(storage(e)),
    }
    Ok(Outcome::Cashier(cashier_by_id(c, c.last_insert_rowid())?))
}

fn disable_cashier(c: &Connection, id: i64) -> Result<Outcome, LedgerError> {
    let n = c
        .execute(
            "UPDATE cashiers SET status = 'disabled' WHERE id = ?1",
            [id],
        )
        .map_err(storage)?;
    if n == 0 {
        return Err(LedgerError::UnknownCashier);
    }
    Ok(Outcome::Cashier(cashier_by_id(c, id)?))
}

fn reset_cashier(c: &Connection, id: i64, pin_hash: Option<&str>) -> Result<Outcome, LedgerError> {
    let n = c
        .execute(
            "UPDATE cashiers SET failures = 0, locked_until = NULL, guesses = 0, locks = 0,
               pin_hash = COALESCE(?2, pin_hash) WHERE id = ?1",
            params![id, pin_hash],
        )
        .map_err(storage)?;
    if n == 0 {
        return Err(LedgerError::UnknownCashier);
    }
    if pin_hash.is_some() {
        c.execute("DELETE FROM cashier_sessions WHERE cashier_id = ?1", [id])
            .map_err(storage)?;
    }
    Ok(Outcome::Cashier(cashier_by_id(c, id)?))
}

/// The guess counts on a cashier's row, read for `today`.
fn cashier_guesses(c: &Connection, id: i64, today: &str) -> Result<GuessCounts, LedgerError> {
    c.prepare_cached(
        "SELECT failures, locked_until, guess_day, guesses, locks FROM cashiers WHERE id = ?1",
    )
    .and_then(|mut s| {
        s.query_row([id], |r| {
            let day: Option<String> = r.get(2)?;
            Ok(super::cashier_counts(
                r.get(0)?,
                r.get(1)?,
                (day.as_deref(), r.get(3)?, r.get(4)?),
                today,
            ))
        })
        .optional()
    })
    .map_err(storage)?
    .ok_or(LedgerError::UnknownCashier)
}

fn put_cashier_guesses(
    c: &Connection,
    id: i64,
    today: &str,
    g: GuessCounts,
) -> Result<(), LedgerError> {
    c.prepare_cached(
        "UPDATE cashiers SET failures = ?2, locked_until = ?3, guess_day = ?4, guesses = ?5, locks = ?6
         WHERE id = ?1",
    )
    .and_then(|mut s| {
        s.execute(params![
            id,
            g.failures,
            g.locked_until,
            today,
            g.guesses_today,
            g.locks_today
        ])
    })
    .map_err(storage)?;
    Ok(())
}

/// Counts a guess at a cashier's PIN before it is checked, by the shoppers' rule
/// ([`crate::limits::reserve_guess`]) on the cashier's own counters.
fn reserve_cashier_guess(
    c: &Connection,
    id: i64,
    kiosk_id: &str,
    rules: GuessRules,
) -> Result<Grant, LedgerError> {
    let day = today();
    let counts = cashier_guesses(c, id, &day)?;
    let key = super::cashier_key(id, kiosk_id);
    let (grant, after) = limits::reserve_guess(&key, rules, unix_now(), counts);
    if let Some(a) = after {
        put_cashier_guesses(c, id, &day, a)?;
    }
    Ok(grant)
}

fn cashier_guess_right(c: &Connection, id: i64) -> Result<(), LedgerError> {
    let day = today();
    let g = cashier_guesses(c, id, &day)?;
    let after = GuessCounts {
        failures: 0,
        locked_until: None,
        guesses_today: g.guesses_today.saturating_sub(1),
        locks_today: g.locks_today,
    };
    put_cashier_guesses(c, id, &day, after)
}

fn create_cashier_session(
    c: &Connection,
    token_hash: &[u8; 32],
    cashier_id: i64,
    kiosk_id: &str,
    expires_at: i64,
) -> Result<Outcome, LedgerError> {
    c.execute(
        "INSERT INTO cashier_sessions (token_hash, cashier_id, kiosk_id, expires_at, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![&token_hash[..], cashier_id, kiosk_id, expires_at, now_text()],
    )
    .map_err(storage)?;
    Ok(Outcome::Done)
}

fn touch_kiosk(c: &Connection, cur: Currency, at: &KioskRef) -> Result<Outcome, LedgerError> {
    let merchant = merchant_accounts(c, &at.merchant, cur)?.account.core.id;
    c.execute(
        "INSERT INTO kiosks (kiosk_id, merchant_id, first_seen, last_seen, requests) VALUES (?1, ?2, ?3, ?3, 1)
         ON CONFLICT (kiosk_id) DO UPDATE SET last_seen = excluded.last_seen, merchant_id = excluded.merchant_id, requests = requests + 1",
        params![at.kiosk_id, merchant, now_text()],
    )
    .map_err(db)?;
    Ok(Outcome::Done)
}

fn enroll_palm(
    c: &Connection,
    shopper_id: i64,
    ciphertexts: &[Vec<u8>],
) -> Result<Outcome, LedgerError> {
    let shopper = shopper_by_id(c, shopper_id)?;
    if shopper.core.is_frozen() {
        return Err(LedgerError::AccountFrozen);
    }
    c.execute(
        "DELETE FROM palm_templates WHERE account_id = ?1",
        [shopper_id],
    )
    .map_err(db)?;
    let now = now_text();
    for (i, ct) in ciphertexts.iter().enumerate() {
        c.execute(
            "INSERT INTO palm_templates (account_id, idx, ciphertext, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![shopper_id, i as i64, ct, now],
        )
        .map_err(db)?;
    }
    Ok(Outcome::Palm(next_palm_version(c, shopper_id)?))
}

fn delete_palm(c: &Connection, shopper_id: i64) -> Result<Outcome, LedgerError> {
    shopper_by_id(c, shopper_id)?;
    c.execute(
        "DELETE FROM palm_templates WHERE account_id = ?1",
        [shopper_id],
    )
    .map_err(db)?;
    Ok(Outcome::Palm(next_palm_version(c, shopper_id)?))
}

fn log_scan(
    c: &Connection,
    kiosk_id: &str,
    purpose: &str,
    outcome: ScanOutcome,
    score: Option<f64>,
    shopper_id: Option<i64>,
) -> Result<Outcome, LedgerError> {
    c.execute(
        "INSERT INTO palm_scans (kiosk_id, at, purpose, outcome, score, account_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![kiosk_id, now_text(), purpose, outcome.as_str(), score, shopper_id],
    )
    .map_err(db)?;
    Ok(Outcome::Done)
}

// ------------------------------------------------------------------ palms and retention

/// Gives a shopper's palm the next version of the store-wide sequence.
fn next_palm_version(c: &Connection, account: i64) -> Result<PalmVersion, LedgerError> {
    let v: i64 = c
        .query_row(
            "SELECT COALESCE(MAX(version), 0) + 1 FROM palm_versions",
            [],
            |r| r.get(0),
        )
        .map_err(db)?;
    c.execute(
        "INSERT INTO palm_versions (account_id, version) VALUES (?1, ?2)
         ON CONFLICT (account_id) DO UPDATE SET version = excluded.version",
        params![account, v],
    )
    .map_err(db)?;
    Ok(PalmVersion(v as u64))
}

/// One batch of each kind of purge (see [`Command::Purge`]). The ledger's own tables are
/// never touched.
fn purge(c: &Connection, cut: Cutoffs, batch: u32) -> Result<Purged, LedgerError> {
    let gone = |sql: &str, p: &dyn rusqlite::ToSql| -> Result<u64, LedgerError> {
        let n = c.execute(sql, params![p, batch]).map_err(db)?;
        Ok(n as u64)
    };
    let today = ts_of(cut.now)?[..10].to_string();
    Ok(Purged {
        idempotency: gone(
            "DELETE FROM idempotency WHERE (scope, key) IN
               (SELECT scope, key FROM idempotency WHERE created_at < ?1 LIMIT ?2)",
            &ts_of(cut.idempotency)?,
        )?,
        scans: gone(
            "DELETE FROM palm_scans WHERE id IN (SELECT id FROM palm_scans WHERE at < ?1 LIMIT ?2)",
            &ts_of(cut.scans)?,
        )?,
        sessions: gone(
            "DELETE FROM sessions WHERE token_hash IN
               (SELECT token_hash FROM sessions WHERE expires_at < ?1 LIMIT ?2)",
            &cut.now,
        )? + gone(
            "DELETE FROM cashier_sessions WHERE token_hash IN
               (SELECT token_hash FROM cashier_sessions WHERE expires_at < ?1 LIMIT ?2)",
            &cut.now,
        )?,
        guess_days: gone(
            "DELETE FROM auth_day WHERE (account_id, secret, day) IN
               (SELECT account_id, secret, day FROM auth_day WHERE day < ?1 LIMIT ?2)",
            &today,
        )?,
    })
}

// ------------------------------------------------------------------ guesses and limits

/// `(failures, locked_until)` of one factor of one shopper at one kiosk.
fn kiosk_guesses(c: &Connection, k: &GuessKey) -> Result<(u32, Option<i64>), LedgerError> {
    c.prepare_cached(
        "SELECT failures, locked_until FROM auth_kiosk WHERE account_id = ?1 AND factor = ?2 AND kiosk_id = ?3",
    )
    .and_then(|mut s| {
        s.query_row(params![k.account_id, k.factor.as_str(), k.kiosk_id], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()
    })
    .map_err(db)
    .map(|row| row.unwrap_or((0, None)))
}

/// `(wrong guesses, locks)` at one secret of one shopper today, all kiosks together.
fn day_guesses(c: &Connection, k: &GuessKey, day: &str) -> Result<(u32, u32), LedgerError> {
    c.prepare_cached(
        "SELECT guesses, locks FROM auth_day WHERE account_id = ?1 AND secret = ?2 AND day = ?3",
    )
    .and_then(|mut s| {
        s.query_row(params![k.account_id, k.factor.secret(), day], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()
    })
    .map_err(db)
    .map(|row| row.unwrap_or((0, 0)))
}

fn put_day(
    c: &Connection,
    k: &GuessKey,
    day: &str,
    guesses: u32,
    locks: u32,
) -> Result<(), LedgerError> {
    c.prepare_cached(
        "INSERT INTO auth_day (account_id, secret, day, guesses, locks) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (account_id, secret, day) DO UPDATE SET guesses = excluded.guesses, locks = excluded.locks",
    )
    .and_then(|mut s| s.execute(params![k.account_id, k.factor.secret(), day, guesses, locks]))
    .map_err(db)?;
    Ok(())
}

fn put_kiosk(
    c: &Connection,
    k: &GuessKey,
    failures: u32,
    locked_until: Option<i64>,
) -> Result<(), LedgerError> {
    c.prepare_cached(
        "INSERT INTO auth_kiosk (account_id, factor, kiosk_id, failures, locked_until) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (account_id, factor, kiosk_id) DO UPDATE SET failures = excluded.failures, locked_until = excluded.locked_until",
    )
    .and_then(|mut s| s.execute(params![k.account_id, k.factor.as_str(), k.kiosk_id, failures, locked_until]))
    .map_err(db)?;
    Ok(())
}

/// Counts a guess before it is checked ([`crate::limits::reserve_guess`] decides). The
/// writer runs one command at a time, so no two concurrent guesses can both see the last
/// free slot.
fn reserve_guess(c: &Connection, k: &GuessKey, rules: GuessRules) -> Result<Grant, LedgerError> {
    let day = today();
    let (failures, locked_until) = kiosk_guesses(c, k)?;
    let (guesses_today, locks_today) = day_guesses(c, k, &day)?;
    let counts = GuessCounts {
        failures,
        locked_until,
        guesses_today,
        locks_today,
    };
    let (grant, after) = limits::reserve_guess(k, rules, unix_now(), counts);
    if let Some(a) = after {
        put_kiosk(c, k, a.failures, a.locked_until)?;
        put_day(c, k, &day, a.guesses_today, a.locks_today)?;
    }
    Ok(grant)
}

fn guess_right(c: &Connection, k: &GuessKey) -> Result<(), LedgerError> {
    let day = today();
    put_kiosk(c, k, 0, None)?;
    let (guesses, locks) = day_guesses(c, k, &day)?;
    put_day(c, k, &day, guesses.saturating_sub(1), locks)
}

/// What the shopper already spent without the PIN today, and in this session (if any).
fn no_pin_spent(
    c: &Connection,
    shopper_id: i64,
    session: Option<&[u8; 32]>,
) -> Result<ledger::NoPinSpent, LedgerError> {
    let today_sum: i64 = c
        .prepare_cached(
            "SELECT COALESCE(SUM(amount), 0) FROM no_pin_debits WHERE account_id = ?1 AND created_at >= ?2",
        )
        .and_then(|mut s| s.query_row(params![shopper_id, today()], |r| r.get(0)))
        .map_err(db)?;
    let Some(session) = session else {
        return Ok(ledger::NoPinSpent {
            today: today_sum,
            session: None,
        });
    };
    let in_session: i64 = c
        .prepare_cached(
            "SELECT COALESCE(SUM(amount), 0) FROM no_pin_debits WHERE session_hash = ?1",
        )
        .and_then(|mut s| s.query_row(params![&session[..]], |r| r.get(0)))
        .map_err(db)?;
    Ok(ledger::NoPinSpent {
        today: today_sum,
        session: Some(in_session),
    })
}

/// A debit without the PIN, within the cumulative limits or refused.
fn without_pin(
    c: &Connection,
    cur: Currency,
    guard: &NoPinGuard,
    debit: Command,
) -> Result<Outcome, LedgerError> {
    let (shopper_id, amount) = debit
        .debit()
        .ok_or_else(|| LedgerError::Storage("only a debit can be made without the PIN".into()))?;
    let amount = ledger::check_amount(amount, cur)?;
    let minor = amount.minor();
    let spent = no_pin_spent(c, shopper_id, guard.session_hash.as_ref())?;
    ledger::within_no_pin_limits(amount, spent, &guard.limits, guard.pin_set)?;
    let outcome = apply(c, cur, debit)?;
    let Outcome::Receipt(r) = &outcome else {
        return Err(LedgerError::Storage("a debit without a receipt".into()));
    };
    c.prepare_cached(
        "INSERT INTO no_pin_debits (tx_id, account_id, session_hash, amount, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
    )
    .and_then(|mut s| {
        s.execute(params![
            r.transaction_id,
            shopper_id,
            guard.session_hash.as_ref().map(|h| h.to_vec()),
            minor,
            r.created_at.to_text()
        ])
    })
    .map_err(db)?;
    Ok(outcome)
}

fn account_row(c: &Connection, id: i64, cur: Currency) -> Result<AccountRow, LedgerError> {
    let mut rows = accounts_query(c, "WHERE id = ?1", params![id], cur)?;
    rows.pop()
        .ok_or_else(|| LedgerError::UnknownAccount(format!("#{id}")))
}

fn accounts_query(
    c: &Connection,
    filter: &str,
    p: impl rusqlite::Params,
    cur: Currency,
) -> Result<Vec<AccountRow>, LedgerError> {
    let sql =
        format!("SELECT id, kind, name, email, status, balance, created_at, EXISTS (SELECT 1 FROM palm_templates p WHERE p.account_id = accounts.id) FROM accounts {filter}");
    let mut stmt = c.prepare_cached(&sql).map_err(db)?;
    let rows = stmt
        .query_map(p, |r| {
            Ok(AccountRow {
                id: r.get(0)?,
                kind: text_as(r, 1, AccountKind::parse)?,
                name: r.get(2)?,
                email: r.get(3)?,
                status: status_of(&r.get::<_, String>(4)?),
                balance: Money::from_minor(r.get(5)?, cur),
                palm_enrolled: r.get(7)?,
                created_at: r.get(6)?,
            })
        })
        .map_err(db)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(db)?;
    Ok(rows)
}

fn lookup_idem(c: &Connection, idem: &Idem) -> Result<Option<StoredResult>, LedgerError> {
    let row: Option<(Vec<u8>, String)> = c
        .prepare_cached(
            "SELECT request_hash, result FROM idempotency WHERE scope = ?1 AND key = ?2",
        )
        .and_then(|mut s| {
            s.query_row(params![idem.scope, idem.key], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()
        })
        .map_err(db)?;
    match row {
        None => Ok(None),
        Some((hash, _)) if hash != idem.request_hash => Err(LedgerError::IdempotencyMismatch),
        Some((_, result)) => serde_json::from_str(&result).map(Some).map_err(storage),
    }
}

fn merchant_day_totals(
    c: &Connection,
    merchant_id: i64,
    merchant: &str,
    date: time::Date,
    cur: Currency,
) -> Result<DailyTotals, LedgerError> {
    let (from, to) = day_bounds(date)?;
    let mut t = DailyTotals {
        merchant: merchant.to_string(),
        date,
        payments_count: 0,
        payments_total: Money::zero(cur),
        refunds_total: Money::zero(cur),
        deposits_total: Money::zero(cur),
        withdrawals_total: Money::zero(cur),
        cash_net: Money::zero(cur),
        cashiers: Vec::new(),
    };
    let mut stmt = c
        .prepare_cached(
            "SELECT kind, COUNT(*), SUM(amount) FROM transactions
             WHERE merchant_id = ?1 AND created_at >= ?2 AND created_at < ?3 GROUP BY kind",
        )
        .map_err(db)?;
    let rows = stmt
        .query_map(params![merchant_id, from, to], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })
        .map_err(db)?;
    for row in rows {
        let (kind, count, sum) = row.map_err(db)?;
        let m = Money::from_minor(sum, cur);
        match kind.as_str() {
            "payment" => {
                t.payments_count = count;
                t.payments_total = m;
            }
            "refund" => t.refunds_total = m,
            "deposit" => t.deposits_total = m,
            "withdrawal" => t.withdrawals_total = m,
            _ => {}
        }
    }
    t.cash_net = t
        .deposits_total
        .checked_sub(t.withdrawals_total)
        .map_err(|e| LedgerError::Storage(e.to_string()))?;
    let rows: Vec<super::CashRow> = c
        .prepare_cached(
            "SELECT t.cashier_id, c.name, t.kind, COUNT(*), SUM(t.amount)
             FROM transactions t LEFT JOIN cashiers c ON c.id = t.cashier_id
             WHERE t.merchant_id = ?1 AND t.created_at >= ?2 AND t.created_at < ?3
               AND t.kind IN ('deposit', 'withdrawal')
             GROUP BY t.cashier_id, c.name, t.kind",
        )
        .and_then(|mut s| {
            s.query_map(params![merchant_id, from, to], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })?
            .collect()
        })
        .map_err(storage)?;
    t.cashiers = super::cashier_totals(rows, cur)?;
    Ok(t)
}

#[async_trait]
impl Store for SqliteStore {
    fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        self.metrics.register(registry);
    }

    fn storage_fault(&self) -> Option<StorageFault> {
        self.faults.current()
    }

    async fn execute(&self, idem: Option<Idem>, cmd: Command) -> StoredResult {
        let cur = self.currency;
        match idem {
            None => self.write(move |c| apply(c, cur, cmd)).await,
            Some(idem) => {
                self.write(move |c| {
                    if let Some(done) = lookup_idem(c, &idem)? {
                        return Ok(done);
                    }
                    // The command in a nested savepoint: a domain error rolls back its own
                    // changes but is still recorded as the answer to this key.
                    c.execute_batch("SAVEPOINT cmd").map_err(db)?;
                    let result = apply(c, cur, cmd);
                    let end = if result.is_ok() {
                        "RELEASE cmd"
                    } else {
                        "ROLLBACK TO cmd; RELEASE cmd"
                    };
                    let ended = c.execute_batch(end).map_err(db);
                    // A failure not final (storage) is never stored: the retry runs again.
                    // It is also the better answer when the savepoint could not end
                    // (SQLite may have rolled the whole transaction back over it).
                    if let Err(e) = &result {
                        if !e.is_final() {
                            return Err(e.clone());
                        }
                    }
                    ended?;
                    let stored = serde_json::to_string(&result).map_err(storage)?;
                    c.prepare_cached(
                        "INSERT INTO idempotency (scope, key, request_hash, result, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                    )
                    .and_then(|mut s| {
                        s.execute(params![
                            idem.scope,
                            idem.key,
                            &idem.request_hash[..],
                            stored,
                            now_text()
                        ])
                    })
                    .map_err(db)?;
                    Ok(result)
                })
                .await?
            }
        }
    }

    async fn replay(&self, idem: &Idem) -> Result<Option<StoredResult>, LedgerError> {
        let idem = idem.clone();
        self.read(move |c| lookup_idem(c, &idem)).await
    }

    async fn shopper_auth(&self, username: &str) -> Result<Option<ShopperAuth>, LedgerError> {
        let username = username.to_string();
        self.read(move |c| auth_query(c, "name = ?1", username))
            .await
    }

    async fn shopper_auth_by_id(&self, id: i64) -> Result<Option<ShopperAuth>, LedgerError> {
        self.read(move |c| auth_query(c, "id = ?1", id)).await
    }

    async fn session(
        &self,
        token_hash: [u8; 32],
        now: i64,
    ) -> Result<Option<SessionInfo>, LedgerError> {
        self.read(move |c| {
            c.prepare_cached(
                "SELECT account_id, kiosk_id, expires_at FROM sessions WHERE token_hash = ?1 AND expires_at > ?2",
            )
            .and_then(|mut s| {
                s.query_row(params![&token_hash[..], now], |r| {
                    Ok(SessionInfo {
                        shopper_id: r.get(0)?,
                        kiosk_id: r.get(1)?,
                        expires_at: r.get(2)?,
                    })
                })
                .optional()
            })
            .map_err(db)
        })
        .await
    }

    async fn cashier_auth(
        &self,
        merchant: &str,
        name: &str,
    ) -> Result<Option<CashierAuth>, LedgerError> {
        let (merchant, name) = (merchant.to_string(), name.to_string());
        self.read(move |c| {
            let found = cashiers_where(
                c,
                "a.kind = 'merchant' AND a.name = ?1 AND c.name = ?2",
                params![merchant, name],
            )?;
            Ok(found
                .into_iter()
                .next()
                .map(|(cashier, pin_hash)| CashierAuth { cashier, pin_hash }))
        })
        .await
    }

    async fn cashier_session(
        &self,
        token_hash: [u8; 32],
        now: i64,
    ) -> Result<Option<CashierSessionInfo>, LedgerError> {
        self.read(move |c| {
            c.prepare_cached(
                "SELECT s.cashier_id, c.name, a.name, s.kiosk_id, c.status, s.expires_at
                 FROM cashier_sessions s JOIN cashiers c ON c.id = s.cashier_id
                 JOIN accounts a ON a.id = c.merchant_id
                 WHERE s.token_hash = ?1 AND s.expires_at > ?2",
            )
            .and_then(|mut s| {
                s.query_row(params![&token_hash[..], now], |r| {
                    Ok(CashierSessionInfo {
                        cashier_id: r.get(0)?,
                        name: r.get(1)?,
                        merchant: r.get(2)?,
                        kiosk_id: r.get(3)?,
                        active: r.get::<_, String>(4)? == "active",
                        expires_at: r.get(5)?,
                    })
                })
                .optional()
            })
            .map_err(storage)
        })
        .await
    }

    async fn cashiers(&self, merchant: Option<&str>) -> Result<Vec<Cashier>, LedgerError> {
        let merchant = merchant.map(str::to_string);
        self.read(move |c| {
            let rows = match merchant {
                Some(m) => cashiers_where(c, "a.name = ?1", [m])?,
                None => cashiers_where(c, "1 = 1", params![])?,
            };
            Ok(rows.into_iter().map(|(cashier, _)| cashier).collect())
        })
        .await
    }

    async fn wallet(&self, shopper_id: i64) -> Result<Wallet, LedgerError> {
        let cur = self.currency;
        self.read(move |c| {
            let shopper = shopper_view(c, shopper_id)?;
            let bal = shopper_by_id(c, shopper_id)?.core.balance;
            Ok(Wallet {
                shopper,
                balance: Money::from_minor(bal, cur),
            })
        })
        .await
    }

    async fn history(
        &self,
        shopper_id: i64,
        before: Option<i64>,
        limit: u32,
    ) -> Result<HistoryPage, LedgerError> {
        let cur = self.currency;
        let limit = limit.clamp(1, 200);
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT e.id, t.id, t.kind, e.amount, e.balance_after, t.description, t.created_at,
                            CASE WHEN t.shopper_id = e.account_id THEN o.name ELSE s.name END
                     FROM entries e
                     JOIN transactions t ON t.id = e.tx_id
                     JOIN accounts o ON o.id = t.other_id
                     JOIN accounts s ON s.id = t.shopper_id
                     WHERE e.account_id = ?1 AND e.id < ?2
                     ORDER BY e.id DESC LIMIT ?3",
                )
                .map_err(db)?;
            let rows = stmt
                .query_map(
                    params![shopper_id, before.unwrap_or(i64::MAX), i64::from(limit) + 1],
                    |r| {
                        Ok((
                            r.get::<_, i64>(0)?,
                            HistoryItem {
                                transaction_id: r.get(1)?,
                                kind: text_as(r, 2, TxKind::parse)?,
                                amount: Money::from_minor(r.get(3)?, cur),
                                balance_after: Money::from_minor(r.get(4)?, cur),
                                description: r.get(5)?,
                                created_at: r.get(6)?,
                                counterparty: r.get(7)?,
                            },
                        ))
                    },
                )
                .map_err(db)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(db)?;
            let more = rows.len() > limit as usize;
            let mut items = Vec::with_capacity(limit as usize);
            let mut last_entry = None;
            for (entry_id, item) in rows.into_iter().take(limit as usize) {
                last_entry = Some(entry_id);
                items.push(item);
            }
            Ok(HistoryPage {
                items,
                next_before: if more { last_entry } else { None },
            })
        })
        .await
    }

    async fn merchant_day(
        &self,
        merchant: &str,
        date: time::Date,
    ) -> Result<DailyTotals, LedgerError> {
        let cur = self.currency;
        let merchant = merchant.to_string();
        self.read(move |c| {
            let id: Option<i64> = c
                .query_row(
                    "SELECT id FROM accounts WHERE kind = 'merchant' AND name = ?1",
                    [&merchant],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db)?;
            match id {
                Some(id) => merchant_day_totals(c, id, &merchant, date, cur),
                // A merchant whose kiosk has not been seen yet has sold nothing.
                None => merchant_day_totals(c, -1, &merchant, date, cur),
            }
        })
        .await
    }

    async fn daily_report(&self, date: time::Date) -> Result<DailyReport, LedgerError> {
        let cur = self.currency;
        self.read(move |c| {
            let merchants: Vec<(i64, String)> = c
                .prepare_cached(
                    "SELECT id, name FROM accounts WHERE kind = 'merchant' ORDER BY name",
                )
                .and_then(|mut s| {
                    s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                        .collect::<Result<Vec<_>, _>>()
                })
                .map_err(db)?;
            let mut out = Vec::with_capacity(merchants.len());
            for (id, name) in merchants {
                out.push(merchant_day_totals(c, id, &name, date, cur)?);
            }
            Ok(DailyReport {
                date,
                merchants: out,
            })
        })
        .await
    }

    async fn accounts(
        &self,
        query: Option<&str>,
        limit: u32,
    ) -> Result<Vec<AccountRow>, LedgerError> {
        let cur = self.currency;
        let limit = i64::from(limit.clamp(1, 1000));
        let pattern = query.map(|q| {
            let escaped = q
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            format!("%{escaped}%")
        });
        self.read(move |c| match pattern {
            Some(p) => accounts_query(
                c,
                "WHERE kind <> 'till' AND (name LIKE ?1 ESCAPE '\\' OR email LIKE ?1 ESCAPE '\\') ORDER BY id LIMIT ?2",
                params![p, limit],
                cur,
            ),
            None => accounts_query(
                c,
                "WHERE kind <> 'till' ORDER BY id LIMIT ?1",
                params![limit],
                cur,
            ),
        })
        .await
    }

    async fn kiosks(&self) -> Result<Vec<KioskRow>, LedgerError> {
        self.read(|c| {
            c.prepare_cached(
                "SELECT k.kiosk_id, a.name, k.first_seen, k.last_seen, k.requests
                 FROM kiosks k JOIN accounts a ON a.id = k.merchant_id ORDER BY k.kiosk_id",
            )
            .and_then(|mut s| {
                s.query_map([], |r| {
                    Ok(KioskRow {
                        kiosk_id: r.get(0)?,
                        merchant: r.get(1)?,
                        first_seen: r.get(2)?,
                        last_seen: r.get(3)?,
                        requests: r.get(4)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()
            })
            .map_err(db)
        })
        .await
    }

    async fn palm_scans(
        &self,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<PalmScanRow>, LedgerError> {
        let limit = i64::from(limit.clamp(1, 1000));
        self.read(move |c| {
            c.prepare_cached(
                "SELECT p.id, p.kiosk_id, p.at, p.purpose, p.outcome, p.score, a.name
                 FROM palm_scans p LEFT JOIN accounts a ON a.id = p.account_id
                 WHERE p.id < ?1 ORDER BY p.id DESC LIMIT ?2",
            )
            .and_then(|mut s| {
                s.query_map(params![before.unwrap_or(i64::MAX), limit], |r| {
                    Ok(PalmScanRow {
                        id: r.get(0)?,
                        kiosk_id: r.get(1)?,
                        at: r.get(2)?,
                        purpose: r.get(3)?,
                        outcome: text_as(r, 4, ScanOutcome::parse)?,
                        score: r.get(5)?,
                        account: r.get(6)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()
            })
            .map_err(db)
        })
        .await
    }

    async fn ledger_check(&self) -> Result<LedgerCheck, LedgerError> {
        self.read(check_ledger).await
    }

    async fn palm_templates(
        &self,
        ids: Option<Vec<i64>>,
    ) -> Result<Vec<(i64, Vec<Vec<u8>>)>, LedgerError> {
        self.read(move |c| {
            let mut out: Vec<(i64, Vec<Vec<u8>>)> = Vec::new();
            let mut push = |id: i64, ct: Vec<u8>| match out.last_mut() {
                Some((last, v)) if *last == id => v.push(ct),
                _ => out.push((id, vec![ct])),
            };
            match ids {
                None => {
                    let mut stmt = c
                        .prepare("SELECT account_id, ciphertext FROM palm_templates ORDER BY account_id, idx")
                        .map_err(db)?;
                    let mut rows = stmt.query([]).map_err(db)?;
                    while let Some(r) = rows.next().map_err(db)? {
                        push(r.get(0).map_err(db)?, r.get(1).map_err(db)?);
                    }
                }
                Some(ids) => {
                    let mut stmt = c
                        .prepare_cached("SELECT ciphertext FROM palm_templates WHERE account_id = ?1 ORDER BY idx")
                        .map_err(db)?;
                    for id in ids {
                        let cts = stmt
                            .query_map([id], |r| r.get::<_, Vec<u8>>(0))
                            .map_err(db)?
                            .collect::<Result<Vec<_>, _>>()
                            .map_err(db)?;
                        for ct in cts {
                            push(id, ct);
                        }
                    }
                }
            }
            Ok(out)
        })
        .await
    }

    async fn palm_owners(&self) -> Result<Vec<i64>, LedgerError> {
        self.read(|c| {
            c.prepare("SELECT DISTINCT account_id FROM palm_templates ORDER BY account_id")
                .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
                .map_err(db)
        })
        .await
    }

    async fn palm_version(&self) -> Result<PalmVersion, LedgerError> {
        self.read(|c| {
            c.query_row(
                "SELECT COALESCE(MAX(version), 0) FROM palm_versions",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map(|v| PalmVersion(v as u64))
            .map_err(db)
        })
        .await
    }

    async fn palm_changes(
        &self,
        after: PalmVersion,
        limit: u32,
    ) -> Result<Vec<PalmChange>, LedgerError> {
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached(
                    "WITH changed AS (SELECT account_id, version FROM palm_versions
                                       WHERE version > ?1 ORDER BY version LIMIT ?2)
                     SELECT c.account_id, c.version, t.ciphertext FROM changed c
                       LEFT JOIN palm_templates t ON t.account_id = c.account_id
                      ORDER BY c.version, t.idx",
                )
                .map_err(db)?;
            let rows = stmt
                .query_map(rusqlite::params![after.0 as i64, limit], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)? as u64, r.get(2)?))
                })
                .map_err(db)?;
            let rows = rows.collect::<Result<Vec<_>, _>>().map_err(db)?;
            Ok(crate::store::group_palm_changes(rows))
        })
        .await
    }

    async fn total_balance(&self) -> Result<i64, LedgerError> {
        self.read(|c| {
            c.query_row("SELECT COALESCE(SUM(balance), 0) FROM accounts", [], |r| {
                r.get(0)
            })
            .map_err(db)
        })
        .await
    }

    fn currency(&self) -> Currency {
        self.currency
    }
}

/// Recomputes every balance from the entries on `c` (in whatever transaction it is in).
pub(crate) fn check_ledger(c: &Connection) -> Result<LedgerCheck, LedgerError> {
    let q =
        |sql: &str| -> Result<i64, LedgerError> { c.query_row(sql, [], |r| r.get(0)).map_err(db) };
    let accounts_checked = q("SELECT COUNT(*) FROM accounts")?;
    let transactions_checked = q("SELECT COUNT(*) FROM transactions")?;
    let total_balance_minor = q("SELECT COALESCE(SUM(balance), 0) FROM accounts")?;
    let ids = |sql: &str| -> Result<Vec<i64>, LedgerError> {
        c.prepare(sql)
            .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
            .map_err(db)
    };
    let mut unbalanced =
        ids("SELECT tx_id FROM entries GROUP BY tx_id HAVING SUM(amount) <> 0 ORDER BY tx_id")?;
    // A transaction without entries moved nothing yet claims an amount: also wrong.
    unbalanced.extend(ids(
            "SELECT t.id FROM transactions t WHERE NOT EXISTS (SELECT 1 FROM entries e WHERE e.tx_id = t.id)",
        )?);
    let negative_shoppers = ids("SELECT id FROM accounts WHERE kind = 'shopper' AND balance < 0")?;
    let mismatches = c
            .prepare(
                "SELECT a.id, a.balance, COALESCE((SELECT SUM(e.amount) FROM entries e WHERE e.account_id = a.id), 0) AS s
                 FROM accounts a WHERE a.balance <> s ORDER BY a.id",
            )
            .and_then(|mut s| {
                s.query_map([], |r| {
                    Ok(BalanceMismatch {
                        account_id: r.get(0)?,
                        cached_minor: r.get(1)?,
                        from_entries_minor: r.get(2)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()
            })
            .map_err(db)?;
    Ok(LedgerCheck::new(
        accounts_checked,
        transactions_checked,
        total_balance_minor,
        unbalanced,
        mismatches,
        negative_shoppers,
    ))
}

fn auth_query(
    c: &Connection,
    filter: &str,
    p: impl rusqlite::ToSql,
) -> Result<Option<ShopperAuth>, LedgerError> {
    let sql = format!(
        "SELECT id, name, password_hash, pin_hash, status FROM accounts WHERE kind = 'shopper' AND {filter}"
    );
    c.prepare_cached(&sql)
        .and_then(|mut s| {
            s.query_row([p], |r| {
                Ok(ShopperAuth {
                    id: r.get(0)?,
                    username: r.get(1)?,
                    password_hash: r.get(2)?,
                    pin_hash: r.get(3)?,
                    frozen: r.get::<_, String>(4)? == "frozen",
                })
            })
            .optional()
        })
        .map_err(db)
}

/// Writes a transactionally consistent copy of the database to `out` (`VACUUM INTO`),
/// safe while the server is writing (WAL readers do not block the writer).
pub fn backup(db: &Path, out: &Path) -> Result<(), LedgerError> {
    if out.exists() {
        return Err(LedgerError::Storage(format!(
            "{} already exists",
            out.display()
        )));
    }
    let conn = open(db, true).map_err(self::db)?;
    let target = out
        .to_str()
        .ok_or_else(|| LedgerError::Storage("backup path is not UTF-8".into()))?;
    conn.execute("VACUUM INTO ?1", [target]).map_err(self::db)?;
    Ok(())
}

/// Re-encrypts every stored palm template (template key rotation) in one all-or-nothing
/// transaction, reading and rewriting a page of `page_rows` rows at a time so that memory
/// stays bounded whatever the gallery size. `f` maps (account, index, ciphertext) to the new
/// ciphertext; its first error rolls everything back. Returns the number of palms. Meant for
/// a stopped server (it holds the write lock until it commits).
pub fn rekey_templates(
    db: &Path,
    page_rows: usize,
    mut f: impl FnMut(i64, usize, &[u8]) -> anyhow::Result<Vec<u8>>,
) -> anyhow::Result<usize> {
    let mut conn = open(db, false)?;
    migrate(&mut conn)?;
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut palms = 0usize;
    let mut after = (i64::MIN, -1i64);
    loop {
        let page: Vec<(i64, i64, Vec<u8>)> = tx
            .prepare_cached(
                "SELECT account_id, idx, ciphertext FROM palm_templates \
                 WHERE (account_id, idx) > (?1, ?2) ORDER BY account_id, idx LIMIT ?3",
            )?
            .query_map(params![after.0, after.1, page_rows.max(1) as i64], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })?
            .collect::<Result<_, _>>()?;
        let Some(&(last_account, last_idx, _)) = page.last() else {
            break;
        };
        let mut update = tx.prepare_cached(
            "UPDATE palm_templates SET ciphertext = ?3 WHERE account_id = ?1 AND idx = ?2",
        )?;
        for (account, idx, ct) in &page {
            if *account != after.0 {
                palms += 1;
                after.0 = *account;
            }
            let sealed = f(*account, *idx as usize, ct)?;
            update.execute(params![account, idx, sealed])?;
        }
        after = (last_account, last_idx);
    }
    tx.commit()?;
    Ok(palms)
}

/// Rows per page of [`rekey_templates`] in `palmline-server templates rekey`.
pub const REKEY_PAGE: usize = 1024;

/// Opens the store a server uses for `data_dir`.
pub fn open_in(data_dir: &Path, currency: Currency) -> Result<SqliteStore, LedgerError> {
    std::fs::create_dir_all(data_dir).map_err(storage)?;
    SqliteStore::open(&data_dir.join("palmline.db"), currency)
}

#[cfg(test)]
mod writer_tests {
    //! The writer's group commit when a job loses the group's transaction.
    use super::*;
    use std::sync::mpsc::{channel, Receiver};

    type Fate = Receiver<Result<(), LedgerError>>;

    /// A job running `f` and the channel its acknowledgement arrives on.
    fn job(f: impl FnOnce(&Connection) -> Result<(), LedgerError> + Send + 'static) -> (Job, Fate) {
        let (tx, rx) = channel();
        let job: Job = Box::new(move |conn| {
            let res = conn.and_then(f);
            let keep = res.clone();
            let reply: Reply = Box::new(move |fate| {
                let _ = tx.send(fate.and(res));
            });
            (keep, reply)
        });
        (job, rx)
    }

    fn insert(x: i64) -> impl FnOnce(&Connection) -> Result<(), LedgerError> + Send {
        move |c| {
            c.execute("INSERT INTO t VALUES (?1)", [x])
                .map(drop)
                .map_err(db)
        }
    }

    fn run(
        store: &SqliteStore,
        f: impl FnOnce(&Connection) -> Result<(), LedgerError> + Send + 'static,
    ) -> Result<(), LedgerError> {
        let (j, fate) = job(f);
        store.writer.send(j).unwrap();
        fate.recv().unwrap()
    }

    #[test]
    fn sqlite_codes_a_retry_may_cure_are_faults_and_damage_is_not() {
        use rusqlite::ffi;
        let err = |code| rusqlite::Error::SqliteFailure(ffi::Error::new(code), None);
        assert_eq!(
            db(err(ffi::SQLITE_FULL)).fault(),
            Some(StorageFault::DiskFull)
        );
        assert_eq!(
            db(err(ffi::SQLITE_READONLY)).fault(),
            Some(StorageFault::ReadOnly)
        );
        assert_eq!(db(err(ffi::SQLITE_BUSY)).fault(), Some(StorageFault::Busy));
        assert_eq!(
            db(err(ffi::SQLITE_IOERR_WRITE)).fault(),
            Some(StorageFault::Io)
        );
        for bug in [
            ffi::SQLITE_CORRUPT,
            ffi::SQLITE_CONSTRAINT,
            ffi::SQLITE_MISUSE,
        ] {
            assert!(matches!(db(err(bug)), LedgerError::Storage(_)), "{bug}");
        }
        assert!(matches!(
            db(rusqlite::Error::QueryReturnedNoRows),
            LedgerError::Storage(_)
        ));
    }

    #[test]
    fn an_io_error_on_a_file_that_cannot_be_opened_for_writing_is_read_only() {
        let dir = tempfile::tempdir().unwrap();
        let io = || LedgerError::unavailable(StorageFault::Io, "sqlite 778: disk I/O error");
        // A missing file says nothing; a writable one leaves the I/O error as it is.
        let file = dir.path().join("x.db");
        assert_eq!(refine(io(), &file).fault(), Some(StorageFault::Io));
        std::fs::write(&file, b"").unwrap();
        assert_eq!(refine(io(), &file).fault(), Some(StorageFault::Io));
        // Not writable: chmod for anyone but root; as root only an immutable file refuses.
        let mut perms = std::fs::metadata(&file).unwrap().permissions();
        perms.set_readonly(true);
        std::fs::set_permissions(&file, perms).unwrap();
        let writable = || std::fs::OpenOptions::new().append(true).open(&file).is_ok();
        let chattr = |flag: &str| {
            std::process::Command::new("chattr")
                .arg(flag)
                .arg(&file)
                .status()
                .is_ok_and(|s| s.success())
        };
        let immutable = writable() && chattr("+i");
        if writable() {
            eprintln!("SKIPPED the read-only half: the file stays writable here (root, no chattr)");
            return;
        }
        let refined = refine(io(), &file).fault();
        if immutable {
            chattr("-i");
        }
        assert_eq!(refined, Some(StorageFault::ReadOnly));
    }

    #[test]
    fn a_group_whose_transaction_sqlite_ended_fails_whole_and_the_writer_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("w.db"), Currency::EUR).unwrap();
        run(&store, |c| {
            c.execute_batch("CREATE TABLE t (x INTEGER)").map_err(db)
        })
        .unwrap();

        // A runs alone and holds the writer until B, C and D are queued behind it, so that
        // those three make one group.
        let (started_tx, started) = channel();
        let (release, gate) = channel::<()>();
        let (a, a_fate) = job(move |_| {
            started_tx.send(()).unwrap();
            gate.recv().unwrap();
            Ok(())
        });
        store.writer.send(a).unwrap();
        started.recv().unwrap();
        let (b, b_fate) = job(insert(1));
        // C's transaction ends under it, as SQLite's own rollback on SQLITE_FULL does.
        let (c, c_fate) = job(|c| {
            c.execute_batch("ROLLBACK").map_err(db)?;
            Err(LedgerError::unavailable(StorageFault::DiskFull, "test"))
        });
        let (d, d_fate) = job(insert(2));
        for j in [b, c, d] {
            store.writer.send(j).unwrap();
        }
        release.send(()).unwrap();

        assert_eq!(a_fate.recv().unwrap(), Ok(()));
        for fate in [b_fate, c_fate, d_fate] {
            let e = fate
                .recv()
                .unwrap()
                .expect_err("no job of the group is acknowledged");
            assert_eq!(e.fault(), Some(StorageFault::DiskFull), "{e}");
        }
        assert_eq!(store.faults.current(), Some(StorageFault::DiskFull));

        // The next group works, and nothing of the failed one was kept (D, run after the
        // transaction ended, would have committed alone).
        run(&store, insert(3)).unwrap();
        assert_eq!(store.faults.current(), None);
        let conn = open(&dir.path().join("w.db"), true).unwrap();
        let rows: Vec<i64> = conn
            .prepare("SELECT x FROM t ORDER BY x")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(rows, vec![3]);
    }
}

#[cfg(test)]
mod migration_tests {
    use super::*;

    fn columns(conn: &Connection, table: &str) -> Vec<String> {
        let mut stmt = conn
            .prepare(&format!("SELECT name FROM pragma_table_info('{table}')"))
            .unwrap();
        let names = stmt.query_map([], |r| r.get(0)).unwrap();
        names.collect::<Result<_, _>>().unwrap()
    }

    #[test]
    fn migration_6_drops_the_unused_lock_columns_and_keeps_every_account() {
        let mut conn = Connection::open_in_memory().unwrap();
        for (i, sql) in MIGRATIONS[..5].iter().enumerate() {
            conn.execute_batch(sql).unwrap();
            conn.pragma_update(None, "user_version", (i + 1) as i64)
                .unwrap();
        }
        conn.execute(
            "INSERT INTO accounts (kind, name, password_hash, currency, balance, failed_auth, created_at)
             VALUES ('shopper', 'old', 'h', 'EUR', 1234, 3, '2026-01-01T00:00:00.000000Z')",
            [],
        )
        .unwrap();
        assert!(columns(&conn, "accounts").contains(&"failed_auth".to_string()));
        migrate(&mut conn).unwrap();
        let cols = columns(&conn, "accounts");
        assert!(
            !cols
                .iter()
                .any(|c| c == "failed_auth" || c == "locked_until"),
            "{cols:?}"
        );
        let (name, balance): (String, i64) = conn
            .query_row("SELECT name, balance FROM accounts", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!((name.as_str(), balance), ("old", 1234));
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version as usize, MIGRATIONS.len());
        // Migrating again is a no-op.
        migrate(&mut conn).unwrap();
    }
}
