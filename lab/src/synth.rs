//! `palmline-lab synth`: writes a synthetic data set, identities in parallel.

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use palmline_shared::palm::synth::{save_png, Conditions, Identity};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(clap::Args)]
pub struct SynthArgs {
    /// Output directory (created if missing).
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value_t = 100)]
    pub identities: u64,
    #[arg(long, default_value_t = 6)]
    pub samples: u64,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Capture conditions: `realistic` (faint creases, soft focus, hands cut by the frame,
    /// uneven skin, bending) or `easy` (none of them, for tests of other things).
    #[arg(long, value_enum, default_value_t = ConditionsArg::Realistic)]
    pub conditions: ConditionsArg,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
pub enum ConditionsArg {
    Realistic,
    Easy,
}

pub fn run(a: SynthArgs) -> Result<()> {
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let threads = a
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let bar = ProgressBar::new(a.identities * a.samples);
    bar.set_style(ProgressStyle::with_template(
        "{msg} {wide_bar} {pos}/{len} [{elapsed} < {eta}]",
    )?);
    bar.set_message("synth");
    let conditions = match a.conditions {
        ConditionsArg::Realistic => Conditions::REALISTIC,
        ConditionsArg::Easy => Conditions::EASY,
    };
    let next = AtomicU64::new(0);
    std::thread::scope(|s| -> Result<()> {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| -> Result<()> {
                    loop {
                        let id = next.fetch_add(1, Ordering::Relaxed);
                        if id >= a.identities {
                            return Ok(());
                        }
                        let identity = Identity::new(a.seed, id);
                        for sample in 0..a.samples {
                            let frame = identity.capture_with(sample, conditions);
                            let path = a.out.join(format!("{id:05}_{sample:02}.png"));
                            save_png(&frame, &path)
                                .with_context(|| format!("writing {}", path.display()))?;
                            bar.inc(1);
                        }
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().expect("synth worker panicked")?;
        }
        Ok(())
    })?;
    bar.finish();
    eprintln!(
        "wrote {} images to {}",
        a.identities * a.samples,
        a.out.display()
    );
    Ok(())
}
