//! The PostgreSQL store: the same [`Store`] as SQLite, for a ledger shared by several
//! server replicas. It calls the same ledger core ([`crate::ledger`]) and only loads,
//! persists and commits (docs/LEDGER.md); it must never decide anything about money itself.
//!
//! Each command runs in a READ COMMITTED transaction on a pooled connection
//! (deadpool-postgres over tokio-postgres) that first locks the accounts it touches, in id
//! order ([`accounts`]), and an idempotent command first claims its key as a row
//! ([`commands`]): both are shared through the database, so replicas need no shared memory.
//! By default ([`MoneyPath::DEFAULT`]) payments and transfers go through the batched writer
//! instead ([`batch`]): a batch of them decided in memory by the core and written in a fixed
//! number of round trips. A transaction per command ([`MoneyPath::PerCommand`]) and a group
//! commit ([`group`], [`MoneyPath::Grouped`], one savepoint each, as SQLite's writer does)
//! are kept for comparison.
//! Reads ([`reads`]) run outside any transaction. Timestamps are the same fixed-width UTC
//! text as SQLite's ([`super::clock`]), so both stores sort and cut days alike.
//!
//! Errors: a database that cannot serve now (unreachable, shutting down, out of disk or
//! connections, read-only) is a typed `LedgerError::Unavailable` ([`pg_err`], [`fault_of`]);
//! any other error the server reports is `Storage("postgres <SQLSTATE>: …")`.

mod accounts;
mod batch;
mod commands;
mod group;
pub mod notify;
mod reads;
mod records;
pub mod rekey;
pub mod throttle;
mod turn;

pub(crate) use reads::ledger_check_in;

use super::{
    AccountRow, Cashier, CashierAuth, CashierSessionInfo, Command, DailyReport, DailyTotals,
    FaultWatch, HistoryPage, Idem, KioskRow, LedgerCheck, LedgerError, PalmChange, PalmScanRow,
    PalmVersion, SessionInfo, ShopperAuth, StorageFault, Store, StoredResult, Timestamp, Turn,
    Wallet,
};
use async_trait::async_trait;
use deadpool_postgres::{GenericClient, Object, Pool, PoolConfig, Runtime, Timeouts};
use palmline_shared::Currency;
use std::time::Duration;
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row};

/// Migrations, applied in order; `schema_version` holds the number applied.
pub const MIGRATIONS: &[&str] = &[
    include_str!("schema.sql"),
    include_str!("replicas.sql"),
    include_str!("cashiers.sql"),
];

/// Any fixed number: concurrent migrators (several replicas starting) take turns on it.
const MIGRATION_LOCK: i64 = 0x7061_6c6d;

/// Connections `serve` keeps to PostgreSQL.
pub const SERVE_POOL_SIZE: usize = 16;

/// A tokio-postgres error as a [`LedgerError`]: [`LedgerError::Unavailable`] when the
/// database cannot serve now (see [`fault_of`]), else `Storage("postgres <SQLSTATE>: …")`
/// with the SQLSTATE the server sent, or the client's own error (a bug).
pub(crate) fn pg_err(e: tokio_postgres::Error) -> LedgerError {
    match e.as_db_error() {
        Some(db) => {
            let code = db.code().code();
            let detail = format!("postgres {code}: {}", db.message());
            match fault_of(code) {
                Some(fault) => LedgerError::unavailable(fault, detail),
                None => LedgerError::Storage(detail),
            }
        }
        // The connection failed, broke or was closed: the error's cause is an I/O error.
        None if e.is_closed() || io_cause(&e) => {
            let detail = match std::error::Error::source(&e) {
                // "error connecting to server" alone does not say why.
                Some(cause) => format!("postgres: {e}: {cause}"),
                None => format!("postgres: {e}"),
            };
            LedgerError::unavailable(StorageFault::Unreachable, detail)
        }
        None => LedgerError::Storage(format!("postgres client: {e}")),
    }
}

/// The fault a SQLSTATE means, or `None` for an error that a retry would not cure.
pub fn fault_of(sqlstate: &str) -> Option<StorageFault> {
    match sqlstate {
        // connection_exception; admin_shutdown, crash_shutdown, cannot_connect_now.
        s if s.starts_with("08") => Some(StorageFault::Unreachable),
        "57P01" | "57P02" | "57P03" => Some(StorageFault::Unreachable),
        "53100" => Some(StorageFault::DiskFull),
        // insufficient_resources (memory, connections, limits); lock_not_available.
        s if s.starts_with("53") => Some(StorageFault::Busy),
        "55P03" => Some(StorageFault::Busy),
        // read_only_sql_transaction: connected to a standby (mid-failover).
        "25006" => Some(StorageFault::ReadOnly),
        _ => None,
    }
}

fn io_cause(e: &tokio_postgres::Error) -> bool {
    std::error::Error::source(e).is_some_and(|c| c.downcast_ref::<std::io::Error>().is_some())
}

pub(crate) fn pool_err(e: deadpool_postgres::PoolError) -> LedgerError {
    use deadpool_postgres::PoolError;
    match e {
        PoolError::Backend(e) => pg_err(e),
        // No connection in time: every one is busy, or none can be made.
        e @ PoolError::Timeout(_) => {
            LedgerError::unavailable(StorageFault::Unreachable, format!("postgres pool: {e}"))
        }
        e => LedgerError::Storage(format!("postgres pool: {e}")),
    }
}

fn storage(e: impl std::fmt::Display) -> LedgerError {
    LedgerError::Storage(e.to_string())
}

/// A store timestamp column (TEXT) read back as a [`Timestamp`].
impl<'a> tokio_postgres::types::FromSql<'a> for Timestamp {
    fn from_sql(
        ty: &tokio_postgres::types::Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        let text = <&str as tokio_postgres::types::FromSql>::from_sql(ty, raw)?;
        Ok(Timestamp::parse(text)?)
    }

    fn accepts(ty: &tokio_postgres::types::Type) -> bool {
        <&str as tokio_postgres::types::FromSql>::accepts(ty)
    }
}

/// Column `i` of `r` as a `T`, a conversion failure (a malformed timestamp) as a storage
/// error instead of a panic.
fn col<'a, T: tokio_postgres::types::FromSql<'a>>(r: &'a Row, i: usize) -> Result<T, LedgerError> {
    r.try_get(i).map_err(pg_err)
}

/// A text column read by `parse` (an enum's `parse`); anything it refuses is a storage error.
fn text_col<T>(r: &Row, i: usize, parse: impl FnOnce(&str) -> Option<T>) -> Result<T, LedgerError> {
    let text: &str = col(r, i)?;
    parse(text).ok_or_else(|| storage(format!("unexpected value {text:?} in column {i}")))
}

/// Parameters of a query.
type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// The rows of a (cached, prepared) statement.
async fn query(c: &impl GenericClient, sql: &str, p: Params<'_>) -> Result<Vec<Row>, LedgerError> {
    let st = c.prepare_cached(sql).await.map_err(pg_err)?;
    c.query(&st, p).await.map_err(pg_err)
}

/// At most one row.
async fn query_opt(
    c: &impl GenericClient,
    sql: &str,
    p: Params<'_>,
) -> Result<Option<Row>, LedgerError> {
    let st = c.prepare_cached(sql).await.map_err(pg_err)?;
    c.query_opt(&st, p).await.map_err(pg_err)
}

/// Exactly one row (an aggregate).
async fn query_one(c: &impl GenericClient, sql: &str, p: Params<'_>) -> Result<Row, LedgerError> {
    let st = c.prepare_cached(sql).await.map_err(pg_err)?;
    c.query_one(&st, p).await.map_err(pg_err)
}

/// The number of rows a statement changed.
async fn execute(c: &impl GenericClient, sql: &str, p: Params<'_>) -> Result<u64, LedgerError> {
    let st = c.prepare_cached(sql).await.map_err(pg_err)?;
    c.execute(&st, p).await.map_err(pg_err)
}

/// A pool of at most `size` connections to `url` (`postgres://user@host:port/db`).
///
/// Bounded waits, so that a database that does not answer fails a request (503) instead of
/// hanging it: a connection is made within [`CONNECT_TIMEOUT`] (unless the URL sets
/// `connect_timeout`), a pooled one is waited for at most [`POOL_WAIT`], and the kernel
/// gives up on a connection whose sent data stay unacknowledged for [`TCP_USER_TIMEOUT`]
/// (a peer gone without a reset), which breaks it. A pooled connection found closed is
/// dropped and replaced when it is next taken (deadpool's fast recycling), so the pool
/// heals by itself once the database is back.
pub fn pool(url: &str, size: usize) -> Result<Pool, LedgerError> {
    let mut pg: tokio_postgres::Config = url.parse().map_err(storage)?;
    if pg.get_user().is_none() {
        // As libpq and deadpool's own config do.
        if let Ok(user) = std::env::var("USER") {
            pg.user(&user);
        }
    }
    if pg.get_connect_timeout().is_none() {
        pg.connect_timeout(CONNECT_TIMEOUT);
    }
    if pg.get_tcp_user_timeout().is_none() {
        pg.tcp_user_timeout(TCP_USER_TIMEOUT);
    }
    pg.keepalives_idle(Duration::from_secs(30));
    let manager = deadpool_postgres::Manager::from_config(
        pg,
        NoTls,
        deadpool_postgres::ManagerConfig {
            recycling_method: deadpool_postgres::RecyclingMethod::Fast,
        },
    );
    let mut cfg = PoolConfig::new(size);
    cfg.timeouts = Timeouts {
        wait: Some(POOL_WAIT),
        create: Some(CONNECT_TIMEOUT),
        recycle: Some(CONNECT_TIMEOUT),
    };
    Pool::builder(manager)
        .config(cfg)
        .runtime(Runtime::Tokio1)
        .build()
        .map_err(storage)
}

/// Longest a store call waits on the database (a server that accepts data but never
/// answers, a lock never granted) before its request answers 503.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(15);

fn no_answer() -> LedgerError {
    LedgerError::unavailable(
        StorageFault::Unreachable,
        format!("postgres: no answer within {COMMAND_TIMEOUT:?}"),
    )
}

/// A read (or a throttle's short transaction) bounded by [`COMMAND_TIMEOUT`]. Its connection
/// goes back to the pool even when it timed out: a transaction dropped unfinished queues its
/// `ROLLBACK` on the connection before anything else, and the next user of the connection
/// waits behind it, bounded as well.
async fn bounded<T>(
    read: impl std::future::Future<Output = Result<T, LedgerError>>,
) -> Result<T, LedgerError> {
    tokio::time::timeout(COMMAND_TIMEOUT, read)
        .await
        .unwrap_or_else(|_| Err(no_answer()))
}

/// Longest wait to open a connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for a pooled connection when all are in use.
pub const POOL_WAIT: Duration = Duration::from_secs(10);
/// How long sent data may stay unacknowledged before the connection is broken.
pub const TCP_USER_TIMEOUT: Duration = Duration::from_secs(15);

/// Applies the migrations not yet applied, in one transaction; returns the version after.
pub async fn migrate(pool: &Pool) -> Result<usize, LedgerError> {
    let mut client = pool.get().await.map_err(pool_err)?;
    let tx = client.transaction().await.map_err(pg_err)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(pg_err)?;
    let applied: bool = tx
        .query_one("SELECT to_regclass('schema_version') IS NOT NULL", &[])
        .await
        .map_err(pg_err)?
        .get(0);
    let version = if applied {
        let v: i32 = tx
            .query_one("SELECT version FROM schema_version", &[])
            .await
            .map_err(pg_err)?
            .get(0);
        usize::try_from(v).map_err(storage)?
    } else {
        0
    };
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
        tx.batch_execute(sql).await.map_err(pg_err)?;
        let v = i32::try_from(i + 1).map_err(storage)?;
        tx.execute("UPDATE schema_version SET version = $1", &[&v])
            .await
            .map_err(pg_err)?;
    }
    tx.commit().await.map_err(pg_err)?;
    Ok(version.max(MIGRATIONS.len()))
}

/// The ledger in PostgreSQL.
pub struct PgStore {
    pool: Pool,
    currency: Currency,
    /// The latest command's storage health, for `GET /v1/health`.
    faults: FaultWatch,
    /// Where money commands go besides the per-command path ([`MoneyPath`]).
    money: Writers,
}

/// How a [`PgStore`] runs its money commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MoneyPath {
    /// Each command in its own transaction ([`commands`]).
    PerCommand,
    /// Money commands in a group commit, a savepoint each ([`group`]).
    Grouped,
    /// Payments and transfers through the batched writer ([`batch`]): a batch in a fixed
    /// number of round trips; every other command in its own transaction.
    Batched,
}

impl MoneyPath {
    /// What `serve --database postgres://…` runs: the batched writer. In BENCHMARKS.md's
    /// side-by-side runs it beat a transaction per command from 8 clients on with a hot
    /// merchant (2-18x: that path holds the merchant's lock through every commit) and from
    /// 32 on with spread-out transfers (at 8, faster in quiet runs, a quarter slower in a
    /// loaded one); at 1 client it is 7-35 % slower (a lone movement pays the hop to the
    /// writer and statements built for a batch: about a third of a millisecond).
    pub const DEFAULT: MoneyPath = MoneyPath::Batched;
}

/// The writer tasks of a [`MoneyPath`], if it has any.
enum Writers {
    PerCommand,
    Grouped(group::Group),
    Batched(batch::Batcher),
}

impl PgStore {
    /// Connects to `url` with a pool of `size` connections and migrates the schema.
    pub async fn open(url: &str, currency: Currency, size: usize) -> Result<PgStore, LedgerError> {
        PgStore::with_pool(pool(url, size)?, currency).await
    }

    /// A store over an existing pool (migrated here), money commands going the
    /// [`MoneyPath::DEFAULT`] way.
    pub async fn with_pool(pool: Pool, currency: Currency) -> Result<PgStore, LedgerError> {
        PgStore::with_pool_path(pool, currency, MoneyPath::DEFAULT).await
    }

    /// As [`PgStore::with_pool`], money commands going the way `path` says.
    pub async fn with_pool_path(
        pool: Pool,
        currency: Currency,
        path: MoneyPath,
    ) -> Result<PgStore, LedgerError> {
        migrate(&pool).await?;
        let size = pool.status().max_size;
        let money = match path {
            MoneyPath::PerCommand => Writers::PerCommand,
            MoneyPath::Grouped => Writers::Grouped(group::Group::start(
                pool.clone(),
                currency,
                group::writers_for(size),
            )),
            MoneyPath::Batched => Writers::Batched(batch::Batcher::start(
                pool.clone(),
                currency,
                batch::WRITERS,
            )),
        };
        Ok(PgStore {
            pool,
            currency,
            money,
            faults: FaultWatch::default(),
        })
    }

    /// Movements waiting in the batched writer's queue (not yet taken into a batch); 0 on
    /// the other paths. For tests that line movements up behind a held lock.
    pub fn queued_movements(&self) -> usize {
        match &self.money {
            Writers::Batched(b) => b.queued(),
            _ => 0,
        }
    }

    /// A command on the per-command path: its own transaction on a pooled connection.
    async fn own_transaction(&self, idem: Option<Idem>, cmd: Command) -> StoredResult {
        let mut client = self.client().await?;
        let run = commands::execute_command(&mut client, self.currency, idem, cmd);
        match tokio::time::timeout(COMMAND_TIMEOUT, run).await {
            Ok(result) => result,
            Err(_) => {
                // The connection may still hold the command's transaction: it never goes
                // back to the pool; dropping it closes it, and the server rolls back.
                drop(Object::take(client));
                Err(no_answer())
            }
        }
    }

    /// Runs `cmd` where [`MoneyPath`] sends it.
    async fn route(&self, idem: Option<Idem>, cmd: Command) -> StoredResult {
        match &self.money {
            Writers::Grouped(group) if commands::is_money(&cmd) => group.execute(idem, cmd).await,
            Writers::Batched(batcher) => match batch::Movement::of(cmd) {
                Ok(m) => match batcher.execute(idem, m).await {
                    batch::Routed::Done(result) => result,
                    batch::Routed::Elsewhere(idem, cmd) => self.own_transaction(idem, cmd).await,
                },
                Err(cmd) => self.own_transaction(idem, cmd).await,
            },
            _ => self.own_transaction(idem, cmd).await,
        }
    }

    async fn client(&self) -> Result<Object, LedgerError> {
        let got = self.pool.get().await.map_err(pool_err);
        if got.is_err() {
            self.faults.observe(&got);
        }
        got
    }
}

#[async_trait]
impl Store for PgStore {
    async fn enrollment_turn(&self) -> Result<Option<Box<dyn Turn>>, LedgerError> {
        Ok(Some(Box::new(turn::take(&self.pool).await?)))
    }

    fn shared_throttle(&self) -> Option<std::sync::Arc<dyn crate::throttle::Throttle>> {
        let pool = self.pool.clone();
        Some(std::sync::Arc::new(throttle::PgThrottle { pool }))
    }

    fn storage_fault(&self) -> Option<StorageFault> {
        self.faults.current()
    }

    async fn execute(&self, idem: Option<Idem>, cmd: Command) -> StoredResult {
        let result = self.route(idem, cmd).await;
        self.faults.observe(&result);
        result
    }

    async fn replay(&self, idem: &Idem) -> Result<Option<StoredResult>, LedgerError> {
        bounded(async { commands::lookup_idem(&self.client().await?, idem).await }).await
    }

    async fn shopper_auth(&self, username: &str) -> Result<Option<ShopperAuth>, LedgerError> {
        bounded(async { reads::shopper_auth(&self.client().await?, "name = $1", &username).await })
            .await
    }

    async fn shopper_auth_by_id(&self, id: i64) -> Result<Option<ShopperAuth>, LedgerError> {
        bounded(async { reads::shopper_auth(&self.client().await?, "id = $1", &id).await }).await
    }

    async fn session(
        &self,
        token_hash: [u8; 32],
        now: i64,
    ) -> Result<Option<SessionInfo>, LedgerError> {
        bounded(async { reads::session(&self.client().await?, &token_hash, now).await }).await
    }

    async fn cashier_auth(
        &self,
        merchant: &str,
        name: &str,
    ) -> Result<Option<CashierAuth>, LedgerError> {
        reads::cashier_auth(&self.client().await?, merchant, name).await
    }

    async fn cashier_session(
        &self,
        token_hash: [u8; 32],
        now: i64,
    ) -> Result<Option<CashierSessionInfo>, LedgerError> {
        reads::cashier_session(&self.client().await?, &token_hash, now).await
    }

    async fn cashiers(&self, merchant: Option<&str>) -> Result<Vec<Cashier>, LedgerError> {
        reads::cashiers(&self.client().await?, merchant).await
    }

    async fn wallet(&self, shopper_id: i64) -> Result<Wallet, LedgerError> {
        bounded(async { reads::wallet(&self.client().await?, shopper_id, self.currency).await })
            .await
    }

    async fn history(
        &self,
        shopper_id: i64,
        before: Option<i64>,
        limit: u32,
    ) -> Result<HistoryPage, LedgerError> {
        bounded(async {
            let c = self.client().await?;
            reads::history(&c, shopper_id, before, limit, self.currency).await
        })
        .await
    }

    async fn merchant_day(
        &self,
        merchant: &str,
        date: time::Date,
    ) -> Result<DailyTotals, LedgerError> {
        bounded(async {
            reads::merchant_day(&self.client().await?, merchant, date, self.currency).await
        })
        .await
    }

    async fn daily_report(&self, date: time::Date) -> Result<DailyReport, LedgerError> {
        bounded(async { reads::daily_report(&self.client().await?, date, self.currency).await })
            .await
    }

    async fn accounts(
        &self,
        query: Option<&str>,
        limit: u32,
    ) -> Result<Vec<AccountRow>, LedgerError> {
        bounded(async { reads::accounts(&self.client().await?, query, limit, self.currency).await })
            .await
    }

    async fn kiosks(&self) -> Result<Vec<KioskRow>, LedgerError> {
        bounded(async { reads::kiosks(&self.client().await?).await }).await
    }

    async fn palm_scans(
        &self,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<PalmScanRow>, LedgerError> {
        bounded(async { reads::palm_scans(&self.client().await?, before, limit).await }).await
    }

    async fn ledger_check(&self) -> Result<LedgerCheck, LedgerError> {
        bounded(async { reads::ledger_check(&mut self.client().await?).await }).await
    }

    async fn palm_templates(
        &self,
        ids: Option<Vec<i64>>,
    ) -> Result<Vec<(i64, Vec<Vec<u8>>)>, LedgerError> {
        bounded(async { reads::palm_templates(&self.client().await?, ids).await }).await
    }

    async fn palm_owners(&self) -> Result<Vec<i64>, LedgerError> {
        bounded(async { reads::palm_owners(&self.client().await?).await }).await
    }

    async fn palm_version(&self) -> Result<PalmVersion, LedgerError> {
        bounded(async { reads::palm_version(&self.client().await?).await }).await
    }

    async fn palm_changes(
        &self,
        after: PalmVersion,
        limit: u32,
    ) -> Result<Vec<PalmChange>, LedgerError> {
        bounded(async { reads::palm_changes(&self.client().await?, after, limit).await }).await
    }

    async fn total_balance(&self) -> Result<i64, LedgerError> {
        bounded(async { reads::total_balance(&self.client().await?).await }).await
    }

    fn currency(&self) -> Currency {
        self.currency
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates_that_a_retry_may_cure_are_faults_and_the_rest_are_not() {
        let cases = [
            ("08006", Some(StorageFault::Unreachable)),
            ("08001", Some(StorageFault::Unreachable)),
            ("57P01", Some(StorageFault::Unreachable)),
            ("57P03", Some(StorageFault::Unreachable)),
            ("53100", Some(StorageFault::DiskFull)),
            ("53300", Some(StorageFault::Busy)),
            ("55P03", Some(StorageFault::Busy)),
            ("25006", Some(StorageFault::ReadOnly)),
            ("23505", None), // unique violation: a bug here
            ("40001", None), // serialization failure: locks in id order rule it out
            ("42P01", None),
        ];
        for (code, fault) in cases {
            assert_eq!(fault_of(code), fault, "{code}");
        }
    }
}
