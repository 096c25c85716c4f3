//! The sublinear candidate index: multi-table hashing of the ORB descriptors together with
//! where they sit and which way they point, with an inverted file per table and idf-weighted
//! vote counting.
//!
//! **Keys.** A key is `(cell, orientation bin, bits)`: the keypoint's cell of a `grid × grid`
//! grid over the (aligned) ROI, its orientation in one of `angle_bins` bins, and `key_bits`
//! fixed bit positions of the 256-bit descriptor (the tables take disjoint positions of one
//! permutation drawn from `seed`, as the substrings of multi-index hashing). On real palms
//! two captures of one point are often 60–90 bits apart, so a long bit key rarely survives;
//! the geometry does the filtering instead: a chance collision must also fall in the same
//! cell and direction. Nothing is trained: no vocabulary file, nothing tied to one data set.
//!
//! **Postings.** Each bucket lists the palms (as `u32` slots) holding at least one descriptor
//! with that key: a palm appears once per distinct `(table, key)`, whatever the number of its
//! templates. Past `max_postings_per_palm` keys, those seen in the most enrollment templates
//! are kept first (the stable points). Nothing else about a palm is kept in memory: not its
//! descriptors, not its geometry.
//!
//! **Query.** A probe descriptor looks up the 2 × 2 cells whose centres are nearest its
//! keypoint (`probe_span` 3: the 3 × 3 around it) and the two nearest orientation bins, so a
//! misplaced ROI by up to half a cell and a turn by up to half a bin lose nothing (and often
//! more is tolerated). Every distinct bucket touched adds `ln(live / bucket length)` to every
//! palm in it; buckets longer than `stop_ratio` times the mean are skipped. Palms are ranked
//! by votes, divided by `sqrt(keys of the palm)` when `normalise` is on. The cost is the total
//! length of the buckets touched: a small, fixed fraction of the postings.
//!
//! **Removal** marks the slot dead at once (never returned again); its postings, which are
//! bare integers, are purged by a compaction pass when dead slots exceed an eighth of the
//! live ones, or on [`HashIndex::compact`].

use super::{CandidateIndex, PalmId};
use palmline_shared::palm::rng::Rng;
use palmline_shared::palm::{Keypoint, Template};
use std::collections::HashMap;

/// Tuning of [`HashIndex`].
#[derive(Debug, Clone, PartialEq)]
pub struct HashIndexConfig {
    /// Number of hash tables (each with its own disjoint bits).
    pub tables: usize,
    /// Descriptor bits per key (1..=24); each table has `grid² × angle_bins × 2^key_bits`
    /// buckets.
    pub key_bits: u32,
    /// Seed of the bit permutation (fixed: it defines the keys of every stored palm).
    pub seed: u64,
    /// At most this many postings per palm (4 bytes each).
    pub max_postings_per_palm: usize,
    /// Buckets longer than this many times the mean bucket length are skipped at query time
    /// (stop words: keys shared by a large part of the gallery say nothing about a palm).
    pub stop_ratio: f32,
    /// Also look up the keys at Hamming distance 1 from each probe key (0 or 1).
    pub probe_radius: u8,
    /// Divide votes by the square root of the palm's posting count.
    pub normalise: bool,
    /// Cells per side of the ROI grid that is part of every key (1: no geometry). A gallery
    /// descriptor is posted under its own cell; a probe descriptor looks up the 2 × 2 cells
    /// whose centres are nearest, so a displacement of up to half a cell always keeps it.
    pub grid: u32,
    /// Cells per side a probe descriptor looks up: 2 (the 2 × 2 nearest centres, tolerating
    /// half a cell of displacement) or 3 (its cell and the 8 around it: a whole cell).
    pub probe_span: u8,
    /// Orientation bins that are part of every key (1: none). A probe descriptor looks up
    /// the two bins nearest its keypoint's angle.
    pub angle_bins: u32,
    /// Tables the turned query reads (the first ones): each of its 11 hypotheses costs
    /// `turned_tables / tables` of a first-stage query.
    pub turned_tables: usize,
    /// The turned query reads every `turned_stride`-th probe keypoint (1: all of them).
    pub turned_stride: usize,
    /// Stop-word ratio of the turned query (see `stop_ratio`): the long buckets cost the
    /// most and say the least.
    pub turned_stop_ratio: f32,
}

impl Default for HashIndexConfig {
    fn default() -> Self {
        Self {
            tables: 4,
            key_bits: 8,
            seed: 0x9A1D_1DE5,
            max_postings_per_palm: 4608,
            stop_ratio: 16.0,
            probe_radius: 0,
            normalise: true,
            grid: 8,
            probe_span: 2,
            angle_bins: 12,
            turned_tables: 2,
            turned_stride: 1,
            turned_stop_ratio: 16.0,
        }
    }
}

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct HashIndex {
    config: HashIndexConfig,
    /// `tables × key_bits` bit positions.
    bits: Vec<Vec<u8>>,
    /// `tables × 2^key_bits` buckets of slots.
    buckets: Vec<Vec<u32>>,
    /// Slot → palm (`None` once removed, until compaction).
    slots: Vec<Option<PalmId>>,
    /// Slot → its number of postings.
    slot_keys: Vec<u16>,
    by_palm: HashMap<PalmId, u32>,
    dead: usize,
    /// Total postings, live and dead.
    postings: usize,
    /// Scratch of `palm_buckets`: one byte per bucket, all zero between calls.
    mark: Vec<u8>,
}

impl Default for HashIndex {
    fn default() -> Self {
        Self::new(HashIndexConfig::default())
    }
}

impl HashIndex {
    /// An empty index. Panics on a nonsensical config (no tables, key_bits outside 1..=24,
    /// more bits than a descriptor has).
    pub fn new(config: HashIndexConfig) -> Self {
        assert!(config.tables >= 1, "at least one table");
        assert!((1..=24).contains(&config.key_bits), "key_bits in 1..=24");
        assert!((1..=16).contains(&config.grid), "grid in 1..=16");
        assert!(
            (1..=16).contains(&config.angle_bins),
            "angle_bins in 1..=16"
        );
        let per_table =
            ((config.grid * config.grid * config.angle_bins) as usize) << config.key_bits;
        assert!(config.tables * per_table <= 1 << 28, "at most 2^28 buckets");
        let needed = config.tables * config.key_bits as usize;
        let mut perm: Vec<u8> = (0..=255u8).collect();
        let mut rng = Rng::new(config.seed);
        let mut bits = Vec::with_capacity(config.tables);
        let mut pos = 0;
        for _ in 0..config.tables {
            if pos + config.key_bits as usize > 256 || pos == 0 {
                // Fresh permutation: disjoint positions within a round, independent across.
                for i in (1..perm.len()).rev() {
                    let j = rng.below(i as u64 + 1) as usize;
                    perm.swap(i, j);
                }
                pos = 0;
            }
            bits.push(perm[pos..pos + config.key_bits as usize].to_vec());
            pos += config.key_bits as usize;
        }
        debug_assert_eq!(bits.iter().map(Vec::len).sum::<usize>(), needed);
        let cells = (config.grid * config.grid * config.angle_bins) as usize;
        let buckets = vec![Vec::new(); (config.tables * cells) << config.key_bits];
        Self {
            config,
            bits,
            buckets,
            slots: Vec::new(),
            slot_keys: Vec::new(),
            by_palm: HashMap::new(),
            dead: 0,
            postings: 0,
            mark: Vec::new(),
        }
    }

    pub fn config(&self) -> &HashIndexConfig {
        &self.config
    }

    /// Key of a descriptor in table `t`.
    #[inline]
    fn key(&self, t: usize, d: &[u8; 32]) -> u32 {
        let mut k = 0u32;
        for (i, &b) in self.bits[t].iter().enumerate() {
            k |= (((d[(b >> 3) as usize] >> (b & 7)) & 1) as u32) << i;
        }
        k
    }

    /// Bucket number of `(table, cell, key)`.
    #[inline]
    fn bucket(&self, t: usize, cell: u32, key: u32) -> usize {
        let cells = (self.config.grid * self.config.grid * self.config.angle_bins) as usize;
        ((t * cells + cell as usize) << self.config.key_bits) | key as usize
    }

    /// Grid position of a coordinate, as a fraction of the ROI side times `grid`.
    #[inline]
    fn scaled(&self, v: f32, roi: f32) -> f32 {
        (v / roi.max(1.0) * self.config.grid as f32).clamp(0.0, self.config.grid as f32 - 1e-3)
    }

    /// The cell a gallery keypoint is posted under.
    #[inline]
    fn cell(&self, k: &Keypoint, roi: f32) -> u32 {
        let g = self.config.grid;
        let (cx, cy) = (self.scaled(k.x, roi) as u32, self.scaled(k.y, roi) as u32);
        let bins = self.config.angle_bins;
        let bin = ((k.angle.rem_euclid(360.0) / 360.0 * bins as f32) as u32).min(bins - 1);
        (cy.min(g - 1) * g + cx.min(g - 1)) * bins + bin
    }

    /// The two orientation bins nearest an angle (one when there is a single bin).
    fn probe_bins(&self, angle: f32) -> Vec<u32> {
        let bins = self.config.angle_bins;
        if bins == 1 {
            return vec![0];
        }
        let v = angle.rem_euclid(360.0) / 360.0 * bins as f32 - 0.5;
        let c = v.floor() as i64;
        let wrap = |c: i64| c.rem_euclid(bins as i64) as u32;
        let mut out = vec![wrap(c), wrap(c + 1)];
        out.dedup();
        out
    }

    /// The (up to 4) cells a probe keypoint looks up: those whose centres are nearest.
    fn probe_cells(&self, k: &Keypoint, roi: f32) -> Vec<u32> {
        let g = self.config.grid as i64;
        let bins = self.probe_bins(k.angle);
        if g == 1 {
            return bins;
        }
        let span = self.config.probe_span;
        let near = |v: f32| -> Vec<i64> {
            if span >= 3 {
                let c = v.floor() as i64;
                (c - 1..=c + 1).map(|c| c.clamp(0, g - 1)).collect()
            } else {
                let c = (v - 0.5).floor() as i64;
                vec![c.clamp(0, g - 1), (c + 1).clamp(0, g - 1)]
            }
        };
        let (xs, ys) = (near(self.scaled(k.x, roi)), near(self.scaled(k.y, roi)));
        let mut out: Vec<u32> = ys
            .iter()
            .flat_map(|y| xs.iter().map(move |x| (*y * g + *x) as u32))
            .flat_map(|c| bins.iter().map(move |b| c * self.config.angle_bins + b))
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// The buckets a palm is posted to from its templates, most stable first, capped.
    fn palm_buckets(&mut self, templates: &[Template]) -> Vec<u32> {
        // mark[b] bit i: bucket b holds a descriptor of template i (templates past the 8th
        // share the last bit). One pass, no sorting; `mark` is all zero between calls.
        let mut mark = std::mem::take(&mut self.mark);
        mark.resize(self.buckets.len(), 0);
        let mut touched: Vec<u32> = Vec::with_capacity(templates.len() * 400 * self.config.tables);
        for (i, t) in templates.iter().enumerate() {
            let bit = 1u8 << i.min(7);
            let roi = t.roi_size() as f32;
            for (k, d) in t.keypoints().iter().zip(t.descriptors()) {
                let cell = self.cell(k, roi);
                for tab in 0..self.config.tables {
                    let b = self.bucket(tab, cell, self.key(tab, d));
                    if mark[b] == 0 {
                        touched.push(b as u32);
                    }
                    mark[b] |= bit;
                }
            }
        }
        // Most templates first, then in order of first occurrence (deterministic).
        let cap = self.config.max_postings_per_palm.min(u16::MAX as usize);
        let out = if touched.len() <= cap {
            touched.clone()
        } else {
            let mut out = Vec::with_capacity(cap);
            for level in (1..=8u32).rev() {
                out.extend(
                    touched
                        .iter()
                        .filter(|&&b| mark[b as usize].count_ones() == level),
                );
                if out.len() >= cap {
                    break;
                }
            }
            out.truncate(cap);
            out
        };
        for &b in &touched {
            mark[b as usize] = 0;
        }
        self.mark = mark;
        out
    }

    /// Inserts (or replaces) many palms at once: what start-up does with the whole store. Same
    /// result as [`CandidateIndex::insert`] one by one, several times faster (the postings
    /// are grouped by bucket before they are appended).
    pub fn insert_many<'a>(&mut self, palms: impl IntoIterator<Item = (PalmId, &'a [Template])>) {
        let palms: Vec<(PalmId, &[Template])> = palms.into_iter().collect();
        for (palm, _) in &palms {
            self.remove(*palm);
        }
        let mut pairs: Vec<(u32, u32)> = Vec::new();
        for (palm, templates) in palms {
            if let Some(old) = self.by_palm.remove(&palm) {
                // The same palm twice in one batch: the later templates win.
                self.slots[old as usize] = None;
                self.dead += 1;
            }
            let slot = self.slots.len() as u32;
            let buckets = self.palm_buckets(templates);
            pairs.extend(buckets.iter().map(|&b| (b, slot)));
            self.slots.push(Some(palm));
            self.slot_keys.push(buckets.len() as u16);
            self.by_palm.insert(palm, slot);
        }
        // Counting sort by bucket, then one append per bucket.
        let mut start = vec![0u32; self.buckets.len() + 1];
        for &(b, _) in &pairs {
            start[b as usize + 1] += 1;
        }
        for i in 1..start.len() {
            start[i] += start[i - 1];
        }
        let mut fill = start.clone();
        let mut flat = vec![0u32; pairs.len()];
        for &(b, s) in &pairs {
            flat[fill[b as usize] as usize] = s;
            fill[b as usize] += 1;
        }
        for (b, v) in self.buckets.iter_mut().enumerate() {
            let add = &flat[start[b] as usize..start[b + 1] as usize];
            if add.is_empty() {
                continue;
            }
            if v.capacity() < v.len() + add.len() {
                v.reserve_exact(add.len().max((v.len() + add.len()) / 8));
            }
            v.extend_from_slice(add);
        }
        self.postings += pairs.len();
    }

    /// Purges the postings of removed palms and renumbers the slots.
    pub fn compact(&mut self) {
        let mut remap = vec![u32::MAX; self.slots.len()];
        let mut slots = Vec::with_capacity(self.slots.len() - self.dead);
        let mut slot_keys = Vec::with_capacity(slots.capacity());
        for (old, (p, k)) in self.slots.iter().zip(&self.slot_keys).enumerate() {
            if let Some(p) = p {
                remap[old] = slots.len() as u32;
                slots.push(Some(*p));
                slot_keys.push(*k);
            }
        }
        for b in &mut self.buckets {
            b.retain_mut(|s| {
                let n = remap[*s as usize];
                *s = n;
                n != u32::MAX
            });
            b.shrink_to(b.len() + b.len() / 8);
        }
        for (i, p) in slots.iter().enumerate() {
            if let Some(p) = p {
                self.by_palm.insert(*p, i as u32);
            }
        }
        self.slots = slots;
        self.slot_keys = slot_keys;
        self.dead = 0;
        self.postings = self.buckets.iter().map(Vec::len).sum();
    }

    /// Releases spare bucket capacity (after a bulk load).
    pub fn shrink_to_fit(&mut self) {
        for b in &mut self.buckets {
            b.shrink_to_fit();
        }
        self.slots.shrink_to_fit();
        self.slot_keys.shrink_to_fit();
    }

    /// Total number of postings (live and not yet purged).
    pub fn postings(&self) -> usize {
        self.postings
    }

    /// The vote of every slot for a probe (the ranking before top-k), for diagnostics.
    fn votes(&self, probe: &Template) -> Vec<f32> {
        let all = Query {
            tables: self.config.tables,
            stride: 1,
            stop_ratio: self.config.stop_ratio,
        };
        self.votes_turned(probe, 0.0, all)
    }

    /// The votes for `probe` with its keypoints turned by `turn` degrees about the ROI
    /// centre (positions and angles together, the descriptors unchanged: ORB descriptors
    /// are steered by the keypoint's angle). A keypoint turned out of the ROI is left out.
    fn votes_turned(&self, probe: &Template, turn: f32, q: Query) -> Vec<f32> {
        let live = self.by_palm.len();
        let mut votes = vec![0f32; self.slots.len()];
        if live == 0 {
            return votes;
        }
        let mean = self.postings as f32 / self.buckets.len() as f32;
        let max_len = ((q.stop_ratio * mean) as usize).max(2);
        let mut keys: Vec<u32> = Vec::with_capacity(probe.len() * q.tables);
        let roi = probe.roi_size() as f32;
        let points = probe.keypoints().iter().zip(probe.descriptors());
        for (kp, d) in points.step_by(q.stride.max(1)) {
            let Some(kp) = turned(kp, turn, roi) else {
                continue;
            };
            for cell in self.probe_cells(&kp, roi) {
                for t in 0..q.tables {
                    let k = self.key(t, d);
                    keys.push(self.bucket(t, cell, k) as u32);
                    if self.config.probe_radius >= 1 {
                        for bit in 0..self.config.key_bits {
                            keys.push(self.bucket(t, cell, k ^ (1 << bit)) as u32);
                        }
                    }
                }
            }
        }
        keys.sort_unstable();
        keys.dedup();
        let ln_live = (live as f32 + 1.0).ln();
        for &b in &keys {
            let bucket = &self.buckets[b as usize];
            if bucket.is_empty() || bucket.len() > max_len {
                continue;
            }
            let w = (ln_live - (bucket.len() as f32).ln()).max(0.05);
            for &s in bucket {
                votes[s as usize] += w;
            }
        }
        if self.config.normalise {
            for (v, &k) in votes.iter_mut().zip(&self.slot_keys) {
                if *v > 0.0 {
                    *v /= (k.max(1) as f32).sqrt();
                }
            }
        }
        votes
    }
}

impl HashIndex {
    /// The `k` live palms with the most votes, best first (ties: the older slot).
    fn top_k(&self, votes: &[f32], k: usize) -> Vec<PalmId> {
        let mut ranked: Vec<(f32, u32)> = votes
            .iter()
            .enumerate()
            .filter(|(s, v)| **v > 0.0 && self.slots[*s].is_some())
            .map(|(s, v)| (*v, s as u32))
            .collect();
        let by_votes = |a: &(f32, u32), b: &(f32, u32)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
        if ranked.len() > k {
            ranked.select_nth_unstable_by(k - 1, by_votes);
            ranked.truncate(k);
        }
        ranked.sort_unstable_by(by_votes);
        ranked
            .into_iter()
            .filter_map(|(_, s)| self.slots[s as usize])
            .collect()
    }
}

/// What one vote query reads: the first `tables` tables, every `stride`-th probe keypoint,
/// buckets up to `stop_ratio` times the mean length.
#[derive(Debug, Clone, Copy)]
struct Query {
    tables: usize,
    stride: usize,
    stop_ratio: f32,
}

/// `k` turned by `turn` degrees about the centre of a `roi`-pixel ROI; `None` when it
/// leaves the ROI.
fn turned(k: &Keypoint, turn: f32, roi: f32) -> Option<Keypoint> {
    if turn == 0.0 {
        return Some(*k);
    }
    let (sin, cos) = turn.to_radians().sin_cos();
    let c = roi / 2.0;
    let (dx, dy) = (k.x - c, k.y - c);
    let (x, y) = (c + dx * cos - dy * sin, c + dx * sin + dy * cos);
    let inside = |v: f32| (0.0..roi).contains(&v);
    (inside(x) && inside(y)).then_some(Keypoint {
        x,
        y,
        angle: (k.angle + turn).rem_euclid(360.0),
        octave: k.octave,
    })
}

impl CandidateIndex for HashIndex {
    fn insert(&mut self, palm: PalmId, templates: &[Template]) {
        self.remove(palm);
        let slot = self.slots.len() as u32;
        let buckets = self.palm_buckets(templates);
        for &b in &buckets {
            let v = &mut self.buckets[b as usize];
            if v.len() == v.capacity() {
                // Grow by an eighth, not by doubling: spare capacity is memory per palm.
                v.reserve_exact(v.len() / 8 + 4);
            }
            v.push(slot);
        }
        self.postings += buckets.len();
        self.slots.push(Some(palm));
        self.slot_keys.push(buckets.len() as u16);
        self.by_palm.insert(palm, slot);
    }

    fn remove(&mut self, palm: PalmId) {
        if let Some(slot) = self.by_palm.remove(&palm) {
            self.slots[slot as usize] = None;
            self.dead += 1;
            if self.dead * 8 > self.by_palm.len() {
                self.compact();
            }
        }
    }

    fn candidates(&self, probe: &Template, k: usize) -> Vec<PalmId> {
        if k == 0 || self.by_palm.is_empty() {
            return Vec::new();
        }
        self.top_k(&self.votes(probe), k)
    }

    fn candidates_turned(&self, probe: &Template, k: usize) -> Vec<PalmId> {
        if k == 0 || self.by_palm.is_empty() || self.config.angle_bins < 2 {
            return Vec::new();
        }
        // One hypothesis per orientation bin: the two nearest bins a probe looks up cover
        // half a bin either side, so the turns together cover every angle.
        let step = 360.0 / self.config.angle_bins as f32;
        let q = Query {
            tables: self.config.turned_tables.clamp(1, self.config.tables),
            stride: self.config.turned_stride.max(1),
            stop_ratio: self.config.turned_stop_ratio,
        };
        let mut best = vec![0f32; self.slots.len()];
        for h in 1..self.config.angle_bins {
            let votes = self.votes_turned(probe, h as f32 * step, q);
            for (b, v) in best.iter_mut().zip(votes) {
                *b = b.max(v);
            }
        }
        self.top_k(&best, k)
    }

    fn len(&self) -> usize {
        self.by_palm.len()
    }

    fn memory_bytes(&self) -> usize {
        use std::mem::size_of;
        let postings: usize = self.buckets.iter().map(|b| b.capacity() * 4).sum();
        let bucket_headers = self.buckets.capacity() * size_of::<Vec<u32>>();
        let slots = self.slots.capacity() * size_of::<Option<PalmId>>()
            + self.slot_keys.capacity() * size_of::<u16>();
        // hashbrown: one control byte per bucket plus the (key, value) pair, ~8/7 load.
        let map = self.by_palm.capacity() * (size_of::<(PalmId, u32)>() + 1) * 8 / 7;
        let bits: usize = self.bits.iter().map(Vec::capacity).sum();
        postings + bucket_headers + slots + map + bits + self.mark.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROI: f32 = 160.0;

    fn random_template(rng: &mut Rng, n: usize) -> Template {
        let kps = (0..n)
            .map(|_| Keypoint {
                x: rng.range(0.0, ROI as f64) as f32,
                y: rng.range(0.0, ROI as f64) as f32,
                angle: rng.range(0.0, 360.0) as f32,
                octave: 0,
            })
            .collect();
        let ds = (0..n)
            .map(|_| {
                let mut d = [0u8; 32];
                d.iter_mut().for_each(|b| *b = rng.next_u64() as u8);
                d
            })
            .collect();
        Template::new(ROI as u16, kps, ds).unwrap()
    }

    /// Another capture of the same "palm": a third of the points lost, the others' descriptors
    /// with `flips` random bits flipped, and 80 new points.
    fn recapture(rng: &mut Rng, t: &Template, flips: usize) -> Template {
        let mut kps = Vec::new();
        let mut ds = Vec::new();
        for (k, d) in t.keypoints().iter().zip(t.descriptors()) {
            if rng.f64() < 0.33 {
                continue;
            }
            let mut d = *d;
            for _ in 0..flips {
                let bit = rng.below(256) as usize;
                d[bit / 8] ^= 1 << (bit % 8);
            }
            kps.push(*k);
            ds.push(d);
        }
        let extra = random_template(rng, 80);
        kps.extend_from_slice(extra.keypoints());
        ds.extend_from_slice(extra.descriptors());
        Template::new(ROI as u16, kps, ds).unwrap()
    }

    /// `n` palms of three enrollment captures each, and one further capture of each (probe).
    fn gallery(seed: u64, n: usize) -> (Vec<Vec<Template>>, Vec<Template>) {
        let mut rng = Rng::new(seed);
        let mut palms = Vec::new();
        let mut probes = Vec::new();
        for _ in 0..n {
            let base = random_template(&mut rng, 250);
            palms.push((0..3).map(|_| recapture(&mut rng, &base, 20)).collect());
            probes.push(recapture(&mut rng, &base, 20));
        }
        (palms, probes)
    }

    /// Few buckets (4 tables × 16 cells × 4 bins × 64 keys), for fast tests.
    fn small_config() -> HashIndexConfig {
        HashIndexConfig {
            tables: 4,
            key_bits: 6,
            grid: 4,
            angle_bins: 4,
            ..HashIndexConfig::default()
        }
    }

    #[test]
    fn enrolled_palm_is_retrieved_first() {
        let (palms, probes) = gallery(1, 300);
        let mut index = HashIndex::new(small_config());
        for (i, p) in palms.iter().enumerate() {
            index.insert(1000 + i as PalmId, p);
        }
        assert_eq!(index.len(), 300);
        for (i, probe) in probes.iter().enumerate() {
            let c = index.candidates(probe, 10);
            assert_eq!(c.len(), 10);
            assert_eq!(c[0], 1000 + i as PalmId, "probe {i}: {c:?}");
            let mut dedup = c.clone();
            dedup.sort_unstable();
            dedup.dedup();
            assert_eq!(dedup.len(), c.len(), "a palm listed twice: {c:?}");
        }
        // An unrelated probe is no one's first candidate by a wide margin: just check that k
        // bounds the answer and that an empty index answers nothing.
        let mut rng = Rng::new(99);
        let stranger = random_template(&mut rng, 250);
        assert!(index.candidates(&stranger, 3).len() <= 3);
        assert!(index.candidates(&probes[0], 0).is_empty());
        assert!(HashIndex::new(small_config())
            .candidates(&probes[0], 5)
            .is_empty());
    }

    #[test]
    fn default_config_retrieves_too() {
        let (palms, probes) = gallery(2, 50);
        let mut index = HashIndex::default();
        for (i, p) in palms.iter().enumerate() {
            index.insert(i as PalmId, p);
        }
        let first = probes
            .iter()
            .enumerate()
            .filter(|(i, p)| index.candidates(p, 1) == vec![*i as PalmId])
            .count();
        assert_eq!(first, 50);
    }

    #[test]
    fn multi_probe_finds_keys_one_bit_away() {
        // 60 flipped bits of 256: exact 16-bit keys rarely survive, radius-1 probes do more.
        // Long bit keys without geometry: what multi-probing is for.
        let mut rng = Rng::new(8);
        let plain = HashIndexConfig {
            key_bits: 12,
            grid: 1,
            angle_bins: 1,
            ..small_config()
        };
        let config = HashIndexConfig {
            probe_radius: 1,
            ..plain.clone()
        };
        let mut index = HashIndex::new(config);
        let mut exact = HashIndex::new(plain);
        let mut probes = Vec::new();
        for i in 0..100 {
            let base = random_template(&mut rng, 250);
            let palm: Vec<Template> = (0..3).map(|_| recapture(&mut rng, &base, 30)).collect();
            index.insert(i, &palm);
            exact.insert(i, &palm);
            probes.push(recapture(&mut rng, &base, 30));
        }
        let first = |ix: &HashIndex| {
            (0..100)
                .filter(|&i| ix.candidates(&probes[i], 1) == vec![i as PalmId])
                .count()
        };
        let (multi, plain) = (first(&index), first(&exact));
        assert!(multi >= 95, "{multi}");
        assert!(multi >= plain, "{multi} < {plain}");
    }

    #[test]
    fn insert_replace_remove_are_consistent() {
        let (palms, probes) = gallery(3, 60);
        let mut index = HashIndex::new(small_config());
        for (i, p) in palms.iter().enumerate() {
            index.insert(i as PalmId, p);
        }
        let postings_full = index.postings();
        // Re-enrolling palm 0 with palm 1's templates: id 0 now answers probe 1, not probe 0.
        index.insert(0, &palms[1]);
        assert_eq!(index.len(), 60);
        assert_ne!(index.candidates(&probes[0], 1), vec![0]);
        let c = index.candidates(&probes[1], 2);
        assert!(c.contains(&0) && c.contains(&1), "{c:?}");
        index.insert(0, &palms[0]);
        assert_eq!(index.candidates(&probes[0], 1), vec![0]);

        // Removal: never returned again, whatever k; unknown ids are ignored.
        index.remove(5);
        index.remove(5);
        index.remove(12345);
        assert_eq!(index.len(), 59);
        for p in &probes {
            assert!(!index.candidates(p, 60).contains(&5));
        }
        assert_eq!(index.candidates(&probes[6], 1), vec![6]);
        // Removing many palms purges their postings (compaction), and the rest still work.
        for i in 10..40 {
            index.remove(i);
        }
        assert_eq!(index.len(), 29);
        assert!(
            index.postings() < postings_full * 2 / 3,
            "{} vs {postings_full}",
            index.postings()
        );
        for (i, p) in probes.iter().enumerate() {
            let c = index.candidates(p, 60);
            let gone = i == 5 || (10..40).contains(&i);
            assert_eq!(c.contains(&(i as PalmId)), !gone, "palm {i}");
            if !gone {
                assert_eq!(c[0], i as PalmId, "palm {i}: {c:?}");
            }
            assert!(c.len() <= 29);
        }
        // Explicit compaction keeps the answers for the enrolled palms (the idf of purged
        // entries changes: compare the first candidate).
        let live: Vec<&Template> = (0..60)
            .filter(|i| *i != 5 && !(10..40).contains(i))
            .map(|i| &probes[i])
            .collect();
        let before: Vec<_> = live.iter().map(|p| index.candidates(p, 1)).collect();
        index.compact();
        assert_eq!(
            index.postings(),
            index.buckets.iter().map(Vec::len).sum::<usize>()
        );
        let after: Vec<_> = live.iter().map(|p| index.candidates(p, 1)).collect();
        assert_eq!(before, after);
        // Re-inserting a removed palm brings it back.
        index.insert(5, &palms[5]);
        assert_eq!(index.candidates(&probes[5], 1), vec![5]);
        assert_eq!(index.len(), 30);
    }

    #[test]
    fn memory_accounting_tracks_postings_and_respects_the_cap() {
        let (palms, _) = gallery(4, 40);
        let config = HashIndexConfig {
            max_postings_per_palm: 500,
            ..small_config()
        };
        let mut index = HashIndex::new(config);
        let empty = index.memory_bytes();
        // The fixed part: one bucket header per (table, cell, bin, key).
        assert!(empty >= 4 * 16 * 4 * (1 << 6) * std::mem::size_of::<Vec<u32>>());
        for (i, p) in palms.iter().enumerate() {
            index.insert(i as PalmId, p);
        }
        // Three captures of ~250 points in 4 tables would give ~3000 distinct postings: the
        // cap keeps 500 per palm.
        assert_eq!(index.postings(), 40 * 500);
        index.shrink_to_fit();
        let full = index.memory_bytes();
        let per_palm = (full - empty) as f64 / 40.0;
        assert!(per_palm >= 500.0 * 4.0, "{per_palm}");
        assert!(per_palm <= 500.0 * 4.0 * 1.25 + 64.0, "{per_palm}");
        for i in 0..40 {
            index.remove(i);
        }
        assert!(index.is_empty());
        assert_eq!(index.postings(), 0);
        assert!(index.memory_bytes() < full);
    }

    #[test]
    fn batch_insert_equals_one_by_one() {
        let (palms, probes) = gallery(6, 50);
        let mut one = HashIndex::new(small_config());
        for (i, p) in palms.iter().enumerate() {
            one.insert(i as PalmId, p);
        }
        let mut batch = HashIndex::new(small_config());
        batch.insert_many(
            palms[..30]
                .iter()
                .enumerate()
                .map(|(i, p)| (i as PalmId, p.as_slice())),
        );
        // A second batch re-enrolling palm 3 (twice: the later templates win) and the rest.
        batch.insert_many(
            [(3, palms[7].as_slice()), (3, palms[3].as_slice())]
                .into_iter()
                .chain(
                    palms[30..]
                        .iter()
                        .enumerate()
                        .map(|(i, p)| (30 + i as PalmId, p.as_slice())),
                ),
        );
        assert_eq!(batch.len(), 50);
        for p in &probes {
            assert_eq!(batch.candidates(p, 1), one.candidates(p, 1));
        }
        assert_eq!(batch.candidates(&probes[3], 1), vec![3]);
    }

    #[test]
    fn concurrent_readers_see_the_same_answers() {
        fn shared<T: Send + Sync>(_: &T) {}
        let (palms, probes) = gallery(5, 40);
        let mut index = HashIndex::new(small_config());
        for (i, p) in palms.iter().enumerate() {
            index.insert(i as PalmId, p);
        }
        shared(&index);
        let index = std::sync::RwLock::new(index);
        let expected: Vec<_> = probes
            .iter()
            .map(|p| index.read().unwrap().candidates(p, 3))
            .collect();
        std::thread::scope(|s| {
            let hs: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        probes
                            .iter()
                            .map(|p| index.read().unwrap().candidates(p, 3))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            for h in hs {
                assert_eq!(h.join().unwrap(), expected);
            }
        });
    }

    /// `t` with every keypoint moved by `(dx, dy)` pixels and turned by `da` degrees (the
    /// descriptors unchanged): a misplaced ROI.
    fn moved(t: &Template, dx: f32, dy: f32, da: f32) -> Template {
        let kps: Vec<Keypoint> = t
            .keypoints()
            .iter()
            .map(|k| Keypoint {
                x: (k.x + dx).clamp(0.0, ROI - 0.1),
                y: (k.y + dy).clamp(0.0, ROI - 0.1),
                angle: (k.angle + da).rem_euclid(360.0),
                octave: k.octave,
            })
            .collect();
        Template::new(ROI as u16, kps, t.descriptors().to_vec()).unwrap()
    }

    #[test]
    fn probes_look_up_the_nearest_cells_and_bins() {
        let index = HashIndex::new(small_config()); // 4 × 4 cells of 40 px, 4 bins of 90°
        let at = |x, y, angle| Keypoint {
            x,
            y,
            angle,
            octave: 0,
        };
        // Cell (1, 1), near its top-left corner, pointing at 10°: cells (0..=1, 0..=1), bins
        // 3 (315°..) and 0, and its own key is among them.
        let k = at(45.0, 45.0, 10.0);
        let cells = index.probe_cells(&k, ROI);
        let want: Vec<u32> = [0, 1, 4, 5]
            .iter()
            .flat_map(|c| [c * 4, c * 4 + 3])
            .collect::<std::collections::BTreeSet<u32>>()
            .into_iter()
            .collect();
        assert_eq!(cells, want);
        assert!(cells.contains(&index.cell(&k, ROI)));
        // In the corner of the ROI only one cell exists; the bins still wrap round 0°.
        let corner = index.probe_cells(&at(2.0, 2.0, 359.0), ROI);
        assert_eq!(corner, vec![0, 3]);
        // Every probe's own cell is among those it looks up, for any position and angle.
        let mut rng = Rng::new(5);
        for _ in 0..2000 {
            let k = at(
                rng.range(0.0, ROI as f64) as f32,
                rng.range(0.0, ROI as f64) as f32,
                rng.range(0.0, 360.0) as f32,
            );
            assert!(index.probe_cells(&k, ROI).contains(&index.cell(&k, ROI)));
        }
    }

    #[test]
    fn a_misplaced_roi_within_half_a_cell_is_still_found() {
        let (palms, probes) = gallery(9, 100);
        let mut index = HashIndex::new(small_config());
        for (i, p) in palms.iter().enumerate() {
            index.insert(i as PalmId, p);
        }
        // Half a cell is 20 px and half a bin 45°: shifted by 15 px and turned by 30°, every
        // probe still finds its palm first.
        let found = |dx, dy, da| {
            probes
                .iter()
                .enumerate()
                .filter(|(i, p)| index.candidates(&moved(p, dx, dy, da), 1) == vec![*i as PalmId])
                .count()
        };
        assert_eq!(found(15.0, -15.0, 30.0), 100);
        // The geometry is part of the key: the same descriptors moved across the ROI (80 px,
        // half of it) and turned round (180°) are no longer the palm's.
        assert!(
            found(80.0, 80.0, 180.0) < 20,
            "{}",
            found(80.0, 80.0, 180.0)
        );
    }

    /// `t` with every keypoint turned by `deg` about the ROI centre (those leaving the ROI
    /// dropped): a ROI cut at the wrong angle.
    fn turned_by(t: &Template, deg: f32) -> Template {
        let (kps, ds): (Vec<Keypoint>, Vec<_>) = t
            .keypoints()
            .iter()
            .zip(t.descriptors())
            .filter_map(|(k, d)| turned(k, deg, ROI).map(|k| (k, *d)))
            .unzip();
        Template::new(ROI as u16, kps, ds).unwrap()
    }

    #[test]
    fn a_roi_cut_at_the_wrong_angle_is_found_by_the_turned_query() {
        let (palms, probes) = gallery(11, 100);
        let mut index = HashIndex::default();
        for (i, p) in palms.iter().enumerate() {
            index.insert(i as PalmId, p);
        }
        let first = |q: &dyn Fn(&Template) -> Vec<PalmId>, deg: f32| {
            probes
                .iter()
                .enumerate()
                .filter(|(i, p)| q(&turned_by(p, deg)) == vec![*i as PalmId])
                .count()
        };
        let plain = |p: &Template| index.candidates(p, 1);
        let turned_q = |p: &Template| index.candidates_turned(p, 1);
        // Turned by 100° (10° off a hypothesis) or 255° (half a bin off two of them): the
        // plain query loses the palms, the turned one finds every one first.
        for deg in [100.0, 255.0] {
            assert!(first(&plain, deg) < 20, "{deg}: {}", first(&plain, deg));
            assert_eq!(first(&turned_q, deg), 100, "{deg}");
        }
        // Turned by less than half a bin, the plain query is the one that finds it.
        assert_eq!(first(&plain, 12.0), 100);
        // No hypothesis without bins to turn by; none on an empty index.
        let flat = HashIndex::new(HashIndexConfig {
            angle_bins: 1,
            ..HashIndexConfig::default()
        });
        assert!(flat.candidates_turned(&probes[0], 5).is_empty());
        assert!(HashIndex::default()
            .candidates_turned(&probes[0], 5)
            .is_empty());
    }

    #[test]
    fn keys_use_disjoint_bits_within_a_round() {
        let index = HashIndex::new(HashIndexConfig {
            tables: 20,
            key_bits: 16,
            grid: 1,
            angle_bins: 1,
            ..HashIndexConfig::default()
        });
        for round in index.bits.chunks(16) {
            let mut all: Vec<u8> = round.iter().flatten().copied().collect();
            let n = all.len();
            all.sort_unstable();
            all.dedup();
            assert_eq!(all.len(), n);
        }
        // Deterministic from the seed.
        let again = HashIndex::new(index.config().clone());
        assert_eq!(again.bits, index.bits);
    }
}
