//! Retention: idempotency records and the palm-scan log are kept for a configurable age and
//! then purged, with expired sessions and past days' guess counts, by a periodic task of
//! `serve` and by `palmline-server purge`. A purge never deletes a transaction, an entry or
//! an account: the ledger and its audit trail stay whole.
//!
//! Deleting happens a batch at a time through the store's writer, so a large backlog never
//! holds the writer for long.

use crate::store::{Command, Cutoffs, LedgerError, Outcome, Purged, Store};
use std::sync::Arc;
use std::time::Duration;

/// Rows deleted per kind in one writer command.
const BATCH: u32 = 5_000;

/// How often `serve` purges.
pub const PURGE_EVERY: Duration = Duration::from_secs(3600);

const DAY: u64 = 86_400;

/// How long each kind of record is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Idempotency records: a kiosk's retry after this long runs as a new request.
    pub idempotency: Duration,
    /// The palm-scan log (the operator's audit of identification attempts).
    pub scans: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            idempotency: Duration::from_secs(30 * DAY),
            scans: Duration::from_secs(365 * DAY),
        }
    }
}

impl Retention {
    /// From whole days; 0 is refused by the configuration before this.
    pub fn from_days(idempotency: u64, scans: u64) -> Retention {
        Retention {
            idempotency: Duration::from_secs(idempotency * DAY),
            scans: Duration::from_secs(scans * DAY),
        }
    }

    /// The cut-offs of a purge at `now` (Unix seconds).
    pub fn cutoffs(&self, now: i64) -> Cutoffs {
        let before = |d: Duration| now.saturating_sub(d.as_secs() as i64);
        Cutoffs {
            idempotency: before(self.idempotency),
            scans: before(self.scans),
            now,
        }
    }
}

/// Purges everything older than the retention at `now`, a batch at a time.
pub async fn purge(store: &dyn Store, r: Retention, now: i64) -> Result<Purged, LedgerError> {
    let cutoffs = r.cutoffs(now);
    let mut total = Purged::default();
    loop {
        let cmd = Command::Purge {
            cutoffs,
            batch: BATCH,
        };
        let Outcome::Purged(p) = store.execute(None, cmd).await? else {
            return Err(LedgerError::Storage("purge answered something else".into()));
        };
        total.add(p);
        if !p.any_at(BATCH) {
            return Ok(total);
        }
    }
}

/// `serve`'s purge: at start, then every [`PURGE_EVERY`]; each run is logged.
pub async fn periodic(store: Arc<dyn Store>, r: Retention) {
    let mut tick = tokio::time::interval(PURGE_EVERY);
    loop {
        tick.tick().await;
        match purge(&*store, r, crate::store::sqlite::unix_now()).await {
            Ok(p) => tracing::info!(
                idempotency = p.idempotency,
                scans = p.scans,
                sessions = p.sessions,
                guess_days = p.guess_days,
                "retention purge"
            ),
            Err(e) => tracing::error!(error = %e, "retention purge failed"),
        }
    }
}
