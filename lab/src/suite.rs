//! `palmline-lab eval-suite`: every data set under `.data/` (one sub-folder of
//! `ID_SAMPLE.ext` images each, as `scripts/palm-data` lays them out) plus a generated set,
//! ours and the seed's matcher side by side, in one run and one table.
//!
//! Headline figures count failures to enroll and to acquire as non-matches; the table also
//! shows the matcher alone (acquired attempts). Each set's JSON and score CSV, the suite's
//! JSON and one DET plot with every set go to `--out`.

use crate::eval::{self, EvalArgs, Input, Report, Which};
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct SuiteArgs {
    /// Folder whose sub-folders are data sets of ID_SAMPLE.ext images.
    #[arg(long, default_value = ".data")]
    pub data: PathBuf,
    /// Where each set's JSON and CSV, `suite.json` and `det.png` are written.
    #[arg(long, default_value = "target/eval-suite")]
    pub out: PathBuf,
    /// Enrollment captures per palm (the first ones by sample number).
    #[arg(long, default_value_t = 1)]
    pub enroll_samples: usize,
    /// Identities of the generated set (0: no generated set).
    #[arg(long, default_value_t = 100)]
    pub synth_identities: u64,
    #[arg(long, default_value_t = 6)]
    pub synth_samples: u64,
    #[arg(long, default_value_t = 2026)]
    pub synth_seed: u64,
    #[arg(long, value_enum, default_value_t = Which::Both)]
    pub matcher: Which,
    /// Only these sets (sub-folder names, or `synth`); all by default.
    #[arg(long)]
    pub only: Vec<String>,
    /// Use only the first N identities of each set.
    #[arg(long)]
    pub limit_identities: Option<usize>,
    #[arg(long)]
    pub threads: Option<usize>,
}

#[derive(Serialize)]
struct SetResult {
    set: String,
    summary: eval::Summary,
}

pub fn run(a: SuiteArgs) -> Result<()> {
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let sets = data_sets(&a)?;
    if sets.is_empty() {
        bail!(
            "no data sets: no sub-folders with images in {} and no generated set (run scripts/palm-data)",
            a.data.display()
        );
    }
    let mut results = Vec::new();
    let mut curves: Vec<(String, Vec<f64>, Vec<f64>)> = Vec::new();
    for (name, dir) in &sets {
        eprintln!("== {name}: {}", dir.display());
        let args = EvalArgs {
            images: dir.clone(),
            enroll_samples: a.enroll_samples,
            matcher: a.matcher,
            json: a.out.join(format!("{name}.json")),
            scores_out: a.out.join(format!("{name}.csv")),
            plot: None,
            limit_identities: a.limit_identities,
            threads: a.threads,
            tuning: Default::default(),
            input: Input::Auto,
            input_is_roi: false,
        };
        let e = eval::evaluate(&args)?;
        std::fs::write(&args.json, serde_json::to_string_pretty(&e.summary)?)?;
        for (m, g, i) in e.curves {
            curves.push((format!("{name} {m}"), g, i));
        }
        results.push(SetResult {
            set: name.clone(),
            summary: e.summary,
        });
    }
    print_table(&results);
    let json = a.out.join("suite.json");
    std::fs::write(&json, serde_json::to_string_pretty(&results)?)?;
    let plot = a.out.join("det.png");
    let series: Vec<_> = curves
        .iter()
        .map(|(n, g, i)| (n.as_str(), &g[..], &i[..]))
        .collect();
    crate::plot::det_plot(&plot, &series)?;
    eprintln!("written: {} and {}", json.display(), plot.display());
    Ok(())
}

/// The sub-folders of `--data` holding images (sorted), then the generated set.
fn data_sets(a: &SuiteArgs) -> Result<Vec<(String, PathBuf)>> {
    let wanted = |n: &str| a.only.is_empty() || a.only.iter().any(|o| o == n);
    let mut sets = Vec::new();
    if a.data.is_dir() {
        for e in std::fs::read_dir(&a.data)? {
            let path = e?.path();
            let name = path.file_name().and_then(|s| s.to_str()).unwrap_or("");
            if path.is_dir() && has_images(&path)? && wanted(name) {
                sets.push((name.to_string(), path.clone()));
            }
        }
    } else {
        eprintln!(
            "no {} folder: only the generated set (scripts/palm-data lays out the real ones)",
            a.data.display()
        );
    }
    sets.sort();
    if a.synth_identities > 0 && wanted("synth") {
        // "r": realistic conditions (a folder from the easier generator is never reused).
        let dir = a.out.join(format!(
            "synth-r-{}x{}-s{}",
            a.synth_identities, a.synth_samples, a.synth_seed
        ));
        if !has_images(&dir)? {
            crate::synth::run(crate::synth::SynthArgs {
                out: dir.clone(),
                identities: a.synth_identities,
                samples: a.synth_samples,
                seed: a.synth_seed,
                threads: a.threads,
                conditions: crate::synth::ConditionsArg::Realistic,
            })?;
        }
        sets.push(("synth".to_string(), dir));
    }
    Ok(sets)
}

fn has_images(dir: &Path) -> Result<bool> {
    if !dir.is_dir() {
        return Ok(false);
    }
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        let ext = p.extension().and_then(|s| s.to_str()).unwrap_or("");
        if ["png", "jpg", "jpeg", "bmp", "tif", "tiff"].contains(&ext.to_ascii_lowercase().as_str())
        {
            return Ok(true);
        }
    }
    Ok(false)
}

fn print_table(results: &[SetResult]) {
    println!(
        "\n{:<10} {:<5} {:>5} {:>6} {:<5} | {:>6} {:>6} | {:>6} {:>7} {:>7} {:>7} | {:>6} {:>7} | {:>6}",
        "set", "input", "ids", "images", "match", "FTE", "FTA", "EER", "FNMR@2", "FNMR@3", "FNMR@4",
        "EERacq", "FNMR@3a", "rank1"
    );
    for r in results {
        let s = &r.summary;
        for rep in &s.reports {
            println!("{}", row(&r.set, s, rep));
        }
    }
    println!(
        "EER and FNMR@k (FNMR at FMR 1e-k) count failures to enroll or acquire as non-matches; \
         EERacq and FNMR@3a are on acquired attempts only; rank1 is over every attempt; \
         * = fewer impostor pairs than 1/FMR"
    );
}

fn row(set: &str, s: &eval::Summary, r: &Report) -> String {
    let f = |i: usize, rows: &[eval::FnmrRow]| {
        rows.get(i).map_or("-".to_string(), |x| {
            format!(
                "{:.2}%{}",
                100.0 * x.fnmr,
                if x.too_few_impostors { "*" } else { "" }
            )
        })
    };
    format!(
        "{:<10} {:<5} {:>5} {:>6} {:<5} | {:>5.2}% {:>5.2}% | {:>5.2}% {:>7} {:>7} {:>7} | {:>5.2}% {:>7} | {:>5.1}%",
        set,
        s.input,
        s.identities,
        s.images,
        r.matcher,
        100.0 * r.failure_to_enroll,
        100.0 * r.failure_to_acquire,
        100.0 * r.eer,
        f(0, &r.fnmr_at_fmr),
        f(1, &r.fnmr_at_fmr),
        f(2, &r.fnmr_at_fmr),
        100.0 * r.acquired.eer,
        f(1, &r.acquired.fnmr_at_fmr),
        100.0 * r.rank1_all
    )
}
