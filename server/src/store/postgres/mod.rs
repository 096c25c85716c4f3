//! The PostgreSQL store: the same [`Store`] as SQLite, for a ledger shared by several
//! server replicas. It calls the same ledger core ([`crate::ledger`]) and only loads,
//! persists and commits (docs/LEDGER.md); it must never decide anything about money itself.
//!
//! Each command runs in a READ COMMITTED transaction on a pooled connection
//! (deadpool-postgres over tokio-postgres) that first locks the accounts it touches, in id
//! order ([`accounts`]), and an idempotent command first claims its key as a row
//! ([`commands`]): both are shared through the database, so replicas need no shared memory.
//! Optionally ([`PgStore::with_pool_grouped`], not the default), money commands share
//! their transaction with others: a group commit ([`group`]), one savepoint each, as
//! SQLite's writer does.
//! Reads ([`reads`]) run outside any transaction. Timestamps are the same fixed-width UTC
//! text as SQLite's ([`super::clock`]), so both stores sort and cut days alike.
//!
//! Errors: a failure to reach the database is `LedgerError::Storage("postgres unavailable:
//! …")`; any other error the server reports is `Storage("postgres <SQLSTATE>: …")`, so the
//! code is stable and can be matched on without reading the message.

mod accounts;
mod commands;
mod group;
pub mod notify;
mod reads;
mod records;
pub mod throttle;
mod turn;

pub(crate) use reads::ledger_check_in;

use super::{
    Command, Idem, LedgerError, PalmChange, PalmVersion, SessionInfo, ShopperAuth, Store,
    StoredResult, Turn,
};
use async_trait::async_trait;
use deadpool_postgres::{Config, GenericClient, Object, Pool, PoolConfig, Runtime, Timeouts};
use palmline_shared::api::{
    AccountRow, DailyReport, DailyTotals, HistoryPage, KioskRow, LedgerCheck, PalmScanRow, Wallet,
};
use palmline_shared::Currency;
use std::time::Duration;
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row};

/// Migrations, applied in order; `schema_version` holds the number applied.
pub const MIGRATIONS: &[&str] = &[include_str!("schema.sql"), include_str!("replicas.sql")];

/// Any fixed number: concurrent migrators (several replicas starting) take turns on it.
const MIGRATION_LOCK: i64 = 0x7061_6c6d;

/// Connections `serve` keeps to PostgreSQL.
pub const SERVE_POOL_SIZE: usize = 16;

/// The prefix of every storage error that means "the database could not be reached".
pub const UNAVAILABLE: &str = "postgres unavailable";

/// A tokio-postgres error as a [`LedgerError::Storage`] with a stable code: the SQLSTATE the
/// server sent, or [`UNAVAILABLE`] when the connection failed or broke.
pub(crate) fn pg_err(e: tokio_postgres::Error) -> LedgerError {
    match e.as_db_error() {
        Some(db) if db.code().code().starts_with("08") => {
            LedgerError::Storage(format!("{UNAVAILABLE}: {}", db.message()))
        }
        Some(db) => {
            LedgerError::Storage(format!("postgres {}: {}", db.code().code(), db.message()))
        }
        None => match std::error::Error::source(&e) {
            // "error connecting to server" alone does not say why.
            Some(cause) => LedgerError::Storage(format!("{UNAVAILABLE}: {e}: {cause}")),
            None => LedgerError::Storage(format!("{UNAVAILABLE}: {e}")),
        },
    }
}

pub(crate) fn pool_err(e: deadpool_postgres::PoolError) -> LedgerError {
    match e {
        deadpool_postgres::PoolError::Backend(e) => pg_err(e),
        e => LedgerError::Storage(format!("{UNAVAILABLE}: {e}")),
    }
}

fn storage(e: impl std::fmt::Display) -> LedgerError {
    LedgerError::Storage(e.to_string())
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
pub fn pool(url: &str, size: usize) -> Result<Pool, LedgerError> {
    let mut cfg = Config::new();
    cfg.url = Some(url.to_string());
    let mut pool = PoolConfig::new(size);
    // A database that does not answer fails the request instead of hanging it.
    pool.timeouts = Timeouts {
        wait: Some(Duration::from_secs(30)),
        create: Some(Duration::from_secs(10)),
        recycle: Some(Duration::from_secs(10)),
    };
    cfg.pool = Some(pool);
    cfg.create_pool(Some(Runtime::Tokio1), NoTls)
        .map_err(storage)
}

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
    /// With group commit ([`PgStore::with_pool_grouped`]), money commands go through it;
    /// `None` (the default): every command in its own transaction.
    group: Option<group::Group>,
}

impl PgStore {
    /// Connects to `url` with a pool of `size` connections and migrates the schema.
    pub async fn open(url: &str, currency: Currency, size: usize) -> Result<PgStore, LedgerError> {
        PgStore::with_pool(pool(url, size)?, currency).await
    }

    /// A store over an existing pool (migrated here): every command in its own transaction.
    pub async fn with_pool(pool: Pool, currency: Currency) -> Result<PgStore, LedgerError> {
        PgStore::with_pool_grouped(pool, currency, false).await
    }

    /// As [`PgStore::with_pool`]; with `group_commit` the money commands go through the
    /// group commit ([`group`]). Not the default: on the 2-core machine of BENCHMARKS.md,
    /// busy with other work, it was slower than a transaction per command with spread-out
    /// accounts and only ~1.4× faster with a hot one (each writer's round trips run one
    /// after another, and each waited for a core); to be measured again on a quiet machine.
    pub async fn with_pool_grouped(
        pool: Pool,
        currency: Currency,
        group_commit: bool,
    ) -> Result<PgStore, LedgerError> {
        migrate(&pool).await?;
        let writers = group::writers_for(pool.status().max_size);
        let group = group_commit.then(|| group::Group::start(pool.clone(), currency, writers));
        Ok(PgStore {
            pool,
            currency,
            group,
        })
    }

    async fn client(&self) -> Result<Object, LedgerError> {
        self.pool.get().await.map_err(pool_err)
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

    async fn execute(&self, idem: Option<Idem>, cmd: Command) -> StoredResult {
        if let Some(group) = self.group.as_ref().filter(|_| commands::is_money(&cmd)) {
            return group.execute(idem, cmd).await;
        }
        let mut client = self.client().await?;
        commands::execute_command(&mut client, self.currency, idem, cmd).await
    }

    async fn replay(&self, idem: &Idem) -> Result<Option<StoredResult>, LedgerError> {
        commands::lookup_idem(&self.client().await?, idem).await
    }

    async fn shopper_auth(&self, username: &str) -> Result<Option<ShopperAuth>, LedgerError> {
        reads::shopper_auth(&self.client().await?, "name = $1", &username).await
    }

    async fn shopper_auth_by_id(&self, id: i64) -> Result<Option<ShopperAuth>, LedgerError> {
        reads::shopper_auth(&self.client().await?, "id = $1", &id).await
    }

    async fn session(
        &self,
        token_hash: [u8; 32],
        now: i64,
    ) -> Result<Option<SessionInfo>, LedgerError> {
        reads::session(&self.client().await?, &token_hash, now).await
    }

    async fn wallet(&self, shopper_id: i64) -> Result<Wallet, LedgerError> {
        reads::wallet(&self.client().await?, shopper_id, self.currency).await
    }

    async fn history(
        &self,
        shopper_id: i64,
        before: Option<i64>,
        limit: u32,
    ) -> Result<HistoryPage, LedgerError> {
        let c = self.client().await?;
        reads::history(&c, shopper_id, before, limit, self.currency).await
    }

    async fn merchant_day(&self, merchant: &str, date: &str) -> Result<DailyTotals, LedgerError> {
        reads::merchant_day(&self.client().await?, merchant, date, self.currency).await
    }

    async fn daily_report(&self, date: &str) -> Result<DailyReport, LedgerError> {
        reads::daily_report(&self.client().await?, date, self.currency).await
    }

    async fn accounts(
        &self,
        query: Option<&str>,
        limit: u32,
    ) -> Result<Vec<AccountRow>, LedgerError> {
        reads::accounts(&self.client().await?, query, limit, self.currency).await
    }

    async fn kiosks(&self) -> Result<Vec<KioskRow>, LedgerError> {
        reads::kiosks(&self.client().await?).await
    }

    async fn palm_scans(
        &self,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<PalmScanRow>, LedgerError> {
        reads::palm_scans(&self.client().await?, before, limit).await
    }

    async fn ledger_check(&self) -> Result<LedgerCheck, LedgerError> {
        reads::ledger_check(&mut self.client().await?).await
    }

    async fn palm_templates(
        &self,
        ids: Option<Vec<i64>>,
    ) -> Result<Vec<(i64, Vec<Vec<u8>>)>, LedgerError> {
        reads::palm_templates(&self.client().await?, ids).await
    }

    async fn palm_owners(&self) -> Result<Vec<i64>, LedgerError> {
        reads::palm_owners(&self.client().await?).await
    }

    async fn palm_version(&self) -> Result<PalmVersion, LedgerError> {
        reads::palm_version(&self.client().await?).await
    }

    async fn palm_changes(
        &self,
        after: PalmVersion,
        limit: u32,
    ) -> Result<Vec<PalmChange>, LedgerError> {
        reads::palm_changes(&self.client().await?, after, limit).await
    }

    async fn total_balance(&self) -> Result<i64, LedgerError> {
        reads::total_balance(&self.client().await?).await
    }

    fn currency(&self) -> Currency {
        self.currency
    }
}
