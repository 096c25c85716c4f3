//! A fresh PostgreSQL database per test, on the server every machine of this kind runs
//! (`postgres://postgres@127.0.0.1:5432/test`, trust auth). Outside CI, no server there skips
//! the test loudly (on stderr); under `CI=true` it fails. Only "nobody listens" counts as
//! no server: any other failure (authentication, protocol) fails the test.

use deadpool_postgres::Pool;
use palmline_server::store::postgres;
use std::io::ErrorKind;
use tokio_postgres::NoTls;

pub const ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
const BASE_URL: &str = "postgres://postgres@127.0.0.1:5432";

/// A database of this test's own, dropped by [`PgDb::drop_db`].
pub struct PgDb {
    pub name: String,
    /// For a second store or a server on this database.
    pub url: String,
    pub pool: Pool,
}

/// A new empty database named after `tag`, or `None` (test skipped) when no PostgreSQL
/// listens and this is not CI.
pub async fn fresh_db(tag: &str) -> Option<PgDb> {
    fresh_db_with(tag, "").await
}

/// As [`fresh_db`], with `options` after `CREATE DATABASE name` (a locale, say).
pub async fn fresh_db_with(tag: &str, options: &str) -> Option<PgDb> {
    let admin = match admin().await {
        Ok(c) => c,
        Err(e) => return absent(e),
    };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let name = format!("palmline_{tag}_{}_{nanos}", std::process::id());
    admin
        .batch_execute(&format!("CREATE DATABASE {name} {options}"))
        .await
        .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
    let url = format!("{BASE_URL}/{name}");
    let pool = postgres::pool(&url, 4).expect("pool");
    Some(PgDb { name, url, pool })
}

impl PgDb {
    /// Closes the pool and drops the database (a test that panics before leaves it behind,
    /// named with its process id).
    pub async fn drop_db(self) {
        self.pool.close();
        let admin = admin().await.expect("reconnect to drop the test database");
        admin
            .batch_execute(&format!("DROP DATABASE {} WITH (FORCE)", self.name))
            .await
            .unwrap_or_else(|e| panic!("DROP DATABASE {}: {e}", self.name));
    }
}

async fn admin() -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, conn) = tokio_postgres::connect(ADMIN_URL, NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            eprintln!("postgres admin connection: {e}");
        }
    });
    Ok(client)
}

fn absent(e: tokio_postgres::Error) -> Option<PgDb> {
    let nobody_listens = std::error::Error::source(&e)
        .and_then(|s| s.downcast_ref::<std::io::Error>())
        .is_some_and(|io| {
            matches!(
                io.kind(),
                ErrorKind::ConnectionRefused | ErrorKind::NotFound | ErrorKind::TimedOut
            )
        });
    if !nobody_listens {
        panic!("PostgreSQL at {ADMIN_URL} is there but the connection failed: {e}");
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("CI=true and no PostgreSQL listens at {ADMIN_URL}: {e}");
    }
    eprintln!("SKIPPED: no PostgreSQL listens at {ADMIN_URL} ({e}); under CI=true this fails");
    None
}
