//! The bank test (issue 14): simulated kiosks move money over mutual TLS through real
//! `palmline-server serve` processes while those are SIGKILLed and restarted (and, on
//! PostgreSQL, with two replicas, while the database connection is cut); afterwards the
//! ledger must hold exactly what was acknowledged (docs/FAULTS.md, "The bank test").
//!
//! Never a sleep as synchronisation: servers are ready when their health check answers;
//! the only sleeps are the kiosks' back-off, the gaps between faults and a fault's length.

pub mod check;
pub mod cluster;
pub mod http;
pub mod kiosk;
pub mod palm;
pub mod pg;
pub mod proxy;
pub mod rng;
pub mod snapshot;
pub mod world;

use anyhow::{bail, Context, Result};
use cluster::{client, kiosk_names, Cluster};
use http::{Call, Target};
use kiosk::{Kiosk, TILL_PIN};
use proxy::Proxy;
use rng::Rng;
use serde_json::json;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use world::{Sender, World};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    Sqlite,
    Postgres,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub kiosks: usize,
    pub seconds: u64,
    pub store: StoreKind,
    /// Mean gap between faults (kills or, on PostgreSQL, database cuts); 0: no faults.
    pub kill_every_ms: u64,
    pub seed: u64,
    /// Enroll palms and pay by palm (synthetic templates, no OpenCV).
    pub palms: bool,
    /// On PostgreSQL, cut the servers' database connections now and then.
    pub db_cuts: bool,
    pub server_bin: PathBuf,
    /// Keep the data dirs (and the PostgreSQL database) for a post-mortem.
    pub keep: bool,
}

/// What a run did and what it found.
#[derive(Debug, Default)]
pub struct Report {
    pub attempted: u64,
    pub answered: u64,
    pub succeeded: u64,
    pub retries: u64,
    pub replays: u64,
    pub kills: u64,
    /// From each SIGKILL to the restarted server's first healthy answer, sorted.
    pub recovery: Vec<Duration>,
    pub db_cuts: u64,
    pub transactions: usize,
    pub shoppers: usize,
    pub palms: usize,
    pub seconds: f64,
    pub violations: Vec<String>,
    /// Definite answers by status and error code.
    pub answers: Vec<(String, u64)>,
    /// Per request: count, median, p99 and slowest time to a definite answer.
    pub latency: Vec<(String, usize, Duration, Duration, Duration)>,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "operations attempted: {}", self.attempted)?;
        writeln!(
            f,
            "acknowledged:         {} ({} succeeded, the rest refused with a definite answer)",
            self.answered, self.succeeded
        )?;
        writeln!(f, "retries:              {}", self.retries)?;
        writeln!(f, "replays compared:     {}", self.replays)?;
        writeln!(f, "kills survived:       {}", self.kills)?;
        if let (Some(mid), Some(max)) = (
            self.recovery.get(self.recovery.len() / 2),
            self.recovery.last(),
        ) {
            writeln!(
                f,
                "kill to healthy:      median {mid:.2?}, max {max:.2?} (restart included)"
            )?;
        }
        writeln!(f, "database cuts:        {}", self.db_cuts)?;
        writeln!(
            f,
            "ledger:               {} transactions, {} shoppers, {} palms",
            self.transactions, self.shoppers, self.palms
        )?;
        writeln!(f, "run time:             {:.1} s", self.seconds)?;
        writeln!(f, "answers (request, status, code: count):")?;
        for (a, n) in &self.answers {
            writeln!(f, "  {a}: {n}")?;
        }
        writeln!(
            f,
            "time to a definite answer, retries included (request: n, p50, p99, max):"
        )?;
        for (what, n, p50, p99, max) in &self.latency {
            writeln!(f, "  {what}: {n}, {p50:.1?}, {p99:.1?}, {max:.1?}")?;
        }
        writeln!(f, "violations:           {}", self.violations.len())?;
        for v in self.violations.iter().take(20) {
            writeln!(f, "  - {v}")?;
        }
        Ok(())
    }
}

/// Where the run's servers keep their ledger.
struct Store {
    /// The database's name and whether its connection goes through a proxy.
    pg: Option<(String, Option<Proxy>)>,
}

impl Store {
    async fn open(cfg: &Config) -> Result<Store> {
        if cfg.store == StoreKind::Sqlite {
            return Ok(Store { pg: None });
        }
        if !pg::listening().await? {
            bail!("no PostgreSQL listens at {}", pg::ADMIN_URL);
        }
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .subsec_nanos();
        let name = format!("palmline_bank_{}_{nanos}", std::process::id());
        pg::create(&name).await?;
        let proxy = match cfg.db_cuts {
            true => Some(Proxy::start().await?),
            false => None,
        };
        Ok(Store {
            pg: Some((name, proxy)),
        })
    }

    /// The servers' database URL (through the proxy, if any).
    fn server_url(&self) -> Option<String> {
        let (name, proxy) = self.pg.as_ref()?;
        let port = proxy.as_ref().map_or(5432, |p| p.port);
        Some(format!("postgres://postgres@127.0.0.1:{port}/{name}"))
    }

    fn direct_url(&self) -> Option<String> {
        let (name, _) = self.pg.as_ref()?;
        Some(format!("postgres://postgres@127.0.0.1:5432/{name}"))
    }

    fn proxy(&self) -> Option<&Proxy> {
        self.pg.as_ref()?.1.as_ref()
    }
}

pub async fn run(cfg: &Config) -> Result<Report> {
    let root = tempfile::Builder::new().prefix("palmline-bank").tempdir()?;
    let store = Store::open(cfg).await?;
    let replicas = if store.pg.is_some() { 2 } else { 1 };
    let names = kiosk_names(cfg.kiosks);
    let mut cluster = Cluster::start(
        &cfg.server_bin,
        root.path(),
        &names,
        store.server_url(),
        replicas,
    )
    .await?;
    let outcome = drive(cfg, &mut cluster, &store, &names).await;
    if cfg.keep {
        eprintln!("kept: {} {:?}", root.keep().display(), store.direct_url());
    } else if let Some((name, _)) = &store.pg {
        drop(cluster);
        pg::drop_db(name).await?;
    }
    outcome
}

async fn drive(
    cfg: &Config,
    cluster: &mut Cluster,
    store: &Store,
    names: &[(String, String)],
) -> Result<Report> {
    let started = Instant::now();
    let world = Arc::new(World::default());
    let mut rng = Rng::new(cfg.seed);
    add_tills(cluster, names).await?;
    let until = Instant::now() + Duration::from_secs(cfg.seconds);
    let kiosks = make_kiosks(cfg, cluster, names, &world, &mut rng)?;
    let tasks: Vec<_> = kiosks
        .into_iter()
        .map(|k| tokio::spawn(k.run(until)))
        .collect();
    let (recovery, cuts) = inject(cfg, cluster, store.proxy(), until, &mut rng).await?;
    let mut done = Vec::new();
    for t in tasks {
        done.push(t.await.context("a kiosk task panicked")?);
    }
    replay_all(&world, cluster, &done).await;
    cluster.stop().await?;
    let (ok, text) = cluster.ledger_check()?;
    if !ok {
        world.violation(format!("palmline-server ledger-check failed: {text}"));
    }
    let snap = match store.direct_url() {
        Some(url) => snapshot::postgres(&url).await?,
        None => snapshot::sqlite(&cluster.replicas[0].dir.join("palmline.db"))?,
    };
    let records = world.records.lock().expect("poisoned").clone();
    for v in check::check(&records, &snap) {
        world.violation(v);
    }
    Ok(report(&world, &snap, recovery, cuts, started))
}

fn report(
    world: &World,
    snap: &check::Snapshot,
    mut recovery: Vec<Duration>,
    db_cuts: u64,
    started: Instant,
) -> Report {
    let c = &world.counters;
    Report {
        attempted: c.attempted.load(Ordering::Relaxed),
        answered: c.answered.load(Ordering::Relaxed),
        succeeded: c.succeeded.load(Ordering::Relaxed),
        retries: c.retries.load(Ordering::Relaxed),
        replays: c.replays.load(Ordering::Relaxed),
        kills: recovery.len() as u64,
        recovery: {
            recovery.sort();
            recovery
        },
        db_cuts,
        transactions: snap.txs.len(),
        shoppers: snap.accounts.iter().filter(|a| a.kind == "shopper").count(),
        palms: world.palms.lock().expect("poisoned").len(),
        seconds: started.elapsed().as_secs_f64(),
        violations: world.violations.lock().expect("poisoned").clone(),
        latency: latencies(world),
        answers: world
            .answers
            .lock()
            .expect("poisoned")
            .clone()
            .into_iter()
            .collect(),
    }
}

fn latencies(world: &World) -> Vec<(String, usize, Duration, Duration, Duration)> {
    let mut all = world.latency.lock().expect("poisoned").clone();
    all.iter_mut()
        .map(|(what, l)| {
            l.sort();
            let at = |q: usize| l[(l.len() * q / 100).min(l.len() - 1)];
            (what.clone(), l.len(), at(50), at(99), l[l.len() - 1])
        })
        .collect()
}

/// Each merchant's till cashier `Till`, created by the operator.
async fn add_tills(cluster: &Cluster, names: &[(String, String)]) -> Result<()> {
    let mut merchants: Vec<&String> = names.iter().map(|(_, m)| m).collect();
    merchants.dedup();
    let to = Target {
        bases: cluster.bases(),
        home: 0,
    };
    for m in merchants {
        let body = json!({"merchant": m, "name": "Till", "pin": TILL_PIN});
        let call = Call::new(
            "/v1/admin/cashiers",
            Some(format!("till-{}", m.replace(' ', "_"))),
            body,
        );
        match call.send(&cluster.admin, &to).await.0 {
            Ok(a) if a.ok() => {}
            other => bail!("creating the till cashier of {m}: {other:?}"),
        }
    }
    Ok(())
}

fn make_kiosks(
    cfg: &Config,
    cluster: &Cluster,
    names: &[(String, String)],
    world: &Arc<World>,
    rng: &mut Rng,
) -> Result<Vec<Kiosk>> {
    let pki = cluster.pki();
    let bases = cluster.bases();
    let mut out = Vec::new();
    for (idx, (id, merchant)) in names.iter().enumerate() {
        out.push(Kiosk {
            idx,
            merchant: merchant.clone(),
            client: client(&pki, &format!("kiosks/{id}"))?,
            to: Target {
                bases: bases.clone(),
                home: idx,
            },
            admin: cluster.admin.clone(),
            admin_to: Target {
                bases: bases.clone(),
                home: idx + 1,
            },
            world: world.clone(),
            rng: rng.fork(),
            palms: cfg.palms,
            cashier: None,
            sessions: Vec::new(),
            seq: 0,
        });
    }
    Ok(out)
}

/// Kills a random replica (SIGKILL, down for up to 0.3 s, restarted on the same dir and
/// port, healthy again) or, one time in three on PostgreSQL, cuts the database for 0.2-1.5 s,
/// at random gaps around `kill_every_ms`, until `until`. Returns each kill's time to a
/// healthy server again, and the number of cuts.
async fn inject(
    cfg: &Config,
    cluster: &mut Cluster,
    proxy: Option<&Proxy>,
    until: Instant,
    rng: &mut Rng,
) -> Result<(Vec<Duration>, u64)> {
    let (mut kills, mut cuts) = (Vec::new(), 0);
    if cfg.kill_every_ms == 0 {
        tokio::time::sleep_until(until.into()).await;
        return Ok((kills, 0));
    }
    loop {
        let gap = Duration::from_millis(cfg.kill_every_ms * rng.between(50, 150) / 100);
        if Instant::now() + gap >= until {
            return Ok((kills, cuts));
        }
        tokio::time::sleep(gap).await;
        let outage = Duration::from_millis(rng.between(0, 300));
        match proxy {
            Some(p) if rng.one_in(3) => {
                p.cut().await;
                tokio::time::sleep(outage * 5 + Duration::from_millis(200)).await;
                p.restore()?;
                cuts += 1;
            }
            _ => {
                let i = rng.below(cluster.replicas.len() as u64) as usize;
                let killed = Instant::now();
                cluster.kill(i)?;
                tokio::time::sleep(outage).await;
                cluster.restart(i).await?;
                kills.push(killed.elapsed());
            }
        }
    }
}

/// Every recorded request sent once more with its key, by its own kiosk (or the operator),
/// 8 at a time: each must get its first answer back.
async fn replay_all(world: &Arc<World>, cluster: &Cluster, kiosks: &[Kiosk]) {
    let records = world.records.lock().expect("poisoned").clone();
    let bases = cluster.bases();
    let mut lanes: Vec<Vec<_>> = vec![Vec::new(); 8];
    for (i, r) in records.into_iter().enumerate() {
        lanes[i % 8].push(r);
    }
    let mut tasks = Vec::new();
    for (lane, recs) in lanes.into_iter().enumerate() {
        let (world, bases) = (world.clone(), bases.clone());
        let clients: Vec<_> = kiosks.iter().map(|k| k.client.clone()).collect();
        let admin = cluster.admin.clone();
        tasks.push(tokio::spawn(async move {
            for r in recs {
                let c = match r.sender {
                    Sender::Kiosk(i) => &clients[i],
                    Sender::Admin => &admin,
                };
                let to = Target {
                    bases: bases.clone(),
                    home: lane,
                };
                kiosk::replay(&world, c, &to, &r).await;
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}
