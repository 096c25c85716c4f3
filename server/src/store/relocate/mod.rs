//! Moving a shop's ledger from one store to another (`palmline-server migrate-store`):
//! SQLite to PostgreSQL, or back.
//!
//! Every table but `sessions` is copied row for row with its ids ([`tables::TABLES`]): accounts,
//! transactions and entries, kiosks, sealed palm templates (ciphertext as stored: nothing
//! is decrypted, the key file moves separately) and their versions, scan logs, idempotency
//! records, guess counters and no-PIN debits. The source is read in one snapshot and never
//! changed; the destination must be empty and is written in ONE transaction. Before that
//! transaction commits, both sides are checked like `ledger-check`, every account's balance
//! is compared, and every table's row count and SHA-256 over its rows must be equal; any
//! difference rolls the copy back ([`MoveError::Mismatch`]). Every refusal changes nothing.

mod pg_end;
mod sqlite_end;
pub mod tables;

use crate::config::Database;
use crate::store::LedgerCheck;
use pg_end::PgEnd;
use rusqlite::types::Value;
use serde::Serialize;
use sqlite_end::SqliteEnd;
use std::path::{Path, PathBuf};
use tables::{Row, RowDigest, Table, DROPPED, TABLES};

/// Rows read and written at a time: memory stays flat at any ledger size.
pub const PAGE: usize = 1000;

/// Where a ledger lives, for a move.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A SQLite file (a server's is `DATA/palmline.db`).
    Sqlite(PathBuf),
    /// A PostgreSQL URL.
    Postgres(String),
}

impl Endpoint {
    /// `sqlite` (the data dir's `palmline.db`), `sqlite:PATH`, or a `postgres://` URL.
    pub fn parse(s: &str, data_dir: &Path) -> anyhow::Result<Endpoint> {
        if let Some(path) = s.strip_prefix("sqlite:") {
            anyhow::ensure!(!path.is_empty(), "sqlite: needs a file path (sqlite:PATH)");
            return Ok(Endpoint::Sqlite(PathBuf::from(path)));
        }
        Ok(match Database::parse(s)? {
            Database::Sqlite => Endpoint::Sqlite(data_dir.join("palmline.db")),
            Database::Postgres(url) => Endpoint::Postgres(url),
        })
    }
}

/// For messages: a path, or a URL with its password hidden.
impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Sqlite(p) => write!(f, "sqlite:{}", p.display()),
            Endpoint::Postgres(url) => Database::Postgres(url.clone()).fmt(f),
        }
    }
}

/// Which end of the move an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Source,
    Destination,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Source => "source",
            Role::Destination => "destination",
        })
    }
}

impl Role {
    fn storage(self, e: impl std::fmt::Display) -> MoveError {
        MoveError::Storage {
            role: self,
            detail: e.to_string(),
        }
    }
}

/// Why a move did not happen. Whatever the error, the destination is as it was (a SQLite
/// file the move created is removed) and the source is untouched.
#[derive(Debug, thiserror::Error)]
pub enum MoveError {
    #[error("the source and the destination are the same store")]
    SameStore,
    #[error("the source {} does not exist (nothing was created)", .0.display())]
    SourceMissing(PathBuf),
    #[error("the {role} database cannot be reached: {detail}")]
    Unavailable { role: Role, detail: String },
    #[error("the {role} is at schema version {found}, this build needs {want}: run `palmline-server migrate` on it (with the same build) first, or pick a Palmline database")]
    Schema { role: Role, found: i64, want: i64 },
    #[error("the destination is not empty ({table} holds {rows} rows): a move only goes into a new, empty database; nothing was written")]
    DestinationNotEmpty { table: &'static str, rows: i64 },
    #[error(
        "the source's {table}.{column} holds {found}, not its column's type; nothing was written"
    )]
    BadValue {
        table: &'static str,
        column: &'static str,
        found: &'static str,
    },
    #[error("the copy does not match the source, or a ledger check failed; the destination transaction was rolled back")]
    Mismatch(Box<Report>),
    #[error("{role}: {detail}")]
    Storage { role: Role, detail: String },
}

/// One side's summary.
#[derive(Debug, Clone, Serialize)]
pub struct SideSummary {
    pub store: String,
    /// `ledger-check` of this side (the destination's inside its uncommitted transaction).
    pub check: LedgerCheck,
    /// Every carried table, in copy order.
    pub tables: Vec<TableSummary>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableSummary {
    pub table: &'static str,
    pub rows: u64,
    /// SHA-256 over its rows in key order ([`RowDigest`]).
    pub sha256: String,
}

/// An account whose balance differs between the sides (`None`: absent on that side).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BalanceDiff {
    pub account_id: i64,
    pub source: Option<i64>,
    pub destination: Option<i64>,
}

/// What a move did and the proof that the copy equals its source.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Both checks passed, every balance, total and count matches, every table's digest too.
    pub ok: bool,
    pub source: SideSummary,
    pub destination: SideSummary,
    pub balance_differences: Vec<BalanceDiff>,
    /// Open shopper and cashier sessions left behind.
    pub sessions_dropped: i64,
}

/// Either end of a move.
enum End {
    Sqlite(SqliteEnd),
    Pg(PgEnd),
}

impl End {
    async fn open(at: &Endpoint, role: Role) -> Result<End, MoveError> {
        Ok(match (at, role) {
            (Endpoint::Sqlite(p), Role::Source) => End::Sqlite(SqliteEnd::open_source(p)?),
            (Endpoint::Sqlite(p), Role::Destination) => {
                End::Sqlite(SqliteEnd::open_destination(p)?)
            }
            (Endpoint::Postgres(u), Role::Source) => End::Pg(PgEnd::open_source(u).await?),
            (Endpoint::Postgres(u), Role::Destination) => {
                End::Pg(PgEnd::open_destination(u).await?)
            }
        })
    }

    async fn page(&self, t: &Table, after: Option<&[Value]>) -> Result<Vec<Row>, MoveError> {
        match self {
            End::Sqlite(e) => e.page(t, after, PAGE),
            End::Pg(e) => e.page(t, after, PAGE).await,
        }
    }

    async fn insert(&self, t: &Table, rows: &[Row]) -> Result<(), MoveError> {
        match self {
            End::Sqlite(e) => e.insert(t, rows),
            End::Pg(e) => e.insert(t, rows).await,
        }
    }

    async fn count(&self, table: &str) -> Result<i64, MoveError> {
        match self {
            End::Sqlite(e) => e.count(table),
            End::Pg(e) => e.count(table).await,
        }
    }

    async fn balances(&self) -> Result<Vec<(i64, i64)>, MoveError> {
        match self {
            End::Sqlite(e) => e.balances(),
            End::Pg(e) => e.balances().await,
        }
    }

    async fn ledger_check(&self) -> Result<LedgerCheck, MoveError> {
        match self {
            End::Sqlite(e) => e.ledger_check(),
            End::Pg(e) => e.ledger_check().await,
        }
    }

    /// After the copy: PostgreSQL's identities must continue after the copied ids.
    async fn finish_copy(&self) -> Result<(), MoveError> {
        if let End::Pg(e) = self {
            for t in TABLES.iter().filter(|t| t.identity) {
                e.follow_identity(t).await?;
            }
        }
        Ok(())
    }

    async fn commit(self) -> Result<(), MoveError> {
        match self {
            End::Sqlite(e) => e.commit(),
            End::Pg(e) => e.commit().await,
        }
    }
}

/// Copies the ledger at `from` into the empty store at `to`, proves the copy and commits
/// it; see the module's documentation. A SQLite destination this created is removed again
/// when the move fails.
pub async fn move_ledger(from: &Endpoint, to: &Endpoint) -> Result<Report, MoveError> {
    if same_store(from, to) {
        return Err(MoveError::SameStore);
    }
    let created = match to {
        Endpoint::Sqlite(p) if !p.exists() => Some(p),
        _ => None,
    };
    let result = copy_and_prove(from, to).await;
    if let (Err(_), Some(path)) = (&result, created) {
        for suffix in ["", "-wal", "-shm"] {
            let mut file = path.clone().into_os_string();
            file.push(suffix);
            let _ = std::fs::remove_file(file);
        }
    }
    result
}

async fn copy_and_prove(from: &Endpoint, to: &Endpoint) -> Result<Report, MoveError> {
    let src = End::open(from, Role::Source).await?;
    let dst = End::open(to, Role::Destination).await?;
    require_empty(&dst).await?;
    let mut sessions_dropped = 0;
    for table in DROPPED {
        sessions_dropped += src.count(table).await?;
    }
    for t in TABLES {
        copy_table(&src, &dst, t).await?;
    }
    dst.finish_copy().await?;
    let report = compare(&src, from, &dst, to, sessions_dropped).await?;
    if !report.ok {
        // Dropping the destination's connection rolls its transaction back.
        return Err(MoveError::Mismatch(Box::new(report)));
    }
    dst.commit().await?;
    Ok(report)
}

fn same_store(a: &Endpoint, b: &Endpoint) -> bool {
    match (a, b) {
        (Endpoint::Sqlite(x), Endpoint::Sqlite(y)) => {
            x == y || matches!((x.canonicalize(), y.canonicalize()), (Ok(x), Ok(y)) if x == y)
        }
        (Endpoint::Postgres(x), Endpoint::Postgres(y)) => x == y,
        _ => false,
    }
}

async fn require_empty(dst: &End) -> Result<(), MoveError> {
    for table in TABLES.iter().map(|t| t.name).chain(DROPPED.iter().copied()) {
        let rows = dst.count(table).await?;
        if rows > 0 {
            return Err(MoveError::DestinationNotEmpty { table, rows });
        }
    }
    Ok(())
}

async fn copy_table(src: &End, dst: &End, t: &Table) -> Result<(), MoveError> {
    let mut after: Option<Vec<Value>> = None;
    loop {
        let rows = src.page(t, after.as_deref()).await?;
        if rows.is_empty() {
            return Ok(());
        }
        dst.insert(t, &rows).await?;
        if rows.len() < PAGE {
            return Ok(());
        }
        after = rows.last().map(|r| r[..t.key].to_vec());
    }
}

async fn summarize(end: &End, at: &Endpoint) -> Result<SideSummary, MoveError> {
    let mut tables = Vec::with_capacity(TABLES.len());
    for t in TABLES {
        tables.push(digest_table(end, t).await?);
    }
    Ok(SideSummary {
        store: at.to_string(),
        check: end.ledger_check().await?,
        tables,
    })
}

async fn digest_table(end: &End, t: &Table) -> Result<TableSummary, MoveError> {
    let mut digest = RowDigest::default();
    let mut after: Option<Vec<Value>> = None;
    loop {
        let rows = end.page(t, after.as_deref()).await?;
        rows.iter().for_each(|r| digest.add(r));
        if rows.len() < PAGE {
            break;
        }
        after = rows.last().map(|r| r[..t.key].to_vec());
    }
    Ok(TableSummary {
        table: t.name,
        rows: digest.rows,
        sha256: digest.hex(),
    })
}

async fn compare(
    src: &End,
    from: &Endpoint,
    dst: &End,
    to: &Endpoint,
    sessions_dropped: i64,
) -> Result<Report, MoveError> {
    let source = summarize(src, from).await?;
    let destination = summarize(dst, to).await?;
    let balance_differences = balance_diffs(&src.balances().await?, &dst.balances().await?);
    let (a, b) = (&source.check, &destination.check);
    let ok = a.ok
        && b.ok
        && a.total_balance_minor == b.total_balance_minor
        && a.accounts_checked == b.accounts_checked
        && a.transactions_checked == b.transactions_checked
        && source.tables == destination.tables
        && balance_differences.is_empty();
    Ok(Report {
        ok,
        source,
        destination,
        balance_differences,
        sessions_dropped,
    })
}

/// Accounts whose balance differs, or that only one side has; both lists sorted by id.
pub fn balance_diffs(a: &[(i64, i64)], b: &[(i64, i64)]) -> Vec<BalanceDiff> {
    let a: std::collections::BTreeMap<i64, i64> = a.iter().copied().collect();
    let b: std::collections::BTreeMap<i64, i64> = b.iter().copied().collect();
    let ids: std::collections::BTreeSet<i64> = a.keys().chain(b.keys()).copied().collect();
    ids.into_iter()
        .filter(|id| a.get(id) != b.get(id))
        .map(|id| BalanceDiff {
            account_id: id,
            source: a.get(&id).copied(),
            destination: b.get(&id).copied(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_name_a_file_the_data_dir_or_a_url() {
        let dir = Path::new("/srv/palmline");
        assert_eq!(
            Endpoint::parse("sqlite", dir).unwrap(),
            Endpoint::Sqlite(dir.join("palmline.db"))
        );
        assert_eq!(
            Endpoint::parse("sqlite:/tmp/x.db", dir).unwrap(),
            Endpoint::Sqlite("/tmp/x.db".into())
        );
        let pg = Endpoint::parse("postgres://u:secret@h/db", dir).unwrap();
        assert_eq!(pg, Endpoint::Postgres("postgres://u:secret@h/db".into()));
        assert!(!pg.to_string().contains("secret"), "{pg}");
        assert!(Endpoint::parse("mysql://h/db", dir).is_err());
        assert!(Endpoint::parse("sqlite:", dir).is_err());
    }

    #[test]
    fn balance_differences_name_each_account() {
        let d = balance_diffs(&[(1, 5), (2, -5), (3, 0)], &[(1, 5), (2, -4), (4, 0)]);
        let ids: Vec<(i64, Option<i64>, Option<i64>)> = d
            .iter()
            .map(|d| (d.account_id, d.source, d.destination))
            .collect();
        assert_eq!(
            ids,
            vec![
                (2, Some(-5), Some(-4)),
                (3, Some(0), None),
                (4, None, Some(0))
            ]
        );
    }
}
