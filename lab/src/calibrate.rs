//! `palmline-lab calibrate`: turns eval runs (their score CSVs, several real sets) into the
//! server's identification policy: `accept`, `grey` and `margin` for a target false-positive
//! identification rate at a stated gallery size, written as a TOML file the server reads
//! (`palm_policy = "FILE"`), with the numbers it came from.
//!
//! 1:N arithmetic: a probe from someone not enrolled is compared with N palms; the chance
//! that any of them reaches `accept` is FPIR ≈ N × FMR(accept) while that is small. So the
//! per-comparison target is FMR = FPIR / N. Where the impostor scores resolve that rate
//! (at least 1/FMR of them) the threshold is empirical; otherwise the tail of the impostor
//! scores is extrapolated with an exponential fit of its survival function (inlier counts of
//! chance matches fall off geometrically), and the file says so.

use anyhow::{bail, Context, Result};
use palmline_shared::palm::metrics;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct CalibrateArgs {
    /// Score CSVs written by `eval --scores-out` / `eval-suite` (matcher,probe,gallery,score,genuine).
    #[arg(required = true)]
    pub scores: Vec<PathBuf>,
    /// Which matcher's rows to use.
    #[arg(long, default_value = "ours")]
    pub matcher: String,
    /// Enrolled palms the policy is for.
    #[arg(long, default_value_t = 10_000)]
    pub gallery: u64,
    /// Target false-positive identification rate for an outright accept.
    #[arg(long, default_value_t = 1e-3)]
    pub fpir: f64,
    /// Target rate of strangers sent to step-up (PIN) rather than rejected.
    #[arg(long, default_value_t = 1e-1)]
    pub grey_fpir: f64,
    /// Where to write the policy (TOML).
    #[arg(long)]
    pub out: PathBuf,
}

/// A threshold for a target FMR and how it was found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Threshold {
    pub score: u32,
    /// Measured on the impostor scores (true) or extrapolated from their tail (false).
    pub empirical: bool,
}

pub fn run(a: CalibrateArgs) -> Result<()> {
    let mut genuine = Vec::new();
    let mut impostor = Vec::new();
    for path in &a.scores {
        read_scores(path, &a.matcher, &mut genuine, &mut impostor)?;
    }
    if impostor.len() < 1000 {
        bail!(
            "{} impostor scores of matcher {:?}: too few to calibrate anything",
            impostor.len(),
            a.matcher
        );
    }
    let n = a.gallery.max(1) as f64;
    let (fmr, grey_fmr) = (a.fpir / n, a.grey_fpir / n);
    let accept = threshold(&impostor, fmr);
    let grey = threshold(&impostor, grey_fmr);
    let grey_score = grey.score.min(accept.score);
    // The runner-up of a genuine identification is an impostor score: the best of N of them,
    // typically near the FMR = 1/N quantile. An accept also needs this lead over it, so that
    // two enrolled palms both scoring high (a duplicate enrollment) go to step-up instead.
    let margin = (accept.score as f64 * 0.15).ceil().max(2.0) as u32;
    let fnmr_accept = frac(&genuine, |s| s < accept.score as f64);
    let fnmr_grey = frac(&genuine, |s| s < grey_score as f64);
    let toml = format!(
        "# Palm identification policy, written by `palmline-lab calibrate`.\n\
         # Read by the server with `palm_policy = \"FILE\"` (explicit palm_* settings win).\n\
         accept = {}\n\
         grey = {}\n\
         margin = {}\n\
         \n\
         [calibration]\n\
         gallery_size = {}\n\
         target_fpir = {:e}\n\
         target_grey_fpir = {:e}\n\
         target_fmr = {:e}\n\
         accept_from = \"{}\"\n\
         grey_from = \"{}\"\n\
         impostor_comparisons = {}\n\
         impostor_max = {}\n\
         genuine_attempts = {}\n\
         fnmr_at_accept = {:.4}\n\
         fnmr_at_grey = {:.4}\n\
         sources = [{}]\n",
        accept.score,
        grey_score,
        margin,
        a.gallery,
        a.fpir,
        a.grey_fpir,
        fmr,
        how(accept),
        how(grey),
        impostor.len(),
        impostor.iter().copied().fold(0.0, f64::max),
        genuine.len(),
        fnmr_accept,
        fnmr_grey,
        a.scores
            .iter()
            .map(|p| format!("{:?}", p.display().to_string()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    std::fs::write(&a.out, &toml).with_context(|| format!("writing {}", a.out.display()))?;
    print!("{toml}");
    Ok(())
}

fn how(t: Threshold) -> &'static str {
    if t.empirical {
        "measured"
    } else {
        "tail fit"
    }
}

fn frac(v: &[f64], f: impl Fn(f64) -> bool) -> f64 {
    v.iter().filter(|&&s| f(s)).count() as f64 / v.len().max(1) as f64
}

/// Reads one score CSV; a genuine row with an empty score (failed attempt) counts as −∞.
fn read_scores(
    path: &PathBuf,
    matcher: &str,
    genuine: &mut Vec<f64>,
    impostor: &mut Vec<f64>,
) -> Result<()> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    for (i, line) in text.lines().enumerate().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        if f.len() != 5 {
            bail!("{}:{}: expected 5 fields", path.display(), i + 1);
        }
        if f[0] != matcher {
            continue;
        }
        let score = match f[3] {
            "" => f64::NEG_INFINITY,
            s => s
                .parse::<f64>()
                .with_context(|| format!("{}:{}: score {s:?}", path.display(), i + 1))?,
        };
        match f[4] {
            "1" => genuine.push(score),
            "0" if score.is_finite() => impostor.push(score),
            "0" => {}
            g => bail!("{}:{}: genuine flag {g:?}", path.display(), i + 1),
        }
    }
    Ok(())
}

/// The smallest integer score with FMR ≤ `target`: measured when there are at least
/// 1/target impostor scores, else from an exponential fit of the tail, and then never at or
/// below a score some observed stranger reached (that would claim a rate the data refutes).
pub fn threshold(impostor: &[f64], target: f64) -> Threshold {
    if impostor.len() as f64 * target >= 1.0 {
        let t = metrics::threshold_for_fmr(impostor, target).ceil();
        return Threshold {
            score: t.max(1.0) as u32,
            empirical: true,
        };
    }
    let (a, b) = tail_fit(impostor);
    // P(S ≥ s) = exp(a − b·s) ≤ target  ⇔  s ≥ (a − ln target) / b
    let max = impostor.iter().copied().fold(0.0, f64::max);
    let s = ((a - target.ln()) / b).ceil().max(max.floor() + 1.0);
    Threshold {
        score: s.clamp(1.0, 10_000.0) as u32,
        empirical: false,
    }
}

/// Least-squares fit of ln P(S ≥ s) = a − b·s over the integer scores of the upper tail
/// (from the 99th percentile up to where fewer than 10 scores remain).
pub fn tail_fit(impostor: &[f64]) -> (f64, f64) {
    let mut s: Vec<f64> = impostor.iter().copied().filter(|x| x.is_finite()).collect();
    s.sort_by(|a, b| a.total_cmp(b));
    let n = s.len() as f64;
    let start = s[((n * 0.99) as usize).min(s.len() - 1)].floor() as i64;
    let mut pts = Vec::new();
    let mut t = start;
    loop {
        let above = s.len() - s.partition_point(|&x| x < t as f64);
        if above < 10 {
            break;
        }
        pts.push((t as f64, (above as f64 / n).ln()));
        t += 1;
    }
    if pts.len() < 2 {
        // Nothing to fit: a steep tail just above the largest score.
        let max = s.last().copied().unwrap_or(0.0);
        return (0.0, 1.0 / (max + 1.0).max(1.0) * 20.0);
    }
    let m = pts.len() as f64;
    let (sx, sy) = pts.iter().fold((0.0, 0.0), |(x, y), p| (x + p.0, y + p.1));
    let (mx, my) = (sx / m, sy / m);
    let (sxy, sxx) = pts.iter().fold((0.0, 0.0), |(xy, xx), p| {
        (xy + (p.0 - mx) * (p.1 - my), xx + (p.0 - mx).powi(2))
    });
    let slope = sxy / sxx;
    let b = (-slope).max(1e-3);
    (my + b * mx, b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empirical_when_resolved_and_extrapolated_beyond() {
        // Geometric tail: P(S ≥ s) = 2^-s, 2^16 samples.
        let mut v = Vec::new();
        for s in 0..16 {
            let count = 1usize << (15 - s);
            v.extend(std::iter::repeat_n(s as f64, count));
        }
        let t = threshold(&v, 1e-2);
        assert!(t.empirical);
        // 2^-7 < 1e-2 ≤ 2^-6: scores ≥ 7 are 1/128 of them.
        assert_eq!(t.score, 7);
        let far = threshold(&v, 1e-9);
        assert!(!far.empirical);
        // A lone stranger far up the tail: the threshold goes above it, whatever the fit.
        let mut w = v.clone();
        w.push(40.0);
        assert_eq!(threshold(&w, 1e-6).score, 41);
        // 2^-30 ≈ 9.3e-10: the fit of a pure geometric tail lands on 30.
        assert!((29..=31).contains(&far.score), "{far:?}");
    }
}
