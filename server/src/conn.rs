//! Limits on what a stranger's connections can hold (issue 14): how many connections are
//! open at once, how long a TLS handshake may take, how long the request headers may take
//! to arrive (slowloris), and how long a whole request may run. A connection over the limit
//! is closed at once, before its TLS handshake costs anything.

use axum_server::accept::Accept;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The limits (TOML `max_connections`, `handshake_timeout_secs`, `header_timeout_secs`,
/// `request_timeout_secs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnLimits {
    /// Open connections at once; one more is closed as soon as it is accepted.
    pub max_connections: usize,
    /// A TLS handshake (with the client certificate) not done by then is dropped.
    pub handshake_timeout: Duration,
    /// The request line and headers must have arrived by then (HTTP/1), else the
    /// connection is closed.
    pub header_timeout: Duration,
    /// A request, body read and handler included, answers 408 after this.
    pub request_timeout: Duration,
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            max_connections: 1024,
            handshake_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// Accepts a TCP connection only while fewer than `max_connections` are open; the permit
/// travels with the stream and is given back when the connection closes.
#[derive(Debug, Clone)]
pub struct CountingAcceptor {
    open: Arc<Semaphore>,
}

impl CountingAcceptor {
    pub fn new(max_connections: usize) -> Self {
        CountingAcceptor {
            open: Arc::new(Semaphore::new(max_connections)),
        }
    }
}

impl<I, S> Accept<I, S> for CountingAcceptor {
    type Stream = Counted<I>;
    type Service = S;
    type Future = std::future::Ready<io::Result<(Counted<I>, S)>>;

    fn accept(&self, stream: I, service: S) -> Self::Future {
        std::future::ready(match self.open.clone().try_acquire_owned() {
            Ok(permit) => Ok((
                Counted {
                    inner: stream,
                    _permit: permit,
                },
                service,
            )),
            Err(_) => {
                tracing::warn!("connection refused: too many open connections");
                Err(io::Error::other("too many open connections"))
            }
        })
    }
}

/// A stream holding one of the acceptor's permits.
#[derive(Debug)]
pub struct Counted<I> {
    inner: I,
    _permit: OwnedSemaphorePermit,
}

impl<I: AsyncRead + Unpin> AsyncRead for Counted<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Counted<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
