//! The palm matcher, pure Rust (the server links it without OpenCV).
//!
//! Pipeline for one comparison of two templates:
//! 1. popcount Hamming distances between all descriptor pairs, keeping for every keypoint its
//!    nearest and second-nearest neighbour on the other side;
//! 2. tentative matches = mutual nearest neighbours that pass Lowe's ratio test and a
//!    distance ceiling (ORB descriptors are steered by the keypoint's orientation, so a
//!    match survives any rotation of the ROI);
//! 3. RANSAC for a similarity transform (rotation, uniform scale, translation) restricted to
//!    what two normalised ROIs of the same palm can differ by, then a least-squares refit on
//!    the inliers and a recount.
//!
//! **Score meaning**: the number of keypoint pairs that are mutual nearest neighbours in
//! descriptor space *and* land within `inlier_tolerance` ROI pixels of each other under one
//! plausible similarity transform. It is an integer count of independent pieces of evidence;
//! two different palms produce a handful of such pairs by chance, the same palm dozens.
//! The accept threshold is not chosen here: it comes from a target false-match rate measured
//! on impostor comparisons ([`super::metrics::threshold_for_fmr`], `palmline-lab eval`); see
//! [`DecisionPolicy`].
//!
//! This module must stay free of OpenCV and of any allocation proportional to n² (the
//! distance matrix is never stored).

use super::affine::Affine;
use super::hamming::{nearest_two, to_words, Words};
use super::rng::Rng;
use super::template::Template;

/// Tuning of the matcher. The defaults are general (see docs/PALM.md), not fitted to one
/// data set.
#[derive(Debug, Clone, PartialEq)]
pub struct MatcherConfig {
    /// Lowe ratio: best distance must be below `ratio` × second best.
    pub ratio: f32,
    /// Descriptor distances above this never match (of 256 bits).
    pub max_distance: u32,
    /// Inlier tolerance, as a fraction of the ROI side.
    pub inlier_tolerance: f32,
    /// Largest rotation between two ROIs of one palm, degrees. 180 (any) by default: the
    /// extractor cuts the ROI upright, but on real captures its orientation is sometimes
    /// wrong by 45–180° (close-ups whose fingers leave the frame: NTUST EER 33 → 2.2 %), and
    /// the impostor tail did not grow (IITD, PolyU; docs/PALM.md).
    pub max_rotation_deg: f32,
    /// Largest keypoint-orientation disagreement with the transform's rotation, degrees.
    pub angle_tolerance_deg: f32,
    /// Scale range between two ROIs of one palm.
    pub min_scale: f32,
    pub max_scale: f32,
    /// Largest shift of the ROI centre, as a fraction of the ROI side.
    pub max_shift: f32,
    /// RANSAC hypotheses (all pairs are tried when there are fewer).
    pub ransac_iterations: usize,
    /// After the similarity, an affine refit of its inliers may add support for skin that
    /// stretched unevenly, as long as its two singular values stay within this ratio of
    /// each other ([`super::affine`]). 1 (the default): off.
    pub max_anisotropy: f32,
}

impl Default for MatcherConfig {
    fn default() -> Self {
        Self {
            ratio: 0.9,
            max_distance: 90,
            inlier_tolerance: 0.035,
            max_rotation_deg: 180.0,
            angle_tolerance_deg: 25.0,
            min_scale: 0.75,
            max_scale: 1.33,
            max_shift: 0.35,
            ransac_iterations: 400,
            max_anisotropy: 1.0,
        }
    }
}

/// A correspondence (point in the first ROI, point in the second).
type PointPair = ((f32, f32), (f32, f32));

/// A similarity transform q = s·R(θ)·p + t, from the first template's ROI to the second's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Similarity {
    /// s·cos θ
    pub a: f32,
    /// s·sin θ
    pub b: f32,
    pub tx: f32,
    pub ty: f32,
}

impl Similarity {
    pub fn scale(&self) -> f32 {
        (self.a * self.a + self.b * self.b).sqrt()
    }

    pub fn rotation_deg(&self) -> f32 {
        self.b.atan2(self.a).to_degrees()
    }

    pub fn apply(&self, x: f32, y: f32) -> (f32, f32) {
        (
            self.a * x - self.b * y + self.tx,
            self.b * x + self.a * y + self.ty,
        )
    }

    /// Exact similarity from two correspondences; None when the two points coincide.
    fn from_two(p1: (f32, f32), q1: (f32, f32), p2: (f32, f32), q2: (f32, f32)) -> Option<Self> {
        let (dpx, dpy) = (p2.0 - p1.0, p2.1 - p1.1);
        let (dqx, dqy) = (q2.0 - q1.0, q2.1 - q1.1);
        let n = dpx * dpx + dpy * dpy;
        if n < 1.0 {
            return None;
        }
        // (a + ib) = dq / dp as complex numbers.
        let a = (dqx * dpx + dqy * dpy) / n;
        let b = (dqy * dpx - dqx * dpy) / n;
        Some(Self {
            a,
            b,
            tx: q1.0 - (a * p1.0 - b * p1.1),
            ty: q1.1 - (b * p1.0 + a * p1.1),
        })
    }

    /// Least-squares similarity (Umeyama without reflection) over point pairs.
    fn fit(pairs: &[PointPair]) -> Option<Self> {
        if pairs.len() < 2 {
            return None;
        }
        let n = pairs.len() as f32;
        let (mut mpx, mut mpy, mut mqx, mut mqy) = (0.0, 0.0, 0.0, 0.0);
        for (p, q) in pairs {
            mpx += p.0;
            mpy += p.1;
            mqx += q.0;
            mqy += q.1;
        }
        mpx /= n;
        mpy /= n;
        mqx /= n;
        mqy /= n;
        let (mut sxx, mut sab, mut sba) = (0.0f32, 0.0f32, 0.0f32);
        for (p, q) in pairs {
            let (px, py) = (p.0 - mpx, p.1 - mpy);
            let (qx, qy) = (q.0 - mqx, q.1 - mqy);
            sxx += px * px + py * py;
            sab += px * qx + py * qy;
            sba += px * qy - py * qx;
        }
        if sxx < 1e-3 {
            return None;
        }
        let a = sab / sxx;
        let b = sba / sxx;
        Some(Self {
            a,
            b,
            tx: mqx - (a * mpx - b * mpy),
            ty: mqy - (b * mpx + a * mpy),
        })
    }
}

/// Outcome of one comparison.
#[derive(Debug, Clone, PartialEq)]
pub struct MatchResult {
    /// The comparison score: the inlier count (see the module documentation).
    pub score: u32,
    /// Geometrically verified pairs (equal to `score`).
    pub inliers: u32,
    /// Tentative descriptor matches before geometric verification.
    pub tentative: u32,
    /// The verified transform, when at least two inliers support one.
    pub transform: Option<Similarity>,
}

/// A decision threshold derived from a target false-match rate, with a grey zone below it
/// where the kiosk asks for step-up (PIN).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DecisionPolicy {
    /// Accept when score >= accept.
    pub accept: u32,
    /// Step-up when grey <= score < accept.
    pub grey: u32,
    /// The false-match rate `accept` was calibrated for.
    pub target_fmr: f64,
}

/// The decision for one score under a [`DecisionPolicy`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Accept,
    StepUp,
    Reject,
}

impl DecisionPolicy {
    /// 1:1 verification, calibrated on real palms (`palmline-lab calibrate --gallery 1
    /// --fpir 1e-4 --grey-fpir 1e-2` over the IITD and PolyU eval runs with one enrollment
    /// capture and 450 keypoints, 825,600 impostor comparisons, BENCHMARKS.md): the measured
    /// FMR ≤ 1e-4 threshold was 13 inliers; `accept` adds one count of margin. `grey` is the
    /// FMR ≤ 1e-2 threshold (7). 1:N identification is stricter: the server's `PalmPolicy`.
    pub const DEFAULT: DecisionPolicy = DecisionPolicy {
        accept: 14,
        grey: 7,
        target_fmr: 1e-4,
    };

    /// Chooses `accept` for `target_fmr` and `grey` for `grey_fmr` from impostor scores.
    pub fn from_impostor_scores(impostors: &[f64], target_fmr: f64, grey_fmr: f64) -> Self {
        let accept = super::metrics::threshold_for_fmr(impostors, target_fmr).ceil() as u32;
        let grey = super::metrics::threshold_for_fmr(impostors, grey_fmr).ceil() as u32;
        Self {
            accept,
            grey: grey.min(accept),
            target_fmr,
        }
    }

    pub fn decide(&self, score: u32) -> Decision {
        if score >= self.accept {
            Decision::Accept
        } else if score >= self.grey {
            Decision::StepUp
        } else {
            Decision::Reject
        }
    }
}

/// Compares templates. Cheap to clone; holds no state between comparisons.
#[derive(Debug, Clone, Default)]
pub struct Matcher {
    pub config: MatcherConfig,
}

/// A template prepared for repeated comparisons (descriptors as 64-bit words).
#[derive(Debug, Clone)]
pub struct Prepared {
    roi: f32,
    points: Vec<(f32, f32)>,
    angles: Vec<f32>,
    words: Vec<Words>,
}

impl Prepared {
    pub fn new(t: &Template) -> Self {
        Self {
            roi: t.roi_size() as f32,
            points: t.keypoints().iter().map(|k| (k.x, k.y)).collect(),
            angles: t.keypoints().iter().map(|k| k.angle).collect(),
            words: t.descriptors().iter().map(to_words).collect(),
        }
    }
}

struct Tentative {
    p: (f32, f32),
    q: (f32, f32),
    dangle: f32,
}

fn angle_diff(a: f32, b: f32) -> f32 {
    let d = (a - b).rem_euclid(360.0);
    if d > 180.0 {
        360.0 - d
    } else {
        d
    }
}

impl Matcher {
    pub fn new(config: MatcherConfig) -> Self {
        Self { config }
    }

    /// Compares two templates (either order gives the same score up to RANSAC sampling).
    pub fn compare(&self, a: &Template, b: &Template) -> MatchResult {
        self.compare_prepared(&Prepared::new(a), &Prepared::new(b))
    }

    /// Best score of a probe against several enrollment captures of one identity.
    ///
    /// Fusion: with two or more captures the score is the mean (rounded down) of the two
    /// best comparisons. A genuine probe matches most captures of its palm, while a stranger
    /// reaching a high score by chance rarely does so twice: on real palms (3 enrollment
    /// captures) this lowered the EER by a quarter to a half against the plain maximum, whose
    /// impostor tail grows with every capture added. The result's other fields are the best
    /// comparison's.
    pub fn compare_many(&self, probe: &Prepared, gallery: &[Prepared]) -> MatchResult {
        self.compare_many_pruned(probe, gallery, 0)
    }

    /// As [`Matcher::compare_many`], except that when the first capture scores below
    /// `prune` the others are not compared and that first comparison is the answer. For
    /// 1:N verification, where nearly every candidate is a stranger. An experiment of
    /// `bench-identify --prune-below`, not what the server does: on real palms a genuine
    /// probe scores below 2–4 against one of its own captures often enough to lose a few
    /// (BENCHMARKS.md). `prune = 0` prunes nothing.
    pub fn compare_many_pruned(
        &self,
        probe: &Prepared,
        gallery: &[Prepared],
        prune: u32,
    ) -> MatchResult {
        let mut results: Vec<MatchResult> = Vec::with_capacity(gallery.len());
        for g in gallery {
            let r = self.compare_prepared(probe, g);
            if results.is_empty() && r.score < prune {
                return r;
            }
            results.push(r);
        }
        results.sort_by_key(|r| std::cmp::Reverse(r.score));
        let second = results.get(1).map(|r| r.score);
        let mut best = results.into_iter().next().unwrap_or(MatchResult {
            score: 0,
            inliers: 0,
            tentative: 0,
            transform: None,
        });
        if let Some(second) = second {
            best.score = (best.score + second) / 2;
        }
        best
    }

    pub fn compare_prepared(&self, a: &Prepared, b: &Prepared) -> MatchResult {
        let c = &self.config;
        let none = MatchResult {
            score: 0,
            inliers: 0,
            tentative: 0,
            transform: None,
        };
        if a.words.is_empty() || b.words.is_empty() {
            return none;
        }
        let (rows, cols) = nearest_two(&a.words, &b.words);
        let rot_limit = c.max_rotation_deg + c.angle_tolerance_deg;
        let mut tent = Vec::new();
        for (i, r) in rows.iter().enumerate() {
            let j = r.index as usize;
            if r.best > c.max_distance
                || (r.best as f32) >= c.ratio * r.second as f32
                || cols[j].index as usize != i
            {
                continue;
            }
            let dangle = b.angles[j] - a.angles[i];
            if angle_diff(dangle, 0.0) > rot_limit {
                continue;
            }
            tent.push(Tentative {
                p: a.points[i],
                q: b.points[j],
                dangle,
            });
        }
        let tentative = tent.len() as u32;
        if tent.len() < 2 {
            return MatchResult {
                score: tent.len() as u32,
                inliers: tent.len() as u32,
                tentative,
                transform: None,
            };
        }
        let roi = a.roi.max(b.roi);
        let tol2 = (c.inlier_tolerance * roi).powi(2);
        let centre = (a.roi / 2.0, a.roi / 2.0);
        let max_shift = c.max_shift * roi;
        let plausible = |s: &Similarity| {
            let scale = s.scale();
            let rot = s.rotation_deg().abs();
            let (cx, cy) = s.apply(centre.0, centre.1);
            let shift = ((cx - b.roi / 2.0).powi(2) + (cy - b.roi / 2.0).powi(2)).sqrt();
            scale >= c.min_scale
                && scale <= c.max_scale
                && rot <= c.max_rotation_deg
                && shift <= max_shift
        };
        let count = |s: &Similarity, mark: Option<&mut Vec<bool>>| -> u32 {
            let rot = s.rotation_deg();
            let mut n = 0;
            let mut mark = mark;
            for (k, t) in tent.iter().enumerate() {
                let (x, y) = s.apply(t.p.0, t.p.1);
                let ok = (x - t.q.0).powi(2) + (y - t.q.1).powi(2) <= tol2
                    && angle_diff(t.dangle, rot) <= c.angle_tolerance_deg;
                if ok {
                    n += 1;
                }
                if let Some(m) = mark.as_deref_mut() {
                    m[k] = ok;
                }
            }
            n
        };

        let m = tent.len();
        let mut best: Option<(u32, Similarity)> = None;
        let consider = |i: usize, j: usize, best: &mut Option<(u32, Similarity)>| {
            if let Some(s) = Similarity::from_two(tent[i].p, tent[i].q, tent[j].p, tent[j].q) {
                if plausible(&s) {
                    let n = count(&s, None);
                    if best.as_ref().is_none_or(|(bn, _)| n > *bn) {
                        *best = Some((n, s));
                    }
                }
            }
        };
        if m * (m - 1) / 2 <= c.ransac_iterations {
            for i in 0..m {
                for j in i + 1..m {
                    consider(i, j, &mut best);
                }
            }
        } else {
            // Fixed seed: a comparison is a pure function of its two templates.
            let mut rng = Rng::new(0x5EED ^ m as u64);
            for _ in 0..c.ransac_iterations {
                let i = rng.below(m as u64) as usize;
                let j = rng.below(m as u64 - 1) as usize;
                let j = if j >= i { j + 1 } else { j };
                consider(i, j, &mut best);
            }
        }
        let Some((mut inliers, mut transform)) = best else {
            // No plausible pair: at most one tentative match can be right.
            return MatchResult {
                score: 1,
                inliers: 1,
                tentative,
                transform: None,
            };
        };
        // Refit on the inliers and recount; keep the refit only if it does not lose support.
        let mut mark = vec![false; m];
        for _ in 0..2 {
            count(&transform, Some(&mut mark));
            let pairs: Vec<_> = tent
                .iter()
                .zip(&mark)
                .filter(|(_, &k)| k)
                .map(|(t, _)| (t.p, t.q))
                .collect();
            match Similarity::fit(&pairs) {
                Some(s) if plausible(&s) => {
                    let n = count(&s, None);
                    if n >= inliers {
                        inliers = n;
                        transform = s;
                    } else {
                        break;
                    }
                }
                _ => break,
            }
        }
        if c.max_anisotropy > 1.0 {
            count(&transform, Some(&mut mark));
            inliers = inliers.max(self.bent_support(&tent, mark, tol2));
        }
        MatchResult {
            score: inliers,
            inliers,
            tentative,
            transform: Some(transform),
        }
    }

    /// Inliers under a bounded affine refit of the similarity's inliers (`mark`), refitted
    /// twice while the support grows; 0 when no such map fits.
    fn bent_support(&self, tent: &[Tentative], mut mark: Vec<bool>, tol2: f32) -> u32 {
        let c = &self.config;
        let mut best = 0;
        for _ in 0..2 {
            let pairs: Vec<_> = tent
                .iter()
                .zip(&mark)
                .filter(|(_, &k)| k)
                .map(|(t, _)| (t.p, t.q))
                .collect();
            let Some(a) = Affine::fit(&pairs) else { break };
            if !a.near_similarity(c.max_anisotropy, (c.min_scale, c.max_scale)) {
                break;
            }
            let rot = a.rotation_deg();
            let fits: Vec<bool> = tent
                .iter()
                .map(|t| {
                    let (x, y) = a.apply(t.p.0, t.p.1);
                    (x - t.q.0).powi(2) + (y - t.q.1).powi(2) <= tol2
                        && angle_diff(t.dangle, rot) <= c.angle_tolerance_deg
                })
                .collect();
            let n = fits.iter().filter(|&&k| k).count() as u32;
            if n <= best {
                break;
            }
            best = n;
            mark = fits;
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::palm::template::Keypoint;

    fn random_template(rng: &mut Rng, n: usize) -> Template {
        let mut kps = Vec::new();
        let mut ds = Vec::new();
        for _ in 0..n {
            kps.push(Keypoint {
                x: rng.range(0.0, 160.0) as f32,
                y: rng.range(0.0, 160.0) as f32,
                angle: rng.range(0.0, 360.0) as f32,
                octave: 0,
            });
            let mut d = [0u8; 32];
            d.iter_mut().for_each(|b| *b = rng.next_u64() as u8);
            ds.push(d);
        }
        Template::new(160, kps, ds).unwrap()
    }

    /// The same "palm" seen again: moved by a similarity, descriptors with some flipped bits,
    /// a third of the keypoints lost and replaced by new ones.
    fn recapture(rng: &mut Rng, t: &Template, s: &Similarity) -> Template {
        let mut kps = Vec::new();
        let mut ds = Vec::new();
        for (k, d) in t.keypoints().iter().zip(t.descriptors()) {
            let (x, y) = s.apply(k.x, k.y);
            if rng.f64() < 0.33 || !(0.0..160.0).contains(&x) || !(0.0..160.0).contains(&y) {
                continue;
            }
            let mut d = *d;
            for _ in 0..12 {
                let bit = rng.below(256) as usize;
                d[bit / 8] ^= 1 << (bit % 8);
            }
            kps.push(Keypoint {
                x: (x + rng.range(-1.0, 1.0) as f32).clamp(0.0, 159.9),
                y: (y + rng.range(-1.0, 1.0) as f32).clamp(0.0, 159.9),
                angle: k.angle + s.rotation_deg() + rng.range(-5.0, 5.0) as f32,
                octave: 0,
            });
            ds.push(d);
        }
        let extra = random_template(rng, 80);
        kps.extend_from_slice(extra.keypoints());
        ds.extend_from_slice(extra.descriptors());
        Template::new(160, kps, ds).unwrap()
    }

    #[test]
    fn genuine_scores_far_above_impostor() {
        let mut rng = Rng::new(42);
        let a = random_template(&mut rng, 250);
        let theta = 8f32.to_radians();
        let (sc, tx, ty) = (1.06f32, 6.0, -4.0);
        let s = Similarity {
            a: sc * theta.cos(),
            b: sc * theta.sin(),
            tx,
            ty,
        };
        let b = recapture(&mut rng, &a, &s);
        let other = random_template(&mut rng, 250);
        let m = Matcher::default();
        let g = m.compare(&a, &b);
        let i = m.compare(&a, &other);
        assert!(g.score >= 80, "genuine {g:?}");
        assert!(i.score <= 4, "impostor {i:?}");
        let t = g.transform.unwrap();
        assert!((t.scale() - sc).abs() < 0.02, "{t:?}");
        assert!((t.rotation_deg() - 8.0).abs() < 1.0, "{t:?}");
        // Deterministic, and symmetric enough to be used either way round.
        assert_eq!(m.compare(&a, &b), g);
        assert!(m.compare(&b, &a).score >= 80);
    }

    /// `a`'s keypoints turned 90° clockwise about the ROI's centre, then scaled by `scale`
    /// about it (same descriptors: ORB's are steered by the keypoint angle).
    fn turned_and_scaled(a: &Template, scale: f32) -> Template {
        let kps = a
            .keypoints()
            .iter()
            .map(|k| Keypoint {
                x: (80.0 + scale * (80.0 - k.y)).clamp(0.0, 159.9),
                y: (80.0 + scale * (k.x - 80.0)).clamp(0.0, 159.9),
                angle: k.angle + 90.0,
                octave: 0,
            })
            .collect();
        Template::new(160, kps, a.descriptors().to_vec()).unwrap()
    }

    #[test]
    fn a_roi_cut_at_the_wrong_angle_still_matches() {
        // The extractor's orientation can be wrong by 90° on a real capture: the same palm
        // turned is still the same palm.
        let a = random_template(&mut Rng::new(7), 150);
        let r = Matcher::default().compare(&a, &turned_and_scaled(&a, 1.0));
        assert!(r.score >= 140, "{r:?}");
        let t = r.transform.unwrap();
        assert!((t.rotation_deg().abs() - 90.0).abs() < 1.0, "{t:?}");
        // Narrowing the rotation range refuses it (the setting still means something).
        let mut narrow = Matcher::default();
        narrow.config.max_rotation_deg = 30.0;
        assert!(narrow.compare(&a, &turned_and_scaled(&a, 1.0)).score <= 1);
    }

    #[test]
    fn implausible_transforms_are_not_evidence() {
        // A copy at half the scale: the descriptors all match, but two normalised ROIs of
        // one palm never differ by 2×, so there is no plausible transform.
        let a = random_template(&mut Rng::new(7), 150);
        let r = Matcher::default().compare(&a, &turned_and_scaled(&a, 0.5));
        assert!(r.score <= 1, "{r:?}");
        assert_eq!(Matcher::default().compare(&a, &a).score, 150);
    }

    #[test]
    fn pruning_stops_at_a_weak_first_capture_and_changes_nothing_else() {
        let mut rng = Rng::new(7);
        let palm = random_template(&mut rng, 250);
        let s = Similarity {
            a: 1.0,
            b: 0.0,
            tx: 3.0,
            ty: -2.0,
        };
        let captures: Vec<Prepared> = (0..3)
            .map(|_| Prepared::new(&recapture(&mut rng, &palm, &s)))
            .collect();
        let m = Matcher::default();
        let probe = Prepared::new(&recapture(&mut rng, &palm, &s));
        // A genuine palm: all captures compared, the fused score as without pruning.
        assert_eq!(
            m.compare_many_pruned(&probe, &captures, 4),
            m.compare_many(&probe, &captures)
        );
        // A stranger: only the first capture is compared, and its score is the answer.
        let stranger = Prepared::new(&random_template(&mut rng, 250));
        let first = m.compare_prepared(&stranger, &captures[0]);
        assert!(first.score < 4, "{first:?}");
        assert_eq!(m.compare_many_pruned(&stranger, &captures, 4), first);
        // Nothing is pruned at 0.
        assert_eq!(
            m.compare_many_pruned(&stranger, &captures, 0),
            m.compare_many(&stranger, &captures)
        );
    }

    #[test]
    fn empty_templates_score_zero() {
        let e = Template::new(160, vec![], vec![]).unwrap();
        let mut rng = Rng::new(1);
        let a = random_template(&mut rng, 10);
        assert_eq!(Matcher::default().compare(&e, &a).score, 0);
        assert_eq!(Matcher::default().compare(&a, &e).score, 0);
    }

    #[test]
    fn decision_policy_from_impostors() {
        let imp: Vec<f64> = (0..1000).map(|i| (i % 10) as f64).collect();
        // FMR <= 1e-2 needs t above 9 → 10; no impostor ≥ 10 anyway.
        let p = DecisionPolicy::from_impostor_scores(&imp, 1e-3, 0.2);
        assert_eq!(p.accept, 10);
        // FMR <= 0.2: impostors ≥ 8 are 20 % → t in (7, 8] → 8.
        assert_eq!(p.grey, 8);
        assert_eq!(p.decide(10), Decision::Accept);
        assert_eq!(p.decide(8), Decision::StepUp);
        assert_eq!(p.decide(3), Decision::Reject);
    }
}
