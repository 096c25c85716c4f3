//! `palmline-server serve --log-format json` as a real process, driven through the mTLS
//! client: every stderr line is one JSON object; each request's `request answered` line
//! carries the id the client got back in `x-request-id` (its own when it sent a plain one);
//! and no line, on stderr or stdout, holds the password (right or wrong), a PIN, a session
//! or cashier token, a piece of a template's base64, the template key or the TLS key.

mod common;

use base64::Engine;
use common::palms::{b64, capture, palm};
use common::{eur, TestServer};
use palmline_server::client::mtls_client;
use palmline_server::pki::Pki;
use palmline_shared::api::{CASHIER_SESSION_HEADER, IDEMPOTENCY_HEADER, REQUEST_ID_HEADER};
use reqwest::{Client, RequestBuilder, StatusCode};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;

const PASSWORD: &str = "Lumen-Quartz-7731";
const WRONG_PASSWORD: &str = "Basalt-Heron-5190";
const PIN: &str = "73915482";
const CASHIER_PIN: &str = "61839274";
/// A plain id the client picks; the server must keep it.
const CLIENT_ID: &str = "client-chosen_id-42";

/// A `serve --log-format json` process; its output is collected by two reader threads.
struct Server {
    child: Child,
    base: String,
    dir: tempfile::TempDir,
    stderr: Option<JoinHandle<Vec<String>>>,
    stdout: Option<JoinHandle<Vec<String>>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn collect(r: impl Read + Send + 'static) -> JoinHandle<Vec<String>> {
    std::thread::spawn(move || BufReader::new(r).lines().map_while(Result::ok).collect())
}

impl Server {
    fn start() -> Server {
        let dir = TestServer::prepared_dir();
        let mut child = Command::new(env!("CARGO_BIN_EXE_palmline-server"))
            .arg("--data-dir")
            .arg(dir.path())
            .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json"])
            // Everything our own code logs, down to trace; other crates at info.
            .env("RUST_LOG", "info,palmline_server=trace")
            .env_remove("PALMLINE_LOG_FORMAT")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = collect(child.stderr.take().unwrap());
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut head = Vec::new();
        let port = loop {
            let mut line = String::new();
            assert!(stdout.read_line(&mut line).unwrap() > 0, "serve exited");
            let line = line.trim_end().to_string();
            head.push(line.clone());
            if let Some(addr) = line.strip_prefix("listening on https://") {
                break addr.rsplit(':').next().unwrap().to_string();
            }
        };
        let rest = collect(stdout);
        let stdout = std::thread::spawn(move || {
            head.extend(rest.join().unwrap());
            head
        });
        Server {
            child,
            base: format!("https://localhost:{port}"),
            dir,
            stderr: Some(stderr),
            stdout: Some(stdout),
        }
    }

    fn client(&self, (cert, key): (std::path::PathBuf, std::path::PathBuf)) -> Client {
        let ca = Pki::new(self.dir.path()).ca_cert_path();
        mtls_client(&ca, &cert, &key).unwrap()
    }

    /// Stops the server; its (stderr, stdout) lines.
    fn stop(mut self) -> (Vec<String>, Vec<String>) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        let err = self.stderr.take().unwrap().join().unwrap();
        let out = self.stdout.take().unwrap().join().unwrap();
        (err, out)
    }
}

/// One request as the client saw it.
struct Call {
    route: &'static str,
    id: String,
    status: StatusCode,
    body: Value,
}

async fn call(route: &'static str, req: RequestBuilder) -> Call {
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let id = resp
        .headers()
        .get(REQUEST_ID_HEADER)
        .unwrap_or_else(|| panic!("{route}: no {REQUEST_ID_HEADER} on the answer"))
        .to_str()
        .unwrap()
        .to_string();
    let body = resp.json().await.unwrap_or(Value::Null);
    Call {
        route,
        id,
        status,
        body,
    }
}

/// Secrets (what, text) found in `line`.
fn leaks<'a>(line: &str, secrets: &'a [(String, String)]) -> Vec<&'a str> {
    secrets
        .iter()
        .filter(|(_, s)| line.contains(s.as_str()))
        .map(|(what, _)| what.as_str())
        .collect()
}

/// Everything no log line may hold. Templates are cut into 24-character pieces, so a log
/// line with any part of one is caught.
fn secrets(
    dir: &std::path::Path,
    tokens: &[(&str, &str)],
    templates: &[String],
) -> Vec<(String, String)> {
    let mut s: Vec<(String, String)> = vec![
        ("password".into(), PASSWORD.into()),
        ("wrong password".into(), WRONG_PASSWORD.into()),
        ("PIN".into(), PIN.into()),
        ("cashier PIN".into(), CASHIER_PIN.into()),
        ("PEM key".into(), "PRIVATE KEY".into()),
        ("bearer header".into(), "Bearer ".into()),
    ];
    for (what, t) in tokens {
        s.push((what.to_string(), t.to_string()));
    }
    for t in templates {
        for (i, piece) in t.as_bytes().chunks_exact(24).enumerate() {
            let piece = String::from_utf8(piece.to_vec()).unwrap();
            s.push((format!("template piece {i}"), piece));
        }
    }
    let key_hex = std::fs::read_to_string(dir.join("template.key")).unwrap();
    let key_hex = key_hex.trim();
    assert_eq!(key_hex.len(), 64, "the template key the server created");
    let raw = hex::decode(key_hex).unwrap();
    s.push(("template key (hex)".into(), key_hex.into()));
    s.push(("template key (HEX)".into(), key_hex.to_uppercase()));
    let b64 = base64::engine::general_purpose::STANDARD.encode(&raw);
    s.push(("template key (base64)".into(), b64[..40].into()));
    let pem = std::fs::read_to_string(Pki::new(dir).server_key_path()).unwrap();
    for (i, l) in pem.lines().filter(|l| !l.starts_with("-----")).enumerate() {
        s.push((format!("TLS key line {i}"), l.to_string()));
    }
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_request_ids_and_no_secrets() {
    let server = Server::start();
    let pki = Pki::new(server.dir.path());
    let kiosk = server.client(pki.kiosk_paths("kiosk-a"));
    let admin = server.client(pki.admin_paths("ops"));
    let url = |p: &str| format!("{}{p}", server.base);
    let mut calls = Vec::new();

    let register = json!({"username": "logan", "email": "logan@example.com",
        "password": PASSWORD, "pin": PIN});
    let req = kiosk
        .post(url("/v1/shoppers"))
        .header(IDEMPOTENCY_HEADER, "reg");
    calls.push(call("/v1/shoppers", req.json(&register)).await);
    let till = json!({"merchant": "Shop A", "name": "Till", "pin": CASHIER_PIN});
    let req = admin
        .post(url("/v1/admin/cashiers"))
        .header(IDEMPOTENCY_HEADER, "till");
    calls.push(call("/v1/admin/cashiers", req.json(&till)).await);
    let sign_in = json!({"name": "Till", "pin": CASHIER_PIN});
    let req = kiosk.post(url("/v1/cashier-sessions")).json(&sign_in);
    calls.push(call("/v1/cashier-sessions", req).await);
    let desk = calls.last().unwrap().body["token"]
        .as_str()
        .unwrap()
        .to_string();
    let deposit = json!({"username": "logan", "amount": eur("100.00")});
    let req = kiosk
        .post(url("/v1/deposits"))
        .header(IDEMPOTENCY_HEADER, "dep")
        .header(CASHIER_SESSION_HEADER, &desk);
    calls.push(call("/v1/deposits", req.json(&deposit)).await);
    let login = json!({"method": "password", "username": "logan", "password": PASSWORD});
    let req = kiosk.post(url("/v1/sessions")).json(&login);
    calls.push(call("/v1/sessions", req).await);
    let token = calls.last().unwrap().body["token"]
        .as_str()
        .unwrap()
        .to_string();
    let pay = json!({"amount": eur("60.00"), "pin": PIN, "description": "lamp"});
    let req = kiosk
        .post(url("/v1/payments"))
        .header(IDEMPOTENCY_HEADER, "pay")
        .bearer_auth(&token);
    calls.push(call("/v1/payments", req.json(&pay)).await);
    let hand = palm(41);
    let mut templates: Vec<String> = (0..3).map(|i| b64(&capture(&hand, 20 + i))).collect();
    let req = kiosk
        .post(url("/v1/palms"))
        .header(IDEMPOTENCY_HEADER, "enroll")
        .bearer_auth(&token);
    calls.push(call("/v1/palms", req.json(&json!({ "templates": templates }))).await);
    templates.push(b64(&capture(&hand, 99)));
    let pay = json!({"template": templates[3], "amount": eur("5.00")});
    let req = kiosk
        .post(url("/v1/payments/palm"))
        .header(IDEMPOTENCY_HEADER, "palm-pay");
    calls.push(call("/v1/payments/palm", req.json(&pay)).await);
    for c in &calls {
        assert!(
            c.status.is_success(),
            "{}: {} {}",
            c.route,
            c.status,
            c.body
        );
    }

    let wrong = json!({"method": "password", "username": "logan", "password": WRONG_PASSWORD});
    let req = kiosk.post(url("/v1/sessions")).json(&wrong);
    let refused = call("/v1/sessions", req).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{}", refused.body);
    calls.push(refused);
    let req = kiosk
        .get(url("/v1/health"))
        .header(REQUEST_ID_HEADER, CLIENT_ID);
    calls.push(call("/v1/health", req).await);
    assert_eq!(calls.last().unwrap().id, CLIENT_ID, "a plain id is kept");
    let long = "a".repeat(65);
    let req = kiosk
        .get(url("/v1/health"))
        .header(REQUEST_ID_HEADER, &long);
    calls.push(call("/v1/health", req).await);
    let req = kiosk
        .get(url("/v1/health"))
        .header(REQUEST_ID_HEADER, "a{b}c");
    calls.push(call("/v1/health", req).await);
    for made in &calls[calls.len() - 2..] {
        assert_eq!(
            made.id.len(),
            32,
            "a long or odd id is replaced: {}",
            made.id
        );
        assert!(made.id.bytes().all(|b| b.is_ascii_hexdigit()));
    }
    let req = kiosk.get(url("/v1/no-such-thing/12345"));
    calls.push(call("unmatched", req).await);

    let dir = server.dir.path().to_path_buf();
    let secrets = secrets(
        &dir,
        &[("session token", &token), ("cashier token", &desk)],
        &templates,
    );
    assert!(
        leaks(&format!("x {PIN} y"), &secrets) == ["PIN"],
        "the leak check finds what it looks for"
    );
    let (stderr, stdout) = server.stop();

    let mut ids_logged = std::collections::HashMap::new();
    for (n, line) in stderr.iter().enumerate() {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("stderr line {n} is not JSON ({e}): {line}"));
        assert!(v.is_object(), "line {n}: {line}");
        assert!(
            v["level"].is_string() && v["timestamp"].is_string(),
            "{line}"
        );
        let request = v["spans"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|s| s["name"] == "request");
        if let Some(r) = request {
            let id = r["id"].as_str().unwrap_or_else(|| panic!("no id: {line}"));
            let route = r["route"].as_str().unwrap().to_string();
            if v["fields"]["message"] == "request answered" {
                let status = v["fields"]["status"].as_u64().unwrap();
                let old = ids_logged.insert(id.to_string(), (route, status));
                assert!(old.is_none(), "request id {id} answered twice");
            }
        }
    }
    for c in &calls {
        let (route, status) = ids_logged
            .get(&c.id)
            .unwrap_or_else(|| panic!("{}: request id {} not in the logs", c.route, c.id));
        assert_eq!(route, c.route, "the route template, never the raw path");
        assert_eq!(*status, u64::from(c.status.as_u16()), "{}", c.route);
    }
    assert_eq!(
        ids_logged.len(),
        calls.len(),
        "a logged request the client never made"
    );

    for (stream, lines) in [("stderr", &stderr), ("stdout", &stdout)] {
        for line in lines {
            let found = leaks(line, &secrets);
            assert!(found.is_empty(), "{stream} leaks {found:?}: {line}");
        }
    }
}
