//! Template key rotation on PostgreSQL (`palmline-server templates rekey` with a
//! `postgres://` database), as SQLite's [`crate::store::sqlite::rekey_templates`]: one
//! all-or-nothing transaction, a page of rows read and rewritten at a time so that memory
//! stays bounded whatever the gallery size. The table is locked against writes for the
//! whole rotation (meant for stopped servers: a running replica's enrollment waits, it is
//! never sealed with the old key behind the rotation's back).

use super::{migrate, pool_err};
use anyhow::Context;
use deadpool_postgres::Pool;

/// Re-encrypts every stored palm template: `f` maps (account, index, ciphertext) to the new
/// ciphertext; its first error rolls everything back. Returns the number of palms.
pub async fn rekey_templates(
    pool: &Pool,
    page_rows: usize,
    mut f: impl FnMut(i64, usize, &[u8]) -> anyhow::Result<Vec<u8>>,
) -> anyhow::Result<usize> {
    migrate(pool).await?;
    let mut client = pool.get().await.map_err(pool_err)?;
    let tx = client.transaction().await?;
    tx.batch_execute("LOCK TABLE palm_templates IN EXCLUSIVE MODE")
        .await
        .context("locking palm_templates")?;
    let select = tx
        .prepare(
            "SELECT account_id, idx, ciphertext FROM palm_templates \
             WHERE (account_id, idx) > ($1, $2) ORDER BY account_id, idx LIMIT $3",
        )
        .await?;
    let update = tx
        .prepare("UPDATE palm_templates SET ciphertext = $3 WHERE account_id = $1 AND idx = $2")
        .await?;
    let (mut palms, mut last_palm) = (0usize, None);
    let mut after: (i64, i32) = (i64::MIN, -1);
    loop {
        let page = tx
            .query(&select, &[&after.0, &after.1, &(page_rows.max(1) as i64)])
            .await?;
        if page.is_empty() {
            break;
        }
        for row in &page {
            let (account, idx, ct): (i64, i32, Vec<u8>) = (row.get(0), row.get(1), row.get(2));
            if last_palm != Some(account) {
                palms += 1;
                last_palm = Some(account);
            }
            let sealed = f(account, idx as usize, &ct)?;
            tx.execute(&update, &[&account, &idx, &sealed]).await?;
            after = (account, idx);
        }
    }
    tx.commit().await?;
    Ok(palms)
}
