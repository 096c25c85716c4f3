//! `palmline-lab eval`: verification and closed-set identification figures for our matcher
//! and the seed's baseline, in one run, on any folder of `ID_SAMPLE.ext` images.
//!
//! The first `--enroll-samples` samples of each identity are enrolled, the rest probe every
//! enrolled identity (genuine when the identities agree). A probe whose extraction fails is
//! a failure to acquire; an identity none of whose enrollment captures extract is a failure
//! to enroll (it is left out of the gallery, its probes out of the comparisons).

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use palmline_shared::palm::baseline::{extract_seed, seed_compare, SeedFeatures, SEED_ACCEPT};
use palmline_shared::palm::extract::{ExtractConfig, Extractor};
use palmline_shared::palm::matcher::{Matcher, Prepared};
use palmline_shared::palm::metrics::{self, OperatingPoint};
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Which {
    Ours,
    Seed,
    Both,
}

#[derive(clap::Args)]
pub struct EvalArgs {
    /// Folder of ID_SAMPLE.ext images (png, jpg, bmp, tif).
    #[arg(long)]
    pub images: PathBuf,
    /// Samples per identity to enroll (the lowest-numbered ones).
    #[arg(long, default_value_t = 1)]
    pub enroll_samples: usize,
    /// Which matcher(s) to evaluate; both by default, for a side-by-side comparison.
    #[arg(long, value_enum, default_value_t = Which::Both)]
    pub matcher: Which,
    /// Summary figures as JSON.
    #[arg(long)]
    pub json: PathBuf,
    /// Every comparison as CSV: matcher,probe,gallery,score,genuine.
    #[arg(long)]
    pub scores_out: PathBuf,
    /// DET plot (PNG).
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Use only the first N identities (sorted by name).
    #[arg(long)]
    pub limit_identities: Option<usize>,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    #[command(flatten)]
    pub tuning: Tuning,
    /// What the images show: whole hands (as a kiosk camera sees them), palm ROI crops as
    /// some data sets publish them (PolyU, Tongji and IITD ROIs), or `auto`: decided once
    /// for the whole folder from a sample of its images (see [`detect_input`]).
    #[arg(long, value_enum, default_value_t = Input::Auto)]
    pub input: Input,
    /// Same as `--input roi` (kept for older command lines).
    #[arg(long, hide = true)]
    pub input_is_roi: bool,
}

/// Extraction and matcher overrides, for parameter studies (hidden; the defaults are
/// `ExtractConfig`'s and `MatcherConfig`'s).
#[derive(clap::Args, Default, Clone)]
pub struct Tuning {
    #[arg(long, hide = true)]
    pub ratio: Option<f32>,
    #[arg(long, hide = true)]
    pub max_hamming: Option<u32>,
    #[arg(long, hide = true)]
    pub inlier_tol: Option<f32>,
    #[arg(long, hide = true)]
    pub max_keypoints: Option<usize>,
    #[arg(long, hide = true)]
    pub roi_span: Option<f32>,
    #[arg(long, hide = true)]
    pub fast_threshold: Option<i32>,
    #[arg(long, hide = true)]
    pub grid: Option<usize>,
    #[arg(long, hide = true)]
    pub edge_margin: Option<u16>,
    #[arg(long, hide = true)]
    pub highpass: Option<f32>,
    #[arg(long, hide = true)]
    pub clahe_clip: Option<f64>,
    #[arg(long, hide = true)]
    pub clahe_tiles: Option<i32>,
    #[arg(long, hide = true)]
    pub max_rotation: Option<f32>,
    #[arg(long, hide = true)]
    pub max_shift: Option<f32>,
    #[arg(long, hide = true)]
    pub angle_tol: Option<f32>,
    /// Affine refit after the similarity (1: off; `MatcherConfig::max_anisotropy`).
    #[arg(long, hide = true)]
    pub max_anisotropy: Option<f32>,
    /// Quality-gate override, for calibration (`--min-sharpness 0` turns the check off).
    #[arg(long, hide = true)]
    pub min_sharpness: Option<f32>,
    /// How far from upright the hand may be turned before the ROI is cut upright
    /// (`--max-hand-rotation 40` behaves like the valley-only orientation before it).
    #[arg(long, hide = true)]
    pub max_hand_rotation: Option<f32>,
}

impl Tuning {
    fn extract(&self, cfg: &mut ExtractConfig) {
        set(self.max_keypoints, &mut cfg.max_keypoints);
        set(self.min_sharpness, &mut cfg.min_sharpness);
        set(self.roi_span, &mut cfg.roi_span);
        set(self.fast_threshold, &mut cfg.fast_threshold);
        set(self.grid, &mut cfg.grid);
        set(self.edge_margin, &mut cfg.edge_margin);
        set(self.highpass, &mut cfg.highpass_sigma);
        set(self.clahe_clip, &mut cfg.clahe_clip);
        set(self.clahe_tiles, &mut cfg.clahe_tiles);
        set(self.max_hand_rotation, &mut cfg.max_hand_rotation_deg);
    }

    fn matcher(&self) -> Matcher {
        let mut m = Matcher::default();
        let c = &mut m.config;
        set(self.ratio, &mut c.ratio);
        set(self.inlier_tol, &mut c.inlier_tolerance);
        set(self.max_rotation, &mut c.max_rotation_deg);
        set(self.max_shift, &mut c.max_shift);
        set(self.angle_tol, &mut c.angle_tolerance_deg);
        set(self.max_hamming, &mut c.max_distance);
        set(self.max_anisotropy, &mut c.max_anisotropy);
        m
    }
}

fn set<T>(v: Option<T>, field: &mut T) {
    if let Some(v) = v {
        *field = v;
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
pub enum Input {
    Auto,
    Hand,
    Roi,
}

/// Decides whether a folder holds whole hands or ROI crops, from up to 16 images spread over
/// it: crops when most are small (≤ 256 px on their longer side, the size ROI data sets
/// publish) or when most fail the whole-hand gate because the palm fills the frame
/// (`too_close`/`no_hand`) but extract as crops. One decision for the whole folder, so that
/// enrollment and probes are always processed the same way. Returns the mode and why.
pub fn detect_input(images: &[PathBuf]) -> Result<(Input, String)> {
    let n = images.len().min(16);
    if n == 0 {
        return Ok((Input::Hand, "no images".into()));
    }
    let step = images.len() / n;
    let mut hand = Extractor::new(ExtractConfig::default())?;
    let mut roi = Extractor::new(ExtractConfig {
        input_is_roi: true,
        ..ExtractConfig::default()
    })?;
    let (mut small, mut fills) = (0, 0);
    for path in images.iter().step_by(step.max(1)).take(n) {
        let (gray, w, h) = load_gray(path)?;
        if w.max(h) <= 256 {
            small += 1;
            continue;
        }
        if let Err(e) = hand.extract(&gray, w, h) {
            if matches!(e.code(), "too_close" | "no_hand") && roi.extract(&gray, w, h).is_ok() {
                fills += 1;
            }
        }
    }
    Ok(if 2 * small > n {
        (
            Input::Roi,
            format!("{small} of {n} sample images are ROI-sized (≤ 256 px)"),
        )
    } else if 2 * (small + fills) > n {
        (
            Input::Roi,
            format!("{fills} of {n} sample images are a palm filling the frame"),
        )
    } else {
        (
            Input::Hand,
            format!(
                "{} of {n} sample images look like whole hands",
                n - small - fills
            ),
        )
    })
}

pub(crate) struct Image {
    pub path: PathBuf,
    pub identity: usize,
    pub sample: u64,
}

pub(crate) fn list_images(dir: &Path, limit: Option<usize>) -> Result<(Vec<Image>, Vec<String>)> {
    let mut found: Vec<(String, u64, PathBuf)> = Vec::new();
    for e in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = e?.path();
        let ext = path
            .extension()
            .and_then(|s| s.to_str())
            .unwrap_or("")
            .to_ascii_lowercase();
        if !["png", "jpg", "jpeg", "bmp", "tif", "tiff"].contains(&ext.as_str()) {
            continue;
        }
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
        let Some((id, sample)) = stem.rsplit_once('_') else {
            continue;
        };
        let Ok(sample) = sample.parse::<u64>() else {
            continue;
        };
        found.push((id.to_string(), sample, path));
    }
    found.sort();
    let mut names: Vec<String> = found.iter().map(|f| f.0.clone()).collect();
    names.dedup();
    if let Some(n) = limit {
        names.truncate(n);
    }
    let index: BTreeMap<&str, usize> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), i))
        .collect();
    let images = found
        .into_iter()
        .filter_map(|(id, sample, path)| {
            index.get(id.as_str()).map(|&identity| Image {
                path,
                identity,
                sample,
            })
        })
        .collect();
    Ok((images, names))
}

pub(crate) fn load_gray(path: &Path) -> Result<(Vec<u8>, u32, u32)> {
    let img = image::open(path).with_context(|| format!("decoding {}", path.display()))?;
    let g = img.to_luma8();
    let (w, h) = g.dimensions();
    Ok((g.into_raw(), w, h))
}

/// Per-image extraction outcome for both matchers.
struct Extracted {
    ours: Option<Prepared>,
    ours_error: Option<String>,
    ours_bytes: usize,
    ours_ms: f64,
    ours_cpu_ms: f64,
    seed: Option<SeedFeatures>,
    seed_ms: f64,
    seed_cpu_ms: f64,
}

#[derive(Serialize, Clone)]
pub struct FnmrRow {
    pub target_fmr: f64,
    pub threshold: f64,
    pub fmr: f64,
    pub fnmr: f64,
    pub too_few_impostors: bool,
}

/// Error rates of one set of genuine scores against the impostor scores.
#[derive(Serialize, Clone)]
pub struct Accuracy {
    pub eer: f64,
    pub fnmr_at_fmr: Vec<FnmrRow>,
    /// At the matcher's own fixed threshold (seed: 0.3).
    pub fixed_threshold: Option<FnmrRow>,
}

#[derive(Serialize)]
pub struct Report {
    pub matcher: String,
    /// Every probe image of every identity: each is one genuine attempt.
    pub genuine_attempts: usize,
    /// Attempts with no score (probe not acquired, or its palm not enrolled).
    pub failed_attempts: usize,
    pub genuine_comparisons: usize,
    pub impostor_comparisons: usize,
    /// Headline figures: a failed attempt counts as a non-match (FTE and FTA included).
    pub eer: f64,
    pub fnmr_at_fmr: Vec<FnmrRow>,
    pub fixed_threshold: Option<FnmrRow>,
    /// The same on acquired attempts only (the matcher alone).
    pub acquired: Accuracy,
    pub failure_to_enroll: f64,
    pub failure_to_acquire: f64,
    pub rejections: BTreeMap<String, usize>,
    /// Closed-set rank-1 over acquired probes of enrolled palms.
    pub rank1: f64,
    pub rank1_probes: usize,
    /// Rank-1 over every genuine attempt (a failed one is a miss).
    pub rank1_all: f64,
    extraction_ms_mean: f64,
    extraction_ms_p50: f64,
    extraction_ms_p95: f64,
    comparison_ms_mean: f64,
    /// Thread CPU time: what one comparison / extraction costs on one core, whatever else
    /// runs on the machine.
    comparison_cpu_ms_mean: f64,
    extraction_cpu_ms_mean: f64,
    template_bytes_mean: f64,
}

#[derive(Serialize)]
pub struct Summary {
    pub images_dir: String,
    /// "hand" or "roi": how the images were read (see `--input`).
    pub input: String,
    pub images: usize,
    pub identities: usize,
    pub enroll_samples: usize,
    pub threads: usize,
    pub reports: Vec<Report>,
}

struct Outcome {
    name: &'static str,
    genuine: Vec<f64>,
    impostor: Vec<f64>,
    report: Report,
}

/// What one evaluation gives: the summary (as written to `--json`) and, per matcher, the
/// genuine scores (failed attempts as −∞) and the impostor scores.
pub struct Evaluation {
    pub summary: Summary,
    pub curves: Vec<(&'static str, Vec<f64>, Vec<f64>)>,
}

pub fn run(a: EvalArgs) -> Result<()> {
    let e = evaluate(&a)?;
    for r in &e.summary.reports {
        print_report(r);
    }
    if let Some(plot) = &a.plot {
        let curves: Vec<_> = e
            .curves
            .iter()
            .map(|(n, g, i)| (*n, &g[..], &i[..]))
            .collect();
        crate::plot::det_plot(plot, &curves)?;
        eprintln!("DET plot: {}", plot.display());
    }
    std::fs::write(&a.json, serde_json::to_string_pretty(&e.summary)?)
        .with_context(|| format!("writing {}", a.json.display()))?;
    Ok(())
}

/// Extracts every image, compares every probe with every enrolled palm, for each matcher.
pub fn evaluate(a: &EvalArgs) -> Result<Evaluation> {
    let (images, names) = list_images(&a.images, a.limit_identities)?;
    if images.is_empty() {
        bail!("no ID_SAMPLE.ext images in {}", a.images.display());
    }
    let threads = a
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let input = match (a.input, a.input_is_roi) {
        (_, true) | (Input::Roi, _) => Input::Roi,
        (Input::Hand, _) => Input::Hand,
        (Input::Auto, false) => {
            let paths: Vec<PathBuf> = images.iter().map(|i| i.path.clone()).collect();
            let (mode, why) = detect_input(&paths)?;
            eprintln!("input: {mode:?} (auto: {why}; force with --input hand|roi)");
            mode
        }
    };
    // Parallelism is ours (one image per worker): OpenCV itself stays on one core, so that
    // times are per core.
    palmline_shared::palm::extract::set_opencv_threads(1)?;
    let do_ours = a.matcher != Which::Seed;
    let do_seed = a.matcher != Which::Ours;
    eprintln!(
        "{} images of {} identities, {} thread(s)",
        images.len(),
        names.len(),
        threads
    );

    // 1. Extraction, in parallel; each worker has its own OpenCV objects.
    let bar = bar(images.len() as u64, "extract")?;
    let slots: Vec<Mutex<Option<Extracted>>> = images.iter().map(|_| Mutex::new(None)).collect();
    let next = AtomicUsize::new(0);
    std::thread::scope(|s| -> Result<()> {
        let hs: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| -> Result<()> {
                    let mut cfg = ExtractConfig::default();
                    a.tuning.extract(&mut cfg);
                    cfg.input_is_roi = input == Input::Roi;
                    let mut ex = Extractor::new(cfg)?;
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(img) = images.get(i) else {
                            return Ok(());
                        };
                        let (gray, w, h) = load_gray(&img.path)?;
                        let mut e = Extracted {
                            ours: None,
                            ours_error: None,
                            ours_bytes: 0,
                            ours_ms: 0.0,
                            ours_cpu_ms: 0.0,
                            seed: None,
                            seed_ms: 0.0,
                            seed_cpu_ms: 0.0,
                        };
                        if do_ours {
                            let t0 = Instant::now();
                            let c0 = thread_cpu();
                            let r = ex.extract(&gray, w, h);
                            e.ours_ms = t0.elapsed().as_secs_f64() * 1e3;
                            e.ours_cpu_ms = (thread_cpu() - c0) * 1e3;
                            match r {
                                Ok(t) => {
                                    e.ours_bytes = t.encoded_len();
                                    e.ours = Some(Prepared::new(&t));
                                }
                                Err(err) => e.ours_error = Some(err.code().to_string()),
                            }
                        }
                        if do_seed {
                            let t0 = Instant::now();
                            let c0 = thread_cpu();
                            let f = extract_seed(&gray, w, h)?;
                            e.seed_ms = t0.elapsed().as_secs_f64() * 1e3;
                            e.seed_cpu_ms = (thread_cpu() - c0) * 1e3;
                            e.seed = (!f.is_empty()).then_some(f);
                        }
                        *slots[i].lock().unwrap() = Some(e);
                        bar.inc(1);
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().expect("extraction worker panicked")?;
        }
        Ok(())
    })?;
    bar.finish();
    let extracted: Vec<Extracted> = slots
        .into_iter()
        .map(|m| m.into_inner().unwrap().expect("every image extracted"))
        .collect();

    // 2. Enrollment split: the first `enroll_samples` samples per identity.
    let mut per_id: Vec<Vec<usize>> = vec![Vec::new(); names.len()];
    for (i, img) in images.iter().enumerate() {
        per_id[img.identity].push(i);
    }
    for v in &mut per_id {
        v.sort_by_key(|&i| images[i].sample);
    }
    let enroll: Vec<&[usize]> = per_id
        .iter()
        .map(|v| &v[..a.enroll_samples.min(v.len())])
        .collect();
    let probes: Vec<usize> = per_id
        .iter()
        .flat_map(|v| v[a.enroll_samples.min(v.len())..].iter().copied())
        .collect();

    let csv = std::fs::File::create(&a.scores_out)
        .with_context(|| format!("creating {}", a.scores_out.display()))?;
    let csv = Mutex::new(std::io::BufWriter::new(csv));
    writeln!(csv.lock().unwrap(), "matcher,probe,gallery,score,genuine")?;

    let mut outcomes = Vec::new();
    if do_ours {
        let gallery: Vec<Vec<Prepared>> = enroll
            .iter()
            .map(|ix| {
                ix.iter()
                    .filter_map(|&i| extracted[i].ours.clone())
                    .collect()
            })
            .collect();
        let m = a.tuning.matcher();
        let o = compare_all(
            "ours",
            &images,
            &names,
            &probes,
            &gallery,
            |p| extracted[p].ours.as_ref(),
            |p, g| m.compare_many(p, g).score as f64,
            threads,
            &csv,
        )?;
        outcomes.push(finish(
            o,
            &extracted,
            &enroll,
            &probes,
            None,
            |e| e.ours_ms,
            |e| e.ours_cpu_ms,
            |e| e.ours.is_some(),
            |e| e.ours_error.clone(),
            |e| e.ours_bytes,
        ));
    }
    if do_seed {
        let gallery: Vec<Vec<SeedFeatures>> = enroll
            .iter()
            .map(|ix| {
                ix.iter()
                    .filter_map(|&i| extracted[i].seed.clone())
                    .collect()
            })
            .collect();
        let o = compare_all(
            "seed",
            &images,
            &names,
            &probes,
            &gallery,
            |p| extracted[p].seed.as_ref(),
            |p, g| g.iter().map(|t| seed_compare(p, t)).fold(0.0, f64::max),
            threads,
            &csv,
        )?;
        outcomes.push(finish(
            o,
            &extracted,
            &enroll,
            &probes,
            Some(SEED_ACCEPT),
            |e| e.seed_ms,
            |e| e.seed_cpu_ms,
            |e| e.seed.is_some(),
            |e| e.seed.is_none().then(|| "no_features".to_string()),
            |e| e.seed.as_ref().map_or(0, |f| f.len() * 32),
        ));
    }
    csv.into_inner().unwrap().flush()?;

    let curves = outcomes
        .iter()
        .map(|o| (o.name, o.genuine.clone(), o.impostor.clone()))
        .collect();
    let summary = Summary {
        images_dir: a.images.display().to_string(),
        input: format!("{input:?}").to_lowercase(),
        images: images.len(),
        identities: names.len(),
        enroll_samples: a.enroll_samples,
        threads,
        reports: outcomes.into_iter().map(|o| o.report).collect(),
    };
    Ok(Evaluation { summary, curves })
}

/// CPU time of the calling thread, seconds: unlike wall time, it does not count the time
/// other processes on a shared machine take from us.
pub(crate) fn thread_cpu() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a timespec; CLOCK_THREAD_CPUTIME_ID exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

fn bar(n: u64, msg: &'static str) -> Result<ProgressBar> {
    let b = ProgressBar::new(n);
    b.set_style(ProgressStyle::with_template(
        "{msg:8} {wide_bar} {pos}/{len} [{elapsed} < {eta}]",
    )?);
    b.set_message(msg);
    Ok(b)
}

struct Compared {
    name: &'static str,
    genuine: Vec<f64>,
    impostor: Vec<f64>,
    /// Genuine attempts that produced no score: the probe was not acquired or its identity
    /// not enrolled.
    failed_genuine: usize,
    rank1_hits: usize,
    rank1_probes: usize,
    comparisons: usize,
    compare_secs: f64,
    compare_cpu_secs: f64,
}

/// Every probe against every enrolled identity, in parallel; writes the CSV rows.
#[allow(clippy::too_many_arguments)]
fn compare_all<'a, T: Sync + 'a, G: Sync>(
    name: &'static str,
    images: &[Image],
    names: &[String],
    probes: &[usize],
    gallery: &[Vec<G>],
    probe_of: impl Fn(usize) -> Option<&'a T> + Sync,
    score: impl Fn(&T, &[G]) -> f64 + Sync,
    threads: usize,
    csv: &Mutex<std::io::BufWriter<std::fs::File>>,
) -> Result<Compared> {
    let bar = bar(probes.len() as u64, name)?;
    let next = AtomicUsize::new(0);
    let acc = Mutex::new(Compared {
        name,
        genuine: Vec::new(),
        impostor: Vec::new(),
        failed_genuine: 0,
        rank1_hits: 0,
        rank1_probes: 0,
        comparisons: 0,
        compare_secs: 0.0,
        compare_cpu_secs: 0.0,
    });
    let enrolled: Vec<usize> = (0..gallery.len())
        .filter(|&g| !gallery[g].is_empty())
        .collect();
    std::thread::scope(|s| -> Result<()> {
        let hs: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| -> Result<()> {
                    let mut out = String::new();
                    loop {
                        let k = next.fetch_add(1, Ordering::Relaxed);
                        let Some(&p) = probes.get(k) else {
                            return Ok(());
                        };
                        let img = &images[p];
                        let probe_name =
                            img.path.file_name().and_then(|s| s.to_str()).unwrap_or("?");
                        out.clear();
                        let own_enrolled = !gallery[img.identity].is_empty();
                        let Some(t) = probe_of(p) else {
                            // Failure to acquire: a genuine attempt that failed, one row with
                            // an empty score (an unacquired probe cannot be an impostor).
                            out.push_str(&format!(
                                "{name},{probe_name},{},,1\n",
                                names[img.identity]
                            ));
                            csv.lock().unwrap().write_all(out.as_bytes())?;
                            acc.lock().unwrap().failed_genuine += 1;
                            bar.inc(1);
                            continue;
                        };
                        let t0 = Instant::now();
                        let c0 = thread_cpu();
                        let scores: Vec<f64> =
                            enrolled.iter().map(|&g| score(t, &gallery[g])).collect();
                        let secs = t0.elapsed().as_secs_f64();
                        let cpu = thread_cpu() - c0;
                        let mut gen = Vec::new();
                        let mut imp = Vec::new();
                        let own = enrolled.iter().position(|&g| g == img.identity);
                        let own_score = own.map(|o| scores[o]);
                        let best_other = scores
                            .iter()
                            .enumerate()
                            .filter(|&(i, _)| Some(i) != own)
                            .map(|(_, &s)| s)
                            .fold(f64::NEG_INFINITY, f64::max);
                        if !own_enrolled {
                            // Failure to enroll: the attempt fails, its row has no score.
                            out.push_str(&format!(
                                "{name},{probe_name},{},,1\n",
                                names[img.identity]
                            ));
                        }
                        for (i, &g) in enrolled.iter().enumerate() {
                            let genuine = g == img.identity;
                            if genuine {
                                gen.push(scores[i]);
                            } else {
                                imp.push(scores[i]);
                            }
                            out.push_str(&format!(
                                "{name},{probe_name},{},{},{}\n",
                                names[g], scores[i], genuine as u8
                            ));
                        }
                        csv.lock().unwrap().write_all(out.as_bytes())?;
                        let mut a = acc.lock().unwrap();
                        a.genuine.extend(gen);
                        a.impostor.extend(imp);
                        a.failed_genuine += (!own_enrolled) as usize;
                        if let Some(own_score) = own_score {
                            a.rank1_probes += 1;
                            a.rank1_hits += (own_score > best_other) as usize;
                        }
                        a.comparisons += scores.len();
                        a.compare_secs += secs;
                        a.compare_cpu_secs += cpu;
                        drop(a);
                        bar.inc(1);
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().expect("comparison worker panicked")?;
        }
        Ok(())
    })?;
    bar.finish();
    Ok(acc.into_inner().unwrap())
}

#[allow(clippy::too_many_arguments)]
fn finish(
    c: Compared,
    extracted: &[Extracted],
    enroll: &[&[usize]],
    probes: &[usize],
    fixed: Option<f64>,
    ms: impl Fn(&Extracted) -> f64,
    cpu_ms: impl Fn(&Extracted) -> f64,
    ok: impl Fn(&Extracted) -> bool,
    err: impl Fn(&Extracted) -> Option<String>,
    bytes: impl Fn(&Extracted) -> usize,
) -> Outcome {
    let fte = enroll
        .iter()
        .filter(|ix| !ix.iter().any(|&i| ok(&extracted[i])))
        .count() as f64
        / enroll.len().max(1) as f64;
    let fta =
        probes.iter().filter(|&&p| !ok(&extracted[p])).count() as f64 / probes.len().max(1) as f64;
    let mut rejections = BTreeMap::new();
    for e in extracted {
        if let Some(r) = err(e) {
            *rejections.entry(r).or_insert(0) += 1;
        }
    }
    let mut times: Vec<f64> = extracted.iter().map(&ms).collect();
    times.sort_by(|a, b| a.total_cmp(b));
    let q = |f: f64| times[((times.len() - 1) as f64 * f) as usize];
    let okb: Vec<usize> = extracted.iter().filter(|e| ok(e)).map(&bytes).collect();
    let with_failures: Vec<f64> = c
        .genuine
        .iter()
        .copied()
        .chain(std::iter::repeat_n(f64::NEG_INFINITY, c.failed_genuine))
        .collect();
    let all = accuracy(&with_failures, &c.impostor, fixed);
    let report = Report {
        matcher: c.name.to_string(),
        genuine_attempts: with_failures.len(),
        failed_attempts: c.failed_genuine,
        genuine_comparisons: c.genuine.len(),
        impostor_comparisons: c.impostor.len(),
        eer: all.eer,
        fnmr_at_fmr: all.fnmr_at_fmr,
        fixed_threshold: all.fixed_threshold,
        acquired: accuracy(&c.genuine, &c.impostor, fixed),
        failure_to_enroll: fte,
        failure_to_acquire: fta,
        rejections,
        rank1: c.rank1_hits as f64 / c.rank1_probes.max(1) as f64,
        rank1_probes: c.rank1_probes,
        rank1_all: c.rank1_hits as f64 / with_failures.len().max(1) as f64,
        extraction_ms_mean: times.iter().sum::<f64>() / times.len() as f64,
        extraction_ms_p50: q(0.5),
        extraction_ms_p95: q(0.95),
        comparison_ms_mean: c.compare_secs * 1e3 / c.comparisons.max(1) as f64,
        comparison_cpu_ms_mean: c.compare_cpu_secs * 1e3 / c.comparisons.max(1) as f64,
        extraction_cpu_ms_mean: extracted.iter().map(&cpu_ms).sum::<f64>()
            / extracted.len().max(1) as f64,
        template_bytes_mean: okb.iter().sum::<usize>() as f64 / okb.len().max(1) as f64,
    };
    Outcome {
        name: c.name,
        genuine: with_failures,
        impostor: c.impostor,
        report,
    }
}

/// EER, FNMR at FMR 1e-2/1e-3/1e-4 and at a fixed threshold.
fn accuracy(genuine: &[f64], impostor: &[f64], fixed: Option<f64>) -> Accuracy {
    let row = |p: OperatingPoint, target: f64, few: bool| FnmrRow {
        target_fmr: target,
        threshold: p.threshold,
        fmr: p.fmr,
        fnmr: p.fnmr,
        too_few_impostors: few,
    };
    let fnmr_at_fmr = [1e-2, 1e-3, 1e-4]
        .iter()
        .map(|&f| {
            let r = metrics::fnmr_at_fmr(genuine, impostor, f);
            row(r.point, f, r.too_few_impostors)
        })
        .collect();
    let fixed_threshold = fixed.map(|t| {
        let fmr =
            impostor.iter().filter(|&&s| s >= t).count() as f64 / impostor.len().max(1) as f64;
        let fnmr = genuine.iter().filter(|&&s| s < t).count() as f64 / genuine.len().max(1) as f64;
        row(
            OperatingPoint {
                threshold: t,
                fmr,
                fnmr,
            },
            f64::NAN,
            false,
        )
    });
    Accuracy {
        eer: metrics::eer(genuine, impostor),
        fnmr_at_fmr,
        fixed_threshold,
    }
}

fn print_report(r: &Report) {
    println!(
        "[{}] {} genuine attempts ({} failed: FTE {:.4}, FTA {:.4}), {} impostor comparisons | rank-1 {:.4} of acquired ({} probes), {:.4} of all",
        r.matcher,
        r.genuine_attempts,
        r.failed_attempts,
        r.failure_to_enroll,
        r.failure_to_acquire,
        r.impostor_comparisons,
        r.rank1,
        r.rank1_probes,
        r.rank1_all
    );
    print_accuracy(
        &r.matcher,
        "failures count as non-matches",
        r.eer,
        &r.fnmr_at_fmr,
        &r.fixed_threshold,
    );
    let a = &r.acquired;
    print_accuracy(
        &r.matcher,
        "acquired attempts only",
        a.eer,
        &a.fnmr_at_fmr,
        &a.fixed_threshold,
    );
    println!(
        "[{}]   extraction {:.2} ms mean ({:.2} p50, {:.2} p95; CPU {:.2}) | comparison {:.4} ms (CPU {:.4}) | template {:.0} B | rejections {:?}",
        r.matcher,
        r.extraction_ms_mean,
        r.extraction_ms_p50,
        r.extraction_ms_p95,
        r.extraction_cpu_ms_mean,
        r.comparison_ms_mean,
        r.comparison_cpu_ms_mean,
        r.template_bytes_mean,
        r.rejections
    );
}

fn print_accuracy(m: &str, what: &str, eer: f64, rows: &[FnmrRow], fixed: &Option<FnmrRow>) {
    println!("[{m}]  {what}: EER {eer:.4}");
    for f in rows {
        println!(
            "[{m}]    FNMR {:.4} at FMR {:.0e} (threshold {:.4}, measured FMR {:.2e}){}",
            f.fnmr,
            f.target_fmr,
            f.threshold,
            f.fmr,
            if f.too_few_impostors {
                " — too few impostor pairs for this rate"
            } else {
                ""
            }
        );
    }
    if let Some(f) = fixed {
        println!(
            "[{m}]    at its fixed threshold {:.2}: FMR {:.2e}, FNMR {:.4}",
            f.threshold, f.fmr, f.fnmr
        );
    }
}
