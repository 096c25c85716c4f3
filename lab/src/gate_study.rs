//! `palmline-lab gate-study`: calibrates the quality gate on real frames. Every frame of a
//! folder of whole hands is measured with the gate's checks relaxed (sharpness and saturation off, size
//! bounds widened), then matched against its palm's enrollment capture; for each check it
//! prints and plots the value for frames that then **matched** and for those that did not,
//! and how many matchable frames the threshold in use would turn away. The threshold belongs
//! where it stops rejecting matchable frames (docs/PALM.md, "Quality gate").

use crate::eval::{list_images, load_gray};
use anyhow::{bail, Context, Result};
use palmline_shared::palm::extract::{ExtractConfig, Extractor, QualityReport};
use palmline_shared::palm::matcher::{Matcher, Prepared};
use palmline_shared::palm::metrics;
use std::fmt::Write as _;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct GateStudyArgs {
    /// Folder of ID_SAMPLE.ext whole-hand frames.
    #[arg(long)]
    pub images: PathBuf,
    /// Where `gate.csv` and one histogram per check (PNG) go.
    #[arg(long)]
    pub out: PathBuf,
    /// A probe "matched" when it reaches the FMR threshold measured on this folder's
    /// impostor comparisons at this rate.
    #[arg(long, default_value_t = 1e-3)]
    pub fmr: f64,
}

/// A gate check: its name, the limit in use, and its value on an accepted frame.
type Check = (&'static str, f64, fn(&Frame, &QualityReport) -> f64);

struct Frame {
    name: String,
    identity: usize,
    sample: u64,
    outcome: std::result::Result<(QualityReport, Prepared), String>,
    frame_height: f32,
}

pub fn run(a: GateStudyArgs) -> Result<()> {
    let (images, names) = list_images(&a.images, None)?;
    if images.is_empty() {
        bail!("no ID_SAMPLE.ext images in {}", a.images.display());
    }
    std::fs::create_dir_all(&a.out)?;
    let defaults = ExtractConfig::default();
    let relaxed = ExtractConfig {
        min_sharpness: 0.0,
        min_radius: 0.03,
        max_radius: 0.7,
        max_saturated: 1.0,
        ..defaults.clone()
    };
    let mut ex = Extractor::new(relaxed)?;
    let mut frames = Vec::new();
    for img in &images {
        let (gray, w, h) = load_gray(&img.path)?;
        let outcome = ex
            .extract_with_report(&gray, w, h)
            .map(|(t, r)| (r, Prepared::new(&t)))
            .map_err(|e| e.code().to_string());
        frames.push(Frame {
            name: img.path.file_name().unwrap().to_string_lossy().into_owned(),
            identity: img.identity,
            sample: img.sample,
            outcome,
            frame_height: h as f32,
        });
    }
    let scores = genuine_scores(&frames, names.len());
    let threshold = metrics::threshold_for_fmr(&scores.impostor, a.fmr);
    eprintln!(
        "{} frames, {} probes; matched = genuine score ≥ {threshold:.0} (FMR {:e} on {} impostor comparisons)",
        frames.len(),
        scores.genuine.len(),
        a.fmr,
        scores.impostor.len()
    );
    let checks: [Check; 5] = [
        ("sharpness", defaults.min_sharpness as f64, |_, r| {
            r.sharpness as f64
        }),
        ("radius", defaults.min_radius as f64, |f, r| {
            (r.palm_radius / f.frame_height) as f64
        }),
        ("brightness", 55.0, |_, r| r.brightness as f64),
        ("hand_fraction", 0.9, |_, r| r.hand_fraction as f64),
        ("saturated", defaults.max_saturated as f64, |_, r| {
            r.saturated as f64
        }),
    ];
    let mut csv = String::from(
        "image,outcome,sharpness,radius,brightness,hand_fraction,saturated,score,matched,rotation_deg,orientation\n",
    );
    for (i, f) in frames.iter().enumerate() {
        let score = scores.by_frame[i];
        let (code, vals, turn) = match &f.outcome {
            Ok((r, _)) => (
                "ok",
                checks.map(|c| format!("{}", (c.2)(f, r))),
                format!("{:.1},{:?}", r.rotation_deg, r.orientation),
            ),
            Err(c) => (c.as_str(), checks.map(|_| String::new()), ",".into()),
        };
        let s = score.map_or(String::new(), |s| s.to_string());
        let m = score.is_some_and(|s| s >= threshold) as u8;
        writeln!(csv, "{},{code},{},{s},{m},{turn}", f.name, vals.join(","))?;
    }
    std::fs::write(a.out.join("gate.csv"), csv)?;
    for (name, limit, value) in checks {
        let (mut yes, mut no) = (Vec::new(), Vec::new());
        for (i, f) in frames.iter().enumerate() {
            let (Ok((r, _)), Some(s)) = (&f.outcome, scores.by_frame[i]) else {
                continue;
            };
            if s >= threshold { &mut yes } else { &mut no }.push(value(f, r));
        }
        report(name, limit, &mut yes, &mut no);
        let png = a.out.join(format!("{name}.png"));
        crate::plot::histogram(
            &png,
            &format!(
                "{name}: probes that matched vs not ({})",
                a.images.display()
            ),
            &[("matched", &yes), ("not matched", &no)],
            limit,
        )
        .with_context(|| format!("plotting {}", png.display()))?;
    }
    let failed = frames.iter().filter(|f| f.outcome.is_err()).count();
    println!("{failed} frames failed even with the checks relaxed");
    Ok(())
}

struct Scores {
    genuine: Vec<f64>,
    impostor: Vec<f64>,
    /// Each probe frame's score against its own palm's enrollment (None: not a scored probe).
    by_frame: Vec<Option<f64>>,
}

/// The first sample of each identity is its enrollment; every other frame is a probe.
fn genuine_scores(frames: &[Frame], identities: usize) -> Scores {
    let m = Matcher::default();
    let mut enroll: Vec<Option<(usize, u64)>> = vec![None; identities];
    for (i, f) in frames.iter().enumerate() {
        if f.outcome.is_ok() && enroll[f.identity].is_none_or(|(_, s)| f.sample < s) {
            enroll[f.identity] = Some((i, f.sample));
        }
    }
    let gallery: Vec<Option<&Prepared>> = enroll
        .iter()
        .map(|e| e.and_then(|(i, _)| frames[i].outcome.as_ref().ok().map(|(_, p)| p)))
        .collect();
    let mut s = Scores {
        genuine: Vec::new(),
        impostor: Vec::new(),
        by_frame: vec![None; frames.len()],
    };
    for (i, f) in frames.iter().enumerate() {
        let Ok((_, p)) = &f.outcome else { continue };
        if enroll[f.identity].is_some_and(|(e, _)| e == i) {
            continue;
        }
        for (id, g) in gallery.iter().enumerate() {
            let Some(g) = g else { continue };
            let score = m.compare_prepared(p, g).score as f64;
            if id == f.identity {
                s.genuine.push(score);
                s.by_frame[i] = Some(score);
            } else {
                s.impostor.push(score);
            }
        }
    }
    s
}

fn report(name: &str, limit: f64, yes: &mut [f64], no: &mut [f64]) {
    yes.sort_by(f64::total_cmp);
    no.sort_by(f64::total_cmp);
    let q = |v: &[f64], p: f64| v.get(((v.len().max(1) - 1) as f64 * p) as usize).copied();
    let fmt = |x: Option<f64>| x.map_or("-".into(), |x| format!("{x:.3}"));
    // The lower limits reject below; hand_fraction (too close) and saturated (too bright)
    // are upper limits.
    let upper = matches!(name, "hand_fraction" | "saturated");
    let lost = yes
        .iter()
        .filter(|&&v| if upper { v > limit } else { v < limit })
        .count();
    println!(
        "{name:<13} limit {limit:<6.3} | matched {:>5}: min {} p1 {} p5 {} median {} max {} | not matched {:>4}: median {} | matched frames the limit turns away: {lost}",
        yes.len(),
        fmt(q(yes, 0.0)),
        fmt(q(yes, 0.01)),
        fmt(q(yes, 0.05)),
        fmt(q(yes, 0.5)),
        fmt(q(yes, 1.0)),
        no.len(),
        fmt(q(no, 0.5)),
    );
}
