//! `palm_load`: the palm load benchmark (issue 14) from the command line. Simulated kiosks
//! pay by palm through a real `palmline-server serve` holding thousands of enrolled palms;
//! prints payments/s, latency, refusals and CPU; exit 1 if any accepted payment debited
//! another shopper than the palm's, the ledger disagrees, or `ledger-check` fails.
//!
//! `palm_load --kiosks 64 --palms 10000 --seconds 30 --store sqlite --server-cpus 0,1`

use clap::{Parser, ValueEnum};
use palmline_e2e::load::{run, Config, StoreKind};
use std::path::PathBuf;

#[derive(Clone, Copy, ValueEnum)]
enum StoreArg {
    Sqlite,
    Postgres,
}

#[derive(Parser)]
#[command(name = "palm_load", about = "Palm payments under load, then checked")]
struct Args {
    #[arg(long, default_value_t = 64)]
    kiosks: usize,
    /// Enrolled palms (each a funded shopper).
    #[arg(long, default_value_t = 10_000)]
    palms: usize,
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    #[arg(long, value_enum, default_value = "sqlite")]
    store: StoreArg,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Pin the server to these CPUs (`taskset -c LIST`, e.g. `0` or `0,1`).
    #[arg(long)]
    server_cpus: Option<String>,
    /// Keep the product's identification rate limits (30 a minute a kiosk, 300 a shop).
    #[arg(long)]
    product_rates: bool,
    /// Cache of seeded stores (default: `target/palm-load`).
    #[arg(long)]
    cache: Option<PathBuf>,
    /// The `palmline-server` binary (default: next to this one).
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// Keep the data dir and database afterwards.
    #[arg(long)]
    keep: bool,
    /// Offered payments a second over all kiosks, each kiosk on a fixed schedule (open
    /// loop); without it each kiosk pays again as soon as it is answered.
    #[arg(long)]
    rate: Option<f64>,
}

fn main() {
    let a = Args::parse();
    let exe = std::env::current_exe().expect("current exe");
    let target = exe
        .parent()
        .and_then(|p| p.parent())
        .expect("target/<profile>/palm_load")
        .to_path_buf();
    let cfg = Config {
        kiosks: a.kiosks.max(1),
        palms: a.palms.max(1),
        seconds: a.seconds,
        store: match a.store {
            StoreArg::Sqlite => StoreKind::Sqlite,
            StoreArg::Postgres => StoreKind::Postgres,
        },
        seed: a.seed,
        server_cpus: a.server_cpus,
        product_rates: a.product_rates,
        cache: a.cache.unwrap_or_else(|| target.join("palm-load")),
        server_bin: a
            .server_bin
            .unwrap_or_else(|| exe.with_file_name("palmline-server")),
        keep: a.keep,
        rate: a.rate,
    };
    let rt = tokio::runtime::Runtime::new().expect("a tokio runtime");
    match rt.block_on(run(&cfg)) {
        Ok(report) => {
            print!("{report}");
            if !report.violations().is_empty() {
                std::process::exit(1);
            }
        }
        Err(e) => {
            eprintln!("palm_load: {e:#}");
            std::process::exit(2);
        }
    }
}
