//! Shared by the kiosk's end-to-end tests: a real `palmline-server` in a temporary data
//! dir (binary from `target/<profile>/`, built by `cargo build --bins`), demo shoppers,
//! and a TCP proxy that can lose responses.

#![allow(dead_code)]

use palmline_kiosk::api::ApiClient;
use palmline_kiosk::demo::{self, Backend};
use palmline_kiosk::extract;
use palmline_kiosk::runtime;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

pub struct Env {
    pub backend: Backend,
    pub client: ApiClient,
    pub dir: tempfile::TempDir,
}

/// Starts a server and seeds the demo shoppers (palms enrolled when extraction works).
pub fn start() -> Env {
    palmline_kiosk::api::install_crypto_provider();
    let dir = tempfile::tempdir().expect("tempdir");
    let backend = demo::start_backend(dir.path(), &[])
        .expect("starting palmline-server (build it first: cargo build --bins; scripts/test does)");
    let client = runtime::client_from(&backend.config).expect("client");
    let mut ex = extract::default_extractor();
    let mut log = |s: String| eprintln!("seed: {s}");
    demo::seed(
        &client,
        backend.config.currency().unwrap(),
        ex.as_mut(),
        &mut log,
    )
    .expect("seeding");
    Env {
        backend,
        client,
        dir,
    }
}

/// A TCP proxy in front of the server. For the first `lose` connections it forwards the
/// request to the server but throws the server's answer away (the TLS records after the
/// client's first request record), as a network that drops a response would.
pub struct LossyProxy {
    pub addr: SocketAddr,
    pub dropped_bytes: Arc<AtomicUsize>,
    pub connections: Arc<AtomicUsize>,
}

impl LossyProxy {
    pub fn start(upstream: SocketAddr, lose: usize) -> LossyProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let dropped = Arc::new(AtomicUsize::new(0));
        let conns = Arc::new(AtomicUsize::new(0));
        let (d, c) = (dropped.clone(), conns.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let n = c.fetch_add(1, Ordering::SeqCst);
                let Ok(server) = TcpStream::connect(upstream) else {
                    continue;
                };
                let lossy = n < lose;
                let request_seen = Arc::new(std::sync::atomic::AtomicBool::new(false));
                // client -> server, watching TLS records for the first request.
                {
                    let (mut from, mut to) =
                        (client.try_clone().unwrap(), server.try_clone().unwrap());
                    let seen = request_seen.clone();
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 16 * 1024];
                        let mut pending: Vec<u8> = Vec::new();
                        let mut app_records = 0;
                        loop {
                            let k = match from.read(&mut buf) {
                                Ok(0) | Err(_) => break,
                                Ok(k) => k,
                            };
                            pending.extend_from_slice(&buf[..k]);
                            while pending.len() >= 5 {
                                let len = u16::from_be_bytes([pending[3], pending[4]]) as usize;
                                if pending.len() < 5 + len {
                                    break;
                                }
                                if pending[0] == 0x17 {
                                    app_records += 1;
                                    // TLS 1.3: the first application-data record is the
                                    // client's Finished; the next ones carry the request.
                                    if app_records >= 2 {
                                        seen.store(true, Ordering::SeqCst);
                                    }
                                }
                                pending.drain(..5 + len);
                            }
                            if to.write_all(&buf[..k]).is_err() {
                                break;
                            }
                        }
                        let _ = to.shutdown(Shutdown::Write);
                    });
                }
                // server -> client, dropping the answer on lossy connections.
                {
                    let (mut from, mut to) = (server, client);
                    let d = d.clone();
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 16 * 1024];
                        loop {
                            let k = match from.read(&mut buf) {
                                Ok(0) | Err(_) => break,
                                Ok(k) => k,
                            };
                            if lossy && request_seen.load(Ordering::SeqCst) {
                                d.fetch_add(k, Ordering::SeqCst);
                                continue;
                            }
                            if to.write_all(&buf[..k]).is_err() {
                                break;
                            }
                        }
                        let _ = to.shutdown(Shutdown::Both);
                    });
                }
            }
        });
        LossyProxy {
            addr,
            dropped_bytes: dropped,
            connections: conns,
        }
    }
}
