//! Ledger throughput and latency: transfers/s and p50/p99 at 1, 8 and 32 concurrent
//! clients, SQLite with `synchronous=FULL`,
//! (a) at the store level, group commit vs one commit per transfer (the baseline), and
//! (b) through HTTPS + mutual TLS on keep-alive connections.
//!
//! `cargo run --release -p palmline-server --example ledger_bench -- [--seconds 3] [--dir DIR]`
//! Put `--dir` on the disk you want to measure (default: a temp dir under ./target).

use palmline_server::api::ApiConfig;
use palmline_server::auth::HashCost;
use palmline_server::config::ServerConfig;
use palmline_server::pki::Pki;
use palmline_server::store::sqlite::SqliteStore;
use palmline_server::store::{Command, KioskRef, LedgerError, Store};
use palmline_server::tls::TlsPaths;
use palmline_shared::api::IDEMPOTENCY_HEADER;
use palmline_shared::{Currency, Money};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SHOPPERS: usize = 1000;

struct Stats {
    label: String,
    clients: usize,
    ops: usize,
    secs: f64,
    lat: Vec<Duration>,
}

impl Stats {
    fn row(&mut self) -> String {
        self.lat.sort();
        let pct = |p: f64| {
            let i = ((self.lat.len() as f64 * p) as usize).min(self.lat.len().saturating_sub(1));
            self.lat.get(i).copied().unwrap_or_default().as_secs_f64() * 1000.0
        };
        format!(
            "| {} | {} | {:.0} | {:.2} | {:.2} |",
            self.label,
            self.clients,
            self.ops as f64 / self.secs,
            pct(0.50),
            pct(0.99)
        )
    }
}

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn rng(seed: u64) -> impl FnMut() -> u64 {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    }
}

async fn seed(store: &dyn Store) -> Vec<i64> {
    let mut ids = Vec::with_capacity(SHOPPERS);
    let hash = palmline_server::auth::hash_secret("bench-password", HashCost::default());
    let till = Command::CreateCashier {
        merchant: "Bench".into(),
        name: "Till".into(),
        pin_hash: hash.clone(),
    };
    let palmline_server::store::Outcome::Cashier(cashier) =
        store.execute(None, till).await.unwrap()
    else {
        unreachable!()
    };
    let cashier_id = cashier.id;
    for i in 0..SHOPPERS {
        let o = store
            .execute(
                None,
                Command::RegisterShopper {
                    username: format!("s{i:05}"),
                    email: format!("s{i}@example.com"),
                    password_hash: hash.clone(),
                    pin_hash: None,
                },
            )
            .await
            .unwrap();
        let palmline_server::store::Outcome::Shopper(s) = o else {
            unreachable!()
        };
        ids.push(s.id);
        store
            .execute(
                None,
                Command::Deposit {
                    at: KioskRef {
                        kiosk_id: "bench".into(),
                        merchant: "Bench".into(),
                    },
                    username: format!("s{i:05}"),
                    amount: Money::from_minor(100_000_000, Currency::EUR),
                    cashier_id,
                },
            )
            .await
            .unwrap();
    }
    ids
}

async fn store_run(
    label: &str,
    store: Arc<dyn Store>,
    ids: &[i64],
    clients: usize,
    secs: f64,
) -> Stats {
    let stop = Instant::now() + Duration::from_secs_f64(secs);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let store = store.clone();
        let ids = ids.to_vec();
        tasks.push(tokio::spawn(async move {
            let mut next = rng(c as u64 + 1);
            let mut lat = Vec::new();
            while Instant::now() < stop {
                let from = ids[(next() % ids.len() as u64) as usize];
                let to = format!("s{:05}", next() % SHOPPERS as u64);
                let t0 = Instant::now();
                let r = store
                    .execute(
                        None,
                        Command::Transfer {
                            at: None,
                            from_shopper_id: from,
                            to_username: to,
                            amount: Money::from_minor(1 + (next() % 500) as i64, Currency::EUR),
                            note: None,
                        },
                    )
                    .await;
                match r {
                    Ok(_) | Err(LedgerError::SameAccount) => lat.push(t0.elapsed()),
                    Err(e) => panic!("{e}"),
                }
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap());
    }
    Stats {
        label: label.into(),
        clients,
        ops: lat.len(),
        secs: start.elapsed().as_secs_f64(),
        lat,
    }
}

#[tokio::main]
async fn main() {
    let secs: f64 = arg("--seconds").map(|s| s.parse().unwrap()).unwrap_or(3.0);
    let root = arg("--dir")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench-ledger")
        });
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    println!(
        "# ledger bench: {SHOPPERS} shoppers, {secs} s per row, dir {}",
        root.display()
    );
    println!("| path | clients | transfers/s | p50 ms | p99 ms |");
    println!("|---|---|---|---|---|");

    // (a) store level: group commit vs a commit per transfer, in one run.
    for (label, batch) in [
        ("store, group commit", 512),
        ("store, commit per transfer (baseline)", 1),
    ] {
        let path = root.join(format!("store-{batch}.db"));
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open_with_batch(&path, Currency::EUR, batch).unwrap());
        let ids = seed(&*store).await;
        for clients in [1, 8, 32] {
            println!(
                "{}",
                store_run(label, store.clone(), &ids, clients, secs)
                    .await
                    .row()
            );
        }
        assert!(store.ledger_check().await.unwrap().ok);
    }

    // (b) through HTTPS + mTLS, keep-alive connections, one session per client.
    let data = root.join("api");
    let pki = Pki::new(&data);
    pki.init("bench CA").unwrap();
    pki.issue_server(&[], 30).unwrap();
    pki.issue_kiosk("bench-kiosk", "Bench", 30).unwrap();
    let mut api = ApiConfig::defaults(Currency::EUR);
    api.pin_threshold = Money::from_minor(i64::MAX / 2, Currency::EUR);
    api.session_ttl = Duration::from_secs(3600);
    // The bench measures the ledger, not the no-PIN limits.
    api.no_pin.per_session = Money::from_minor(i64::MAX / 2, Currency::EUR);
    api.no_pin.per_day = api.no_pin.per_session;
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&data.join("palmline.db"), Currency::EUR).unwrap());
    let ids = seed(&*store).await;
    assert_eq!(ids.len(), SHOPPERS);
    let cfg = ServerConfig {
        data_dir: data.clone(),
        database: palmline_server::config::Database::Sqlite,
        listen: "127.0.0.1:0".into(),
        tls: TlsPaths::from_pki(&pki),
        api,
        template_key: data.join("template.key"),
        palm: palmline_server::palm::PalmPolicy::default(),
        retention: Default::default(),
    };
    let running = palmline_server::serve::start_with_store(cfg, store.clone())
        .await
        .unwrap();
    let base = format!("https://localhost:{}", running.addr.port());
    let (kc, kk) = pki.kiosk_paths("bench-kiosk");
    let key_counter = Arc::new(AtomicU64::new(0));
    for clients in [1usize, 8, 32] {
        let mut tokens = Vec::new();
        let mut http = Vec::new();
        for c in 0..clients {
            let client =
                palmline_server::client::mtls_client(&pki.ca_cert_path(), &kc, &kk).unwrap();
            let s: serde_json::Value = client
                .post(format!("{base}/v1/sessions"))
                .json(&serde_json::json!({"method": "password", "username": format!("s{c:05}"), "password": "bench-password"}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            tokens.push(s["token"].as_str().unwrap().to_string());
            http.push(client);
        }
        let stop = Instant::now() + Duration::from_secs_f64(secs);
        let start = Instant::now();
        let mut tasks = Vec::new();
        for (c, (client, token)) in http.into_iter().zip(tokens).enumerate() {
            let base = base.clone();
            let counter = key_counter.clone();
            tasks.push(tokio::spawn(async move {
                let mut next = rng(c as u64 + 99);
                let mut lat = Vec::new();
                while Instant::now() < stop {
                    let to = format!("s{:05}", next() % SHOPPERS as u64);
                    let key = counter.fetch_add(1, Ordering::Relaxed);
                    let t0 = Instant::now();
                    let r = client
                        .post(format!("{base}/v1/transfers"))
                        .header(IDEMPOTENCY_HEADER, format!("bench-{key}"))
                        .bearer_auth(&token)
                        .json(&serde_json::json!({"to_username": to, "amount": {"amount": "0.01", "currency": "EUR"}}))
                        .send()
                        .await
                        .unwrap();
                    let status = r.status();
                    let _ = r.bytes().await.unwrap();
                    assert!(status.is_success() || status.as_u16() == 400, "{status}");
                    lat.push(t0.elapsed());
                }
                lat
            }));
        }
        let mut lat = Vec::new();
        for t in tasks {
            lat.extend(t.await.unwrap());
        }
        let mut s = Stats {
            label: "HTTPS + mTLS API".into(),
            clients,
            ops: lat.len(),
            secs: start.elapsed().as_secs_f64(),
            lat,
        };
        println!("{}", s.row());
    }
    assert!(store.ledger_check().await.unwrap().ok);
    running.shutdown(Duration::from_secs(5)).await.unwrap();
}
