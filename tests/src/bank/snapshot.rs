//! Reads the ledger after the run, with the servers stopped: SQLite opened read-only, or
//! the PostgreSQL database, with the same three queries.

use super::check::{Account, Snapshot, Tx};
use anyhow::{Context, Result};
use std::path::Path;

const ACCOUNTS: &str = "SELECT id, kind, name, balance FROM accounts ORDER BY id";
const TXS: &str = "SELECT t.id, t.kind, t.amount, s.name FROM transactions t \
                   JOIN accounts s ON s.id = t.shopper_id ORDER BY t.id";
const ENTRIES: &str = "SELECT tx_id, account_id, amount FROM entries ORDER BY id";

pub fn sqlite(db: &Path) -> Result<Snapshot> {
    use rusqlite::OpenFlags;
    let c = rusqlite::Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .with_context(|| format!("opening {} read-only", db.display()))?;
    let accounts = c
        .prepare(ACCOUNTS)?
        .query_map([], |r| {
            Ok(Account {
                id: r.get(0)?,
                kind: r.get(1)?,
                name: r.get(2)?,
                balance: r.get(3)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    let txs = c
        .prepare(TXS)?
        .query_map([], |r| {
            Ok(Tx {
                id: r.get(0)?,
                kind: r.get(1)?,
                amount: r.get(2)?,
                shopper: r.get(3)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    let entries = c
        .prepare(ENTRIES)?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<_, _>>()?;
    Ok(Snapshot {
        accounts,
        txs,
        entries,
    })
}

pub async fn postgres(url: &str) -> Result<Snapshot> {
    let (c, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    let conn = tokio::spawn(conn);
    c.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await
        .context("a read-only snapshot")?;
    let rows = c.query(ACCOUNTS, &[]).await?;
    let accounts = rows
        .iter()
        .map(|r| Account {
            id: r.get(0),
            kind: r.get(1),
            name: r.get(2),
            balance: r.get(3),
        })
        .collect();
    let rows = c.query(TXS, &[]).await?;
    let txs = rows
        .iter()
        .map(|r| Tx {
            id: r.get(0),
            kind: r.get(1),
            amount: r.get(2),
            shopper: r.get(3),
        })
        .collect();
    let rows = c.query(ENTRIES, &[]).await?;
    let entries = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    drop(c);
    let _ = conn.await;
    Ok(Snapshot {
        accounts,
        txs,
        entries,
    })
}
