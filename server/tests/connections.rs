//! Issue 14: what a stranger's connections can hold. Slow headers (slowloris) and stalled
//! handshakes are closed after their limits; connections over `max_connections` are closed
//! before their handshake, and a slot comes back when a connection closes. Real server,
//! real TLS; nothing sleeps: each wait is a read until the server closes, under a deadline.

mod common;

use common::TestServer;
use palmline_server::conn::ConnLimits;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

fn limits(max_connections: usize, header_secs: u64) -> ConnLimits {
    ConnLimits {
        max_connections,
        handshake_timeout: Duration::from_secs(1),
        header_timeout: Duration::from_secs(header_secs),
        request_timeout: Duration::from_secs(30),
    }
}

/// A TLS connection as kiosk-a (handshake done), or the handshake's error.
async fn tls(t: &TestServer) -> std::io::Result<TlsStream<TcpStream>> {
    let pki = t.pki();
    let (cert, key) = pki.kiosk_paths("kiosk-a");
    let cfg =
        palmline_server::client::rustls_client_config(&pki.ca_cert_path(), &cert, &key).unwrap();
    let tcp = TcpStream::connect(t.running.addr).await?;
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut s = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await?;
    // TLS 1.3: the server checks the client certificate after the client's Finished; a
    // request and its answer prove the connection is really up.
    s.write_all(b"GET /v1/health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await?;
    let mut buf = [0u8; 12];
    s.read_exact(&mut buf).await?;
    assert_eq!(&buf, b"HTTP/1.1 200");
    Ok(s)
}

/// Reads until the server closes the connection; how long that took, or `None` if it was
/// still open after `within`.
async fn closed_after<S: AsyncRead + Unpin>(s: &mut S, within: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    let closed = async {
        while let Ok(n) = s.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    };
    tokio::time::timeout(within, closed).await.ok()?;
    Some(start.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_are_cut_off_after_the_header_timeout() {
    let t = TestServer::start_limited(limits(16, 1)).await;
    let mut s = tls(&t).await.unwrap();
    // Half a request, then nothing: the server must not wait for ever.
    s.write_all(b"GET /v1/health HTTP/1.1\r\nHost: localhost\r\n")
        .await
        .unwrap();
    let took = closed_after(&mut s, Duration::from_secs(5))
        .await
        .expect("a slow client's connection stayed open");
    assert!(took >= Duration::from_millis(900), "closed after {took:?}");
    // A well-behaved client is unaffected.
    tls(&t).await.unwrap();
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_handshake_is_dropped_after_the_handshake_timeout() {
    let t = TestServer::start_limited(limits(16, 30)).await;
    let mut raw = TcpStream::connect(t.running.addr).await.unwrap();
    let took = closed_after(&mut raw, Duration::from_secs(5))
        .await
        .expect("a connection that never said hello stayed open");
    assert!(took >= Duration::from_millis(900), "closed after {took:?}");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_limit_are_closed_and_slots_come_back() {
    let t = TestServer::start_limited(limits(2, 30)).await;
    let first = tls(&t).await.unwrap();
    let _second = tls(&t).await.unwrap();
    // The third is closed before its handshake completes.
    assert!(tls(&t).await.is_err(), "a third connection was let in");
    // When one closes, its slot comes back (the server sees the close asynchronously: try
    // again until it does, within a deadline).
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match tls(&t).await {
            Ok(_) => break,
            Err(_) if Instant::now() < deadline => tokio::task::yield_now().await,
            Err(e) => panic!("no slot came back: {e}"),
        }
    }
    t.stop().await;
}
