//! The published OpenAPI document against the router it describes (issue 14 part 3).
//!
//! The router's paths are read from the built `axum::Router` itself (its `Debug` output
//! lists every registered path), and each path's methods by asking the router: a method it
//! does not route answers 405, an unknown path the fallback's 404. That set must equal the
//! document's operations, both ways. The document's claims about callers and headers are
//! then checked against a real server over mTLS.

mod common;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use common::TestServer;
use palmline_server::api::{openapi, router, SharedState};
use serde_json::Value;
use std::collections::BTreeSet;
use tower::ServiceExt;

type Operations = BTreeSet<(String, String)>;

const METHODS: [Method; 5] = [
    Method::GET,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
];

/// Every `(METHOD, path)` of the document.
fn documented(doc: &Value) -> Operations {
    let paths = doc["paths"].as_object().expect("paths");
    let mut ops = Operations::new();
    for (path, item) in paths {
        for m in METHODS {
            if item.get(m.as_str().to_lowercase()).is_some() {
                ops.insert((m.to_string(), path.clone()));
            }
        }
    }
    ops
}

/// The path templates a router was built with, from its `Debug` output (axum prints each
/// route's id and path). Fails loudly if that output changes shape.
fn router_paths(app: &axum::Router) -> BTreeSet<String> {
    let debug = format!("{app:?}");
    let paths: BTreeSet<String> = debug
        .split("RouteId(")
        .skip(1)
        .filter_map(|s| s.split_once("): \"")?.1.split_once('"'))
        .map(|(path, _)| path.to_string())
        .filter(|p| !p.contains("__private__axum"))
        .collect();
    assert!(
        paths.len() >= 10,
        "could not read the routes from the router's Debug output (axum changed it?): {paths:?}"
    );
    paths
}

/// A concrete request path for a template (`{id}` → 1).
fn concrete(template: &str) -> String {
    template.replace("{id}", "1")
}

/// What the router routes: each of its paths with each method it does not answer 405 (or
/// the fallback's 404) to. Requests carry no TLS information, so a routed one must be
/// refused by the handler's certificate check: 403 `forbidden`.
async fn served(app: &axum::Router) -> Operations {
    let mut ops = Operations::new();
    for path in router_paths(app) {
        for m in METHODS {
            let req = Request::builder()
                .method(m.clone())
                .uri(concrete(&path))
                .body(Body::empty())
                .unwrap();
            let resp = app.clone().oneshot(req).await.unwrap();
            match resp.status() {
                StatusCode::METHOD_NOT_ALLOWED | StatusCode::NOT_FOUND => {}
                StatusCode::FORBIDDEN => {
                    ops.insert((m.to_string(), path.clone()));
                }
                other => panic!("{m} {path} answered {other} without a client certificate"),
            }
        }
    }
    ops
}

fn document_json() -> Value {
    serde_json::to_value(openapi::document()).unwrap()
}

fn state(t: &TestServer) -> SharedState {
    t.running.state.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_router_serves_exactly_the_documented_operations() {
    let t = TestServer::start().await;
    let doc = document_json();
    let documented = documented(&doc);
    let served = served(&router(state(&t))).await;
    let undocumented: Vec<_> = served.difference(&documented).collect();
    let unserved: Vec<_> = documented.difference(&served).collect();
    assert!(
        undocumented.is_empty() && unserved.is_empty(),
        "served but not documented: {undocumented:?}\ndocumented but not served: {unserved:?}"
    );
    // Every route of the API, and the document itself.
    assert!(documented.len() >= 32, "{documented:?}");
    assert!(documented.contains(&("GET".into(), "/v1/openapi.json".into())));
    assert!(documented.contains(&("POST".into(), "/v1/admin/cashiers/{id}/pin".into())));
}

/// The comparison catches a route added next to the route table: the check above can fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_added_without_documentation_is_found() {
    let t = TestServer::start().await;
    let (routes, doc) = palmline_server::api::routes().split_for_parts();
    let sneaky = routes
        .route(
            "/v1/undocumented/{id}",
            axum::routing::post(|_: palmline_server::api::AdminCaller| async { "sneaky" }),
        )
        .with_state(state(&t));
    let served = served(&sneaky).await;
    let documented = documented(&serde_json::to_value(doc).unwrap());
    let extra: Vec<_> = served.difference(&documented).collect();
    assert_eq!(
        extra,
        [&("POST".to_string(), "/v1/undocumented/{id}".to_string())]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_is_served_to_any_certificate_and_is_the_generated_one() {
    let t = TestServer::start().await;
    let expected = document_json();
    for client in [t.kiosk("kiosk-a"), t.admin()] {
        let resp = client.get(t.url("/v1/openapi.json")).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()["content-type"], "application/json");
        let served: Value = resp.json().await.unwrap();
        assert_eq!(served, expected);
    }
    assert!(expected["openapi"].as_str().unwrap().starts_with("3.1"));
    assert_eq!(
        expected["components"]["securitySchemes"]["mutualTLS"]["type"],
        "mutualTLS"
    );
    assert_eq!(expected["security"][0]["mutualTLS"], serde_json::json!([]));
}

/// The operations of a document with their tags, parameters and security.
fn operations(doc: &Value) -> Vec<(String, String, &Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for m in METHODS {
            if let Some(op) = item.get(m.as_str().to_lowercase()) {
                out.push((m.to_string(), path.clone(), op));
            }
        }
    }
    out
}

fn has_param(op: &Value, name: &str) -> bool {
    op["parameters"]
        .as_array()
        .is_some_and(|ps| ps.iter().any(|p| p["name"] == name))
}

/// Each operation's role tag is true: the other role's certificate is refused (403), and
/// every operation needs the client certificate (its own security requirements, where it
/// has any, include `mutualTLS`; the document's default is `mutualTLS`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn role_tags_and_security_match_what_the_server_enforces() {
    let t = TestServer::start().await;
    let doc = document_json();
    let (kiosk, admin) = (t.kiosk("kiosk-a"), t.admin());
    for (method, path, op) in operations(&doc) {
        let tags: Vec<&str> = op["tags"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let wrong = match tags.as_slice() {
            ["kiosk"] => Some(&admin),
            ["operator"] => Some(&kiosk),
            ["any"] => None,
            other => panic!("{method} {path}: one role tag expected, found {other:?}"),
        };
        if let Some(security) = op.get("security") {
            let all = security.as_array().unwrap();
            assert!(
                all.iter().all(|req| req.get("mutualTLS").is_some()),
                "{method} {path}: {security}"
            );
        }
        let Some(client) = wrong else { continue };
        let url = t.url(&concrete(&path));
        let req = client.request(method.parse().unwrap(), url);
        let resp = req.body("{}").send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{method} {path}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], "forbidden", "{method} {path}");
    }
}

/// Where the document asks for an `Idempotency-Key`, the server refuses a request without
/// one (from the right caller), and every mutating route asks for it except the documented
/// exceptions (logins open a new session on retry; the purge finds less on a rerun).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_idempotency_key_is_documented_where_it_is_required() {
    let t = TestServer::start().await;
    let doc = document_json();
    let (kiosk, admin) = (t.kiosk("kiosk-a"), t.admin());
    let exempt = ["/v1/sessions", "/v1/cashier-sessions", "/v1/admin/purge"];
    for (method, path, op) in operations(&doc) {
        let keyed = has_param(op, "Idempotency-Key");
        if method == "GET" {
            assert!(!keyed, "{method} {path}");
            continue;
        }
        assert_eq!(keyed, !exempt.contains(&path.as_str()), "{method} {path}");
        if !keyed {
            continue;
        }
        let client = if op["tags"][0] == "operator" {
            &admin
        } else {
            &kiosk
        };
        let url = t.url(&concrete(&path));
        let resp = client
            .request(method.parse().unwrap(), url)
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{method} {path}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(
            body["error"]["code"], "missing_idempotency_key",
            "{method} {path}"
        );
    }
}

/// Every operation documents its error shape, and the schemas it names exist.
#[test]
fn errors_and_references_are_documented() {
    let doc = document_json();
    for (method, path, op) in operations(&doc) {
        for range in ["4XX", "5XX"] {
            let schema = &op["responses"][range]["content"]["application/json"]["schema"];
            assert_eq!(
                schema["$ref"], "#/components/schemas/ErrorBody",
                "{method} {path}"
            );
        }
    }
    let text = doc.to_string();
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for piece in text.split("\"#/components/schemas/").skip(1) {
        let name = piece.split('"').next().unwrap();
        assert!(schemas.contains_key(name), "dangling reference to {name}");
    }
}

// ------------------------------------------------------------ schemathesis findings
// Each test below pins what `scripts/fuzz-api` found, so that it stays fixed.

/// Found: a shopper-scoped request without `Authorization` got a 400 for its body (the body
/// was judged before the missing session): credentials are asked for first, 401
/// `session_required`, whatever the body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_session_is_refused_before_the_body_is_judged() {
    let t = TestServer::start().await;
    let k = t.kiosk("kiosk-a");
    let bad = br#"{"templates": [], "amount": {"amount": "x", "currency": "EUR"}, "pin": ""}"#;
    for path in [
        "/v1/payments",
        "/v1/transfers",
        "/v1/withdrawals",
        "/v1/palms",
    ] {
        let (s, v) = if path == "/v1/withdrawals" {
            t.post_desk(&k, path, Some("k-1"), None, bad.to_vec()).await
        } else {
            t.post_raw(&k, path, Some("k-1"), None, bad.to_vec()).await
        };
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{path}: {v}");
        assert_eq!(v["error"]["code"], "session_required", "{path}: {v}");
    }
    let (s, v) = t.get(&k, "/v1/wallet/history?limit=abc", None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
    assert_eq!(v["error"]["code"], "session_required");
}

/// Found: `limit` was documented as an int32 while the server takes any u32 (and caps the
/// page): the document now says 0..=4294967295, and the server keeps to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_limits_are_documented_as_the_server_reads_them() {
    let doc = document_json();
    for path in [
        "/v1/admin/accounts",
        "/v1/admin/palm-scans",
        "/v1/wallet/history",
    ] {
        let params = doc["paths"][path]["get"]["parameters"].as_array().unwrap();
        let limit = params.iter().find(|p| p["name"] == "limit").unwrap();
        assert_eq!(limit["schema"]["maximum"], f64::from(u32::MAX), "{path}");
        assert_eq!(limit["schema"]["minimum"], 0, "{path}");
    }
    let t = TestServer::start().await;
    let a = t.admin();
    for (limit, status) in [
        ("4294967295", StatusCode::OK),
        ("0", StatusCode::OK),
        ("4294967296", StatusCode::BAD_REQUEST),
        ("-1", StatusCode::BAD_REQUEST),
    ] {
        for path in ["/v1/admin/accounts", "/v1/admin/palm-scans"] {
            let (s, v) = t.get(&a, &format!("{path}?limit={limit}"), None).await;
            assert_eq!(s, status, "{path}?limit={limit}: {v}");
        }
    }
}

/// Found: `[]` as the body of `POST /v1/admin/accounts/{id}/unfreeze` was accepted (serde
/// reads a JSON array into a struct, field by field), and so was an array where an amount
/// belongs: every request body must be a JSON object, every amount one too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_and_amounts_must_be_json_objects() {
    let t = TestServer::start().await;
    let (a, k) = (t.admin(), t.kiosk("kiosk-a"));
    t.register(&k, "alice", None).await;
    let (s, v) = t
        .post_raw(
            &a,
            "/v1/admin/accounts/1/freeze",
            Some("f-1"),
            None,
            b"[]".to_vec(),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["error"]["code"], "invalid_request");
    let (s, v) = t.get(&a, "/v1/admin/accounts", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v[0]["status"], "active", "nothing changed: {v}");
    let array = br#"["bob", "bob@example.com", "password123"]"#.to_vec();
    let (s, v) = t
        .post_raw(&k, "/v1/shoppers", Some("r-1"), None, array)
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["error"]["code"], "invalid_request");
    let deposit = br#"{"username": "alice", "amount": ["5.00", "EUR"]}"#.to_vec();
    let (s, v) = t
        .post_desk(&k, "/v1/deposits", Some("d-1"), None, deposit)
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["error"]["code"], "invalid_amount");
    let (s, v) = t.get(&a, "/v1/admin/ledger-check", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["transactions_checked"], 0, "{v}");
}

/// Found: a body over the limit, sent whole before the answer is read (as Python's
/// `requests` does), met a closed connection instead of the 413: the server stopped
/// reading at the limit and hung up. It now reads (and drops) up to 1 MiB more first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_over_limit_body_sent_whole_gets_its_413() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let t = TestServer::start().await;
    let pki = t.pki();
    let (cert, key) = pki.kiosk_paths("kiosk-a");
    let cfg =
        palmline_server::client::rustls_client_config(&pki.ca_cert_path(), &cert, &key).unwrap();
    let tcp = tokio::net::TcpStream::connect(t.running.addr)
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut s = tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg))
        .connect(name, tcp)
        .await
        .unwrap();
    let body = vec![b' '; 600 * 1024];
    let head = format!(
        "POST /v1/payments/palm HTTP/1.1\r\nHost: localhost\r\nIdempotency-Key: big-1\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&body).await.expect("the server kept reading");
    s.flush().await.unwrap();
    let mut answer = vec![0u8; 4096];
    let n = s.read(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("body_too_large"), "{answer}");
}
