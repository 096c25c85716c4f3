//! `bank`: the bank test (issue 14) from the command line. Simulated kiosks move money
//! through real `palmline-server` processes that are killed and restarted meanwhile; then
//! the ledger must hold exactly what was acknowledged. Exit 1 on any violation.
//!
//! `bank --kiosks 16 --seconds 120 --store sqlite --kill-every-ms 2000 --seed 1`

use clap::{Parser, ValueEnum};
use palmline_e2e::bank::{run, Config, StoreKind};
use std::path::PathBuf;

#[derive(Clone, Copy, ValueEnum)]
enum StoreArg {
    Sqlite,
    Postgres,
}

#[derive(Parser)]
#[command(
    name = "bank",
    about = "The bank test: money moved under SIGKILLs, then checked"
)]
struct Args {
    #[arg(long, default_value_t = 8)]
    kiosks: usize,
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    #[arg(long, value_enum, default_value = "sqlite")]
    store: StoreArg,
    /// Mean gap between faults (0: none).
    #[arg(long, default_value_t = 2000)]
    kill_every_ms: u64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// No palm enrollments or palm payments.
    #[arg(long)]
    no_palms: bool,
    /// On PostgreSQL, never cut the database connection (only kill replicas).
    #[arg(long)]
    no_db_cuts: bool,
    /// The `palmline-server` binary (default: next to this one).
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// Keep the data dirs and database afterwards.
    #[arg(long)]
    keep: bool,
}

fn main() {
    let a = Args::parse();
    let server_bin = a.server_bin.unwrap_or_else(|| {
        let exe = std::env::current_exe().expect("current exe");
        exe.with_file_name("palmline-server")
    });
    let cfg = Config {
        kiosks: a.kiosks.max(1),
        seconds: a.seconds,
        store: match a.store {
            StoreArg::Sqlite => StoreKind::Sqlite,
            StoreArg::Postgres => StoreKind::Postgres,
        },
        kill_every_ms: a.kill_every_ms,
        seed: a.seed,
        palms: !a.no_palms,
        db_cuts: !a.no_db_cuts,
        server_bin,
        keep: a.keep,
    };
    let rt = tokio::runtime::Runtime::new().expect("a tokio runtime");
    match rt.block_on(run(&cfg)) {
        Ok(report) => {
            print!("{report}");
            if !report.violations.is_empty() {
                std::process::exit(1);
            }
        }
        Err(e) => {
            eprintln!("bank: {e:#}");
            std::process::exit(2);
        }
    }
}
