//! `bench-identify --images DIR`: the identification benchmark on real palms.
//!
//! - **Palms**: the images of a folder laid out as `eval` reads it (`ID_SAMPLE.ext`), read as
//!   whole hands or ROI crops (`--input`, detected as `eval` does). Of each identity the first
//!   `--enroll` samples (by number) are enrolled as the palm (the ones that extract), the
//!   others are its probes. An identity none of whose enrollment samples extracts is a
//!   failure to enroll; its probes are left out.
//! - **Strangers**: `--strangers` identities, spread evenly over the sorted names, are not
//!   enrolled; all their samples are probes of palms not enrolled (for FNIR at FPIR).
//! - **Distractors**: generated palms (the recombined synthetic palms of the synthetic
//!   benchmark) fill the gallery up to each `--sizes`/`--gallery` size.
//! - **Exhaustive search** with the same matcher (`Matcher::compare_many`) scores every probe
//!   against every real palm; it is exact at the real gallery size. Beyond it (distractors
//!   added) exhaustive search is not run (N × 3 comparisons per probe); its real-palm figures
//!   are then bounds: adding palms can only lower exhaustive search's rank-1 and recall@k and
//!   raise its FNIR, so an index that is within x points of them is within x points of
//!   exhaustive search at the larger N too.
//!
//! Extracted templates and the exhaustive score matrix are cached under `--cache` (keyed by
//! the image files, the input mode and the extractor/matcher configurations; delete the cache
//! after changing extraction or matcher code). Nothing is written next to the images.

use super::{
    build_index, captures, distractor, fetch_prepared, fnir_rows, fnv, good, index_config, pct,
    verify, BenchIdentifyArgs, FnirRow, Job, Outcome, Rule, Store, FNV0, POOL_BASE,
};
use crate::eval::{detect_input, list_images, load_gray, thread_cpu, Input};
use anyhow::{bail, Context, Result};
use palmline_server::identify::{CandidateIndex, PalmId};
use palmline_shared::palm::extract::{set_opencv_threads, ExtractConfig, Extractor};
use palmline_shared::palm::matcher::{Matcher, Prepared};
use palmline_shared::palm::template::Template;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// The shortlist lengths whose recall is reported.
const KS: [usize; 5] = [1, 8, 20, 32, 100];
/// FPIR targets of the FNIR figures.
const TARGETS: [f64; 2] = [1e-2, 1e-3];

/// A probe of the real set.
struct RealProbe {
    /// Gallery position of its palm (None: a stranger).
    palm: Option<usize>,
    template: Template,
    prepared: Prepared,
}

/// The real set, split into enrolled palms and probes.
struct RealSet {
    input: Input,
    images: usize,
    identities: usize,
    /// Enrolled palms, gallery positions 0...
    palms: Vec<Vec<Template>>,
    probes: Vec<RealProbe>,
    strangers: usize,
    failures_to_enroll: usize,
    failures_to_acquire: usize,
    /// Cache key of the extracted templates.
    key: u64,
}

/// The identities held out as strangers: `s` of `n`, spread evenly.
pub(crate) fn stranger_ids(n: usize, s: usize) -> Vec<usize> {
    let s = s.min(n);
    (0..s).map(|j| (2 * j + 1) * n / (2 * s)).collect()
}

/// Every image's template (None: rejected), from the cache or extracted on `threads` threads.
fn extract_all(
    a: &BenchIdentifyArgs,
    paths: &[PathBuf],
    input: Input,
) -> Result<(Vec<Option<Template>>, u64)> {
    let config = ExtractConfig {
        input_is_roi: input == Input::Roi,
        ..ExtractConfig::default()
    };
    let mut key = fnv(FNV0, format!("{config:?}").as_bytes());
    for p in paths {
        let m = std::fs::metadata(p).with_context(|| format!("reading {}", p.display()))?;
        let mtime = m
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs());
        key = fnv(key, p.to_string_lossy().as_bytes());
        key = fnv(key, &m.len().to_le_bytes());
        key = fnv(key, &mtime.to_le_bytes());
    }
    std::fs::create_dir_all(&a.cache)?;
    let path = a.cache.join(format!("real-{key:016x}.tpl"));
    if let Ok(b) = std::fs::read(&path) {
        let mut out = Vec::with_capacity(paths.len());
        let mut p = 0;
        while p + 4 <= b.len() {
            let len = u32::from_le_bytes(b[p..p + 4].try_into()?) as usize;
            p += 4;
            out.push(if len == 0 {
                None
            } else {
                let t = Template::decode(b.get(p..p + len).context("truncated cache")?)?;
                p += len;
                Some(t)
            });
        }
        if out.len() == paths.len() {
            eprintln!("templates: {} (cached)", path.display());
            return Ok((out, key));
        }
    }
    set_opencv_threads(1)?;
    let slots: Vec<Mutex<Option<Template>>> = paths.iter().map(|_| Mutex::new(None)).collect();
    let next = AtomicUsize::new(0);
    let t0 = Instant::now();
    std::thread::scope(|s| -> Result<()> {
        let hs: Vec<_> = (0..a.threads.max(1))
            .map(|_| {
                s.spawn(|| -> Result<()> {
                    let mut ex = Extractor::new(config.clone())?;
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(p) = paths.get(i) else { return Ok(()) };
                        let (gray, w, h) = load_gray(p)?;
                        *slots[i].lock().unwrap() = ex.extract(&gray, w, h).ok();
                        if (i + 1).is_multiple_of(500) {
                            eprintln!(
                                "  extracted {}/{} ({:.0} s)",
                                i + 1,
                                paths.len(),
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
    let out: Vec<Option<Template>> = slots.into_iter().map(|m| m.into_inner().unwrap()).collect();
    let mut b = Vec::new();
    for t in &out {
        let e = t.as_ref().map(Template::encode).unwrap_or_default();
        b.extend_from_slice(&(e.len() as u32).to_le_bytes());
        b.extend_from_slice(&e);
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, &b)?;
    std::fs::rename(&tmp, &path)?;
    eprintln!(
        "templates: {} images extracted in {:.0} s",
        paths.len(),
        t0.elapsed().as_secs_f64()
    );
    Ok((out, key))
}

fn load_set(a: &BenchIdentifyArgs, dir: &Path) -> Result<RealSet> {
    let (images, names) = list_images(dir, a.limit_identities)?;
    if images.is_empty() {
        bail!("no ID_SAMPLE.ext images in {}", dir.display());
    }
    let paths: Vec<PathBuf> = images.iter().map(|i| i.path.clone()).collect();
    let input = match a.input {
        Input::Auto => {
            let (mode, why) = detect_input(&paths)?;
            eprintln!("input: {mode:?} (auto: {why}; force with --input hand|roi)");
            mode
        }
        m => m,
    };
    let (templates, key) = extract_all(a, &paths, input)?;
    let strangers = a.strangers.unwrap_or(names.len() / 10).min(names.len());
    let stranger = stranger_ids(names.len(), strangers);
    let mut per_id: Vec<Vec<usize>> = vec![Vec::new(); names.len()];
    for (i, img) in images.iter().enumerate() {
        per_id[img.identity].push(i);
    }
    let mut set = RealSet {
        input,
        images: images.len(),
        identities: names.len(),
        palms: Vec::new(),
        probes: Vec::new(),
        strangers,
        failures_to_enroll: 0,
        failures_to_acquire: 0,
        key,
    };
    let probe = |palm, i: usize, set: &mut RealSet| match &templates[i] {
        Some(t) => set.probes.push(RealProbe {
            palm,
            template: t.clone(),
            prepared: Prepared::new(t),
        }),
        None => set.failures_to_acquire += 1,
    };
    for (id, ix) in per_id.iter_mut().enumerate() {
        ix.sort_by_key(|&i| images[i].sample);
        if stranger.binary_search(&id).is_ok() {
            for &i in ix.iter() {
                probe(None, i, &mut set);
            }
            continue;
        }
        let e = a.enroll.min(ix.len());
        let enrolled: Vec<Template> = ix[..e]
            .iter()
            .filter_map(|&i| templates[i].clone())
            .collect();
        if enrolled.is_empty() {
            set.failures_to_enroll += 1;
            continue;
        }
        let pos = set.palms.len();
        set.palms.push(enrolled);
        for &i in &ix[e..] {
            probe(Some(pos), i, &mut set);
        }
    }
    Ok(set)
}

/// `scores[probe][palm]`: `compare_many` of every probe against every real palm, cached.
fn exhaustive_scores(a: &BenchIdentifyArgs, set: &RealSet) -> Result<Vec<Vec<u16>>> {
    let matcher = Matcher::default();
    let mut key = fnv(set.key, format!("{:?}", matcher.config).as_bytes());
    key = fnv(key, &(a.enroll as u64).to_le_bytes());
    key = fnv(key, &(set.strangers as u64).to_le_bytes());
    key = fnv(key, &(set.palms.len() as u64).to_le_bytes());
    key = fnv(key, &(set.probes.len() as u64).to_le_bytes());
    let path = a
        .cache
        .join(format!("real-{:016x}-exhaustive-{key:016x}.bin", set.key));
    let n = set.palms.len();
    if let Ok(b) = std::fs::read(&path) {
        if b.len() == 2 * n * set.probes.len() {
            eprintln!("exhaustive scores: {} (cached)", path.display());
            return Ok(b
                .chunks_exact(2 * n.max(1))
                .map(|r| {
                    r.chunks_exact(2)
                        .map(|c| u16::from_le_bytes([c[0], c[1]]))
                        .collect()
                })
                .collect());
        }
    }
    let gallery: Vec<Vec<Prepared>> = set
        .palms
        .iter()
        .map(|p| p.iter().map(Prepared::new).collect())
        .collect();
    let rows: Vec<Mutex<Vec<u16>>> = set.probes.iter().map(|_| Mutex::new(Vec::new())).collect();
    let next = AtomicUsize::new(0);
    let t0 = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..a.threads.max(1) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(p) = set.probes.get(i) else { return };
                let r: Vec<u16> = gallery
                    .iter()
                    .map(|g| {
                        matcher
                            .compare_many(&p.prepared, g)
                            .score
                            .min(u16::MAX as u32) as u16
                    })
                    .collect();
                *rows[i].lock().unwrap() = r;
                if (i + 1).is_multiple_of(200) {
                    eprintln!(
                        "  exhaustive {}/{} ({:.0} s)",
                        i + 1,
                        set.probes.len(),
                        t0.elapsed().as_secs_f64()
                    );
                }
            });
        }
    });
    let rows: Vec<Vec<u16>> = rows.into_iter().map(|m| m.into_inner().unwrap()).collect();
    let b: Vec<u8> = rows
        .iter()
        .flatten()
        .flat_map(|s| s.to_le_bytes())
        .collect();
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, &b)?;
    std::fs::rename(&tmp, &path)?;
    eprintln!(
        "exhaustive scores: {} probes × {n} palms in {:.0} s",
        set.probes.len(),
        t0.elapsed().as_secs_f64()
    );
    Ok(rows)
}

#[derive(Serialize)]
struct Recall {
    k: usize,
    index: f64,
    exhaustive: f64,
}

#[derive(Serialize)]
struct SizeReport {
    n: usize,
    real_palms: usize,
    distractors: usize,
    /// Exhaustive figures are exact (gallery of real palms only) or bounds (distractors added:
    /// exhaustive search over the whole gallery can only do worse).
    exhaustive_exact: bool,
    index_build_s: f64,
    index_memory_bytes: usize,
    index_bytes_per_palm: f64,
    index_postings_per_palm: f64,
    enrolled_probes: usize,
    stranger_probes: usize,
    recall_at: Vec<Recall>,
    k: usize,
    /// The palm among the first k candidates or the k of the turned query (what the
    /// server's two stages can verify), enrolled probes.
    recall_two_stage: f64,
    /// The turned query alone (11 hypotheses), one thread: wall time.
    turned_ms_p50: f64,
    turned_ms_p95: f64,
    /// Rank-1 of index + matcher (shortlist of k) and of exhaustive search, enrolled probes.
    rank1_index: Option<f64>,
    rank1_exhaustive: f64,
    fnir_index: Option<Vec<FnirRow>>,
    fnir_exhaustive: Vec<FnirRow>,
    /// Candidate query alone, one thread: wall and thread CPU time.
    candidates_ms_p50: f64,
    candidates_ms_p95: f64,
    candidates_cpu_ms_p50: f64,
    candidates_cpu_ms_p95: f64,
    /// Candidates + fetch + decode + verify k palms, one thread, wall time.
    identify_ms_p50: Option<f64>,
    identify_ms_p95: Option<f64>,
    /// The server's two stages: the turned query and k more palms verified when the first
    /// k give no accept (`PalmPolicy::default`).
    two_stage: Option<Stage>,
    load_average: String,
}

#[derive(Serialize)]
struct Report {
    command: String,
    images_dir: String,
    input: String,
    images: usize,
    identities: usize,
    enroll: usize,
    real_palms: usize,
    strangers: usize,
    enrolled_probes: usize,
    stranger_probes: usize,
    failures_to_enroll: usize,
    failures_to_acquire: usize,
    index_config: String,
    sizes: Vec<SizeReport>,
}

pub(super) fn run(a: &BenchIdentifyArgs) -> Result<()> {
    let dir = a.images.as_deref().expect("--images");
    if a.enroll == 0 || a.sizes.is_empty() {
        bail!("need sizes and enroll > 0");
    }
    let t0 = Instant::now();
    let set = load_set(a, dir)?;
    let n_real = set.palms.len();
    if n_real == 0 {
        bail!("no palm enrolled from {}", dir.display());
    }
    let n_enr = set.probes.iter().filter(|p| p.palm.is_some()).count();
    eprintln!(
        "{}: {} images, {} identities ({} strangers), input {:?}: {n_real} palms enrolled ({} failed), {} probes of enrolled palms, {} of strangers ({} not acquired)",
        dir.display(),
        set.images,
        set.identities,
        set.strangers,
        set.input,
        set.failures_to_enroll,
        n_enr,
        set.probes.len() - n_enr,
        set.failures_to_acquire
    );
    let sizes: Vec<usize> = a
        .sizes
        .iter()
        .map(|&s| if s == 0 { n_real } else { s })
        .collect();
    let max_n = sizes.iter().copied().max().unwrap_or(n_real).max(n_real);
    let scores = exhaustive_scores(a, &set)?;
    let pool: Vec<Vec<Template>> = if max_n > n_real {
        let jobs: Vec<Job> = (0..a.pool as u64)
            .map(|i| Job {
                id: POOL_BASE + i,
                first: 0,
                want: a.enroll,
            })
            .collect();
        captures(a, &jobs, "pool")?
            .iter()
            .map(good)
            .filter(|v| !v.is_empty())
            .collect()
    } else {
        Vec::new()
    };
    if max_n > n_real {
        super::check_pool(&pool, a.enroll)?;
    }
    eprintln!("data ready in {:.0} s", t0.elapsed().as_secs_f64());
    if a.prepare_only {
        return Ok(());
    }
    let store_path = a.cache.join(format!(
        "store-real-{:016x}-e{}-x{}-s{}-p{}-g{:08x}-n{max_n}.bin",
        set.key,
        a.enroll,
        set.strangers,
        a.data_seed,
        a.pool,
        super::extract_tag()
    ));
    let store = Store::open_or_write(&store_path, max_n, |i| {
        if i < n_real {
            set.palms[i].clone()
        } else {
            distractor(a.data_seed, (i - n_real) as u64, &pool, a.enroll)
        }
    })?;
    let config = index_config(a);
    eprintln!("index: {config:?}");
    let matcher = Matcher::default();
    let mut reports = Vec::new();
    for &n in &sizes {
        reports.push(measure(a, &set, &scores, &store, &config, &matcher, n)?);
        if let Some(p) = &a.json {
            write_json(p, a, &set, &config, &reports)?;
        }
    }
    print_table(&reports);
    Ok(())
}

/// Exhaustive outcome of probe `i` over real palms `0..n_r`: (best palm, its score, whether
/// the probe's own palm is strictly above every other).
fn exhaustive_outcome(row: &[u16], palm: Option<usize>, n_r: usize) -> (usize, u16, bool) {
    let row = &row[..n_r];
    let (best, &score) = row
        .iter()
        .enumerate()
        .max_by(|x, y| x.1.cmp(y.1).then(y.0.cmp(&x.0)))
        .expect("at least one palm");
    let ok = palm.is_some_and(|p| row.iter().enumerate().all(|(j, &s)| j == p || s < row[p]));
    (best, score, ok)
}

fn measure(
    a: &BenchIdentifyArgs,
    set: &RealSet,
    scores: &[Vec<u16>],
    store: &Store,
    config: &palmline_server::identify::index::HashIndexConfig,
    matcher: &Matcher,
    n: usize,
) -> Result<SizeReport> {
    let n_real = set.palms.len();
    let n_r = n.min(n_real);
    let (index, build) = build_index(config, store, n, a.one_by_one)?;
    let mem = index.memory_bytes();
    // Probes whose palm is in this gallery, and the strangers.
    let ix: Vec<usize> = (0..set.probes.len())
        .filter(|&i| set.probes[i].palm.is_none_or(|p| p < n_r))
        .collect();
    let enrolled: Vec<usize> = ix
        .iter()
        .copied()
        .filter(|&i| set.probes[i].palm.is_some())
        .collect();
    let strangers = ix.len() - enrolled.len();

    // 1. The index alone: rank of the palm among max(100, k) candidates, timed per query.
    let max_k = KS[KS.len() - 1].max(a.k);
    let (mut wall, mut cpu) = (Vec::new(), Vec::new());
    let mut ranks = Vec::new();
    for &i in &enrolled {
        let p = &set.probes[i];
        let (t, c) = (Instant::now(), thread_cpu());
        let cands = index.candidates(&p.template, max_k);
        cpu.push((thread_cpu() - c) * 1e3);
        wall.push(t.elapsed().as_secs_f64() * 1e3);
        ranks.push(cands.iter().position(|&x| x == p.palm.unwrap() as PalmId));
    }
    let (mut turned_ms, mut two) = (Vec::new(), 0usize);
    for &i in &enrolled {
        let (p, own) = (&set.probes[i], set.probes[i].palm.unwrap() as PalmId);
        let t = Instant::now();
        let cands = index.candidates_turned(&p.template, a.k);
        turned_ms.push(t.elapsed().as_secs_f64() * 1e3);
        let first = index.candidates(&p.template, a.k);
        two += usize::from(first.contains(&own) || cands.contains(&own));
    }
    // 2. Exhaustive search over the real palms.
    let exh: Vec<(usize, u16, bool)> = ix
        .iter()
        .map(|&i| exhaustive_outcome(&scores[i], set.probes[i].palm, n_r))
        .collect();
    let exh_rank: Vec<usize> = enrolled
        .iter()
        .map(|&i| {
            let row = &scores[i][..n_r];
            let own = row[set.probes[i].palm.unwrap()];
            row.iter().filter(|&&s| s >= own).count() - 1
        })
        .collect();
    let frac = |c: usize| c as f64 / enrolled.len().max(1) as f64;
    let recall_at: Vec<Recall> = KS
        .iter()
        .map(|&k| Recall {
            k,
            index: frac(ranks.iter().filter(|r| r.is_some_and(|r| r < k)).count()),
            exhaustive: frac(exh_rank.iter().filter(|&&r| r < k).count()),
        })
        .collect();
    let (mut e, mut ne) = (Vec::new(), Vec::new());
    for (j, &i) in ix.iter().enumerate() {
        let (_, s, ok) = exh[j];
        match set.probes[i].palm {
            Some(_) => e.push((ok, s as f64)),
            None => ne.push(s as f64),
        }
    }
    let fnir_exhaustive = fnir_rows(&e, &ne, &TARGETS);
    let rank1_exhaustive = frac(e.iter().filter(|x| x.0).count());

    // 3. Index + matcher, one thread: candidates, fetch, decode, prepare, verify; then the
    // server's two stages.
    let (mut one, mut two_stage) = (None, None);
    if !a.recall_only {
        let ctx = Ctx {
            a,
            set,
            index: &index,
            store,
            matcher,
        };
        one = Some(ctx.stage(&ix, false)?);
        two_stage = Some(ctx.stage(&ix, true)?);
    }
    let r = SizeReport {
        n,
        real_palms: n_r,
        distractors: n - n_r,
        exhaustive_exact: n <= n_real,
        index_build_s: build,
        index_memory_bytes: mem,
        index_bytes_per_palm: mem as f64 / n as f64,
        index_postings_per_palm: index.postings() as f64 / n as f64,
        enrolled_probes: enrolled.len(),
        stranger_probes: strangers,
        recall_at,
        k: a.k,
        recall_two_stage: frac(two),
        turned_ms_p50: pct(&mut turned_ms, 50.0),
        turned_ms_p95: pct(&mut turned_ms, 95.0),
        rank1_index: one.as_ref().map(|o| o.rank1),
        rank1_exhaustive,
        fnir_index: one.as_ref().map(|o| o.fnir.clone()),
        fnir_exhaustive,
        candidates_ms_p50: pct(&mut wall, 50.0),
        candidates_ms_p95: pct(&mut wall, 95.0),
        candidates_cpu_ms_p50: pct(&mut cpu, 50.0),
        candidates_cpu_ms_p95: pct(&mut cpu, 95.0),
        identify_ms_p50: one.as_ref().map(|o| o.ms_p50),
        identify_ms_p95: one.as_ref().map(|o| o.ms_p95),
        two_stage,
        load_average: super::load_average(),
    };
    print_size(&r);
    Ok(r)
}

/// Identification through the index and the matcher, one thread.
#[derive(Serialize, Clone)]
struct Stage {
    rank1: f64,
    fnir: Vec<FnirRow>,
    ms_p50: f64,
    ms_p95: f64,
    /// Probes that ran the second (turned) stage.
    second_stage: f64,
    /// Palms verified per identification, mean (enrolled probes / strangers).
    verified_enrolled: f64,
    verified_strangers: f64,
}

struct Ctx<'a> {
    a: &'a BenchIdentifyArgs,
    set: &'a RealSet,
    index: &'a dyn CandidateIndex,
    store: &'a Store,
    matcher: &'a Matcher,
}

impl Ctx<'_> {
    /// Fetches, decodes, prepares and verifies `cands`.
    fn verify(&self, probe: &Prepared, cands: &[PalmId]) -> Result<Outcome> {
        let palms = cands
            .iter()
            .map(|&c| fetch_prepared(self.store, c as usize));
        verify(self.matcher, probe, palms, Rule::of(self.a))
    }

    /// One identification: the first k candidates, then (`two`) the turned query's k when
    /// none of the first reaches the grey level of the server's default policy.
    fn identify(&self, p: &RealProbe, two: bool) -> Result<(Outcome, bool)> {
        let first = self.index.candidates(&p.template, self.a.k);
        let o = self.verify(&p.prepared, &first)?;
        let policy = palmline_server::palm::PalmPolicy::default();
        if !two || o.score >= policy.grey {
            return Ok((o, false));
        }
        let second: Vec<PalmId> = self
            .index
            .candidates_turned(&p.template, self.a.k + first.len())
            .into_iter()
            .filter(|c| !first.contains(c))
            .take(self.a.k)
            .collect();
        Ok((merge(o, self.verify(&p.prepared, &second)?), true))
    }

    fn stage(&self, ix: &[usize], two: bool) -> Result<Stage> {
        let (mut lat, mut e, mut ne, mut seconds) = (Vec::new(), Vec::new(), Vec::new(), 0);
        let (mut ve, mut vn) = (0u64, 0u64);
        for &i in ix {
            let p = &self.set.probes[i];
            let t = Instant::now();
            let (o, second) = self.identify(p, two)?;
            lat.push(t.elapsed().as_secs_f64() * 1e3);
            seconds += usize::from(second);
            match p.palm {
                Some(palm) => {
                    ve += u64::from(o.verified);
                    e.push((o.best == Some(palm) && o.score > o.second, o.score as f64))
                }
                None => {
                    vn += u64::from(o.verified);
                    ne.push(o.score as f64)
                }
            }
        }
        Ok(Stage {
            rank1: e.iter().filter(|x| x.0).count() as f64 / e.len().max(1) as f64,
            fnir: fnir_rows(&e, &ne, &TARGETS),
            ms_p50: pct(&mut lat, 50.0),
            ms_p95: pct(&mut lat, 95.0),
            second_stage: seconds as f64 / ix.len().max(1) as f64,
            verified_enrolled: ve as f64 / e.len().max(1) as f64,
            verified_strangers: vn as f64 / ne.len().max(1) as f64,
        })
    }
}

/// The best of two verifications (`a` wins ties, as the earlier candidates do).
fn merge(a: Outcome, b: Outcome) -> Outcome {
    let verified = a.verified + b.verified;
    if b.best.is_some() && (a.best.is_none() || b.score > a.score) {
        Outcome {
            second: b.second.max(a.score),
            verified,
            ..b
        }
    } else {
        Outcome {
            second: a.second.max(b.score),
            verified,
            ..a
        }
    }
}

fn pc(v: f64) -> String {
    format!("{:.1}", 100.0 * v)
}

fn print_size(r: &SizeReport) {
    eprintln!(
        "== N = {} ({} real palms + {} distractors): index build {:.2} s, {:.0} B/palm ({:.0} postings/palm)",
        r.n,
        r.real_palms,
        r.distractors,
        r.index_build_s,
        r.index_bytes_per_palm,
        r.index_postings_per_palm
    );
    let ks: Vec<String> = r.recall_at.iter().map(|x| format!("@{:<5}", x.k)).collect();
    eprintln!("  recall      {}", ks.join(" "));
    let row = |f: &dyn Fn(&Recall) -> f64| {
        r.recall_at
            .iter()
            .map(|x| format!("{:<6}", pc(f(x))))
            .collect::<Vec<_>>()
            .join(" ")
    };
    eprintln!("  index       {}", row(&|x| x.index));
    eprintln!(
        "  exhaustive  {}{}",
        row(&|x| x.exhaustive),
        if r.exhaustive_exact {
            ""
        } else {
            "  (real palms only: an upper bound at this N)"
        }
    );
    let fnir = |v: &[FnirRow]| {
        v.iter()
            .map(|f| {
                format!(
                    "{} % at FPIR {:.0e} (t {})",
                    pc(f.fnir),
                    f.fpir_target,
                    f.threshold
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    if let (Some(r1), Some(f)) = (r.rank1_index, &r.fnir_index) {
        eprintln!(
            "  index+matcher (k = {}): rank-1 {} %, FNIR {}",
            r.k,
            pc(r1),
            fnir(f)
        );
    }
    if let Some(t) = &r.two_stage {
        eprintln!(
            "  two stages (k = {} + turned {}): rank-1 {} %, FNIR {}; second stage for {} % of probes; identify p50 {:.1} / p95 {:.1} ms; palms verified {:.1} per enrolled probe, {:.1} per stranger",
            r.k,
            r.k,
            pc(t.rank1),
            fnir(&t.fnir),
            pc(t.second_stage),
            t.ms_p50,
            t.ms_p95,
            t.verified_enrolled,
            t.verified_strangers
        );
    }
    eprintln!(
        "  shortlist recall@{} first stage {} %, with the turned query {} % (turned query p50 {:.2} / p95 {:.2} ms)",
        r.k,
        pc(r.recall_at.iter().find(|x| x.k == r.k).map_or(f64::NAN, |x| x.index)),
        pc(r.recall_two_stage),
        r.turned_ms_p50,
        r.turned_ms_p95
    );
    eprintln!(
        "  exhaustive:             rank-1 {} %, FNIR {}",
        pc(r.rank1_exhaustive),
        fnir(&r.fnir_exhaustive)
    );
    eprintln!(
        "  candidates p50 {:.2} / p95 {:.2} ms (thread CPU {:.2} / {:.2}){}; {} enrolled + {} stranger probes; load {}",
        r.candidates_ms_p50,
        r.candidates_ms_p95,
        r.candidates_cpu_ms_p50,
        r.candidates_cpu_ms_p95,
        match (r.identify_ms_p50, r.identify_ms_p95) {
            (Some(a), Some(b)) => format!("; identify p50 {a:.1} / p95 {b:.1} ms"),
            _ => String::new(),
        },
        r.enrolled_probes,
        r.stranger_probes,
        r.load_average
    );
}

/// One markdown row per size, for docs/IDENTIFY.md.
fn print_table(reports: &[SizeReport]) {
    println!(
        "| N | recall@1/8/20/32/100 index | exhaustive | rank-1 index+matcher / exhaustive | FNIR @ FPIR 1e-2 index / exhaustive | candidates p50 / p95 | B per palm |"
    );
    println!("|---|---|---|---|---|---|---|");
    for r in reports {
        let rec = |f: &dyn Fn(&Recall) -> f64| {
            r.recall_at
                .iter()
                .map(|x| pc(f(x)))
                .collect::<Vec<_>>()
                .join(" / ")
        };
        let f1 = |v: &[FnirRow]| v.first().map_or("-".into(), |f| pc(f.fnir));
        println!(
            "| {} ({} real) | {} | {}{} | {} / {} | {} / {} | {:.1} / {:.1} ms | {:.0} |",
            r.n,
            r.real_palms,
            rec(&|x| x.index),
            rec(&|x| x.exhaustive),
            if r.exhaustive_exact { "" } else { " (bound)" },
            r.rank1_index.map_or("-".into(), pc),
            pc(r.rank1_exhaustive),
            r.fnir_index.as_deref().map_or("-".into(), f1),
            f1(&r.fnir_exhaustive),
            r.candidates_ms_p50,
            r.candidates_ms_p95,
            r.index_bytes_per_palm
        );
    }
}

fn write_json(
    p: &Path,
    a: &BenchIdentifyArgs,
    set: &RealSet,
    config: &palmline_server::identify::index::HashIndexConfig,
    reports: &[SizeReport],
) -> Result<()> {
    let n_enr = set.probes.iter().filter(|p| p.palm.is_some()).count();
    let r = Report {
        command: std::env::args().collect::<Vec<_>>().join(" "),
        images_dir: a
            .images
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        input: format!("{:?}", set.input).to_lowercase(),
        images: set.images,
        identities: set.identities,
        enroll: a.enroll,
        real_palms: set.palms.len(),
        strangers: set.strangers,
        enrolled_probes: n_enr,
        stranger_probes: set.probes.len() - n_enr,
        failures_to_enroll: set.failures_to_enroll,
        failures_to_acquire: set.failures_to_acquire,
        index_config: format!("{config:?}"),
        sizes: Vec::new(),
    };
    let mut v = serde_json::to_value(&r)?;
    v["sizes"] = serde_json::to_value(reports)?;
    std::fs::write(p, serde_json::to_string_pretty(&v)?)?;
    Ok(())
}
