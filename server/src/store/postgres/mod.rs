//! The PostgreSQL store, in progress (issue 13): its schema, a connection pool and the
//! migration runner so far. It is not yet a [`super::Store`] and `serve` does not use it.
//! When it is, it calls the same ledger core as SQLite ([`crate::ledger`]) and only loads,
//! persists and commits (docs/LEDGER.md says what it must implement).

use super::LedgerError;
use deadpool_postgres::{Config, Pool, PoolConfig, Runtime};
use tokio_postgres::NoTls;

/// Migrations, applied in order; `schema_version` holds the number applied.
pub const MIGRATIONS: &[&str] = &[include_str!("schema.sql")];

/// Any fixed number: concurrent migrators (several replicas starting) take turns on it.
const MIGRATION_LOCK: i64 = 0x7061_6c6d;

fn storage(e: impl std::fmt::Display) -> LedgerError {
    LedgerError::Storage(e.to_string())
}

/// A pool of at most `size` connections to `url` (`postgres://user@host:port/db`).
pub fn pool(url: &str, size: usize) -> Result<Pool, LedgerError> {
    let mut cfg = Config::new();
    cfg.url = Some(url.to_string());
    cfg.pool = Some(PoolConfig::new(size));
    cfg.create_pool(Some(Runtime::Tokio1), NoTls)
        .map_err(storage)
}

/// Applies the migrations not yet applied, in one transaction; returns the version after.
pub async fn migrate(pool: &Pool) -> Result<usize, LedgerError> {
    let mut client = pool.get().await.map_err(storage)?;
    let tx = client.transaction().await.map_err(storage)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(storage)?;
    let applied: bool = tx
        .query_one("SELECT to_regclass('schema_version') IS NOT NULL", &[])
        .await
        .map_err(storage)?
        .get(0);
    let version = if applied {
        let v: i32 = tx
            .query_one("SELECT version FROM schema_version", &[])
            .await
            .map_err(storage)?
            .get(0);
        usize::try_from(v).map_err(storage)?
    } else {
        0
    };
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
        tx.batch_execute(sql).await.map_err(storage)?;
        let v = i32::try_from(i + 1).map_err(storage)?;
        tx.execute("UPDATE schema_version SET version = $1", &[&v])
            .await
            .map_err(storage)?;
    }
    tx.commit().await.map_err(storage)?;
    Ok(version.max(MIGRATIONS.len()))
}
