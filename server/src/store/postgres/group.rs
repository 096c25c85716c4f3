//! Group commit for PostgreSQL's money commands, as SQLite's writer does it: a few writer
//! tasks each take a batch of pending money commands, run them in one READ COMMITTED
//! transaction, each in its own savepoint (a refused one rolls back alone), commit once, and
//! only then answer each caller. One commit (one WAL flush) then carries many movements,
//! and a hot account (every payment credits one merchant) is locked once per batch instead
//! of once per payment, its lock held across one commit instead of one per payment.
//!
//! Deadlocks are avoided as before, by order: a batch first locks every account any of its
//! commands may touch, in one statement in ascending id ([`accounts::lock_group`]); each
//! command then locks its own accounts again, which the batch already holds. Nothing is
//! retried: if the batch's transaction fails, every command of it gets the storage error
//! (none was acknowledged), and the caller's idempotent retry runs it again.

use super::accounts::{self, Touched};
use super::commands::{in_group, touched};
use super::{pg_err, pool_err};
use crate::store::{Command, Idem, LedgerError, StoredResult};
use deadpool_postgres::{Object, Pool};
use palmline_shared::Currency;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, Mutex};
use tokio_postgres::IsolationLevel;

/// Most commands one batch carries: each runs in a savepoint, which takes a subtransaction
/// id when it writes, and PostgreSQL keeps up to 64 of them per backend in shared memory;
/// past that, every other backend's snapshot must look them up in `pg_subtrans` (slow).
const MAX_BATCH: usize = 64;

struct Job {
    idem: Option<Idem>,
    cmd: Command,
    reply: oneshot::Sender<StoredResult>,
}

/// The queue of money commands waiting for a writer.
pub(super) struct Group {
    jobs: mpsc::Sender<Job>,
}

/// Writers for a pool of `size` connections: two, or one for a pool under 8 (each writer
/// holds one connection while it runs a batch; the rest serve reads and other commands).
/// More writers only split the queue into smaller batches: with a hot account they take
/// turns on its lock anyway, and spread-out batches overlap on some account and wait too.
pub(super) fn writers_for(size: usize) -> usize {
    if size >= 8 {
        2
    } else {
        1
    }
}

impl Group {
    /// Starts `writers` writer tasks on `pool`; they stop when the `Group` is dropped.
    pub fn start(pool: Pool, cur: Currency, writers: usize) -> Group {
        let (jobs, rx) = mpsc::channel(MAX_BATCH * 4);
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..writers.max(1) {
            tokio::spawn(writer(pool.clone(), cur, rx.clone()));
        }
        Group { jobs }
    }

    /// Runs `cmd` in the next batch; answers once that batch has committed.
    pub async fn execute(&self, idem: Option<Idem>, cmd: Command) -> StoredResult {
        let (reply, answer) = oneshot::channel();
        let gone = || LedgerError::Storage("the PostgreSQL writer stopped".into());
        self.jobs
            .send(Job { idem, cmd, reply })
            .await
            .map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

async fn writer(pool: Pool, cur: Currency, rx: Arc<Mutex<mpsc::Receiver<Job>>>) {
    loop {
        let batch = {
            let mut rx = rx.lock().await;
            let Some(first) = rx.recv().await else { return };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            batch
        };
        run(&pool, cur, batch).await;
    }
}

/// One batch: committed together, then every caller answered (all with the storage error
/// if the batch could not commit).
async fn run(pool: &Pool, cur: Currency, batch: Vec<Job>) {
    let (work, replies): (Vec<_>, Vec<_>) = batch
        .into_iter()
        .map(|j| ((j.idem, j.cmd), j.reply))
        .unzip();
    let results = match pool.get().await {
        Ok(mut client) => commit(&mut client, cur, work).await,
        Err(e) => Err(pool_err(e)),
    };
    match results {
        Ok(results) => {
            for (reply, r) in replies.into_iter().zip(results) {
                let _ = reply.send(r);
            }
        }
        Err(e) => {
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}

async fn commit(
    client: &mut Object,
    cur: Currency,
    work: Vec<(Option<Idem>, Command)>,
) -> Result<Vec<StoredResult>, LedgerError> {
    let mut tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::ReadCommitted)
        .start()
        .await
        .map_err(pg_err)?;
    let mut t = Touched::default();
    for (_, cmd) in &work {
        touched(cmd, &mut t);
    }
    accounts::lock_group(&tx, &t).await?;
    let mut results = Vec::with_capacity(work.len());
    for (idem, cmd) in work {
        results.push(in_group(&mut tx, cur, idem.as_ref(), cmd).await?);
    }
    tx.commit().await.map_err(pg_err)?;
    Ok(results)
}
