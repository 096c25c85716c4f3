//! Wake-ups for the replicas' palm follower ([`crate::follow`]): a dedicated connection
//! (outside the pool) that `LISTEN`s on [`PALM_CHANNEL`], on which every palm enrollment and
//! deletion `NOTIFY`s at commit ([`super::records`]). Notifications are only a hint: after
//! every (re)connection the follower catches up by palm version, so one lost while the
//! connection was down is never missed.

use std::time::Duration;
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, NoTls};

/// The channel palm changes are announced on (the payload is the new palm version).
pub const PALM_CHANNEL: &str = "palmline_palms";

/// Why the follower should look for palm changes now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// `LISTEN` is in place (at start or after a reconnection): catch up on anything the
    /// connection may have missed.
    Listening,
    /// A replica committed a palm change.
    Notified,
}

/// How long to wait before connecting again after the listening connection failed.
const RECONNECT_AFTER: Duration = Duration::from_millis(500);

/// Listens on `url` for palm changes until the receiver is dropped or the returned task is
/// aborted, reconnecting whenever the connection breaks. A full channel drops the wake-up:
/// one pending is as good as many.
pub fn listen(url: String) -> (mpsc::Receiver<Wake>, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(1);
    let task = tokio::spawn(async move {
        while !tx.is_closed() {
            if let Err(e) = listen_once(&url, &tx).await {
                tracing::warn!(error = %e, "palm change listener lost its connection; reconnecting");
            }
            tokio::time::sleep(RECONNECT_AFTER).await;
        }
    });
    (rx, task)
}

/// One connection's life: `LISTEN`, report [`Wake::Listening`], then forward notifications
/// until the connection ends.
async fn listen_once(url: &str, tx: &mpsc::Sender<Wake>) -> Result<(), tokio_postgres::Error> {
    let (client, mut conn) = tokio_postgres::connect(url, NoTls).await?;
    let (ended_tx, ended) = tokio::sync::oneshot::channel();
    let forward = tx.clone();
    tokio::spawn(async move {
        let end = loop {
            match std::future::poll_fn(|cx| conn.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(_))) => {
                    let _ = forward.try_send(Wake::Notified);
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => break Err(e),
                None => break Ok(()),
            }
        };
        let _ = ended_tx.send(end);
    });
    client
        .batch_execute(&format!("LISTEN {PALM_CHANNEL}"))
        .await?;
    let _ = tx.send(Wake::Listening).await;
    tokio::select! {
        end = ended => end.unwrap_or(Ok(())),
        _ = tx.closed() => Ok(()),
    }
}
