//! Replicas follow each other's palm changes: each server keeps its own identification index
//! in memory, and with a shared (PostgreSQL) store another replica may enroll or delete a
//! palm at any time. The follower catches the index up by palm version
//! ([`PalmService::catch_up`]) whenever the store announces a change
//! ([`crate::store::postgres::notify`]), after every (re)connection of the announcing
//! connection, and every [`SAFETY_POLL`] in case an announcement was lost.
//! With SQLite this process is the only writer and nothing needs following.

use crate::palm::PalmService;
use crate::store::postgres::notify::Wake;
use crate::store::{PalmVersion, Store};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// A catch-up without any announcement this often (a lost notification costs at most this).
pub const SAFETY_POLL: Duration = Duration::from_secs(10);

/// Follows palm changes from `from` on, woken by `wakes`, until `wakes` closes or the task
/// is aborted. The returned receiver holds the version the index is complete up to.
pub fn spawn(
    palm: Arc<PalmService>,
    store: Arc<dyn Store>,
    from: PalmVersion,
    wakes: mpsc::Receiver<Wake>,
) -> (watch::Receiver<PalmVersion>, tokio::task::JoinHandle<()>) {
    let (through, rx) = watch::channel(from);
    let task = tokio::spawn(follow(palm, store, wakes, through));
    (rx, task)
}

async fn follow(
    palm: Arc<PalmService>,
    store: Arc<dyn Store>,
    mut wakes: mpsc::Receiver<Wake>,
    through: watch::Sender<PalmVersion>,
) {
    let mut poll = tokio::time::interval(SAFETY_POLL);
    loop {
        tokio::select! {
            wake = wakes.recv() => if wake.is_none() { return },
            _ = poll.tick() => {}
        }
        let after = *through.borrow();
        match palm.follow_up(&*store).await {
            Ok(v) if v > after => {
                tracing::debug!(from = after.0, to = v.0, "index followed palm changes");
                through.send_replace(v);
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "following palm changes failed; retrying on the next wake-up")
            }
        }
    }
}
