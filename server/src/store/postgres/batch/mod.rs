//! The batched writer for PostgreSQL's pure money movements (payments and transfers), the
//! default path of those commands, with or without the PIN, with `serve --database
//! postgres://…` (docs/LEDGER.md): a batch costs a fixed number of round trips whatever its
//! size, where the per-command path ([`super::commands`]) makes about five per command and
//! the group commit ([`super::group`]) re-runs each command's statements in a savepoint of
//! its own.
//!
//! A writer task takes the pending movements and, in one READ COMMITTED transaction:
//! 1. claims every idempotency key of the batch, loads and locks every account the batch
//!    touches (one `SELECT … ORDER BY id FOR NO KEY UPDATE`) and reserves a transaction id
//!    per movement, in one pipelined flight with the `BEGIN` ([`sql::open`]);
//! 2. lets the ledger core decide every movement in order against the balances in memory
//!    ([`decide`]): a refused one changes nothing, the next one sees what the earlier ones
//!    did, balances and no-PIN spending alike (the day's and each session's sums are read
//!    in the same flight, after the locks). No rule is written here or in SQL;
//! 3. writes every transaction, entry, balance (once per account, so a hot merchant's row
//!    once per batch) and idempotency answer in one statement, pipelined with the `COMMIT`
//!    ([`sql::close`]);
//! 4. only then answers each caller. If the transaction fails, every caller of the batch
//!    gets the storage error: none was acknowledged, and nothing is retried behind them.
//!
//! Deadlocks are avoided by order, as elsewhere in this store: keys first (sorted), then
//! accounts in ascending id, in one statement each. What the batch cannot do alone goes
//! back to the per-command path after the batch commits ([`Routed::Elsewhere`]): a
//! payment to a merchant not seen before (its accounts are created there). Deposits,
//! withdrawals (a cashier to check) and refunds (a payment to look up) never come here.

mod decide;
mod sql;

use super::{no_answer, pool_err, COMMAND_TIMEOUT};
use crate::limits::NoPinGuard;
use crate::store::{Command, Idem, KioskRef, LedgerError, StoredResult};
use deadpool_postgres::{Object, Pool};
use palmline_shared::{Currency, Money};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, Mutex, Semaphore};

/// Most movements one batch carries. No savepoints, so no subtransaction limit: what
/// bounds a batch is the size of its arrays and how long its locks are held.
pub const MAX_BATCH: usize = 256;

/// A money movement the batched writer takes, parsed from its [`Command`]: a payment or a
/// transfer, made with the PIN (or a password session within its rights) or without it
/// (`guard`: checked against the shopper's no-PIN limits in the batch, and recorded).
#[derive(Debug, Clone)]
pub(super) struct Movement {
    pub kind: Kind,
    pub guard: Option<NoPinGuard>,
}

/// What moves.
#[derive(Debug, Clone)]
pub(super) enum Kind {
    Payment {
        at: KioskRef,
        shopper: i64,
        amount: Money,
        description: Option<String>,
    },
    Transfer {
        at: Option<KioskRef>,
        from: i64,
        to: String,
        amount: Money,
        note: Option<String>,
    },
}

impl Movement {
    /// The movement `cmd` is, or `cmd` back when the batched writer does not take it
    /// (anything but a payment or a transfer, with or without the PIN).
    pub fn of(cmd: Command) -> Result<Movement, Command> {
        match cmd {
            Command::WithoutPin { guard, debit } => match Kind::of(*debit) {
                Ok(kind) => Ok(Movement {
                    kind,
                    guard: Some(guard),
                }),
                Err(debit) => Err(Command::WithoutPin {
                    guard,
                    debit: Box::new(debit),
                }),
            },
            other => Kind::of(other).map(|kind| Movement { kind, guard: None }),
        }
    }

    /// The command again, for the per-command path.
    pub fn command(self) -> Command {
        let debit = self.kind.command();
        match self.guard {
            Some(guard) => Command::WithoutPin {
                guard,
                debit: Box::new(debit),
            },
            None => debit,
        }
    }
}

impl Kind {
    /// The shopper the movement debits.
    pub fn debited(&self) -> i64 {
        match self {
            Kind::Payment { shopper, .. } => *shopper,
            Kind::Transfer { from, .. } => *from,
        }
    }

    fn of(cmd: Command) -> Result<Kind, Command> {
        match cmd {
            Command::Payment {
                at,
                shopper_id,
                amount,
                description,
            } => Ok(Kind::Payment {
                at,
                shopper: shopper_id,
                amount,
                description,
            }),
            Command::Transfer {
                at,
                from_shopper_id,
                to_username,
                amount,
                note,
            } => Ok(Kind::Transfer {
                at,
                from: from_shopper_id,
                to: to_username,
                amount,
                note,
            }),
            other => Err(other),
        }
    }

    fn command(self) -> Command {
        match self {
            Kind::Payment {
                at,
                shopper,
                amount,
                description,
            } => Command::Payment {
                at,
                shopper_id: shopper,
                amount,
                description,
            },
            Kind::Transfer {
                at,
                from,
                to,
                amount,
                note,
            } => Command::Transfer {
                at,
                from_shopper_id: from,
                to_username: to,
                amount,
                note,
            },
        }
    }
}

/// What the writer answers a caller.
#[derive(Debug)]
pub(super) enum Routed {
    /// The movement's answer, given once its batch committed (or failed).
    Done(StoredResult),
    /// Not for a batch (a merchant seen for the first time): run it on the per-command
    /// path. Its key, if any, was released in the batch's transaction.
    Elsewhere(Option<Idem>, Command),
}

struct Job {
    idem: Option<Idem>,
    movement: Movement,
    reply: oneshot::Sender<Routed>,
}

/// The queue of movements waiting for a writer.
pub(super) struct Batcher {
    jobs: mpsc::Sender<Job>,
}

impl Batcher {
    /// Starts `writers` writer tasks on `pool`; they stop when the `Batcher` is dropped.
    pub fn start(pool: Pool, cur: Currency, writers: usize) -> Batcher {
        let (jobs, rx) = mpsc::channel(MAX_BATCH * 4);
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..writers.max(1) {
            tokio::spawn(writer(pool.clone(), cur, rx.clone()));
        }
        Batcher { jobs }
    }

    /// Movements sent and not yet taken by a writer.
    pub fn queued(&self) -> usize {
        self.jobs.max_capacity() - self.jobs.capacity()
    }

    /// Runs `movement` in the next batch.
    pub async fn execute(&self, idem: Option<Idem>, movement: Movement) -> Routed {
        let (reply, answer) = oneshot::channel();
        let gone = || Routed::Done(Err(LedgerError::Storage("the batch writer stopped".into())));
        let job = Job {
            idem,
            movement,
            reply,
        };
        if self.jobs.send(job).await.is_err() {
            return gone();
        }
        answer.await.unwrap_or_else(|_| gone())
    }
}

async fn writer(pool: Pool, cur: Currency, rx: Arc<Mutex<mpsc::Receiver<Job>>>) {
    let in_flight = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut held = Vec::new();
    loop {
        let batch = {
            let mut rx = rx.lock().await;
            match next_batch(&mut rx, &mut held).await {
                Some(batch) => batch,
                None => return,
            }
        };
        run(&pool, cur, batch, in_flight.clone()).await;
    }
}

/// The jobs of the next batch: those `held` back first, then what is queued, up to
/// [`MAX_BATCH`]. A job whose idempotency key is already in the batch is held back for the
/// next one, which then finds the first one's answer committed and replays it, as a
/// duplicate on the per-command path does. `None` once the queue is closed and empty.
async fn next_batch(rx: &mut mpsc::Receiver<Job>, held: &mut Vec<Job>) -> Option<Vec<Job>> {
    if held.is_empty() {
        held.push(rx.recv().await?);
    }
    let mut batch: Vec<Job> = Vec::new();
    let mut later = Vec::new();
    let mut take = |job: Job, batch: &mut Vec<Job>| {
        let dup = job.idem.as_ref().is_some_and(|k| {
            batch
                .iter()
                .any(|j| j.idem.as_ref().is_some_and(|o| same_key(o, k)))
        });
        if dup {
            later.push(job);
        } else {
            batch.push(job);
        }
    };
    for job in held.drain(..) {
        take(job, &mut batch);
    }
    while batch.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(job) => take(job, &mut batch),
            Err(_) => break,
        }
    }
    *held = later;
    Some(batch)
}

fn same_key(a: &Idem, b: &Idem) -> bool {
    a.scope == b.scope && a.key == b.key
}

/// One batch: opened and decided while the writer waits, then committed and answered by a
/// task of its own, so that the writer takes the next batch while this one's `COMMIT` waits
/// for the WAL flush (at most [`IN_FLIGHT`] batches committing at once). The next batch
/// locks its accounts after this one's, so it waits for this commit only where they share
/// an account (a hot merchant), and otherwise commits in the same WAL flush. A connection
/// whose batch failed is closed, never pooled again: it may still be inside the transaction.
async fn run(pool: &Pool, cur: Currency, batch: Vec<Job>, in_flight: Arc<Semaphore>) {
    let Ok(permit) = in_flight.acquire_owned().await else {
        return;
    };
    let (work, replies): (Vec<_>, Vec<_>) = batch
        .into_iter()
        .map(|j| ((j.idem, j.movement), j.reply))
        .unzip();
    let client = match pool.get().await {
        Ok(client) => client,
        Err(e) => return answer(replies, work, Err(pool_err(e))),
    };
    let decided = tokio::time::timeout(COMMAND_TIMEOUT, sql::decide(&client, cur, &work)).await;
    let (writes, answers) = match decided.unwrap_or_else(|_| Err(no_answer())) {
        Ok(decided) => decided,
        Err(e) => {
            drop(Object::take(client));
            return answer(replies, work, Err(e));
        }
    };
    tokio::spawn(async move {
        let closed = tokio::time::timeout(COMMAND_TIMEOUT, sql::close(&client, &writes)).await;
        match closed.unwrap_or_else(|_| Err(no_answer())) {
            Ok(()) => answer(replies, work, Ok(answers)),
            Err(e) => {
                drop(Object::take(client));
                answer(replies, work, Err(e));
            }
        }
        drop(permit);
    });
}

/// Answers every caller of a batch: each its own answer once the batch committed, or all
/// the error that stopped it.
fn answer(
    replies: Vec<oneshot::Sender<Routed>>,
    work: Vec<(Option<Idem>, Movement)>,
    answers: Result<Vec<Option<StoredResult>>, LedgerError>,
) {
    match answers {
        Ok(answers) => {
            for ((reply, answer), (idem, movement)) in replies.into_iter().zip(answers).zip(work) {
                let routed = match answer {
                    Some(result) => Routed::Done(result),
                    None => Routed::Elsewhere(idem, movement.command()),
                };
                let _ = reply.send(routed);
            }
        }
        Err(e) => {
            for reply in replies {
                let _ = reply.send(Routed::Done(Err(e.clone())));
            }
        }
    }
}

/// Most batches committing at once (each holds a pooled connection until its commit).
pub const IN_FLIGHT: usize = 4;

/// Writer tasks per store: one. A second one could send its batch's first flight while
/// the first waits for its commit's WAL flush, but its batch then waits on the first one's
/// locks anyway (a hot merchant always; spread-out accounts nearly always once a batch holds
/// a hundred of them), and the queue splits into smaller batches: on the machine of
/// BENCHMARKS.md, runs with one writer were as fast or faster than with two at 1 to 128
/// clients, and four were slower. Replicas each have their own writer.
pub(super) const WRITERS: usize = 1;
