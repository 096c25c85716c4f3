//! A database of the run's own on the machine's PostgreSQL (127.0.0.1:5432, trust auth),
//! created before the run and dropped after it.

use anyhow::{Context, Result};
use std::io::ErrorKind;

pub const ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

async fn admin() -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, conn) = tokio_postgres::connect(ADMIN_URL, tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    Ok(client)
}

/// Whether a PostgreSQL listens: `Ok(false)` only when nobody does (connection refused);
/// any other failure is an error, not a reason to skip.
pub async fn listening() -> Result<bool> {
    match admin().await {
        Ok(_) => Ok(true),
        Err(e) => {
            let refused = std::error::Error::source(&e)
                .and_then(|s| s.downcast_ref::<std::io::Error>())
                .is_some_and(|io| {
                    matches!(
                        io.kind(),
                        ErrorKind::ConnectionRefused | ErrorKind::NotFound
                    )
                });
            if refused {
                Ok(false)
            } else {
                Err(e).context(format!(
                    "PostgreSQL at {ADMIN_URL} is there but the connection failed"
                ))
            }
        }
    }
}

/// Creates `name`.
pub async fn create(name: &str) -> Result<()> {
    let c = admin().await?;
    c.batch_execute(&format!("CREATE DATABASE {name}")).await?;
    Ok(())
}

pub async fn drop_db(name: &str) -> Result<()> {
    let c = admin().await?;
    c.batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .await?;
    Ok(())
}
