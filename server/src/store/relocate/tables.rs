//! The tables a move carries, in an order that satisfies every foreign key (an account's
//! merchant and a refund's payment always have smaller ids, and rows are copied by key), and
//! the one value type both ends read and write.

use rusqlite::types::Value;
use sha2::{Digest, Sha256};

/// A column's type, the same in both schemas (SQLite stores all integers as 64 bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Col {
    /// BIGINT / INTEGER.
    Big,
    /// INTEGER (32 bits in PostgreSQL).
    Int,
    /// DOUBLE PRECISION / REAL.
    Real,
    Text,
    /// BYTEA / BLOB, copied byte for byte (sealed templates are never opened).
    Blob,
}

/// One carried table.
#[derive(Debug)]
pub struct Table {
    pub name: &'static str,
    /// Its columns and their types, the primary key's first.
    pub cols: &'static [(&'static str, Col)],
    /// How many leading columns form the primary key (rows are read in its order).
    pub key: usize,
    /// Whether PostgreSQL generates `id`: its sequence must then start after the copied ids.
    pub identity: bool,
}

use Col::{Big, Blob, Int, Real, Text};

/// Every table of the ledger but the open sessions ([`DROPPED`]) and the schema's own
/// version, parents before children (a cashier's merchant account before the cashier, the
/// cashier before the transactions it handled).
pub const TABLES: &[Table] = &[
    Table {
        name: "accounts",
        cols: &[
            ("id", Big),
            ("kind", Text),
            ("name", Text),
            ("email", Text),
            ("password_hash", Text),
            ("pin_hash", Text),
            ("status", Text),
            ("currency", Text),
            ("balance", Big),
            ("merchant_id", Big),
            ("created_at", Text),
        ],
        key: 1,
        identity: true,
    },
    Table {
        name: "cashiers",
        cols: &[
            ("id", Big),
            ("merchant_id", Big),
            ("name", Text),
            ("pin_hash", Text),
            ("status", Text),
            ("failures", Int),
            ("locked_until", Big),
            ("guess_day", Text),
            ("guesses", Int),
            ("locks", Int),
            ("created_at", Text),
        ],
        key: 1,
        identity: true,
    },
    Table {
        name: "transactions",
        cols: &[
            ("id", Big),
            ("kind", Text),
            ("amount", Big),
            ("currency", Text),
            ("shopper_id", Big),
            ("other_id", Big),
            ("merchant_id", Big),
            ("kiosk_id", Text),
            ("ref_tx_id", Big),
            ("description", Text),
            ("created_by", Text),
            ("created_at", Text),
            ("cashier_id", Big),
        ],
        key: 1,
        identity: true,
    },
    Table {
        name: "entries",
        cols: &[
            ("id", Big),
            ("tx_id", Big),
            ("account_id", Big),
            ("amount", Big),
            ("balance_after", Big),
        ],
        key: 1,
        identity: true,
    },
    Table {
        name: "idempotency",
        cols: &[
            ("scope", Text),
            ("key", Text),
            ("request_hash", Blob),
            ("result", Text),
            ("created_at", Text),
        ],
        key: 2,
        identity: false,
    },
    Table {
        name: "kiosks",
        cols: &[
            ("kiosk_id", Text),
            ("merchant_id", Big),
            ("first_seen", Text),
            ("last_seen", Text),
            ("requests", Big),
        ],
        key: 1,
        identity: false,
    },
    Table {
        name: "palm_scans",
        cols: &[
            ("id", Big),
            ("kiosk_id", Text),
            ("at", Text),
            ("purpose", Text),
            ("outcome", Text),
            ("score", Real),
            ("account_id", Big),
        ],
        key: 1,
        identity: true,
    },
    Table {
        name: "palm_templates",
        cols: &[
            ("account_id", Big),
            ("idx", Int),
            ("ciphertext", Blob),
            ("created_at", Text),
        ],
        key: 2,
        identity: false,
    },
    Table {
        name: "auth_kiosk",
        cols: &[
            ("account_id", Big),
            ("factor", Text),
            ("kiosk_id", Text),
            ("failures", Int),
            ("locked_until", Big),
        ],
        key: 3,
        identity: false,
    },
    Table {
        name: "auth_day",
        cols: &[
            ("account_id", Big),
            ("secret", Text),
            ("day", Text),
            ("guesses", Int),
            ("locks", Int),
        ],
        key: 3,
        identity: false,
    },
    Table {
        name: "no_pin_debits",
        cols: &[
            ("tx_id", Big),
            ("account_id", Big),
            ("session_hash", Blob),
            ("amount", Big),
            ("created_at", Text),
        ],
        key: 1,
        identity: false,
    },
    Table {
        name: "palm_versions",
        cols: &[("account_id", Big), ("version", Big)],
        key: 1,
        identity: false,
    },
];

/// The tables a move leaves behind: open shopper and cashier sessions (they sign in again).
pub const DROPPED: &[&str] = &["sessions", "cashier_sessions"];

/// A row, its values in the order of [`Table::cols`].
pub type Row = Vec<Value>;

impl Table {
    /// `"a", "b", …`: every column, quoted (`key` is a keyword to some).
    pub fn col_list(&self) -> String {
        quoted(self.cols.iter().map(|c| c.0))
    }

    /// `"k1", "k2"`: the primary key's columns, text ones with `collate` after them.
    pub fn key_list(&self, collate: &str) -> String {
        let keys = self.cols[..self.key].iter().map(|&(name, col)| match col {
            Text => format!("\"{name}\"{collate}"),
            _ => format!("\"{name}\""),
        });
        keys.collect::<Vec<_>>().join(", ")
    }

    /// The SELECT of one page of rows in key order, after the key given as parameters
    /// numbered from 1 (`placeholder(i)` spells parameter `i`), or from the start. Text keys
    /// compare with `collate` (PostgreSQL: `COLLATE "C"`), so both stores order them
    /// byte-wise alike and their digests agree whatever the database's locale.
    pub fn page_sql(
        &self,
        after: bool,
        collate: &str,
        placeholder: impl Fn(usize) -> String,
    ) -> String {
        let keys = self.key_list(collate);
        let (filter, limit) = if after {
            let ps: Vec<String> = (1..=self.key).map(&placeholder).collect();
            let filter = format!("WHERE ({keys}) > ({})", ps.join(", "));
            (filter, placeholder(self.key + 1))
        } else {
            (String::new(), placeholder(1))
        };
        format!(
            "SELECT {} FROM {} {filter} ORDER BY {keys} LIMIT {limit}",
            self.col_list(),
            self.name,
        )
    }
}

fn quoted<'a>(names: impl Iterator<Item = &'a str>) -> String {
    names
        .map(|n| format!("\"{n}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `v` as a value of type `col`, or the storage class found instead (SQLite does not
/// enforce column types). An integer in a REAL column is taken as that real, as SQLite's
/// own affinity would.
pub fn typed(v: Value, col: Col) -> Result<Value, &'static str> {
    match (col, v) {
        (_, Value::Null) => Ok(Value::Null),
        (Big, v @ Value::Integer(_)) => Ok(v),
        (Int, Value::Integer(i)) if i32::try_from(i).is_ok() => Ok(Value::Integer(i)),
        (Int, Value::Integer(_)) => Err("an integer beyond 32 bits"),
        (Real, v @ Value::Real(_)) => Ok(v),
        (Real, Value::Integer(i)) => Ok(Value::Real(i as f64)),
        (Text, v @ Value::Text(_)) => Ok(v),
        (Blob, v @ Value::Blob(_)) => Ok(v),
        (_, Value::Integer(_)) => Err("an integer"),
        (_, Value::Real(_)) => Err("a real"),
        (_, Value::Text(_)) => Err("text"),
        (_, Value::Blob(_)) => Err("a blob"),
    }
}

/// A running SHA-256 over rows in key order, the same on either store for the same rows:
/// each value is a tag, then its bytes (integers and reals as 8 little-endian bytes, text
/// and blobs behind their length).
#[derive(Default)]
pub struct RowDigest {
    hash: Sha256,
    pub rows: u64,
}

impl RowDigest {
    pub fn add(&mut self, row: &Row) {
        self.rows += 1;
        for v in row {
            match v {
                Value::Null => self.hash.update([0]),
                Value::Integer(i) => self.put(1, &i.to_le_bytes()),
                Value::Real(f) => self.put(2, &f.to_bits().to_le_bytes()),
                Value::Text(s) => self.put_sized(3, s.as_bytes()),
                Value::Blob(b) => self.put_sized(4, b),
            }
        }
    }

    fn put(&mut self, tag: u8, bytes: &[u8]) {
        self.hash.update([tag]);
        self.hash.update(bytes);
    }

    fn put_sized(&mut self, tag: u8, bytes: &[u8]) {
        self.put(tag, &(bytes.len() as u64).to_le_bytes());
        self.hash.update(bytes);
    }

    pub fn hex(self) -> String {
        hex::encode(self.hash.finalize())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_follow_the_key_after_the_last_row() {
        let t = TABLES.iter().find(|t| t.name == "auth_day").unwrap();
        assert_eq!(
            t.page_sql(true, " COLLATE \"C\"", |i| format!("${i}")),
            "SELECT \"account_id\", \"secret\", \"day\", \"guesses\", \"locks\" FROM auth_day \
             WHERE (\"account_id\", \"secret\" COLLATE \"C\", \"day\" COLLATE \"C\") > ($1, $2, $3) \
             ORDER BY \"account_id\", \"secret\" COLLATE \"C\", \"day\" COLLATE \"C\" LIMIT $4"
        );
    }

    #[test]
    fn values_of_the_wrong_type_are_named() {
        assert_eq!(typed(Value::Text("x".into()), Big), Err("text"));
        assert_eq!(
            typed(Value::Integer(1 << 40), Int),
            Err("an integer beyond 32 bits")
        );
        assert_eq!(typed(Value::Integer(3), Real), Ok(Value::Real(3.0)));
        assert_eq!(typed(Value::Null, Blob), Ok(Value::Null));
    }

    #[test]
    fn the_digest_tells_apart_what_concatenation_would_not() {
        let d = |row: Row| {
            let mut d = RowDigest::default();
            d.add(&row);
            d.hex()
        };
        let ab = d(vec![Value::Text("ab".into()), Value::Text("".into())]);
        let a_b = d(vec![Value::Text("a".into()), Value::Text("b".into())]);
        assert_ne!(ab, a_b);
        assert_ne!(d(vec![Value::Null]), d(vec![Value::Integer(0)]));
    }
}
