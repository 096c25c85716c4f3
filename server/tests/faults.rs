//! Resource faults against a real server over mutual TLS (issue 14): the SQLite volume full,
//! the SQLite files not writable, PostgreSQL unreachable and back. Each time: payments
//! answer 503 `unavailable` with a Retry-After and change nothing, the server recovers by
//! itself once the cause is gone, a retry with the same idempotency key is applied once,
//! and the ledger checks out (SQLite: `PRAGMA integrity_check` too).
//!
//! The SQLite faults need a small volume of their own: an ext4 image mounted through a loop
//! device (root, `mkfs.ext4`, `mount`). Without those, the tests print `SKIPPED: …` and pass,
//! except under `CI=true`, where they fail. The PostgreSQL test puts a TCP proxy of its own
//! between the server and 127.0.0.1:5432 and cuts it (`common/pg.rs` skips or fails the
//! same way without PostgreSQL).

mod common;

use common::{eur, TestServer};
use palmline_server::config::Database;
use palmline_server::palm::PalmPolicy;
use palmline_server::store::StorageFault;
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// An answer with the headers the tests look at.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    retry_after: Option<u64>,
    body: Value,
}

impl Answer {
    fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }

    /// A 503 `unavailable` with a Retry-After of at least a second and no internal detail.
    fn assert_unavailable(&self) {
        assert_eq!(self.status, StatusCode::SERVICE_UNAVAILABLE, "{self:?}");
        assert_eq!(self.code(), "unavailable", "{self:?}");
        assert!(self.retry_after.is_some_and(|s| s >= 1), "{self:?}");
        let msg = self.body["error"]["message"].as_str().unwrap_or("");
        for leak in ["sqlite", "postgres", "disk", "errno", "os error", ".db"] {
            assert!(!msg.to_lowercase().contains(leak), "detail leaked: {msg}");
        }
    }
}

/// Pays `amount` by alice's session at `url` (the server's `/v1/payments`).
async fn pay_at(url: &str, c: &Client, token: &str, key: &str, amount: &str) -> Answer {
    let resp = c
        .post(url)
        .header("content-type", "application/json")
        .header(palmline_shared::api::IDEMPOTENCY_HEADER, key)
        .bearer_auth(token)
        .body(json!({ "amount": eur(amount) }).to_string())
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let retry_after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .map(|v| v.to_str().unwrap().parse().unwrap());
    let body = resp.json().await.unwrap_or(Value::Null);
    Answer {
        status,
        retry_after,
        body,
    }
}

async fn pay(t: &TestServer, c: &Client, token: &str, key: &str, amount: &str) -> Answer {
    pay_at(&t.url("/v1/payments"), c, token, key, amount).await
}

async fn health(t: &TestServer) -> String {
    let (s, v) = t.get(&t.kiosk("kiosk-a"), "/v1/health", None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v["status"].as_str().unwrap().to_string()
}

fn in_ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

fn skip(why: &str) {
    assert!(!in_ci(), "CI=true and {why}");
    eprintln!("SKIPPED: {why}; under CI=true this fails");
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A small ext4 volume of the test's own (an image file on a loop device), unmounted when
/// dropped.
struct Volume {
    mount: PathBuf,
    _outer: tempfile::TempDir,
}

impl Volume {
    /// `None` (skipped) when this machine will not let the test mount one.
    fn ext4(mib: u64) -> Option<Volume> {
        let outer = tempfile::tempdir().unwrap();
        let image = outer.path().join("volume.img");
        let mount = outer.path().join("mnt");
        std::fs::create_dir(&mount).unwrap();
        std::fs::File::create(&image)
            .unwrap()
            .set_len(mib << 20)
            .unwrap();
        // No blocks reserved for root: the tests run as root, and full must mean full.
        let made = run(Command::new("mkfs.ext4")
            .args(["-q", "-F", "-m", "0"])
            .arg(&image))
        .and_then(|()| {
            run(Command::new("mount")
                .args(["-o", "loop"])
                .arg(&image)
                .arg(&mount))
        });
        if let Err(e) = made {
            skip(&format!("no small ext4 volume can be mounted here ({e})"));
            return None;
        }
        Some(Volume {
            mount,
            _outer: outer,
        })
    }

    /// Fills the volume: a ballast file grows until the file system refuses a single block.
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let path = self.mount.join("ballast");
        let mut f = std::fs::File::create(&path).unwrap();
        for chunk in [1 << 20, 4 << 10, 1 << 10] {
            let buf = vec![0xa5u8; chunk];
            while f.write_all(&buf).and_then(|()| f.sync_data()).is_ok() {}
        }
        path
    }
}

impl Drop for Volume {
    fn drop(&mut self) {
        // Lazily: a server thread may still hold a file open while the test unwinds.
        let _ = run(Command::new("umount").arg("-l").arg(&self.mount));
    }
}

/// A server whose data dir (and so its SQLite ledger) lives on `vol`, with shopper alice
/// (100.00 EUR) and her session token.
async fn server_on(vol: &Volume) -> (TestServer, String) {
    let dir = tempfile::Builder::new().tempdir_in(&vol.mount).unwrap();
    let pki = palmline_server::pki::Pki::new(dir.path());
    pki.init("test CA").unwrap();
    pki.issue_server(&[], 30).unwrap();
    pki.issue_kiosk("kiosk-a", "Shop A", 30).unwrap();
    pki.issue_admin("ops", 30).unwrap();
    let t = TestServer::start_in(dir, PalmPolicy::default(), |_| {}).await;
    let a = t.kiosk("kiosk-a");
    t.register(&a, "alice", None).await;
    let (s, v) = t.deposit(&a, "alice", "100.00").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let token = t.token(&a, "alice").await;
    (t, token)
}

/// Stops the server and checks its database file: `PRAGMA integrity_check` says ok.
async fn stop_and_check_file(t: TestServer) {
    let dir = t.stop().await;
    let conn = rusqlite::Connection::open(dir.path().join("palmline.db")).unwrap();
    let verdict: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(verdict, "ok");
}

/// Eight payments sent at once (one group commit, or a few): every one answers 503.
async fn payments_refused(t: &TestServer, token: &str, tag: &str) {
    let mut sent = tokio::task::JoinSet::new();
    for i in 0..8 {
        let (url, a, token) = (t.url("/v1/payments"), t.kiosk("kiosk-a"), token.to_string());
        let key = format!("{tag}-{i}");
        sent.spawn(async move { pay_at(&url, &a, &token, &key, "1.00").await });
    }
    while let Some(ans) = sent.join_next().await {
        ans.unwrap().assert_unavailable();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_volume_full_answers_503_then_recovers() {
    let Some(vol) = Volume::ext4(16) else { return };
    let (t, token) = server_on(&vol).await;
    let a = t.kiosk("kiosk-a");
    let first = pay(&t, &a, &token, "before", "1.00").await;
    assert_eq!(first.status, StatusCode::OK, "{first:?}");
    assert_eq!(health(&t).await, "ok");

    let ballast = vol.fill();
    let refused = pay(&t, &a, &token, "during", "2.00").await;
    refused.assert_unavailable();
    assert_eq!(
        t.running.state.store.storage_fault(),
        Some(StorageFault::DiskFull),
        "the operator's side names the cause"
    );
    payments_refused(&t, &token, "group").await;
    assert_eq!(health(&t).await, "degraded");
    // Reads still work, and nothing moved.
    assert_eq!(t.balance_of("alice").await, 9_900);

    std::fs::remove_file(&ballast).unwrap();
    let freed = Instant::now();
    let retried = pay(&t, &a, &token, "during", "2.00").await;
    let recovery = freed.elapsed();
    assert_eq!(retried.status, StatusCode::OK, "{retried:?}");
    let again = pay(&t, &a, &token, "during", "2.00").await;
    assert_eq!(again.body, retried.body, "the key replays its one payment");
    eprintln!("disk full: first payment after freeing space answered in {recovery:?}");
    assert_eq!(health(&t).await, "ok");
    assert_eq!(
        t.balance_of("alice").await,
        9_700,
        "1.00 + 2.00 paid, once each"
    );
    let check = t.ledger().await;
    assert!(check.ok, "{check:?}");
    assert_eq!(check.transactions_checked, 3, "deposit and two payments");
    stop_and_check_file(t).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_files_not_writable_answer_503_then_recover() {
    let Some(vol) = Volume::ext4(16) else { return };
    let (t, token) = server_on(&vol).await;
    let a = t.kiosk("kiosk-a");
    let db = t.dir.path().join("palmline.db");
    let wal = t.dir.path().join("palmline.db-wal");
    assert!(wal.exists(), "WAL mode");
    // As root, chmod stops nothing; an immutable file refuses every write, even through a
    // descriptor opened before (EPERM), as a read-only file system would (EROFS). The
    // shared-memory index (-shm) is left alone: SQLite maps it, and a refused write there
    // is a SIGBUS, not an error.
    let immutable = |on: bool| {
        for f in [&db, &wal] {
            run(Command::new("chattr")
                .arg(if on { "+i" } else { "-i" })
                .arg(f))
            .expect("chattr on ext4");
        }
    };
    immutable(true);
    let refused = pay(&t, &a, &token, "ro", "3.00").await;
    immutable(false);
    refused.assert_unavailable();
    assert_eq!(
        t.running.state.store.storage_fault(),
        Some(StorageFault::ReadOnly)
    );
    assert_eq!(health(&t).await, "degraded");
    assert_eq!(t.balance_of("alice").await, 10_000);

    let retried = pay(&t, &a, &token, "ro", "3.00").await;
    assert_eq!(retried.status, StatusCode::OK, "{retried:?}");
    assert_eq!(pay(&t, &a, &token, "ro", "3.00").await.body, retried.body);
    assert_eq!(health(&t).await, "ok");
    assert_eq!(t.balance_of("alice").await, 9_700);
    let check = t.ledger().await;
    assert!(check.ok, "{check:?}");
    assert_eq!(check.transactions_checked, 2);
    stop_and_check_file(t).await;
}

/// A TCP proxy to PostgreSQL that the test can cut (every connection dropped, new ones
/// refused: nothing listens) and restore on the same port, or freeze (connections stay up,
/// nothing is passed on: a database that accepts data and never answers).
struct Proxy {
    port: u16,
    inner: Arc<Mutex<ProxyInner>>,
    frozen: tokio::sync::watch::Sender<bool>,
}

#[derive(Default)]
struct ProxyInner {
    accept: Option<tokio::task::JoinHandle<()>>,
    relays: Vec<tokio::task::AbortHandle>,
}

impl Proxy {
    async fn start() -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let p = Proxy {
            port,
            inner: Default::default(),
            frozen: tokio::sync::watch::Sender::new(false),
        };
        p.serve(listener);
        p
    }

    fn serve(&self, listener: tokio::net::TcpListener) {
        let inner = self.inner.clone();
        let frozen = self.frozen.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut down, _)) = listener.accept().await {
                let frozen = frozen.subscribe();
                let relay = tokio::spawn(async move {
                    let Ok(mut up) = tokio::net::TcpStream::connect("127.0.0.1:5432").await else {
                        return;
                    };
                    let (dr, dw) = down.split();
                    let (ur, uw) = up.split();
                    tokio::select! {
                        _ = pump(dr, uw, frozen.clone()) => {}
                        _ = pump(ur, dw, frozen) => {}
                    }
                });
                inner.lock().unwrap().relays.push(relay.abort_handle());
            }
        });
        self.inner.lock().unwrap().accept = Some(accept);
    }

    /// Stops listening and drops every relayed connection.
    async fn cut(&self) {
        let (accept, relays) = {
            let mut g = self.inner.lock().unwrap();
            (g.accept.take(), std::mem::take(&mut g.relays))
        };
        if let Some(a) = accept {
            a.abort();
            let _ = a.await; // the listener is closed once the task is gone
        }
        relays.iter().for_each(|r| r.abort());
    }

    async fn restore(&self) {
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.set_reuseaddr(true).unwrap();
        sock.bind(([127, 0, 0, 1], self.port).into()).unwrap();
        self.serve(sock.listen(64).unwrap());
    }

    fn freeze(&self, on: bool) {
        self.frozen.send_replace(on);
    }
}

/// Copies `from` to `to`, holding the data while frozen.
async fn pump(
    mut from: impl tokio::io::AsyncRead + Unpin,
    mut to: impl tokio::io::AsyncWrite + Unpin,
    mut frozen: tokio::sync::watch::Receiver<bool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 16 << 10];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if frozen.wait_for(|f| !f).await.is_err() || to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// Polls `done` until it holds, failing after 30 s.
async fn wait_until(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// What the paying workers saw.
#[derive(Default)]
struct Tally {
    ok: AtomicUsize,
    unavailable: AtomicUsize,
    /// The slowest 503 (no request may hang while the database is gone).
    slowest_503: Mutex<Duration>,
    first_ok_after_restore: Mutex<Option<Instant>>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_unreachable_answers_503_then_recovers_without_a_restart() {
    const WORKERS: usize = 4;
    const EACH: usize = 12;
    let Some(db) = common::pg::fresh_db("faults").await else {
        return;
    };
    let proxy = Proxy::start().await;
    let url = format!("postgres://postgres@127.0.0.1:{}/{}", proxy.port, db.name);
    let dir = TestServer::prepared_dir();
    let t = TestServer::start_on(
        dir,
        Database::parse(&url).unwrap(),
        PalmPolicy::default(),
        |_| {},
    )
    .await;
    let a = t.kiosk("kiosk-a");
    t.register(&a, "alice", None).await;
    let (s, v) = t.deposit(&a, "alice", "100.00").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let token = Arc::new(t.token(&a, "alice").await);

    // Workers pay 0.25 EUR each time, retrying every refused payment with its own key
    // until it is acknowledged (as a kiosk would, only faster than Retry-After asks).
    let tally = Arc::new(Tally::default());
    let restored_at: Arc<Mutex<Option<Instant>>> = Default::default();
    let mut workers = tokio::task::JoinSet::new();
    for w in 0..WORKERS {
        let (url, a, token, tally, restored_at) = (
            t.url("/v1/payments"),
            a.clone(),
            token.clone(),
            tally.clone(),
            restored_at.clone(),
        );
        workers.spawn(async move {
            let mut acks = Vec::new();
            for n in 0..EACH {
                let key = format!("w{w}-{n}");
                let deadline = Instant::now() + Duration::from_secs(60);
                loop {
                    let sent = Instant::now();
                    let ans = pay_at(&url, &a, &token, &key, "0.25").await;
                    if ans.status == StatusCode::OK {
                        tally.ok.fetch_add(1, Ordering::SeqCst);
                        let restored = restored_at.lock().unwrap().is_some();
                        if restored {
                            let mut first = tally.first_ok_after_restore.lock().unwrap();
                            first.get_or_insert_with(Instant::now);
                        }
                        acks.push((key, ans.body["transaction_id"].as_i64().unwrap()));
                        break;
                    }
                    ans.assert_unavailable();
                    tally.unavailable.fetch_add(1, Ordering::SeqCst);
                    let took = sent.elapsed();
                    {
                        let mut slowest = tally.slowest_503.lock().unwrap();
                        *slowest = (*slowest).max(took);
                    }
                    assert!(Instant::now() < deadline, "{key} never got through");
                    tokio::time::sleep(Duration::from_millis(50)).await; // client back-off
                }
            }
            acks
        });
    }

    wait_until("payments before the cut", || {
        tally.ok.load(Ordering::SeqCst) >= 8
    })
    .await;
    proxy.cut().await;
    let cut_at = Instant::now();
    wait_until("refusals", || {
        tally.unavailable.load(Ordering::SeqCst) >= 20
    })
    .await;
    assert_eq!(health(&t).await, "degraded");
    let acked_during_cut = tally.ok.load(Ordering::SeqCst);
    let down_for = cut_at.elapsed();
    proxy.restore().await;
    *restored_at.lock().unwrap() = Some(Instant::now());

    let mut acks = Vec::new();
    while let Some(done) = workers.join_next().await {
        acks.extend(done.unwrap());
    }
    let restored = restored_at.lock().unwrap().unwrap();
    let recovery = tally
        .first_ok_after_restore
        .lock()
        .unwrap()
        .map(|t| t - restored)
        .expect("payments went through after the restore");
    let slowest = *tally.slowest_503.lock().unwrap();
    eprintln!(
        "postgres cut for {down_for:?}: {} refusals (503), slowest {slowest:?}; first payment {recovery:?} after the restore; {} acknowledged before the restore",
        tally.unavailable.load(Ordering::SeqCst),
        acked_during_cut
    );
    assert!(slowest < Duration::from_secs(6), "a 503 took {slowest:?}");
    assert_eq!(health(&t).await, "ok");

    // Every acknowledged payment is there exactly once, and nothing else moved.
    assert_eq!(acks.len(), WORKERS * EACH);
    let ids: std::collections::BTreeSet<i64> = acks.iter().map(|(_, id)| *id).collect();
    assert_eq!(ids.len(), acks.len(), "one transaction per key");
    let direct = db.pool.get().await.unwrap();
    let rows = direct
        .query(
            "SELECT id FROM transactions WHERE kind = 'payment' ORDER BY id",
            &[],
        )
        .await
        .unwrap();
    let stored: std::collections::BTreeSet<i64> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(stored, ids, "the acknowledged payments, and only those");
    let paid = 25 * (WORKERS * EACH) as i64;
    assert_eq!(t.balance_of("alice").await, 10_000 - paid);
    let check = t.ledger().await;
    assert!(check.ok, "{check:?}");
    assert_eq!(check.transactions_checked, 1 + (WORKERS * EACH) as i64);
    drop(direct);

    t.stop().await;
    proxy.cut().await;
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_that_stops_answering_answers_503_within_the_command_timeout() {
    use palmline_server::store::postgres::COMMAND_TIMEOUT;
    let Some(db) = common::pg::fresh_db("frozen").await else {
        return;
    };
    let proxy = Proxy::start().await;
    let url = format!("postgres://postgres@127.0.0.1:{}/{}", proxy.port, db.name);
    let dir = TestServer::prepared_dir();
    let t = TestServer::start_on(
        dir,
        Database::parse(&url).unwrap(),
        PalmPolicy::default(),
        |_| {},
    )
    .await;
    let a = t.kiosk("kiosk-a");
    t.register(&a, "alice", None).await;
    let (s, v) = t.deposit(&a, "alice", "100.00").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let token = t.token(&a, "alice").await;
    let first = pay(&t, &a, &token, "before", "1.00").await;
    assert_eq!(first.status, StatusCode::OK, "{first:?}");

    proxy.freeze(true);
    let sent = Instant::now();
    let bound = COMMAND_TIMEOUT + Duration::from_secs(5);
    let refused = tokio::time::timeout(bound, pay(&t, &a, &token, "frozen", "2.00"))
        .await
        .unwrap_or_else(|_| panic!("no answer within {bound:?}: the request hangs"));
    let waited = sent.elapsed();
    refused.assert_unavailable();
    eprintln!("postgres frozen: 503 after {waited:?} (command timeout {COMMAND_TIMEOUT:?})");

    proxy.freeze(false);
    let thawed = Instant::now();
    let deadline = thawed + Duration::from_secs(30);
    let retried = loop {
        let ans = pay(&t, &a, &token, "frozen", "2.00").await;
        if ans.status == StatusCode::OK {
            break ans;
        }
        ans.assert_unavailable();
        assert!(Instant::now() < deadline, "never recovered");
        tokio::time::sleep(Duration::from_millis(50)).await; // client back-off
    };
    eprintln!(
        "postgres thawed: payment through {:?} later",
        thawed.elapsed()
    );
    assert_eq!(
        pay(&t, &a, &token, "frozen", "2.00").await.body,
        retried.body
    );
    assert_eq!(t.balance_of("alice").await, 9_700, "1.00 + 2.00, once each");
    let check = t.ledger().await;
    assert!(check.ok, "{check:?}");
    assert_eq!(check.transactions_checked, 3);
    t.stop().await;
    proxy.cut().await;
    db.drop_db().await;
}
