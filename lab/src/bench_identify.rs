//! `palmline-lab bench-identify`: 1:N identification at N = 1,000 / 10,000 / 100,000 with the
//! server's candidate index ([`HashIndex`]) followed by verification of the shortlist with the
//! pure-Rust matcher, against exhaustive search with the same matcher and the seed's
//! exhaustive baseline.
//!
//! Data (all generated, deterministic from `--data-seed`):
//! - **enrolled** identities `0..probes`: `--enroll` captures are extracted and enrolled, one
//!   further capture (sample 20) is the probe;
//! - **not enrolled** identities (ids from 100,000): one probe capture each;
//! - a **pool** of other identities (ids from 200,000), `--enroll` captures each, from which
//!   the **distractors** are derived: distractor `j` splits the ROI into a 3×3 grid at
//!   jittered positions and takes the keypoints (with their descriptors) of each cell from a
//!   different pool identity, capture `s` of the distractor from capture `s` of each source.
//!   A distractor is thus a palm-like template set made of real extracted palm texture, that no
//!   probe shares anything with (pool, enrolled and probe identities are disjoint).
//!
//! Templates are extracted once and cached under `--cache` (one file per identity); the
//! gallery's templates are written to an on-disk template store (one file, read with `pread`
//! per shortlisted palm, decoded and prepared per identification: what the server does with its
//! database, minus the AEAD decryption).

use crate::eval::Input;
use anyhow::{bail, Context, Result};
use palmline_server::identify::index::{HashIndex, HashIndexConfig};
use palmline_server::identify::{CandidateIndex, PalmId};
use palmline_shared::palm::baseline::{extract_seed, seed_compare, SeedFeatures};
use palmline_shared::palm::extract::{ExtractConfig, Extractor};
use palmline_shared::palm::matcher::{Matcher, Prepared};
use palmline_shared::palm::rng::Rng;
use palmline_shared::palm::synth::Identity;
use palmline_shared::palm::template::{Keypoint, Template, MAX_KEYPOINTS};
use serde::Serialize;
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

#[derive(clap::Args)]
pub struct BenchIdentifyArgs {
    /// Cache of extracted templates and the gallery template store.
    #[arg(long, default_value = "target/identify-cache")]
    pub cache: PathBuf,
    /// Gallery sizes (enrolled palms, including the distractors). With `--images`, 0 stands
    /// for the real palms alone, and a size below their number keeps the first ones.
    #[arg(
        long,
        alias = "gallery",
        value_delimiter = ',',
        default_value = "1000,10000,100000"
    )]
    pub sizes: Vec<usize>,
    /// Probes of enrolled palms, and as many of palms not enrolled.
    #[arg(long, default_value_t = 1000)]
    pub probes: usize,
    /// Enrollment captures per palm.
    #[arg(long, default_value_t = 3)]
    pub enroll: usize,
    /// Identities the distractors are recombined from.
    #[arg(long, default_value_t = 2000)]
    pub pool: usize,
    /// Shortlist length verified with the matcher (the server's `PalmPolicy::shortlist`).
    #[arg(long, default_value_t = 20)]
    pub k: usize,
    /// Threads for extraction, exhaustive search and the throughput figure.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Exhaustive search with our matcher at gallery sizes up to this.
    #[arg(long, default_value_t = 1000)]
    pub exhaustive_max_n: usize,
    /// Probes of each kind for exhaustive search (default: all).
    #[arg(long)]
    pub exhaustive_probes: Option<usize>,
    /// Probes of each kind for the seed's exhaustive baseline (0: skip it).
    #[arg(long, default_value_t = 250)]
    pub seed_probes: usize,
    /// Data set seed.
    #[arg(long, default_value_t = 4)]
    pub data_seed: u64,
    /// Only extract and cache the templates.
    #[arg(long)]
    pub prepare_only: bool,
    /// Summary as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Index tuning overrides (defaults are HashIndexConfig's).
    #[arg(long)]
    pub tables: Option<usize>,
    #[arg(long)]
    pub key_bits: Option<u32>,
    #[arg(long)]
    pub max_postings: Option<usize>,
    #[arg(long)]
    pub probe_radius: Option<u8>,
    #[arg(long)]
    pub no_normalise: bool,
    #[arg(long)]
    pub grid: Option<u32>,
    #[arg(long)]
    pub probe_span: Option<u8>,
    #[arg(long)]
    pub angle_bins: Option<u32>,
    /// Stop-word ratio of the first query: buckets longer than this many times the mean
    /// are skipped (default: the index's default).
    #[arg(long)]
    pub stop_ratio: Option<f32>,
    /// Tables the second, turned query reads (default: the index's default).
    #[arg(long)]
    pub turned_tables: Option<usize>,
    /// The turned query reads every N-th probe keypoint.
    #[arg(long)]
    pub turned_stride: Option<usize>,
    /// Stop-word ratio of the turned query.
    #[arg(long)]
    pub turned_stop_ratio: Option<f32>,
    /// Build the index with `insert` palm by palm (the trait's path) instead of `insert_many`.
    #[arg(long)]
    pub one_by_one: bool,
    /// Verify the whole shortlist, as the server did before it stopped at the first palm
    /// scoring `PalmPolicy::clear()` (to compare both in one run).
    #[arg(long)]
    pub verify_all: bool,
    /// An experiment the server does not make: candidates whose first enrollment capture
    /// scores below this are not compared with the others (0, the default: every capture).
    /// On real palms even 2–4 loses genuine probes (BENCHMARKS.md).
    #[arg(long, default_value_t = 0)]
    pub prune_below: u32,
    /// Only measure retrieval (rank of the enrolled palm), skip verification.
    #[arg(long)]
    pub recall_only: bool,
    /// Real palms instead of generated ones: a folder of ID_SAMPLE.ext images (the layout of
    /// `eval`). The first `--enroll` samples of each identity are enrolled, the others probe;
    /// `--strangers` identities are held out (their samples probe as palms not enrolled);
    /// generated distractors fill the gallery up to each size. See real.rs.
    #[arg(long)]
    pub images: Option<PathBuf>,
    /// With `--images`: whole hands, ROI crops, or decided from the folder (as in `eval`).
    #[arg(long, value_enum, default_value_t = Input::Auto)]
    pub input: Input,
    /// With `--images`: identities held out as strangers (default: a tenth of them, spread
    /// evenly over the sorted names).
    #[arg(long)]
    pub strangers: Option<usize>,
    /// With `--images`: use only the first N identities (sorted by name).
    #[arg(long)]
    pub limit_identities: Option<usize>,
}

mod real;

const NOT_ENROLLED_BASE: u64 = 100_000;
const POOL_BASE: u64 = 200_000;
const PROBE_SAMPLE: u64 = 20;

// ---------------------------------------------------------------- extraction cache

/// The extracted captures of one identity: (sample, template or None when rejected).
type Captures = Vec<(u64, Option<Template>)>;

/// A probe: its palm's gallery position (None: not enrolled), template, (identity, sample).
type Probe = (Option<usize>, Template, (u64, u64));

/// Per probe: best palm (gallery position) and its score.
type Ranked = Vec<(Option<usize>, f64)>;

pub(crate) fn fnv(h: u64, bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(h, |h, &b| (h ^ b as u64).wrapping_mul(0x100_0000_01B3))
}

pub(crate) const FNV0: u64 = 0xCBF2_9CE4_8422_2325;

/// The cache folder of generated captures: the data seed and the extractor's configuration
/// (a template cached with other settings is never reused).
fn cache_dir(cache: &Path, seed: u64) -> PathBuf {
    cache.join(format!("s{seed}-x{:08x}", extract_tag()))
}

/// A short hash of the extractor's configuration, in the names of cached generated data.
pub(crate) fn extract_tag() -> u32 {
    fnv(FNV0, format!("{:?}", ExtractConfig::default()).as_bytes()) as u32
}

fn cache_path(cache: &Path, seed: u64, id: u64) -> PathBuf {
    cache_dir(cache, seed).join(format!("{id:07}.tpl"))
}

fn read_captures(path: &Path) -> Option<Captures> {
    let mut b = Vec::new();
    File::open(path).ok()?.read_to_end(&mut b).ok()?;
    let mut out = Vec::new();
    let mut p = 0;
    while p + 12 <= b.len() {
        let sample = u64::from_le_bytes(b[p..p + 8].try_into().ok()?);
        let len = u32::from_le_bytes(b[p + 8..p + 12].try_into().ok()?) as usize;
        p += 12;
        let t = if len == 0 {
            None
        } else {
            let t = Template::decode(b.get(p..p + len)?).ok()?;
            p += len;
            Some(t)
        };
        out.push((sample, t));
    }
    Some(out)
}

fn write_captures(path: &Path, c: &Captures) -> Result<()> {
    let mut b = Vec::new();
    for (s, t) in c {
        b.extend_from_slice(&s.to_le_bytes());
        let e = t.as_ref().map(Template::encode).unwrap_or_default();
        b.extend_from_slice(&(e.len() as u32).to_le_bytes());
        b.extend_from_slice(&e);
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, &b)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// Extracts `want` good captures from samples `first..first+want+2` (a rejected capture is
/// replaced by the next sample, as a kiosk would ask again).
fn extract_identity(ex: &mut Extractor, seed: u64, id: u64, first: u64, want: usize) -> Captures {
    let identity = Identity::new(seed, id);
    let mut out = Vec::new();
    let mut good = 0;
    for s in first..first + want as u64 + 2 {
        if good == want {
            break;
        }
        let f = identity.capture(s);
        let t = ex.extract(&f.gray, f.width, f.height).ok();
        good += t.is_some() as usize;
        out.push((s, t));
    }
    out
}

struct Job {
    id: u64,
    first: u64,
    want: usize,
}

/// Loads from the cache or extracts (in parallel) the captures of each job.
fn captures(a: &BenchIdentifyArgs, jobs: &[Job], what: &str) -> Result<Vec<Captures>> {
    std::fs::create_dir_all(cache_dir(&a.cache, a.data_seed))?;
    let out: Vec<Mutex<Option<Captures>>> = jobs.iter().map(|_| Mutex::new(None)).collect();
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let t0 = Instant::now();
    std::thread::scope(|s| -> Result<()> {
        let hs: Vec<_> = (0..a.threads.max(1))
            .map(|_| {
                s.spawn(|| -> Result<()> {
                    let mut ex = Extractor::new(ExtractConfig::default())?;
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(j) = jobs.get(i) else { return Ok(()) };
                        let path = cache_path(&a.cache, a.data_seed, j.id);
                        let c = match read_captures(&path) {
                            Some(c) if c.first().is_some_and(|x| x.0 == j.first) => c,
                            _ => {
                                let c =
                                    extract_identity(&mut ex, a.data_seed, j.id, j.first, j.want);
                                write_captures(&path, &c)?;
                                c
                            }
                        };
                        *out[i].lock().unwrap() = Some(c);
                        let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                        if n.is_multiple_of(500) {
                            eprintln!(
                                "  {what}: {n}/{} ({:.0} s)",
                                jobs.len(),
                                t0.elapsed().as_secs_f64()
                            );
                        }
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().expect("extraction worker panicked")?;
        }
        Ok(())
    })?;
    Ok(out
        .into_iter()
        .map(|m| m.into_inner().unwrap().unwrap())
        .collect())
}

fn good(c: &Captures) -> Vec<Template> {
    c.iter().filter_map(|(_, t)| t.clone()).collect()
}

// ---------------------------------------------------------------- distractors

/// Distractor `j`: a 3×3 grid at jittered positions, each cell from a different pool identity.
fn distractor(seed: u64, j: u64, pool: &[Vec<Template>], enroll: usize) -> Vec<Template> {
    let mut rng = Rng::derive(seed ^ 0xD157_4AC7, j);
    let roi = pool[0][0].roi_size() as f32;
    let cut = |rng: &mut Rng| {
        let a = rng.range(0.22, 0.45) as f32 * roi;
        let b = rng.range(0.55, 0.78) as f32 * roi;
        [a, b]
    };
    let (cx, cy) = (cut(&mut rng), cut(&mut rng));
    let cell = |v: f32, c: &[f32; 2]| (v >= c[0]) as usize + (v >= c[1]) as usize;
    let mut src = [0usize; DISTRACTOR_SOURCES];
    for i in 0..src.len() {
        loop {
            let cand = rng.below(pool.len() as u64) as usize;
            if !src[..i].contains(&cand) && pool[cand].len() >= enroll.min(2) {
                src[i] = cand;
                break;
            }
        }
    }
    (0..enroll)
        .map(|s| {
            let mut kps: Vec<Keypoint> = Vec::new();
            let mut ds = Vec::new();
            for (c, &p) in src.iter().enumerate() {
                let t = &pool[p][s % pool[p].len()];
                for (k, d) in t.keypoints().iter().zip(t.descriptors()) {
                    if cell(k.x, &cx) + 3 * cell(k.y, &cy) == c {
                        kps.push(*k);
                        ds.push(*d);
                    }
                }
            }
            kps.truncate(MAX_KEYPOINTS);
            ds.truncate(MAX_KEYPOINTS);
            Template::new(roi as u16, kps, ds).expect("recombined keypoints stay in the ROI")
        })
        .collect()
}

// ---------------------------------------------------------------- template store

/// The gallery's templates on disk: palm `i` at `offsets[i]`.
struct Store {
    file: File,
    offsets: Vec<(u64, u32)>,
}

impl Store {
    /// Opens the store at `path`, writing it first (palm `i` = `palm_templates(i)`) unless it
    /// exists; the offsets are recomputed either way (the templates are deterministic).
    fn open_or_write(
        path: &Path,
        n: usize,
        palm_templates: impl Fn(usize) -> Vec<Template>,
    ) -> Result<Self> {
        let mut offsets = Vec::with_capacity(n);
        let exists = std::fs::metadata(path).is_ok();
        let mut w = if exists {
            None
        } else {
            Some(BufWriter::new(File::create(path.with_extension("tmp"))?))
        };
        let mut off = 0u64;
        for i in 0..n {
            let ts = palm_templates(i);
            let mut len = 0u32;
            for t in &ts {
                let e = t.encode();
                if let Some(w) = w.as_mut() {
                    w.write_all(&(e.len() as u16).to_le_bytes())?;
                    w.write_all(&e)?;
                }
                len += 2 + e.len() as u32;
            }
            offsets.push((off, len));
            off += len as u64;
        }
        if let Some(w) = w {
            w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
            std::fs::rename(path.with_extension("tmp"), path)?;
        }
        Ok(Store {
            file: File::open(path).with_context(|| format!("opening {}", path.display()))?,
            offsets,
        })
    }

    fn fetch(&self, i: usize) -> Result<Vec<Template>> {
        let (off, len) = self.offsets[i];
        let mut b = vec![0u8; len as usize];
        self.file.read_exact_at(&mut b, off)?;
        let mut out = Vec::new();
        let mut p = 0;
        while p < b.len() {
            let n = u16::from_le_bytes([b[p], b[p + 1]]) as usize;
            out.push(Template::decode(&b[p + 2..p + 2 + n])?);
            p += 2 + n;
        }
        Ok(out)
    }
}

// ---------------------------------------------------------------- index

/// `HashIndexConfig::default()` with the command line's overrides.
fn index_config(a: &BenchIdentifyArgs) -> HashIndexConfig {
    let mut config = HashIndexConfig::default();
    if let Some(v) = a.tables {
        config.tables = v;
    }
    if let Some(v) = a.key_bits {
        config.key_bits = v;
    }
    if let Some(v) = a.max_postings {
        config.max_postings_per_palm = v;
    }
    if let Some(v) = a.probe_radius {
        config.probe_radius = v;
    }
    if a.no_normalise {
        config.normalise = false;
    }
    if let Some(v) = a.grid {
        config.grid = v;
    }
    if let Some(v) = a.angle_bins {
        config.angle_bins = v;
    }
    if let Some(v) = a.turned_tables {
        config.turned_tables = v;
    }
    if let Some(v) = a.turned_stride {
        config.turned_stride = v;
    }
    if let Some(v) = a.turned_stop_ratio {
        config.turned_stop_ratio = v;
    }
    if let Some(v) = a.stop_ratio {
        config.stop_ratio = v;
    }
    if let Some(v) = a.probe_span {
        config.probe_span = v;
    }
    config
}

/// The index over palms `0..n` of the store, and its build time (insert only: the templates
/// are read from the store first, 2,000 palms at a time).
fn build_index(
    config: &HashIndexConfig,
    store: &Store,
    n: usize,
    one_by_one: bool,
) -> Result<(HashIndex, f64)> {
    let mut index = HashIndex::new(config.clone());
    let mut build = 0f64;
    for chunk_start in (0..n).step_by(2000) {
        let chunk: Vec<Vec<Template>> = (chunk_start..(chunk_start + 2000).min(n))
            .map(|i| store.fetch(i))
            .collect::<Result<_>>()?;
        let t = Instant::now();
        if one_by_one {
            for (j, ts) in chunk.iter().enumerate() {
                index.insert((chunk_start + j) as PalmId, ts);
            }
        } else {
            index.insert_many(
                chunk
                    .iter()
                    .enumerate()
                    .map(|(j, ts)| ((chunk_start + j) as PalmId, ts.as_slice())),
            );
        }
        build += t.elapsed().as_secs_f64();
    }
    let t = Instant::now();
    index.shrink_to_fit();
    build += t.elapsed().as_secs_f64();
    Ok((index, build))
}

// ---------------------------------------------------------------- identification

#[derive(Clone, Copy, Default)]
struct Outcome {
    /// Best palm (gallery position) and its score; runner-up score.
    best: Option<usize>,
    score: u32,
    second: u32,
    /// Palms verified (fewer than shortlisted when one reached the stop score).
    verified: u32,
}

/// When verification stops and which candidates are pruned.
#[derive(Clone, Copy)]
struct Rule {
    stop_at: u32,
    prune: u32,
}

impl Rule {
    /// The server's rule, as the flags leave it: stop at `PalmPolicy::clear` (never with
    /// `--verify-all`), prune below `--prune-below`.
    fn of(a: &BenchIdentifyArgs) -> Rule {
        let clear = palmline_server::palm::PalmPolicy::default().clear();
        Rule {
            stop_at: if a.verify_all { u32::MAX } else { clear },
            prune: a.prune_below,
        }
    }

    /// Every candidate, every capture (exhaustive search).
    const EXACT: Rule = Rule {
        stop_at: u32::MAX,
        prune: 0,
    };
}

/// Verifies `palms` in order, fetching each only when it is reached, and stops after the
/// first that scores `rule.stop_at` (as the server does).
fn verify(
    m: &Matcher,
    probe: &Prepared,
    palms: impl Iterator<Item = Result<(usize, Vec<Prepared>)>>,
    rule: Rule,
) -> Result<Outcome> {
    let stop_at = rule.stop_at;
    let mut o = Outcome::default();
    for palm in palms {
        let (i, g) = palm?;
        let s = m.compare_many_pruned(probe, &g, rule.prune).score;
        o.verified += 1;
        if o.best.is_none() || s > o.score {
            o.second = o.score;
            o.score = s;
            o.best = Some(i);
        } else if s > o.second {
            o.second = s;
        }
        if s >= stop_at {
            break;
        }
    }
    Ok(o)
}

/// The palm at gallery position `c`, fetched, decoded and prepared.
fn fetch_prepared(store: &Store, c: usize) -> Result<(usize, Vec<Prepared>)> {
    Ok((c, store.fetch(c)?.iter().map(Prepared::new).collect()))
}

// ---------------------------------------------------------------- metrics

#[derive(Serialize, Clone)]
struct FnirRow {
    fpir_target: f64,
    threshold: u32,
    fpir: f64,
    fnir: f64,
    /// Enrolled probes answered with the wrong palm above the threshold.
    misidentified: f64,
}

/// FNIR at FPIR targets from (enrolled: correct palm?, score) and non-enrolled scores.
fn fnir_rows(enrolled: &[(bool, f64)], non: &[f64], targets: &[f64]) -> Vec<FnirRow> {
    targets
        .iter()
        .map(|&target| {
            // Smallest threshold whose FPIR is within the target.
            let mut cands: Vec<f64> = non.iter().map(|s| s.floor() + 1.0).chain([0.0]).collect();
            cands.sort_by(f64::total_cmp);
            cands.dedup();
            let fpir_at =
                |t: f64| non.iter().filter(|&&s| s >= t).count() as f64 / non.len().max(1) as f64;
            let t = cands
                .into_iter()
                .find(|&t| fpir_at(t) <= target)
                .unwrap_or(f64::MAX);
            let miss = enrolled.iter().filter(|(ok, s)| !*ok || *s < t).count();
            let wrong = enrolled.iter().filter(|(ok, s)| !*ok && *s >= t).count();
            FnirRow {
                fpir_target: target,
                threshold: t as u32,
                fpir: fpir_at(t),
                fnir: miss as f64 / enrolled.len().max(1) as f64,
                misidentified: wrong as f64 / enrolled.len().max(1) as f64,
            }
        })
        .collect()
}

/// Seed scores are fractions: thresholds are the score values themselves.
fn fnir_rows_real(enrolled: &[(bool, f64)], non: &[f64], targets: &[f64]) -> Vec<FnirRow> {
    let mut sorted: Vec<f64> = non.to_vec();
    sorted.sort_by(|a, b| b.total_cmp(a));
    targets
        .iter()
        .map(|&target| {
            let allowed = (target * non.len() as f64).floor() as usize;
            // Threshold just above the (allowed+1)-th highest non-enrolled score.
            let t = sorted.get(allowed).map_or(0.0, |s| s + 1e-9);
            let fpir = non.iter().filter(|&&s| s >= t).count() as f64 / non.len().max(1) as f64;
            let miss = enrolled.iter().filter(|(ok, s)| !*ok || *s < t).count();
            let wrong = enrolled.iter().filter(|(ok, s)| !*ok && *s >= t).count();
            FnirRow {
                fpir_target: target,
                threshold: (t * 1000.0).round() as u32,
                fpir,
                fnir: miss as f64 / enrolled.len().max(1) as f64,
                misidentified: wrong as f64 / enrolled.len().max(1) as f64,
            }
        })
        .collect()
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[((p / 100.0) * (v.len() - 1) as f64).round() as usize]
}

#[derive(Serialize)]
struct SizeReport {
    n: usize,
    enrolled_real: usize,
    distractors: usize,
    index_build_s: f64,
    index_memory_bytes: usize,
    index_bytes_per_palm: f64,
    index_postings: usize,
    /// Fraction of enrolled probes whose palm is within the first k candidates.
    recall_at: Vec<(usize, f64)>,
    k: usize,
    latency_ms_p50: f64,
    latency_ms_p95: f64,
    latency_ms_p99: f64,
    candidates_ms_p50: f64,
    candidates_ms_p95: f64,
    throughput_per_s_2_threads: f64,
    load_average: String,
    index_fnir: Vec<FnirRow>,
    /// Upper bound on FNIR(index) − FNIR(exhaustive) at the index's thresholds: enrolled probes
    /// whose palm scores at or above the threshold but was not shortlisted.
    shortlist_miss_bound: Vec<(f64, f64)>,
    exhaustive_probes: usize,
    exhaustive_fnir: Option<Vec<FnirRow>>,
    /// The index on the same probe subset as exhaustive search.
    index_fnir_same_probes: Option<Vec<FnirRow>>,
    exhaustive_ms_per_probe_one_thread: Option<f64>,
    seed_probes: usize,
    seed_fnir: Option<Vec<FnirRow>>,
    seed_ms_per_probe_one_thread: Option<f64>,
}

#[derive(Serialize)]
struct Report {
    command: String,
    machine: String,
    probes_enrolled: usize,
    probes_not_enrolled: usize,
    enroll: usize,
    pool: usize,
    failures_to_enroll: usize,
    failures_to_acquire: usize,
    index_config: String,
    sizes: Vec<SizeReport>,
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Cells of a distractor, each from a different pool identity.
const DISTRACTOR_SOURCES: usize = 9;

/// A distractor needs `DISTRACTOR_SOURCES` pool identities with at least two captures.
pub(crate) fn check_pool(pool: &[Vec<Template>], enroll: usize) -> Result<()> {
    let usable = pool.iter().filter(|p| p.len() >= enroll.min(2)).count();
    if usable < DISTRACTOR_SOURCES {
        bail!(
            "distractors need --pool of at least {DISTRACTOR_SOURCES} identities that extract \
             (got {usable}); raise --pool or use sizes up to the enrolled palms"
        );
    }
    Ok(())
}

pub fn run(a: BenchIdentifyArgs) -> Result<()> {
    if a.images.is_some() {
        return real::run(&a);
    }
    let max_n = a.sizes.iter().copied().max().unwrap_or(0);
    if max_n == 0 || a.probes == 0 || a.enroll == 0 {
        bail!("need sizes, probes and enroll > 0");
    }
    let n_enrolled = a.probes.min(max_n);
    let t0 = Instant::now();
    // 1. Templates (cached).
    let jobs: Vec<Job> = (0..n_enrolled as u64)
        .map(|id| Job {
            id,
            first: 0,
            want: a.enroll,
        })
        .collect();
    let enrolled_caps = captures(&a, &jobs, "enrolled")?;
    let probe_caps = probe_captures(&a, n_enrolled)?;
    let jobs: Vec<Job> = (0..a.probes as u64)
        .map(|i| Job {
            id: NOT_ENROLLED_BASE + i,
            first: PROBE_SAMPLE,
            want: 1,
        })
        .collect();
    let non_caps = captures(&a, &jobs, "not enrolled")?;
    let need_pool = max_n > n_enrolled;
    let pool: Vec<Vec<Template>> = if need_pool {
        let jobs: Vec<Job> = (0..a.pool as u64)
            .map(|i| Job {
                id: POOL_BASE + i,
                first: 0,
                want: a.enroll,
            })
            .collect();
        captures(&a, &jobs, "pool")?
            .iter()
            .map(good)
            .filter(|v| !v.is_empty())
            .collect()
    } else {
        Vec::new()
    };
    if need_pool {
        check_pool(&pool, a.enroll)?;
    }
    eprintln!("templates ready in {:.0} s", t0.elapsed().as_secs_f64());
    if a.prepare_only {
        return Ok(());
    }

    // Gallery order: real enrolled palms first (FTE left out), then distractors.
    let mut gallery_ids: Vec<PalmId> = Vec::new();
    let mut real: Vec<Vec<Template>> = Vec::new();
    let mut fte = 0;
    for (id, c) in enrolled_caps.iter().enumerate() {
        let g = good(c);
        if g.is_empty() {
            fte += 1;
            continue;
        }
        gallery_ids.push(id as PalmId);
        real.push(g);
    }
    let pos_of: std::collections::HashMap<PalmId, usize> = gallery_ids
        .iter()
        .enumerate()
        .map(|(i, &p)| (p, i))
        .collect();
    // Probes: (true gallery position or None, template, (identity, sample) rendered).
    let first_good = |c: &Captures| c.iter().find_map(|(s, t)| t.clone().map(|t| (*s, t)));
    let mut probes: Vec<Probe> = Vec::new();
    let mut fta = 0;
    for (id, c) in probe_caps.iter().enumerate() {
        match (pos_of.get(&(id as PalmId)), first_good(c)) {
            (Some(&p), Some((s, t))) => probes.push((Some(p), t, (id as u64, s))),
            (None, _) => {}
            (_, None) => fta += 1,
        }
    }
    for (i, c) in non_caps.iter().enumerate() {
        match first_good(c) {
            Some((s, t)) => probes.push((None, t, (NOT_ENROLLED_BASE + i as u64, s))),
            None => fta += 1,
        }
    }
    let n_real = real.len();
    let n_distr = max_n.saturating_sub(n_real);
    eprintln!(
        "{n_real} enrolled palms ({fte} failed to enroll), {} probes ({fta} failed to acquire), {n_distr} distractors",
        probes.len()
    );

    // 2. The template store: real palms then distractors, one file.
    let store_path = a.cache.join(format!(
        "store-s{}-e{}-r{}-p{}-n{}.bin",
        a.data_seed, a.enroll, n_real, a.pool, max_n
    ));
    let ts = Instant::now();
    let pool_seed = a.data_seed;
    let palm_templates = |i: usize| -> Vec<Template> {
        if i < n_real {
            real[i].clone()
        } else {
            distractor(pool_seed, (i - n_real) as u64, &pool, a.enroll)
        }
    };
    let store = Store::open_or_write(&store_path, max_n, palm_templates)?;
    eprintln!(
        "template store {} ready in {:.0} s",
        store_path.display(),
        ts.elapsed().as_secs_f64()
    );

    let config = index_config(&a);
    let matcher = Matcher::default();
    let prepared_probes: Vec<Prepared> = probes.iter().map(|(_, t, _)| Prepared::new(t)).collect();
    let targets = [1e-3, 1e-2];
    let mut reports = Vec::new();

    for &n in &a.sizes {
        eprintln!("== N = {n}");
        // 3. Index build (insert time only; templates are read from the store first).
        let (index, build) = build_index(&config, &store, n, a.one_by_one)?;
        let mem = index.memory_bytes();
        eprintln!(
            "index: {n} palms in {build:.2} s, {:.0} bytes/palm, {} postings",
            mem as f64 / n as f64,
            index.postings()
        );
        // Probes valid at this N: enrolled ones whose palm is in the gallery (all real palms
        // are when n >= n_real).
        let in_gallery = |p: &Option<usize>| p.is_none_or(|p| p < n);
        let probe_ix: Vec<usize> = (0..probes.len())
            .filter(|&i| in_gallery(&probes[i].0))
            .collect();

        // 4. Recall of the candidate stage.
        let max_k = a.k.max(50);
        let ranks: Vec<Option<usize>> = probe_ix
            .iter()
            .filter(|&&i| probes[i].0.is_some())
            .map(|&i| {
                let c = index.candidates(&probes[i].1, max_k);
                let want = probes[i].0.unwrap() as PalmId;
                c.iter().position(|&p| p == want)
            })
            .collect();
        let ks = [1usize, 5, 10, 20, 30, 50];
        let recall_at: Vec<(usize, f64)> = ks
            .iter()
            .map(|&k| {
                (
                    k,
                    ranks.iter().filter(|r| r.is_some_and(|r| r < k)).count() as f64
                        / ranks.len().max(1) as f64,
                )
            })
            .collect();
        eprintln!("recall@k: {recall_at:?}");
        if a.recall_only {
            continue;
        }

        // 5. Identification, one thread: candidates + fetch + decode + prepare + verify.
        let identify = |i: usize| -> Result<(Outcome, f64, f64)> {
            let t = Instant::now();
            let cands = index.candidates(&probes[i].1, a.k);
            let tc = t.elapsed().as_secs_f64();
            let palms = cands.iter().map(|&c| fetch_prepared(&store, c as usize));
            let o = verify(&matcher, &prepared_probes[i], palms, Rule::of(&a))?;
            Ok((o, t.elapsed().as_secs_f64(), tc))
        };
        let mut outcomes = vec![Outcome::default(); probes.len()];
        let mut lat = Vec::new();
        let mut clat = Vec::new();
        for &i in &probe_ix {
            let (o, l, c) = identify(i)?;
            outcomes[i] = o;
            lat.push(l * 1e3);
            clat.push(c * 1e3);
        }
        let load = load_average();
        // Throughput on `threads` threads.
        let next = AtomicUsize::new(0);
        let tt = Instant::now();
        std::thread::scope(|s| {
            for _ in 0..a.threads.max(1) {
                s.spawn(|| loop {
                    let j = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&i) = probe_ix.get(j) else { return };
                    let _ = identify(i);
                });
            }
        });
        let throughput = probe_ix.len() as f64 / tt.elapsed().as_secs_f64();

        let split = |o: &[Outcome], ix: &[usize]| -> (Vec<(bool, f64)>, Vec<f64>) {
            let mut e = Vec::new();
            let mut ne = Vec::new();
            for &i in ix {
                match probes[i].0 {
                    Some(p) => e.push((o[i].best == Some(p), o[i].score as f64)),
                    None => ne.push(o[i].score as f64),
                }
            }
            (e, ne)
        };
        let (e, ne) = split(&outcomes, &probe_ix);
        let index_fnir = fnir_rows(&e, &ne, &targets);
        // Gap bound: probes whose palm would clear the threshold but is not shortlisted.
        let mut genuine_unlisted: Vec<u32> = Vec::new();
        let mut n_enr = 0;
        for (&i, r) in probe_ix
            .iter()
            .filter(|&&i| probes[i].0.is_some())
            .zip(&ranks)
        {
            n_enr += 1;
            if r.is_none_or(|r| r >= a.k) {
                let g: Vec<Prepared> = store
                    .fetch(probes[i].0.unwrap())?
                    .iter()
                    .map(Prepared::new)
                    .collect();
                genuine_unlisted.push(matcher.compare_many(&prepared_probes[i], &g).score);
            }
        }
        let shortlist_miss_bound: Vec<(f64, f64)> = index_fnir
            .iter()
            .map(|r| {
                let m = genuine_unlisted
                    .iter()
                    .filter(|&&s| s >= r.threshold)
                    .count();
                (r.fpir_target, m as f64 / n_enr.max(1) as f64)
            })
            .collect();
        eprintln!(
            "index k={}: latency p50 {:.1} p95 {:.1} p99 {:.1} ms, {throughput:.0}/s on {} threads, FNIR {:?}, gap bound {shortlist_miss_bound:?} (load {load})",
            a.k,
            pct(&mut lat, 50.0),
            pct(&mut lat, 95.0),
            pct(&mut lat, 99.0),
            a.threads,
            index_fnir.iter().map(|r| (r.fpir_target, r.fnir, r.threshold)).collect::<Vec<_>>()
        );

        // 6. Exhaustive search with the same matcher (all palms prepared in memory).
        let (mut exhaustive_fnir, mut index_same, mut exh_ms, mut exh_probes) =
            (None, None, None, 0);
        if n <= a.exhaustive_max_n {
            let per = a.exhaustive_probes.unwrap_or(usize::MAX);
            let ix: Vec<usize> = subset(&probes, &probe_ix, per);
            exh_probes = ix.len();
            let gallery: Vec<Vec<Prepared>> = (0..n)
                .map(|i| Ok(store.fetch(i)?.iter().map(Prepared::new).collect()))
                .collect::<Result<_>>()?;
            let out: Vec<Mutex<Outcome>> = probes
                .iter()
                .map(|_| Mutex::new(Outcome::default()))
                .collect();
            let next = AtomicUsize::new(0);
            let busy = Mutex::new(0f64);
            let te = Instant::now();
            std::thread::scope(|s| {
                for _ in 0..a.threads.max(1) {
                    s.spawn(|| loop {
                        let j = next.fetch_add(1, Ordering::Relaxed);
                        let Some(&i) = ix.get(j) else { return };
                        let t = Instant::now();
                        let palms = gallery.iter().cloned().enumerate().map(Ok);
                        let o = verify(&matcher, &prepared_probes[i], palms, Rule::EXACT)
                            .expect("in-memory gallery");
                        *busy.lock().unwrap() += t.elapsed().as_secs_f64();
                        *out[i].lock().unwrap() = o;
                        if j.is_multiple_of(200) {
                            eprintln!(
                                "  exhaustive {j}/{} ({:.0} s)",
                                ix.len(),
                                te.elapsed().as_secs_f64()
                            );
                        }
                    });
                }
            });
            let o: Vec<Outcome> = out.into_iter().map(|m| m.into_inner().unwrap()).collect();
            let (e2, ne2) = split(&o, &ix);
            exhaustive_fnir = Some(fnir_rows(&e2, &ne2, &targets));
            let (e3, ne3) = split(&outcomes, &ix);
            index_same = Some(fnir_rows(&e3, &ne3, &targets));
            exh_ms = Some(*busy.lock().unwrap() * 1e3 / ix.len().max(1) as f64);
            eprintln!(
                "exhaustive ({} probes): FNIR {:?}; index on the same probes {:?}; {:.0} ms/probe",
                ix.len(),
                exhaustive_fnir
                    .as_ref()
                    .unwrap()
                    .iter()
                    .map(|r| (r.fpir_target, r.fnir, r.threshold))
                    .collect::<Vec<_>>(),
                index_same
                    .as_ref()
                    .unwrap()
                    .iter()
                    .map(|r| (r.fpir_target, r.fnir, r.threshold))
                    .collect::<Vec<_>>(),
                exh_ms.unwrap()
            );
        }

        // 7. The seed's exhaustive baseline: real palms only (distractors have no images), one
        // enrollment capture per palm as the seed stored.
        let (mut seed_fnir, mut seed_ms, mut seed_n) = (None, None, 0);
        if a.seed_probes > 0 && n <= n_real {
            let ix = subset(&probes, &probe_ix, a.seed_probes);
            seed_n = ix.len();
            let (sr, ms) = seed_baseline(&a, &probes, &ix, &gallery_ids[..n], &enrolled_caps)?;
            let (mut e4, mut ne4) = (Vec::new(), Vec::new());
            for (&i, (best, score)) in ix.iter().zip(sr) {
                match probes[i].0 {
                    Some(p) => e4.push((best == Some(p), score)),
                    None => ne4.push(score),
                }
            }
            seed_fnir = Some(fnir_rows_real(&e4, &ne4, &targets));
            seed_ms = Some(ms);
            eprintln!(
                "seed exhaustive ({} probes): FNIR {:?}, {ms:.0} ms/probe",
                ix.len(),
                seed_fnir
                    .as_ref()
                    .unwrap()
                    .iter()
                    .map(|r| (r.fpir_target, r.fnir))
                    .collect::<Vec<_>>()
            );
        }

        reports.push(SizeReport {
            n,
            enrolled_real: n_real.min(n),
            distractors: n.saturating_sub(n_real),
            index_build_s: build,
            index_memory_bytes: mem,
            index_bytes_per_palm: mem as f64 / n as f64,
            index_postings: index.postings(),
            recall_at,
            k: a.k,
            latency_ms_p50: pct(&mut lat, 50.0),
            latency_ms_p95: pct(&mut lat, 95.0),
            latency_ms_p99: pct(&mut lat, 99.0),
            candidates_ms_p50: pct(&mut clat, 50.0),
            candidates_ms_p95: pct(&mut clat, 95.0),
            throughput_per_s_2_threads: throughput,
            load_average: load,
            index_fnir,
            shortlist_miss_bound,
            exhaustive_probes: exh_probes,
            exhaustive_fnir,
            index_fnir_same_probes: index_same,
            exhaustive_ms_per_probe_one_thread: exh_ms,
            seed_probes: seed_n,
            seed_fnir,
            seed_ms_per_probe_one_thread: seed_ms,
        });
        if let Some(p) = &a.json {
            write_json(p, &a, n_real, fte, fta, &config, &reports)?;
        }
    }
    if let Some(p) = &a.json {
        write_json(p, &a, n_real, fte, fta, &config, &reports)?;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn write_json(
    p: &Path,
    a: &BenchIdentifyArgs,
    _n_real: usize,
    fte: usize,
    fta: usize,
    config: &HashIndexConfig,
    reports: &[SizeReport],
) -> Result<()> {
    let r = Report {
        command: std::env::args().collect::<Vec<_>>().join(" "),
        machine: format!(
            "{} cores, {}",
            std::thread::available_parallelism().map_or(1, |n| n.get()),
            std::fs::read_to_string("/proc/cpuinfo")
                .ok()
                .and_then(
                    |s| s.lines().find(|l| l.starts_with("model name")).map(|l| l
                        .split(':')
                        .nth(1)
                        .unwrap_or("")
                        .trim()
                        .to_string())
                )
                .unwrap_or_default()
        ),
        probes_enrolled: a.probes,
        probes_not_enrolled: a.probes,
        enroll: a.enroll,
        pool: a.pool,
        failures_to_enroll: fte,
        failures_to_acquire: fta,
        index_config: format!("{config:?}"),
        sizes: Vec::new(),
    };
    let mut v = serde_json::to_value(&r)?;
    v["sizes"] = serde_json::to_value(reports)?;
    std::fs::write(p, serde_json::to_string_pretty(&v)?)?;
    Ok(())
}

/// Up to `per` probes of each kind, in order.
fn subset(probes: &[Probe], ix: &[usize], per: usize) -> Vec<usize> {
    let mut e = 0;
    let mut ne = 0;
    ix.iter()
        .copied()
        .filter(|&i| {
            let c = if probes[i].0.is_some() {
                &mut e
            } else {
                &mut ne
            };
            *c += 1;
            *c <= per
        })
        .collect()
}

/// Probe captures of the enrolled identities (sample 20 on), cached apart from enrollment.
fn probe_captures(a: &BenchIdentifyArgs, n: usize) -> Result<Vec<Captures>> {
    let jobs: Vec<Job> = (0..n as u64)
        .map(|id| Job {
            id,
            first: PROBE_SAMPLE,
            want: 1,
        })
        .collect();
    let probe_cache = BenchIdentifyArgs {
        cache: a.cache.join("probes"),
        sizes: vec![],
        json: None,
        ..clone_args(a)
    };
    captures(&probe_cache, &jobs, "enrolled probes")
}

fn clone_args(a: &BenchIdentifyArgs) -> BenchIdentifyArgs {
    BenchIdentifyArgs {
        cache: a.cache.clone(),
        sizes: a.sizes.clone(),
        probes: a.probes,
        enroll: a.enroll,
        pool: a.pool,
        k: a.k,
        threads: a.threads,
        exhaustive_max_n: a.exhaustive_max_n,
        exhaustive_probes: a.exhaustive_probes,
        seed_probes: a.seed_probes,
        data_seed: a.data_seed,
        prepare_only: a.prepare_only,
        json: a.json.clone(),
        tables: a.tables,
        key_bits: a.key_bits,
        max_postings: a.max_postings,
        probe_radius: a.probe_radius,
        no_normalise: a.no_normalise,
        grid: a.grid,
        probe_span: a.probe_span,
        angle_bins: a.angle_bins,
        turned_tables: a.turned_tables,
        turned_stride: a.turned_stride,
        turned_stop_ratio: a.turned_stop_ratio,
        stop_ratio: a.stop_ratio,
        recall_only: a.recall_only,
        verify_all: a.verify_all,
        prune_below: a.prune_below,
        one_by_one: a.one_by_one,
        images: a.images.clone(),
        input: a.input,
        strangers: a.strangers,
        limit_identities: a.limit_identities,
    }
}

/// The seed's pipeline, exhaustive over the real palms: features of the first good enrollment
/// capture of each palm and of each probe (rendered again: the seed's features are not
/// cached), then every probe against every palm on `threads` threads. Returns per probe the
/// best palm (gallery position) and score, and the mean one-thread time per probe.
fn seed_baseline(
    a: &BenchIdentifyArgs,
    probes: &[Probe],
    ix: &[usize],
    gallery_ids: &[PalmId],
    enrolled_caps: &[Captures],
) -> Result<(Ranked, f64)> {
    let gallery_src = gallery_ids.iter().map(|&id| {
        let s = enrolled_caps[id as usize]
            .iter()
            .find(|c| c.1.is_some())
            .map_or(0, |c| c.0);
        (id as u64, s)
    });
    let wanted: Vec<(u64, u64)> = gallery_src.chain(ix.iter().map(|&i| probes[i].2)).collect();
    let feats: Vec<Mutex<Option<SeedFeatures>>> = wanted.iter().map(|_| Mutex::new(None)).collect();
    let next = AtomicUsize::new(0);
    let t0 = Instant::now();
    std::thread::scope(|s| -> Result<()> {
        let hs: Vec<_> = (0..a.threads.max(1))
            .map(|_| {
                s.spawn(|| -> Result<()> {
                    loop {
                        let j = next.fetch_add(1, Ordering::Relaxed);
                        let Some(&(id, sample)) = wanted.get(j) else {
                            return Ok(());
                        };
                        let f = Identity::new(a.data_seed, id).capture(sample);
                        *feats[j].lock().unwrap() = Some(extract_seed(&f.gray, f.width, f.height)?);
                        if j.is_multiple_of(500) {
                            eprintln!(
                                "  seed features {j}/{} ({:.0} s)",
                                wanted.len(),
                                t0.elapsed().as_secs_f64()
                            );
                        }
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().expect("seed worker panicked")?;
        }
        Ok(())
    })?;
    let feats: Vec<SeedFeatures> = feats
        .into_iter()
        .map(|m| m.into_inner().unwrap().unwrap())
        .collect();
    let (gallery, probe_feats) = feats.split_at(gallery_ids.len());
    let out: Vec<Mutex<(Option<usize>, f64)>> =
        ix.iter().map(|_| Mutex::new((None, 0.0))).collect();
    let busy = Mutex::new(0f64);
    let next = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..a.threads.max(1) {
            s.spawn(|| loop {
                let j = next.fetch_add(1, Ordering::Relaxed);
                let Some(pf) = probe_feats.get(j) else { return };
                let t = Instant::now();
                let mut best = (None, -1.0);
                for (g, gf) in gallery.iter().enumerate() {
                    let sc = seed_compare(pf, gf);
                    if sc > best.1 {
                        best = (Some(g), sc);
                    }
                }
                *busy.lock().unwrap() += t.elapsed().as_secs_f64();
                *out[j].lock().unwrap() = best;
            });
        }
    });
    let ms = *busy.lock().unwrap() * 1e3 / ix.len().max(1) as f64;
    Ok((
        out.into_iter().map(|m| m.into_inner().unwrap()).collect(),
        ms,
    ))
}
