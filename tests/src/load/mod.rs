//! The palm load benchmark (issue 14): simulated kiosks pay by palm, over mutual TLS with
//! their own certificates, through a real `palmline-server serve` holding thousands of
//! enrolled palms, on SQLite or PostgreSQL; it reports palm payments/s, end-to-end latency,
//! refusals by code, where the CPU went, and checks that every accepted payment debited the
//! shopper whose palm was shown and that `ledger-check` passes (docs/LOAD.md).
//!
//! Never a sleep as synchronisation, never a timing assertion: the figures are reported,
//! only correctness is checked.

pub mod check;
pub mod gauge;
pub mod kiosk;
pub mod palms;
pub mod seed;

mod report;

pub use report::{Cpu, Measured, Quantiles, Report};

use crate::bank::cluster::{client, kiosk_names, Cluster};
use crate::bank::http::Target;
use crate::bank::rng::Rng;
use crate::bank::{pg, snapshot};
use anyhow::{bail, Context, Result};
use base64::Engine;
use kiosk::{Kiosk, Tally};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    Sqlite,
    Postgres,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub kiosks: usize,
    pub palms: usize,
    pub seconds: u64,
    pub store: StoreKind,
    pub seed: u64,
    /// CPUs the server is pinned to (`taskset -c LIST`); `None`: not pinned.
    pub server_cpus: Option<String>,
    /// Keep the identification rate limits the product ships with (30 a minute a kiosk,
    /// 300 a shop); by default the run raises them, since 64 kiosks stand for far more.
    pub product_rates: bool,
    /// Where seeded stores are cached (`target/palm-load`).
    pub cache: PathBuf,
    pub server_bin: PathBuf,
    /// Keep the run's data dir (and PostgreSQL database) for a post-mortem.
    pub keep: bool,
    /// Offered payments a second over all kiosks (open loop: each kiosk starts a payment
    /// every `kiosks / rate` seconds on a fixed schedule, and its latency counts from the
    /// scheduled start, so a server that falls behind is not flattered); `None`: every
    /// kiosk pays again as soon as answered (closed loop).
    pub rate: Option<f64>,
}

/// Identification rates of the run's server, unless `--product-rates`: high enough never to
/// refuse a simulated kiosk, which pays far faster than a shopper at a real one.
const RUN_CONFIG: &str = "identify_per_kiosk_per_minute = 1000000\n\
                          identify_per_merchant_per_minute = 10000000\n";

pub async fn run(cfg: &Config) -> Result<Report> {
    let seeded = seed::prepare(
        &cfg.cache,
        cfg.store == StoreKind::Postgres,
        cfg.seed,
        cfg.palms,
    )
    .await?;
    let root = tempfile::Builder::new().prefix("palmline-load").tempdir()?;
    let db = match &seeded.pg_template {
        Some(template) => Some(copy_database(template).await?),
        None => None,
    };
    let outcome = run_on(cfg, &seeded, root.path(), db.as_deref()).await;
    if cfg.keep {
        eprintln!("kept: {} {:?}", root.keep().display(), db);
    } else if let Some(db) = &db {
        pg::drop_db(db).await?;
    }
    outcome
}

/// A database of this run's own, copied from the seeded template database.
async fn copy_database(template: &str) -> Result<String> {
    let name = format!("palmline_palm_load_{}", std::process::id());
    let (c, conn) = tokio_postgres::connect(pg::ADMIN_URL, tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    c.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await?;
    // CREATE DATABASE … TEMPLATE needs the template unused.
    c.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
        &[&template],
    )
    .await?;
    c.batch_execute(&format!("CREATE DATABASE {name} TEMPLATE {template}"))
        .await
        .with_context(|| format!("copying {template}"))?;
    Ok(name)
}

async fn run_on(
    cfg: &Config,
    seeded: &seed::Seeded,
    root: &Path,
    db: Option<&str>,
) -> Result<Report> {
    let names = kiosk_names(cfg.kiosks);
    let mut cluster = Cluster::prepare(&cfg.server_bin, root, &names, db.map(seed::url))?;
    let dir = cluster.first_dir();
    std::fs::copy(seeded.key_path(), dir.join("template.key"))?;
    if db.is_none() {
        std::fs::copy(seeded.dir.join("palmline.db"), dir.join("palmline.db"))?;
    }
    if !cfg.product_rates {
        std::fs::write(root.join("load.toml"), RUN_CONFIG)?;
        let path = root.join("load.toml").display().to_string();
        cluster.env.push(("PALMLINE_CONFIG".into(), path));
    }
    if let Some(cpus) = &cfg.server_cpus {
        cluster.wrapper = vec!["taskset".into(), "-c".into(), cpus.clone()];
    }
    let started = Instant::now();
    cluster.launch(1).await?;
    let startup = started.elapsed();
    let probes = Arc::new(probes(cfg.seed, cfg.palms));
    let kiosks = kiosks(cfg, &cluster, &names, &probes).await?;
    let measured = measure(cfg, &cluster, kiosks).await?;
    cluster.stop().await?;
    let (ledger_ok, ledger_text) = cluster.ledger_check()?;
    let snap = match db {
        Some(db) => snapshot::postgres(&seed::url(db)).await?,
        None => snapshot::sqlite(&dir.join("palmline.db"))?,
    };
    let findings = check::check(&measured.tally.paid, &snap, seed::FUNDS_MINOR);
    let ledger = (ledger_ok, ledger_text);
    Ok(Report::new(cfg, measured, startup, findings, ledger))
}

/// One fresh capture of every shopper's palm, encoded and in base64 before the clock starts
/// (a real kiosk extracts on its own CPU).
fn probes(seed: u64, palms: usize) -> Vec<String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    (0..palms)
        .map(|i| b64.encode(palms::probe(seed, i, 0).encode()))
        .collect()
}

/// The kiosks, each with its own certificate, each connection's TLS handshake done
/// (a health check) before the clock starts.
async fn kiosks(
    cfg: &Config,
    cluster: &Cluster,
    names: &[(String, String)],
    probes: &Arc<Vec<String>>,
) -> Result<Vec<Kiosk>> {
    let mut rng = Rng::new(cfg.seed ^ 0x10AD);
    let mut out = Vec::new();
    for (id, _) in names {
        let c = client(&cluster.pki(), &format!("kiosks/{id}"))?;
        let health = c
            .get(format!("{}/v1/health", cluster.base(0)))
            .send()
            .await?;
        if !health.status().is_success() {
            bail!("kiosk {id}: health check answered {}", health.status());
        }
        out.push(Kiosk {
            id: id.clone(),
            client: c,
            to: Target {
                bases: cluster.bases(),
                home: 0,
            },
            probes: probes.clone(),
            rng: rng.fork(),
            period: cfg
                .rate
                .filter(|r| *r > 0.0)
                .map(|r| Duration::from_secs_f64(cfg.kiosks as f64 / r)),
        });
    }
    Ok(out)
}

/// Runs the kiosks for `cfg.seconds`; returns what they saw, the window (from the start to
/// the last answer), CPU seconds used meanwhile and the server's metrics before and after.
async fn measure(cfg: &Config, cluster: &Cluster, kiosks: Vec<Kiosk>) -> Result<Measured> {
    let pid = cluster.pid(0).context("the server is not running")?;
    let before = gauge::scrape(&cluster.admin, &cluster.base(0)).await?;
    let cpu0 = Cpu::now(pid)?;
    let started = Instant::now();
    let until = started + Duration::from_secs(cfg.seconds);
    let tasks: Vec<_> = kiosks
        .into_iter()
        .map(|k| tokio::spawn(k.run(until)))
        .collect();
    let mut tally = Tally::default();
    for t in tasks {
        tally.merge(t.await.context("a kiosk task panicked")?);
    }
    let window = started.elapsed();
    let cpu = Cpu::now(pid)?.since(&cpu0);
    let after = gauge::scrape(&cluster.admin, &cluster.base(0)).await?;
    Ok(Measured {
        tally,
        window,
        cpu,
        metrics: [before, after],
    })
}
