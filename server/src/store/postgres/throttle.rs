//! The identification limits' counts as rows ([`crate::throttle`]), so that a kiosk behind a
//! load balancer gets one allowance, not one per replica. Each call is one short transaction
//! that locks the rows it reads (buckets in name order, so two calls never wait in a cycle);
//! the arithmetic is [`crate::limits`]' and [`crate::throttle`]'s. Times are the database
//! server's clock (`clock_timestamp()`), so replicas with skewed clocks still agree.

use super::{bounded, execute, pg_err, pool_err, query, query_opt};
use crate::limits::{refill, take_from, Rate};
use crate::store::LedgerError;
use crate::throttle::{one_more_failure, slow_down, BucketName, Throttle};
use async_trait::async_trait;
use deadpool_postgres::{GenericClient, Pool};
use std::time::Duration;

/// The database's clock in Unix milliseconds.
const NOW_MS: &str = "SELECT (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT";

pub struct PgThrottle {
    pub(super) pool: Pool,
}

async fn now_ms(c: &impl GenericClient) -> Result<i64, LedgerError> {
    let row = query_opt(c, NOW_MS, &[]).await?.expect("one row");
    Ok(row.get(0))
}

fn since(now_ms: i64, then_ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(now_ms - then_ms).unwrap_or(0))
}

#[async_trait]
impl Throttle for PgThrottle {
    async fn take(
        &self,
        buckets: &[(BucketName, Rate)],
        n: u32,
    ) -> Result<Result<(), Duration>, LedgerError> {
        bounded(async {
            let mut client = self.pool.get().await.map_err(pool_err)?;
            let tx = client.transaction().await.map_err(pg_err)?;
            let now = now_ms(&tx).await?;
            let mut sorted: Vec<&(BucketName, Rate)> = buckets.iter().collect();
            sorted.sort_by(|a, b| a.0.cmp(&b.0));
            let mut levels = Vec::with_capacity(sorted.len());
            for (name, rate) in &sorted {
                levels.push((bucket_level(&tx, name, *rate, now).await?, *rate));
            }
            if let Err(wait) = take_from(&levels, n) {
                return Ok(Err(wait));
            }
            for ((name, _), (level, _)) in sorted.iter().zip(&levels) {
                let left = level - f64::from(n);
                let sql = "UPDATE rate_buckets SET level = $2, at_ms = $3 WHERE name = $1";
                execute(&tx, sql, &[name, &left, &now]).await?;
            }
            tx.commit().await.map_err(pg_err)?;
            Ok(Ok(()))
        })
        .await
    }

    async fn slowed_down(&self, kiosk: &str, free: u32) -> Result<Option<Duration>, LedgerError> {
        bounded(async {
            let c = self.pool.get().await.map_err(pool_err)?;
            let sql =
                "SELECT failures, last_ms, (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT
                     FROM kiosk_failures WHERE kiosk_id = $1";
            let Some(row) = query_opt(&c, sql, &[&kiosk]).await? else {
                return Ok(None);
            };
            let (failures, last, now): (i32, i64, i64) = (row.get(0), row.get(1), row.get(2));
            let failures = u32::try_from(failures).unwrap_or(0);
            Ok(slow_down(failures, since(now, last), free))
        })
        .await
    }

    async fn record_failure(&self, kiosk: &str) -> Result<(), LedgerError> {
        bounded(async {
            let mut client = self.pool.get().await.map_err(pool_err)?;
            let tx = client.transaction().await.map_err(pg_err)?;
            let now = now_ms(&tx).await?;
            let sql = "INSERT INTO kiosk_failures (kiosk_id, failures, last_ms) VALUES ($1, 0, $2)
                   ON CONFLICT (kiosk_id) DO NOTHING";
            execute(&tx, sql, &[&kiosk, &now]).await?;
            let sql = "SELECT failures, last_ms FROM kiosk_failures WHERE kiosk_id = $1 FOR UPDATE";
            let row = &query(&tx, sql, &[&kiosk]).await?[0];
            let (failures, last): (i32, i64) = (row.get(0), row.get(1));
            let next = one_more_failure(u32::try_from(failures).unwrap_or(0), since(now, last));
            let next = i32::try_from(next).unwrap_or(i32::MAX);
            let sql = "UPDATE kiosk_failures SET failures = $2, last_ms = $3 WHERE kiosk_id = $1";
            execute(&tx, sql, &[&kiosk, &next, &now]).await?;
            tx.commit().await.map_err(pg_err)
        })
        .await
    }
}

/// A bucket's level now, its row locked to the end of the transaction (created full).
async fn bucket_level(
    tx: &impl GenericClient,
    name: &str,
    rate: Rate,
    now: i64,
) -> Result<f64, LedgerError> {
    let sql = "INSERT INTO rate_buckets (name, level, at_ms) VALUES ($1, $2, $3)
               ON CONFLICT (name) DO NOTHING";
    execute(tx, sql, &[&name, &rate.full(), &now]).await?;
    let sql = "SELECT level, at_ms FROM rate_buckets WHERE name = $1 FOR UPDATE";
    let row = &query(tx, sql, &[&name]).await?[0];
    let (level, at): (f64, i64) = (row.get(0), row.get(1));
    Ok(refill(level, since(now, at), rate))
}
