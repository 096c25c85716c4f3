//! A PostgreSQL database as either end of a move, on one connection of its own. A source is
//! never migrated and is read in one REPEATABLE READ READ ONLY snapshot; a destination is
//! migrated (the schema of an empty database), then written in one transaction that first
//! locks every ledger table against other writers and that the move commits only after its
//! check. Rows go in with binary COPY, a page at a time.

use super::tables::{Col, Row, Table};
use super::{sqlite_end::checked, MoveError, Role};
use crate::store::postgres::{self, ledger_check_in, pg_err, pool_err, MIGRATIONS};
use crate::store::{LedgerCheck, LedgerError, StorageFault};
use deadpool_postgres::{Object, Pool};
use rusqlite::types::Value;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};

pub struct PgEnd {
    client: Object,
    role: Role,
    /// Kept so the connection lives as long as the end.
    _pool: Pool,
}

type Param = Box<dyn ToSql + Sync + Send>;

impl PgEnd {
    /// The source database, at this build's schema version, in one read-only snapshot.
    pub async fn open_source(url: &str) -> Result<PgEnd, MoveError> {
        let end = PgEnd::connect(url, Role::Source).await?;
        end.require_version().await?;
        end.run("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await?;
        Ok(end)
    }

    /// The destination database, migrated, in a transaction that holds every ledger table
    /// (no server writes into it meanwhile; waits at most `lock_timeout` for one to finish).
    pub async fn open_destination(url: &str) -> Result<PgEnd, MoveError> {
        let pool = postgres::pool(url, 1).map_err(|e| Role::Destination.ledger(e))?;
        postgres::migrate(&pool)
            .await
            .map_err(|e| Role::Destination.ledger(e))?;
        let end = PgEnd::with_pool(pool, Role::Destination).await?;
        let tables: Vec<&str> = super::tables::TABLES
            .iter()
            .map(|t| t.name)
            .chain(super::tables::DROPPED.iter().copied())
            .collect();
        end.run(&format!(
            "BEGIN; SET LOCAL lock_timeout = '30s'; LOCK TABLE {} IN EXCLUSIVE MODE",
            tables.join(", "),
        ))
        .await?;
        Ok(end)
    }

    async fn connect(url: &str, role: Role) -> Result<PgEnd, MoveError> {
        let pool = postgres::pool(url, 1).map_err(|e| role.ledger(e))?;
        PgEnd::with_pool(pool, role).await
    }

    async fn with_pool(pool: Pool, role: Role) -> Result<PgEnd, MoveError> {
        let client = pool.get().await.map_err(|e| role.ledger(pool_err(e)))?;
        Ok(PgEnd {
            client,
            role,
            _pool: pool,
        })
    }

    fn err(&self, e: tokio_postgres::Error) -> MoveError {
        self.role.ledger(pg_err(e))
    }

    async fn run(&self, sql: &str) -> Result<(), MoveError> {
        self.client
            .batch_execute(sql)
            .await
            .map_err(|e| self.err(e))
    }

    async fn require_version(&self) -> Result<(), MoveError> {
        let row = self
            .client
            .query_one(
                "SELECT CASE WHEN to_regclass('schema_version') IS NULL THEN 0
                        ELSE (SELECT MAX(version) FROM schema_version) END",
                &[],
            )
            .await
            .map_err(|e| self.err(e))?;
        let found = i64::from(row.get::<_, Option<i32>>(0).unwrap_or(0));
        let want = MIGRATIONS.len() as i64;
        if found != want {
            return Err(MoveError::Schema {
                role: self.role,
                found,
                want,
            });
        }
        Ok(())
    }

    /// Up to `limit` rows of `t` in key order, after the key `after` (or from the start).
    pub async fn page(
        &self,
        t: &Table,
        after: Option<&[Value]>,
        limit: usize,
    ) -> Result<Vec<Row>, MoveError> {
        let sql = t.page_sql(after.is_some(), " COLLATE \"C\"", |i| format!("${i}"));
        let mut params: Vec<Param> = match after {
            Some(key) => t.cols.iter().zip(key).map(|(c, v)| param(c.1, v)).collect(),
            None => Vec::new(),
        };
        params.push(Box::new(limit as i64));
        let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p.as_ref() as _).collect();
        let st = self
            .client
            .prepare_cached(&sql)
            .await
            .map_err(|e| self.err(e))?;
        let rows = self
            .client
            .query(&st, &refs)
            .await
            .map_err(|e| self.err(e))?;
        rows.iter()
            .map(|r| {
                let row = (0..t.cols.len()).map(|i| get(r, i, t.cols[i].1));
                checked(t, row.collect::<Result<_, _>>().map_err(|e| self.err(e))?)
            })
            .collect()
    }

    /// Appends `rows` to `t` with one binary COPY.
    pub async fn insert(&self, t: &Table, rows: &[Row]) -> Result<(), MoveError> {
        let sql = format!("COPY {} ({}) FROM STDIN BINARY", t.name, t.col_list());
        let sink = self
            .client
            .copy_in(sql.as_str())
            .await
            .map_err(|e| self.err(e))?;
        let types: Vec<Type> = t.cols.iter().map(|c| pg_type(c.1)).collect();
        let mut writer = Box::pin(BinaryCopyInWriter::new(sink, &types));
        for row in rows {
            let params: Vec<Param> = t.cols.iter().zip(row).map(|(c, v)| param(c.1, v)).collect();
            let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p.as_ref() as _).collect();
            writer
                .as_mut()
                .write(&refs)
                .await
                .map_err(|e| self.err(e))?;
        }
        writer.as_mut().finish().await.map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Moves `t`'s identity past the copied ids, so the next row the server inserts gets a
    /// new one.
    pub async fn follow_identity(&self, t: &Table) -> Result<(), MoveError> {
        let sql = format!(
            "SELECT setval(pg_get_serial_sequence('{0}', 'id'), COALESCE(MAX(id), 0) + 1, false) FROM {0}",
            t.name
        );
        self.client
            .query_one(&sql, &[])
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    pub async fn count(&self, table: &str) -> Result<i64, MoveError> {
        let sql = format!("SELECT COUNT(*) FROM {table}");
        let row = self
            .client
            .query_one(&sql, &[])
            .await
            .map_err(|e| self.err(e))?;
        Ok(row.get(0))
    }

    /// (account id, cached balance), by id.
    pub async fn balances(&self) -> Result<Vec<(i64, i64)>, MoveError> {
        let rows = self
            .client
            .query("SELECT id, balance FROM accounts ORDER BY id", &[])
            .await
            .map_err(|e| self.err(e))?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    pub async fn ledger_check(&self) -> Result<LedgerCheck, MoveError> {
        ledger_check_in(&self.client)
            .await
            .map_err(|e| self.role.ledger(e))
    }

    pub async fn commit(self) -> Result<(), MoveError> {
        self.run("COMMIT").await
    }
}

fn pg_type(c: Col) -> Type {
    match c {
        Col::Big => Type::INT8,
        Col::Int => Type::INT4,
        Col::Real => Type::FLOAT8,
        Col::Text => Type::TEXT,
        Col::Blob => Type::BYTEA,
    }
}

/// `v` as a parameter of PostgreSQL type `c` (values were checked with
/// [`super::tables::typed`]; anything else goes as NULL and the schema refuses it).
fn param(c: Col, v: &Value) -> Param {
    match (c, v) {
        (Col::Big, Value::Integer(i)) => Box::new(Some(*i)),
        (Col::Int, Value::Integer(i)) => Box::new(i32::try_from(*i).ok()),
        (Col::Real, Value::Real(f)) => Box::new(Some(*f)),
        (Col::Text, Value::Text(s)) => Box::new(Some(s.clone())),
        (Col::Blob, Value::Blob(b)) => Box::new(Some(b.clone())),
        (Col::Big, _) => Box::new(None::<i64>),
        (Col::Int, _) => Box::new(None::<i32>),
        (Col::Real, _) => Box::new(None::<f64>),
        (Col::Text, _) => Box::new(None::<String>),
        (Col::Blob, _) => Box::new(None::<Vec<u8>>),
    }
}

/// Column `i` of `r` as a value of type `c` (an error, not a panic, if the schema differs).
fn get(r: &tokio_postgres::Row, i: usize, c: Col) -> Result<Value, tokio_postgres::Error> {
    let v: Option<Value> = match c {
        Col::Big => r.try_get::<_, Option<i64>>(i)?.map(Value::Integer),
        Col::Int => r
            .try_get::<_, Option<i32>>(i)?
            .map(|v| Value::Integer(v.into())),
        Col::Real => r.try_get::<_, Option<f64>>(i)?.map(Value::Real),
        Col::Text => r.try_get::<_, Option<String>>(i)?.map(Value::Text),
        Col::Blob => r.try_get::<_, Option<Vec<u8>>>(i)?.map(Value::Blob),
    };
    Ok(v.unwrap_or(Value::Null))
}

impl Role {
    /// A store's error as this end's: unreachable, or any other failure.
    pub(super) fn ledger(self, e: LedgerError) -> MoveError {
        match e {
            LedgerError::Unavailable {
                fault: StorageFault::Unreachable,
                detail,
            } => MoveError::Unavailable { role: self, detail },
            other => self.storage(other),
        }
    }
}
