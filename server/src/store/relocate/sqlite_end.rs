//! A SQLite file as either end of a move. A source is opened read-only, never created or
//! migrated, and read in one snapshot (a read transaction); a destination is created or
//! migrated, then written in one `BEGIN IMMEDIATE` transaction that the move commits only
//! after its check. SQLite runs on the caller's thread here: this is an offline command
//! driven by `block_on`, never a task on the server's async workers.

use super::tables::{typed, Row, Table};
use super::{MoveError, Role};
use crate::store::sqlite::{check_ledger, migrate, open, MIGRATIONS};
use crate::store::LedgerCheck;
use rusqlite::types::Value;
use rusqlite::{params_from_iter, Connection};
use std::path::Path;

pub struct SqliteEnd {
    conn: Connection,
    role: Role,
}

impl SqliteEnd {
    /// The source file, which must exist and be at this build's schema version.
    pub fn open_source(path: &Path) -> Result<SqliteEnd, MoveError> {
        if !path.is_file() {
            return Err(MoveError::SourceMissing(path.to_path_buf()));
        }
        let role = Role::Source;
        let conn = open(path, true).map_err(|e| role.storage(e))?;
        require_version(&conn, role)?;
        let end = SqliteEnd { conn, role };
        end.run("BEGIN")?;
        Ok(end)
    }

    /// The destination file: created when absent; an existing file must already be a
    /// Palmline database at this build's version (so nothing foreign is migrated).
    pub fn open_destination(path: &Path) -> Result<SqliteEnd, MoveError> {
        let role = Role::Destination;
        let existed = path.exists();
        let mut conn = open(path, false).map_err(|e| role.storage(e))?;
        if existed {
            require_version(&conn, role)?;
        }
        migrate(&mut conn).map_err(|e| role.storage(e))?;
        let end = SqliteEnd { conn, role };
        end.run("BEGIN IMMEDIATE")?;
        Ok(end)
    }

    fn run(&self, sql: &str) -> Result<(), MoveError> {
        self.conn
            .execute_batch(sql)
            .map_err(|e| self.role.storage(e))
    }

    /// Up to `limit` rows of `t` in key order, after the key `after` (or from the start).
    pub fn page(
        &self,
        t: &Table,
        after: Option<&[Value]>,
        limit: usize,
    ) -> Result<Vec<Row>, MoveError> {
        let sql = t.page_sql(after.is_some(), "", |i| format!("?{i}"));
        let mut params: Vec<Value> = after.map(<[Value]>::to_vec).unwrap_or_default();
        params.push(Value::Integer(limit as i64));
        let err = |e| self.role.storage(e);
        let mut stmt = self.conn.prepare_cached(&sql).map_err(err)?;
        let raw = stmt
            .query_map(params_from_iter(params), |r| {
                (0..t.cols.len()).map(|i| r.get::<_, Value>(i)).collect()
            })
            .map_err(err)?
            .collect::<Result<Vec<Row>, _>>()
            .map_err(err)?;
        raw.into_iter().map(|row| checked(t, row)).collect()
    }

    pub fn insert(&self, t: &Table, rows: &[Row]) -> Result<(), MoveError> {
        let ps: Vec<String> = (1..=t.cols.len()).map(|i| format!("?{i}")).collect();
        let sql = format!(
            "INSERT INTO {} ({}) VALUES ({})",
            t.name,
            t.col_list(),
            ps.join(", ")
        );
        let err = |e| self.role.storage(e);
        let mut stmt = self.conn.prepare_cached(&sql).map_err(err)?;
        for row in rows {
            stmt.execute(params_from_iter(row.iter())).map_err(err)?;
        }
        Ok(())
    }

    pub fn count(&self, table: &str) -> Result<i64, MoveError> {
        self.conn
            .query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
            .map_err(|e| self.role.storage(e))
    }

    /// (account id, cached balance), by id.
    pub fn balances(&self) -> Result<Vec<(i64, i64)>, MoveError> {
        let err = |e| self.role.storage(e);
        let mut stmt = self
            .conn
            .prepare("SELECT id, balance FROM accounts ORDER BY id")
            .map_err(err)?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(err)?;
        Ok(rows)
    }

    pub fn ledger_check(&self) -> Result<LedgerCheck, MoveError> {
        check_ledger(&self.conn).map_err(|e| self.role.storage(e))
    }

    pub fn commit(self) -> Result<(), MoveError> {
        self.run("COMMIT")
    }
}

fn require_version(conn: &Connection, role: Role) -> Result<(), MoveError> {
    let found: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| role.storage(e))?;
    let want = MIGRATIONS.len() as i64;
    if found != want {
        return Err(MoveError::Schema { role, found, want });
    }
    Ok(())
}

/// `row` with every value of its column's type, or the first that is not.
pub(super) fn checked(t: &Table, row: Row) -> Result<Row, MoveError> {
    row.into_iter()
        .zip(t.cols)
        .map(|(v, &(column, col))| {
            typed(v, col).map_err(|found| MoveError::BadValue {
                table: t.name,
                column,
                found,
            })
        })
        .collect()
}
