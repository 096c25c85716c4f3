//! Ledger throughput and latency, SQLite and PostgreSQL side by side in one run:
//! transfers/s and p50/p99 at 1, 8, 32 and 128 concurrent clients,
//! (a) at the store level (`Store::execute`): SQLite group commit, SQLite with one commit
//!     per transfer (the baseline), PostgreSQL (`PgStore`, a pool of `--pool` connections)
//!     with its batched writer, its group commit and one transaction per transfer (its
//!     baseline),
//! (b) through HTTPS + mutual TLS on keep-alive connections, one session per client,
//! for two workloads: `spread` (transfers between random shoppers of 1,000) and `hot` (every
//! operation a payment by the client's shopper to one merchant, as `POST /v1/payments` with a
//! password session makes it: `Command::Payment` at the kiosk's merchant).
//!
//! ```text
//! cargo run --release -p palmline-server --example ledger_bench -- [--seconds 3]
//!     [--stores sqlite,postgres|pg-batched,pg-group,pg-per-command] [--clients 1,8,32,128] [--workloads spread,hot]
//!     [--paths store,api] [--pool 16] [--pg-sync-off] [--dir DIR]
//!     [--pg postgres://postgres@127.0.0.1:5432] [--pg-db palmline_bench]
//! ```
//! Every store starts empty: the SQLite files under `--dir` (put it on the disk you want to
//! measure; default `target/bench-ledger`), the PostgreSQL database `--pg-db` dropped and
//! created again. `--pg-sync-off` adds rows of PostgreSQL's baseline with
//! `synchronous_commit=off` (NOT durable: an acknowledged transfer can be lost in a crash),
//! labelled as such: they show what the WAL flush per transfer costs.
//! SQLite runs with `synchronous=FULL`, PostgreSQL with the server's settings.

use palmline_server::api::ApiConfig;
use palmline_server::auth::HashCost;
use palmline_server::config::{Database, ServerConfig};
use palmline_server::pki::Pki;
use palmline_server::store::postgres::{self, MoneyPath, PgStore};
use palmline_server::store::sqlite::SqliteStore;
use palmline_server::store::{Command, KioskRef, LedgerError, Outcome, Store};
use palmline_server::tls::TlsPaths;
use palmline_shared::api::IDEMPOTENCY_HEADER;
use palmline_shared::{Currency, Money};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SHOPPERS: usize = 1000;
const KIOSK: &str = "bench-kiosk";
/// The one merchant every `hot` payment credits (also the one whose till paid the deposits).
const MERCHANT: &str = "Bench";
const PASSWORD: &str = "bench-password";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Workload {
    Spread,
    Hot,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::Spread => "spread",
            Workload::Hot => "hot",
        }
    }
}

/// A store under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    /// SQLite, up to 512 commands per commit.
    SqliteGroup,
    /// SQLite, one commit per command (store level only).
    SqliteBaseline,
    /// PostgreSQL, group commit of money commands.
    Postgres,
    /// PostgreSQL, payments and transfers through the batched writer.
    PostgresBatched,
    /// PostgreSQL, one transaction per command (store level only); `durable: false` is
    /// `synchronous_commit=off`.
    PostgresBaseline { durable: bool },
}

impl Backend {
    fn durable(self) -> bool {
        !matches!(self, Backend::PostgresBaseline { durable: false })
    }

    fn label(self, pool: usize) -> String {
        match self {
            Backend::SqliteGroup => "SQLite, group commit".into(),
            Backend::SqliteBaseline => "SQLite, commit per transfer (baseline)".into(),
            Backend::Postgres => format!("PostgreSQL, group commit (pool {pool})"),
            Backend::PostgresBatched => format!("PostgreSQL, batched writer (pool {pool})"),
            Backend::PostgresBaseline { durable: true } => {
                format!("PostgreSQL, transaction per transfer (baseline, pool {pool})")
            }
            Backend::PostgresBaseline { durable: false } => format!(
                "PostgreSQL, transaction per transfer, synchronous_commit=off (NOT durable, pool {pool})"
            ),
        }
    }
}

struct Opts {
    secs: f64,
    dir: PathBuf,
    backends: Vec<Backend>,
    clients: Vec<usize>,
    workloads: Vec<Workload>,
    store_level: bool,
    api: bool,
    pool: usize,
    pg: String,
    pg_db: String,
}

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn flag(name: &str) -> bool {
    std::env::args().any(|a| a == name)
}

fn list(name: &str, default: &str) -> Vec<String> {
    arg(name)
        .unwrap_or_else(|| default.into())
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

fn opts() -> Opts {
    let stores = list("--stores", "sqlite,postgres");
    let mut backends = Vec::new();
    for s in &stores {
        match s.as_str() {
            "sqlite" => backends.extend([Backend::SqliteGroup, Backend::SqliteBaseline]),
            "postgres" => backends.extend([
                Backend::PostgresBatched,
                Backend::Postgres,
                Backend::PostgresBaseline { durable: true },
            ]),
            "pg-batched" => backends.push(Backend::PostgresBatched),
            "pg-group" => backends.push(Backend::Postgres),
            "pg-per-command" => backends.push(Backend::PostgresBaseline { durable: true }),
            other => panic!(
                "--stores: unknown store {other:?} (sqlite, postgres, pg-batched, pg-group, pg-per-command)"
            ),
        }
    }
    if flag("--pg-sync-off") {
        backends.push(Backend::PostgresBaseline { durable: false });
    }
    let workloads = list("--workloads", "spread,hot")
        .iter()
        .map(|w| match w.as_str() {
            "spread" => Workload::Spread,
            "hot" => Workload::Hot,
            other => panic!("--workloads: unknown workload {other:?} (spread, hot)"),
        })
        .collect();
    let paths = list("--paths", "store,api");
    let dir = arg("--dir").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench-ledger")
    });
    Opts {
        secs: arg("--seconds").map_or(3.0, |s| s.parse().expect("--seconds")),
        dir,
        backends,
        clients: list("--clients", "1,8,32,128")
            .iter()
            .map(|c| c.parse().expect("--clients"))
            .collect(),
        workloads,
        store_level: paths.iter().any(|p| p == "store"),
        api: paths.iter().any(|p| p == "api"),
        pool: arg("--pool").map_or(palmline_server::store::postgres::SERVE_POOL_SIZE, |s| {
            s.parse().expect("--pool")
        }),
        pg: arg("--pg").unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432".into()),
        pg_db: arg("--pg-db").unwrap_or_else(|| "palmline_bench".into()),
    }
}

/// One row of the table.
struct Row {
    store: String,
    path: &'static str,
    workload: Workload,
    clients: usize,
    per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// Throughput and latency percentiles of one measured interval.
fn measure(lat: &mut [Duration], secs: f64) -> (f64, f64, f64) {
    lat.sort();
    let pct = |p: f64| {
        let i = ((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1));
        lat.get(i).copied().unwrap_or_default().as_secs_f64() * 1000.0
    };
    (lat.len() as f64 / secs, pct(0.50), pct(0.99))
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

fn name(i: usize) -> String {
    format!("s{i:05}")
}

fn kiosk() -> KioskRef {
    KioskRef {
        kiosk_id: KIOSK.into(),
        merchant: MERCHANT.into(),
    }
}

/// 1,000 shoppers with 1,000,000.00 EUR each (cash deposits at the bench merchant's till).
async fn seed(store: &dyn Store) -> Vec<i64> {
    let mut ids = Vec::with_capacity(SHOPPERS);
    let hash = palmline_server::auth::hash_secret(PASSWORD, HashCost::default());
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
        let register = Command::RegisterShopper {
            username: name(i),
            email: format!("s{i}@example.com"),
            password_hash: hash.clone(),
            pin_hash: None,
        };
        let Outcome::Shopper(s) = store.execute(None, register).await.unwrap() else {
            unreachable!()
        };
        ids.push(s.id);
        let deposit = Command::Deposit {
            at: kiosk(),
            username: name(i),
            amount: Money::from_minor(100_000_000, Currency::EUR),
            cashier_id,
        };
        store.execute(None, deposit).await.unwrap();
    }
    ids
}

/// The command of one store-level operation: a transfer between two different random
/// shoppers, or a payment by a random shopper to the one merchant.
fn operation(w: Workload, ids: &[i64], next: &mut impl FnMut() -> u64) -> Command {
    let from = (next() % ids.len() as u64) as usize;
    let amount = Money::from_minor(1 + (next() % 500) as i64, Currency::EUR);
    match w {
        Workload::Spread => {
            let to = (from + 1 + (next() % (ids.len() as u64 - 1)) as usize) % ids.len();
            Command::Transfer {
                at: None,
                from_shopper_id: ids[from],
                to_username: name(to),
                amount,
                note: None,
            }
        }
        Workload::Hot => Command::Payment {
            at: kiosk(),
            shopper_id: ids[from],
            amount,
            description: None,
        },
    }
}

async fn store_run(
    store: Arc<dyn Store>,
    ids: Arc<Vec<i64>>,
    w: Workload,
    clients: usize,
    secs: f64,
) -> (f64, f64, f64) {
    let stop = Instant::now() + Duration::from_secs_f64(secs);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (store, ids) = (store.clone(), ids.clone());
        tasks.push(tokio::spawn(async move {
            let mut next = rng(c as u64 + 1);
            let mut lat = Vec::new();
            while Instant::now() < stop {
                let cmd = operation(w, &ids, &mut next);
                let t0 = Instant::now();
                match store.execute(None, cmd).await {
                    Ok(_) => lat.push(t0.elapsed()),
                    Err(e @ LedgerError::Storage(_)) => panic!("{e}"),
                    Err(e) => panic!("refused: {e}"),
                }
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap());
    }
    measure(&mut lat, start.elapsed().as_secs_f64())
}

/// A PostgreSQL database named `db`, dropped if it exists and created empty.
async fn fresh_pg(base: &str, db: &str) {
    let (admin, conn) = tokio_postgres::connect(&format!("{base}/postgres"), tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {base}: {e}"));
    let task = tokio::spawn(conn);
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
        .await
        .unwrap();
    admin
        .batch_execute(&format!("CREATE DATABASE {db}"))
        .await
        .unwrap();
    drop(admin);
    let _ = task.await;
}

/// The URL of the bench database, with `synchronous_commit=off` when not `durable`.
fn pg_url(o: &Opts, durable: bool) -> String {
    let url = format!("{}/{}", o.pg, o.pg_db);
    if durable {
        url
    } else {
        format!("{url}?options=-c%20synchronous_commit%3Doff")
    }
}

/// What the server says `synchronous_commit` is on a connection made with `url`.
async fn synchronous_commit(url: &str) -> String {
    let (c, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    c.query_one("SHOW synchronous_commit", &[])
        .await
        .unwrap()
        .get(0)
}

/// An empty store of kind `b`, its SQLite file (if any) in `dir`.
async fn open(o: &Opts, b: Backend, dir: &Path) -> Arc<dyn Store> {
    std::fs::create_dir_all(dir).unwrap();
    let file = dir.join("palmline.db");
    match b {
        Backend::SqliteGroup => Arc::new(SqliteStore::open(&file, Currency::EUR).unwrap()),
        Backend::SqliteBaseline => {
            Arc::new(SqliteStore::open_with_batch(&file, Currency::EUR, 1).unwrap())
        }
        Backend::Postgres | Backend::PostgresBatched | Backend::PostgresBaseline { .. } => {
            fresh_pg(&o.pg, &o.pg_db).await;
            let url = pg_url(o, b.durable());
            eprintln!("  synchronous_commit = {}", synchronous_commit(&url).await);
            let pool = postgres::pool(&url, o.pool).unwrap();
            let path = match b {
                Backend::Postgres => MoneyPath::Grouped,
                Backend::PostgresBatched => MoneyPath::Batched,
                _ => MoneyPath::PerCommand,
            };
            Arc::new(
                PgStore::with_pool_path(pool, Currency::EUR, path)
                    .await
                    .unwrap(),
            )
        }
    }
}

fn slug(b: Backend) -> &'static str {
    match b {
        Backend::SqliteGroup => "sqlite-group",
        Backend::SqliteBaseline => "sqlite-baseline",
        Backend::Postgres => "postgres",
        Backend::PostgresBatched => "postgres-batched",
        Backend::PostgresBaseline { durable: true } => "postgres-baseline",
        Backend::PostgresBaseline { durable: false } => "postgres-sync-off",
    }
}

/// Every store-level row of backend `b`, on a fresh store.
async fn store_rows(o: &Opts, b: Backend, rows: &mut Vec<Row>) {
    let store = open(o, b, &o.dir.join(format!("store-{}", slug(b)))).await;
    let ids = Arc::new(seed(&*store).await);
    for &w in &o.workloads {
        for &clients in &o.clients {
            let (per_sec, p50_ms, p99_ms) =
                store_run(store.clone(), ids.clone(), w, clients, o.secs).await;
            push(
                rows,
                Row {
                    store: b.label(o.pool),
                    path: "store",
                    workload: w,
                    clients,
                    per_sec,
                    p50_ms,
                    p99_ms,
                },
            );
        }
    }
    assert!(store.ledger_check().await.unwrap().ok, "ledger check");
}

fn push(rows: &mut Vec<Row>, r: Row) {
    eprintln!(
        "  {} | {} | {} | {} | {:.0}/s | p50 {:.2} ms | p99 {:.2} ms",
        r.store,
        r.path,
        r.workload.name(),
        r.clients,
        r.per_sec,
        r.p50_ms,
        r.p99_ms
    );
    rows.push(r);
}

/// A server on a fresh store of kind `b`, and `n` kiosk clients each logged in (by
/// password) as its own shopper `s00000`, `s00001`, ….
struct ApiBench {
    running: palmline_server::serve::Running,
    store: Arc<dyn Store>,
    base: String,
    clients: Vec<(reqwest::Client, String)>,
}

async fn api_start(o: &Opts, b: Backend, n: usize) -> ApiBench {
    let data = o.dir.join(format!("api-{}", slug(b)));
    let pki = Pki::new(&data);
    pki.init("bench CA").unwrap();
    pki.issue_server(&[], 30).unwrap();
    pki.issue_kiosk(KIOSK, MERCHANT, 30).unwrap();
    let mut api = ApiConfig::defaults(Currency::EUR);
    api.pin_threshold = Money::from_minor(i64::MAX / 2, Currency::EUR);
    api.session_ttl = Duration::from_secs(3600);
    // The bench measures the ledger, not the no-PIN limits.
    api.no_pin.per_session = Money::from_minor(i64::MAX / 2, Currency::EUR);
    api.no_pin.per_day = api.no_pin.per_session;
    let store = open(o, b, &data).await;
    seed(&*store).await;
    let database = match b {
        Backend::Postgres | Backend::PostgresBatched | Backend::PostgresBaseline { .. } => {
            Database::Postgres(pg_url(o, b.durable()))
        }
        _ => Database::Sqlite,
    };
    let cfg = ServerConfig {
        data_dir: data.clone(),
        database,
        listen: "127.0.0.1:0".into(),
        tls: TlsPaths::from_pki(&pki),
        api,
        template_key: data.join("template.key"),
        palm: palmline_server::palm::PalmPolicy::default(),
        retention: Default::default(),
        log_format: Default::default(),
        conn: Default::default(),
    };
    let running = palmline_server::serve::start_with_store(cfg, store.clone())
        .await
        .unwrap();
    let base = format!("https://localhost:{}", running.addr.port());
    let (kc, kk) = pki.kiosk_paths(KIOSK);
    let mut logins = Vec::new();
    for c in 0..n {
        let client = palmline_server::client::mtls_client(&pki.ca_cert_path(), &kc, &kk).unwrap();
        let url = format!("{base}/v1/sessions");
        logins.push(tokio::spawn(async move {
            let body = serde_json::json!({"method": "password", "username": name(c), "password": PASSWORD});
            let s: serde_json::Value = client.post(url).json(&body).send().await.unwrap().json().await.unwrap();
            (client, s["token"].as_str().expect("a session token").to_string())
        }));
    }
    let mut clients = Vec::new();
    for l in logins {
        clients.push(l.await.unwrap());
    }
    ApiBench {
        running,
        store,
        base,
        clients,
    }
}

/// One request of a client: a transfer to another random shopper, or a payment to the
/// kiosk's merchant.
fn request(
    w: Workload,
    base: &str,
    client: &reqwest::Client,
    me: usize,
    next: &mut impl FnMut() -> u64,
) -> reqwest::RequestBuilder {
    let amount = serde_json::json!({"amount": "0.01", "currency": "EUR"});
    match w {
        Workload::Spread => {
            let to = (me + 1 + (next() % (SHOPPERS as u64 - 1)) as usize) % SHOPPERS;
            client
                .post(format!("{base}/v1/transfers"))
                .json(&serde_json::json!({"to_username": name(to), "amount": amount}))
        }
        Workload::Hot => client
            .post(format!("{base}/v1/payments"))
            .json(&serde_json::json!({"amount": amount})),
    }
}

async fn api_run(
    a: &ApiBench,
    w: Workload,
    n: usize,
    secs: f64,
    keys: &Arc<AtomicU64>,
) -> (f64, f64, f64) {
    let stop = Instant::now() + Duration::from_secs_f64(secs);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (c, (client, token)) in a.clients.iter().take(n).cloned().enumerate() {
        let (base, keys) = (a.base.clone(), keys.clone());
        tasks.push(tokio::spawn(async move {
            let mut next = rng(c as u64 + 99);
            let mut lat = Vec::new();
            while Instant::now() < stop {
                let key = keys.fetch_add(1, Ordering::Relaxed);
                let req = request(w, &base, &client, c, &mut next)
                    .header(IDEMPOTENCY_HEADER, format!("bench-{key}"))
                    .bearer_auth(&token);
                let t0 = Instant::now();
                let r = req.send().await.unwrap();
                let status = r.status();
                let body = r.bytes().await.unwrap();
                assert!(
                    status.is_success(),
                    "{status}: {}",
                    String::from_utf8_lossy(&body)
                );
                lat.push(t0.elapsed());
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap());
    }
    measure(&mut lat, start.elapsed().as_secs_f64())
}

/// Every API row of backend `b`, on a fresh store and server.
async fn api_rows(o: &Opts, b: Backend, rows: &mut Vec<Row>) {
    let most = o.clients.iter().copied().max().unwrap_or(1);
    let a = api_start(o, b, most).await;
    let keys = Arc::new(AtomicU64::new(0));
    for &w in &o.workloads {
        for &clients in &o.clients {
            let (per_sec, p50_ms, p99_ms) = api_run(&a, w, clients, o.secs, &keys).await;
            push(
                rows,
                Row {
                    store: b.label(o.pool),
                    path: "HTTPS + mTLS API",
                    workload: w,
                    clients,
                    per_sec,
                    p50_ms,
                    p99_ms,
                },
            );
        }
    }
    assert!(a.store.ledger_check().await.unwrap().ok, "ledger check");
    a.running.shutdown(Duration::from_secs(5)).await.unwrap();
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|e| format!("? ({e})"))
}

fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "?".into());
    format!("{cpus} cores, {model}")
}

/// `git rev-parse --short HEAD` of the source tree, with `-dirty` if it has changes.
fn commit() -> String {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let head = git(&["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "?".into());
    let dirty =
        git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    if dirty {
        format!("{head}-dirty")
    } else {
        head
    }
}

fn table(rows: &mut [Row]) {
    rows.sort_by_key(|r| (r.path != "store", r.workload != Workload::Spread, r.clients));
    println!("| store | path | workload | clients | transfers/s | p50 ms | p99 ms |");
    println!("|---|---|---|---|---|---|---|");
    for r in rows.iter() {
        println!(
            "| {} | {} | {} | {} | {:.0} | {:.2} | {:.2} |",
            r.store,
            r.path,
            r.workload.name(),
            r.clients,
            r.per_sec,
            r.p50_ms,
            r.p99_ms
        );
    }
}

#[tokio::main]
async fn main() {
    let o = opts();
    let load_start = loadavg();
    let _ = std::fs::remove_dir_all(&o.dir);
    std::fs::create_dir_all(&o.dir).unwrap();
    let mut rows = Vec::new();
    for &b in &o.backends {
        eprintln!("{}", b.label(o.pool));
        if o.store_level {
            store_rows(&o, b, &mut rows).await;
        }
        if o.api
            && matches!(
                b,
                Backend::SqliteGroup | Backend::Postgres | Backend::PostgresBatched
            )
        {
            api_rows(&o, b, &mut rows).await;
        }
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    println!("# ledger bench");
    println!("command: `ledger_bench {}`", args.join(" "));
    println!("commit: {}", commit());
    println!("machine: {}", machine());
    println!(
        "load average (1, 5, 15 min): start {load_start}, end {}",
        loadavg()
    );
    println!(
        "{SHOPPERS} shoppers; {} s per row; SQLite files under {}; PostgreSQL {}/{}",
        o.secs,
        o.dir.display(),
        o.pg,
        o.pg_db
    );
    println!();
    table(&mut rows);
}
