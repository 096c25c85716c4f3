//! The enrollment turn across replicas: one enrollment at a time in the whole database, from
//! the enrolling replica's catch-up and duplicate check to its commit. A transaction-level
//! advisory lock on a pooled connection of its own, given back by `ROLLBACK` when the turn
//! is dropped (a connection that cannot roll back is closed, never reused inside a
//! transaction).

use super::{pg_err, pool_err};
use crate::store::{LedgerError, Turn};
use deadpool_postgres::{Object, Pool};

/// Any fixed number, other than the palm-version lock the enrollment's own transaction takes.
const ENROLL_LOCK: i64 = 0x7061_6c65;

/// How long an enrollment waits for the turn before it fails instead of hanging (a turn is
/// held for one duplicate check and one commit: milliseconds).
const TURN_WAIT: &str = "10s";

/// Holds the database's enrollment turn while it lives.
pub struct PgTurn {
    client: Option<Object>,
}

impl Turn for PgTurn {}

/// Waits for the turn, at most [`TURN_WAIT`] (then a storage error: `postgres 55P03`).
pub async fn take(pool: &Pool) -> Result<PgTurn, LedgerError> {
    let client = pool.get().await.map_err(pool_err)?;
    let sql = format!(
        "BEGIN; SET LOCAL lock_timeout = '{TURN_WAIT}'; SELECT pg_advisory_xact_lock({ENROLL_LOCK})"
    );
    if let Err(e) = client.batch_execute(&sql).await {
        drop(Object::take(client));
        return Err(pg_err(e));
    }
    Ok(PgTurn {
        client: Some(client),
    })
}

impl Drop for PgTurn {
    fn drop(&mut self) {
        let Some(client) = self.client.take() else {
            return;
        };
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return drop(Object::take(client));
        };
        rt.spawn(async move {
            if client.batch_execute("ROLLBACK").await.is_err() {
                drop(Object::take(client));
            }
        });
    }
}
