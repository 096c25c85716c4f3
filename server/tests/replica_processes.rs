//! Two real `palmline-server serve` processes on one PostgreSQL database: a palm enrolled
//! through A pays through B, and deleted through A stops paying through B. B's index is
//! watched through its metrics (`palmline_palms_indexed`) in a poll loop with a deadline.
//! Needs the PostgreSQL of `common/pg.rs` (skipped loudly without one, failing under
//! `CI=true`).

mod common;

use common::palms::{b64, capture, palm};
use common::pg::fresh_db;
use common::{eur, TestServer};
use palmline_server::client::mtls_client;
use palmline_server::pki::Pki;
use palmline_shared::api::{CASHIER_SESSION_HEADER, IDEMPOTENCY_HEADER};
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `serve` process, killed on drop.
struct Replica {
    child: Child,
    base: String,
    dir: tempfile::TempDir,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Replica {
    /// Starts `serve` on `dir` and `database`; returns once it says where it listens.
    fn start(dir: tempfile::TempDir, database: &str) -> Replica {
        let mut child = Command::new(env!("CARGO_BIN_EXE_palmline-server"))
            .arg("--data-dir")
            .arg(dir.path())
            .args(["--database", database, "serve", "--listen", "127.0.0.1:0"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let line = stdout
            .lines()
            .map_while(Result::ok)
            .find(|l| l.starts_with("listening on https://"))
            .expect("the server printed where it listens");
        let port = line.rsplit(':').next().unwrap().to_string();
        Replica {
            child,
            base: format!("https://localhost:{port}"),
            dir,
        }
    }

    fn client(&self, cert_and_key: (std::path::PathBuf, std::path::PathBuf)) -> Client {
        let pki = Pki::new(self.dir.path());
        mtls_client(&pki.ca_cert_path(), &cert_and_key.0, &cert_and_key.1).unwrap()
    }

    fn kiosk(&self, id: &str) -> Client {
        self.client(Pki::new(self.dir.path()).kiosk_paths(id))
    }

    fn admin(&self) -> Client {
        self.client(Pki::new(self.dir.path()).admin_paths("ops"))
    }

    /// Posts `body` with an idempotency key (and a session token); the answer's body.
    async fn post(
        &self,
        c: &Client,
        path: &str,
        key: &str,
        token: Option<&str>,
        body: Value,
    ) -> Value {
        let mut req = c
            .post(format!("{}{path}", self.base))
            .header(IDEMPOTENCY_HEADER, key)
            .json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        assert!(
            status.is_success() || status == StatusCode::NOT_FOUND,
            "{path}: {status} {v}"
        );
        v
    }

    /// The value of `palmline_palms_indexed` in B's metrics.
    async fn palms_indexed(&self) -> u64 {
        let url = format!("{}/v1/admin/metrics", self.base);
        let text = self
            .admin()
            .get(url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let line = text
            .lines()
            .find(|l| l.starts_with("palmline_palms_indexed "));
        line.and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .expect("palmline_palms_indexed in the metrics")
    }

    /// Polls until the index holds `n` palms; the time it took (at most a second).
    async fn index_holds(&self, n: u64) -> Duration {
        let started = Instant::now();
        while self.palms_indexed().await != n {
            assert!(
                started.elapsed() < Duration::from_secs(1),
                "not {n} palms after 1 s"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        started.elapsed()
    }
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_serve_processes_on_one_database_act_as_one_server() {
    let Some(db) = fresh_db("procs").await else {
        return;
    };
    let a = Replica::start(TestServer::prepared_dir(), &db.url);
    // B gets A's PKI and the template key A created at start-up.
    let dir_b = tempfile::tempdir().unwrap();
    copy_dir(a.dir.path(), dir_b.path());
    let b = Replica::start(dir_b, &db.url);
    let (ka, kb) = (a.kiosk("kiosk-a"), b.kiosk("kiosk-b"));

    let register =
        json!({"username": "pat", "email": "pat@example.com", "password": "password123"});
    a.post(&ka, "/v1/shoppers", "reg-pat", None, register).await;
    let till = json!({"merchant": "Shop A", "name": "Till", "pin": "2468"});
    a.post(&a.admin(), "/v1/admin/cashiers", "till", None, till)
        .await;
    let sign_in = json!({"name": "Till", "pin": "2468"});
    let desk = a
        .post(&ka, "/v1/cashier-sessions", "-", None, sign_in)
        .await;
    let deposit = json!({"username": "pat", "amount": eur("30.00")});
    let resp = ka
        .post(format!("{}/v1/deposits", a.base))
        .header(IDEMPOTENCY_HEADER, "dep-pat")
        .header(CASHIER_SESSION_HEADER, desk["token"].as_str().unwrap())
        .json(&deposit)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let login = json!({"method": "password", "username": "pat", "password": "password123"});
    let session = a.post(&ka, "/v1/sessions", "login-pat", None, login).await;
    let token = session["token"].as_str().unwrap();
    let hand = palm(77);
    let templates: Vec<String> = (0..3).map(|i| b64(&capture(&hand, 10 + i))).collect();
    a.post(
        &ka,
        "/v1/palms",
        "enroll-pat",
        Some(token),
        json!({ "templates": templates }),
    )
    .await;

    let followed = b.index_holds(1).await;
    let pay = json!({"template": b64(&capture(&hand, 99)), "amount": eur("5.00")});
    let receipt = b
        .post(&kb, "/v1/payments/palm", "pay-1", None, pay.clone())
        .await;
    assert_eq!(receipt["shopper"], "pat", "{receipt}");

    let deleted = ka
        .delete(format!("{}/v1/palms/me", a.base))
        .bearer_auth(token)
        .header(IDEMPOTENCY_HEADER, "del-pat")
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    let followed_deletion = b.index_holds(0).await;
    let refused = b.post(&kb, "/v1/payments/palm", "pay-2", None, pay).await;
    assert_eq!(refused["error"]["code"], "palm_not_recognised", "{refused}");
    eprintln!("B's index followed A: enrollment {followed:?}, deletion {followed_deletion:?} (polled over HTTPS)");
    drop((a, b));
    db.drop_db().await;
}
