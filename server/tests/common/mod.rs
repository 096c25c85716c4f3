//! Test harness: a real server on a real TLS socket with a fresh PKI, and mTLS clients.
#![allow(dead_code)]

pub mod ledger;
pub mod palms;
pub mod pg;

use palmline_server::api::ApiConfig;
use palmline_server::auth::HashCost;
use palmline_server::client::mtls_client;
use palmline_server::config::{Database, ServerConfig};
use palmline_server::palm::PalmPolicy;
use palmline_server::pki::Pki;
use palmline_server::serve::{start, Running};
use palmline_server::tls::TlsPaths;
use palmline_shared::api::*;
use palmline_shared::Currency;
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use std::path::Path;

pub struct TestServer {
    pub dir: tempfile::TempDir,
    pub running: Running,
    pub base: String,
    /// The cashier session of each kiosk's till (see [`TestServer::desk`]).
    desks: std::sync::Mutex<std::collections::HashMap<String, String>>,
}

/// The PIN of the till cashier [`TestServer::desk`] creates at each merchant.
pub const DESK_PIN: &str = "2468";

impl TestServer {
    pub async fn start() -> TestServer {
        TestServer::start_with(PalmPolicy::default()).await
    }

    pub async fn start_with(palm: PalmPolicy) -> TestServer {
        TestServer::start_tuned(palm, |_| {}).await
    }

    /// A server whose API settings `tune` adjusts (after the cheap test hashes are set).
    pub async fn start_tuned(palm: PalmPolicy, tune: impl FnOnce(&mut ApiConfig)) -> TestServer {
        TestServer::start_in(TestServer::prepared_dir(), palm, tune).await
    }

    /// A data dir with a fresh PKI: CA, server, kiosks `kiosk-a` (Shop A) and `kiosk-b`
    /// (Shop B), admin `ops`.
    pub fn prepared_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::new(dir.path());
        pki.init("test CA").unwrap();
        pki.issue_server(&[], 30).unwrap();
        pki.issue_kiosk("kiosk-a", "Shop A", 30).unwrap();
        pki.issue_kiosk("kiosk-b", "Shop B", 30).unwrap();
        pki.issue_admin("ops", 30).unwrap();
        dir
    }

    /// Stops the server and hands its data dir back (to start another on it).
    pub async fn stop(self) -> tempfile::TempDir {
        self.running
            .shutdown(std::time::Duration::from_secs(5))
            .await
            .unwrap();
        self.dir
    }

    /// A server on an existing data dir (from [`TestServer::prepared_dir`] or
    /// [`TestServer::stop`]).
    pub async fn start_in(
        dir: tempfile::TempDir,
        palm: PalmPolicy,
        tune: impl FnOnce(&mut ApiConfig),
    ) -> TestServer {
        TestServer::start_on(dir, Database::Sqlite, palm, tune).await
    }

    /// A server on a fresh data dir with these connection limits.
    pub async fn start_limited(conn: palmline_server::conn::ConnLimits) -> TestServer {
        let dir = TestServer::prepared_dir();
        TestServer::start_config(dir, Database::Sqlite, PalmPolicy::default(), |_| {}, conn).await
    }

    /// A server on an existing data dir whose ledger lives in `database`.
    pub async fn start_on(
        dir: tempfile::TempDir,
        database: Database,
        palm: PalmPolicy,
        tune: impl FnOnce(&mut ApiConfig),
    ) -> TestServer {
        TestServer::start_config(dir, database, palm, tune, Default::default()).await
    }

    async fn start_config(
        dir: tempfile::TempDir,
        database: Database,
        palm: PalmPolicy,
        tune: impl FnOnce(&mut ApiConfig),
        conn: palmline_server::conn::ConnLimits,
    ) -> TestServer {
        let pki = Pki::new(dir.path());
        let mut api = ApiConfig::defaults(Currency::EUR);
        // Cheap hashes keep the suite fast; the OWASP default is unit-tested in auth.rs.
        api.hash_cost = HashCost {
            memory_kib: 1024,
            iterations: 1,
        };
        tune(&mut api);
        let cfg = ServerConfig {
            data_dir: dir.path().to_path_buf(),
            database,
            listen: "127.0.0.1:0".into(),
            tls: TlsPaths::from_pki(&pki),
            api,
            template_key: dir.path().join("template.key"),
            palm,
            retention: Default::default(),
            log_format: Default::default(),
            conn,
        };
        let running = start(cfg).await.unwrap();
        let base = format!("https://localhost:{}", running.addr.port());
        TestServer {
            dir,
            running,
            base,
            desks: Default::default(),
        }
    }

    pub fn pki(&self) -> Pki {
        Pki::new(self.dir.path())
    }

    pub fn client_for(&self, cert: &Path, key: &Path) -> Client {
        mtls_client(&self.pki().ca_cert_path(), cert, key).unwrap()
    }

    pub fn kiosk(&self, id: &str) -> Client {
        let (c, k) = self.pki().kiosk_paths(id);
        self.client_for(&c, &k)
    }

    pub fn admin(&self) -> Client {
        let (c, k) = self.pki().admin_paths("ops");
        self.client_for(&c, &k)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn post(
        &self,
        c: &Client,
        path: &str,
        key: &str,
        body: Value,
    ) -> (StatusCode, Value) {
        self.post_raw(c, path, Some(key), None, body.to_string().into_bytes())
            .await
    }

    pub async fn post_raw(
        &self,
        c: &Client,
        path: &str,
        key: Option<&str>,
        token: Option<&str>,
        body: Vec<u8>,
    ) -> (StatusCode, Value) {
        self.post_as(c, path, (key, token, None), body).await
    }

    /// As [`TestServer::post_raw`], at the cash desk: with the kiosk's till cashier signed
    /// in ([`TestServer::desk`]).
    pub async fn post_desk(
        &self,
        c: &Client,
        path: &str,
        key: Option<&str>,
        token: Option<&str>,
        body: Vec<u8>,
    ) -> (StatusCode, Value) {
        let desk = self.desk(c).await;
        self.post_as(c, path, (key, token, Some(&desk)), body).await
    }

    /// A POST with an idempotency key, a shopper's bearer token and a cashier session, each
    /// if given.
    pub async fn post_as(
        &self,
        c: &Client,
        path: &str,
        (key, token, cashier): (Option<&str>, Option<&str>, Option<&str>),
        body: Vec<u8>,
    ) -> (StatusCode, Value) {
        let mut req = c
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body);
        if let Some(k) = key {
            req = req.header(IDEMPOTENCY_HEADER, k);
        }
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(t) = cashier {
            req = req.header(CASHIER_SESSION_HEADER, t);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn get(&self, c: &Client, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        let mut req = c.get(self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    pub async fn register(&self, c: &Client, name: &str, pin: Option<&str>) {
        let mut body = json!({"username": name, "email": format!("{name}@example.com"), "password": "password123"});
        if let Some(p) = pin {
            body["pin"] = json!(p);
        }
        let (s, v) = self
            .post(c, "/v1/shoppers", &format!("reg-{name}"), body)
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
    }

    pub async fn deposit(&self, c: &Client, name: &str, amount: &str) -> (StatusCode, Value) {
        self.post_desk(
            c,
            "/v1/deposits",
            Some(&format!("dep-{name}-{amount}-{}", rand_key())),
            None,
            json!({"username": name, "amount": {"amount": amount, "currency": "EUR"}})
                .to_string()
                .into_bytes(),
        )
        .await
    }

    /// Creates a cashier of `merchant` through the operator API.
    pub async fn add_cashier(&self, merchant: &str, name: &str, pin: &str) -> (StatusCode, Value) {
        self.post(
            &self.admin(),
            "/v1/admin/cashiers",
            &rand_key(),
            json!({"merchant": merchant, "name": name, "pin": pin}),
        )
        .await
    }

    /// Signs a cashier in at the kiosk `c`.
    pub async fn cashier_login(&self, c: &Client, name: &str, pin: &str) -> (StatusCode, Value) {
        self.post_raw(
            c,
            "/v1/cashier-sessions",
            None,
            None,
            json!({"name": name, "pin": pin}).to_string().into_bytes(),
        )
        .await
    }

    /// The cashier session of the kiosk `c`'s till: a cashier "Till" of its merchant (PIN
    /// [`DESK_PIN`]), created and signed in on first use.
    pub async fn desk(&self, c: &Client) -> String {
        let (s, h) = self.get(c, "/v1/health", None).await;
        assert_eq!(s, StatusCode::OK, "{h}");
        let kiosk = h["kiosk_id"].as_str().expect("a kiosk client").to_string();
        if let Some(t) = self.desks.lock().unwrap().get(&kiosk) {
            return t.clone();
        }
        let merchant = h["merchant"].as_str().unwrap();
        let (s, v) = self.add_cashier(merchant, "Till", DESK_PIN).await;
        assert!(
            s == StatusCode::CREATED || v["error"]["code"] == "cashier_exists",
            "{s} {v}"
        );
        let (s, v) = self.cashier_login(c, "Till", DESK_PIN).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let token = v["token"].as_str().unwrap().to_string();
        self.desks.lock().unwrap().insert(kiosk, token.clone());
        token
    }

    pub async fn login(&self, c: &Client, name: &str, password: &str) -> (StatusCode, Value) {
        self.post_raw(
            c,
            "/v1/sessions",
            None,
            None,
            json!({"method": "password", "username": name, "password": password})
                .to_string()
                .into_bytes(),
        )
        .await
    }

    pub async fn token(&self, c: &Client, name: &str) -> String {
        let (s, v) = self.login(c, name, "password123").await;
        assert_eq!(s, StatusCode::OK, "{v}");
        v["token"].as_str().unwrap().to_string()
    }

    pub async fn ledger(&self) -> LedgerCheck {
        let (s, v) = self
            .get(&self.admin(), "/v1/admin/ledger-check", None)
            .await;
        assert_eq!(s, StatusCode::OK);
        serde_json::from_value(v).unwrap()
    }

    pub async fn balance_of(&self, name: &str) -> i64 {
        let (_, v) = self
            .get(&self.admin(), &format!("/v1/admin/accounts?q={name}"), None)
            .await;
        let rows: Vec<AccountRow> =
            serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("{e}: {v}"));
        rows.iter()
            .find(|r| r.name == name)
            .unwrap()
            .balance
            .minor()
    }
}

pub fn rand_key() -> String {
    format!("{:016x}", rand::random::<u64>())
}

pub fn eur(s: &str) -> Value {
    json!({"amount": s, "currency": "EUR"})
}
