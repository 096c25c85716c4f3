//! The enrolled, funded shoppers a load run starts from, written straight into the store
//! before the server starts, and cached per store, seed and size.
//!
//! Each shopper `p00000` … is registered, funded with a cash deposit at a seeding till and
//! enrolled with three captures of its palm, through the store's own commands
//! (`RegisterShopper`, `Deposit`, `EnrollPalm`: the rows, palm versions and ledger entries
//! are the server's own), the templates sealed with the data dir's template key as the
//! server seals them. What the HTTP enrollment would add and this skips: the 1:N duplicate
//! check (the generated palms are distinct by construction) and an argon2 hash per shopper
//! (one password hash and one PIN hash serve every shopper). Seeding 10,000 palms through
//! `POST /v1/palms` would run 10,000 identifications against a growing gallery first.
//!
//! The cache lives under `DIR/{sqlite|pg}-v{MODEL}-s{seed}-n{palms}/` (`ready` written last;
//! a directory without it is seeded again): for SQLite the database files and the template
//! key, copied into each run's data dir; for PostgreSQL the key and a template database
//! `palmline_palm_load_seed_…` each run's database is created from, then dropped.

use super::palms::{enrollment, username};
use crate::bank::pg;
use anyhow::{bail, Context, Result};
use palmline_server::auth::{hash_secret, HashCost};
use palmline_server::palm::TemplateKey;
use palmline_server::store::postgres::PgStore;
use palmline_server::store::sqlite::open_in;
use palmline_server::store::{Command, KioskRef, Outcome, Store};
use palmline_shared::{Currency, Money};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::task::JoinSet;

/// Every shopper's password and PIN (the PIN answers a step-up).
pub const PASSWORD: &str = "load-password";
pub const PIN: &str = "2468";
/// What each shopper is funded with: 1,000.00 EUR, far above a run's payments.
pub const FUNDS_MINOR: i64 = 100_000;
/// Bump when the palm model or what is seeded changes: older caches are then ignored.
const MODEL: u32 = 1;
/// Shoppers seeded at once (the store's writer batches their commands).
const IN_FLIGHT: usize = 256;

/// A seeded store ready to be copied: its files (SQLite) or template database (PostgreSQL),
/// and the template key its palms are sealed with.
pub struct Seeded {
    pub dir: PathBuf,
    pub pg_template: Option<String>,
}

impl Seeded {
    pub fn key_path(&self) -> PathBuf {
        self.dir.join("template.key")
    }
}

/// The cached seeded store for `(postgres, seed, palms)`, seeding it first if needed.
pub async fn prepare(cache: &Path, postgres: bool, seed: u64, palms: usize) -> Result<Seeded> {
    let kind = if postgres { "pg" } else { "sqlite" };
    let dir = cache.join(format!("{kind}-v{MODEL}-s{seed}-n{palms}"));
    let pg_template =
        postgres.then(|| format!("palmline_palm_load_seed_v{MODEL}_s{seed}_n{palms}"));
    let seeded = Seeded { dir, pg_template };
    if seeded.dir.join("ready").exists() && template_exists(&seeded).await? {
        eprintln!("seeded store: cached at {}", seeded.dir.display());
        return Ok(seeded);
    }
    let started = std::time::Instant::now();
    if seeded.dir.exists() {
        std::fs::remove_dir_all(&seeded.dir)?;
    }
    std::fs::create_dir_all(&seeded.dir)?;
    let (key, _) = TemplateKey::load_or_create(&seeded.key_path())?;
    let store: Arc<dyn Store> = match &seeded.pg_template {
        Some(name) => {
            let _ = pg::drop_db(name).await;
            pg::create(name).await?;
            Arc::new(PgStore::open(&url(name), Currency::EUR, 16).await?)
        }
        None => Arc::new(open_in(&seeded.dir, Currency::EUR)?),
    };
    fill(store, &key, seed, palms).await?;
    if seeded.pg_template.is_none() {
        checkpoint(&seeded.dir.join("palmline.db"))?;
    }
    std::fs::write(
        seeded.dir.join("ready"),
        format!("{palms} palms, seed {seed}\n"),
    )?;
    eprintln!(
        "seeded store: {palms} shoppers written in {:.1} s to {}",
        started.elapsed().as_secs_f64(),
        seeded.dir.display()
    );
    Ok(seeded)
}

pub fn url(db: &str) -> String {
    format!("postgres://postgres@127.0.0.1:5432/{db}")
}

async fn template_exists(s: &Seeded) -> Result<bool> {
    let Some(name) = &s.pg_template else {
        return Ok(true);
    };
    let (c, conn) = tokio_postgres::connect(pg::ADMIN_URL, tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    let n = c
        .query_one(
            "SELECT count(*) FROM pg_database WHERE datname = $1",
            &[name],
        )
        .await?;
    Ok(n.get::<_, i64>(0) == 1)
}

/// The WAL folded into the database file, so that the file alone is the store.
fn checkpoint(db: &Path) -> Result<()> {
    let c = rusqlite::Connection::open(db)?;
    c.busy_timeout(std::time::Duration::from_secs(30))?;
    let busy: i64 = c
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))
        .context("checkpointing the seeded database")?;
    if busy != 0 {
        bail!("the seeded database {} is still in use", db.display());
    }
    Ok(())
}

fn seeding_kiosk() -> KioskRef {
    KioskRef {
        kiosk_id: "seeding-kiosk".into(),
        merchant: "Seeding Bank".into(),
    }
}

/// Registers, funds and enrolls `palms` shoppers, [`IN_FLIGHT`] at a time.
async fn fill(store: Arc<dyn Store>, key: &TemplateKey, seed: u64, palms: usize) -> Result<()> {
    let password = Arc::new(hash_secret(PASSWORD, HashCost::default()));
    let pin = Arc::new(hash_secret(PIN, HashCost::default()));
    let till = Command::CreateCashier {
        merchant: seeding_kiosk().merchant,
        name: "Till".into(),
        pin_hash: (*pin).clone(),
    };
    let Outcome::Cashier(cashier) = store.execute(None, till).await? else {
        bail!("creating the seeding till answered something else");
    };
    let mut tasks = JoinSet::new();
    for i in 0..palms {
        if tasks.len() >= IN_FLIGHT {
            tasks.join_next().await.expect("a task")??;
        }
        let shopper = Shopper {
            i,
            seed,
            cashier: cashier.id,
            password: password.clone(),
            pin: pin.clone(),
        };
        tasks.spawn(shopper.write(store.clone(), key.clone()));
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok(())
}

/// One shopper to seed.
struct Shopper {
    i: usize,
    seed: u64,
    cashier: i64,
    password: Arc<String>,
    pin: Arc<String>,
}

impl Shopper {
    async fn write(self, store: Arc<dyn Store>, key: TemplateKey) -> Result<()> {
        let name = username(self.i);
        let register = Command::RegisterShopper {
            username: name.clone(),
            email: format!("{name}@load.example"),
            password_hash: (*self.password).clone(),
            pin_hash: Some((*self.pin).clone()),
        };
        let Outcome::Shopper(s) = store.execute(None, register).await? else {
            bail!("registering {name} answered something else");
        };
        let deposit = Command::Deposit {
            at: seeding_kiosk(),
            username: name,
            amount: Money::from_minor(FUNDS_MINOR, Currency::EUR),
            cashier_id: self.cashier,
        };
        store.execute(None, deposit).await?;
        let ciphertexts = enrollment(self.seed, self.i)
            .iter()
            .enumerate()
            .map(|(c, t)| key.seal(s.id, c, &t.encode()))
            .collect();
        let enroll = Command::EnrollPalm {
            shopper_id: s.id,
            ciphertexts,
        };
        store.execute(None, enroll).await?;
        Ok(())
    }
}
