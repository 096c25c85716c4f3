//! Verification error rates from genuine and impostor score lists: EER, FNMR at a given
//! FMR, DET points, and the threshold that meets a target FMR.
//!
//! Convention everywhere: higher score = more alike, and a comparison is accepted when
//! `score >= threshold`. FMR(t) = impostor scores >= t / impostors; FNMR(t) = genuine
//! scores < t / genuines. Failed acquisitions are the caller's business (count them as
//! non-matches by giving them a score below every real one, or report them apart).

/// One operating point.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OperatingPoint {
    pub threshold: f64,
    pub fmr: f64,
    pub fnmr: f64,
}

/// FNMR at the strictest-needed threshold that meets a target FMR.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FnmrAtFmr {
    pub target_fmr: f64,
    pub point: OperatingPoint,
    /// Fewer impostor comparisons than 1/target: the measured FMR cannot resolve the target
    /// (the figure is then an upper bound on what the data can say, not a measurement).
    pub too_few_impostors: bool,
}

fn sorted(v: &[f64]) -> Vec<f64> {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| !x.is_nan()).collect();
    s.sort_by(|a, b| a.total_cmp(b));
    s
}

/// Count of elements `< t` in a sorted slice.
fn below(sorted: &[f64], t: f64) -> usize {
    sorted.partition_point(|&x| x < t)
}

/// Every distinct operating point, thresholds ascending (FMR falls, FNMR rises). The last
/// point has threshold +inf (reject everything).
pub fn det_points(genuine: &[f64], impostor: &[f64]) -> Vec<OperatingPoint> {
    let g = sorted(genuine);
    let i = sorted(impostor);
    let mut thresholds: Vec<f64> = g.iter().chain(i.iter()).copied().collect();
    thresholds.sort_by(|a, b| a.total_cmp(b));
    thresholds.dedup();
    thresholds.push(f64::INFINITY);
    thresholds.into_iter().map(|t| point(&g, &i, t)).collect()
}

fn point(g: &[f64], i: &[f64], t: f64) -> OperatingPoint {
    let fmr = if i.is_empty() {
        0.0
    } else {
        (i.len() - below(i, t)) as f64 / i.len() as f64
    };
    let fnmr = if g.is_empty() {
        0.0
    } else {
        below(g, t) as f64 / g.len() as f64
    };
    OperatingPoint {
        threshold: t,
        fmr,
        fnmr,
    }
}

/// Equal error rate: where the FMR and FNMR curves cross, linearly interpolated between the
/// two operating points that bracket the crossing.
pub fn eer(genuine: &[f64], impostor: &[f64]) -> f64 {
    let pts = det_points(genuine, impostor);
    let mut prev = pts[0];
    if prev.fnmr >= prev.fmr {
        return (prev.fmr + prev.fnmr) / 2.0;
    }
    for p in pts.into_iter().skip(1) {
        if p.fnmr >= p.fmr {
            let a = prev.fmr - prev.fnmr; // > 0
            let b = p.fmr - p.fnmr; // <= 0
            let lambda = a / (a - b);
            return prev.fmr + lambda * (p.fmr - prev.fmr);
        }
        prev = p;
    }
    // Unreachable: the last point (threshold +inf) has FMR 0 <= FNMR.
    prev.fmr
}

/// The smallest threshold among the candidates (scores and +inf) whose FMR <= target.
pub fn threshold_for_fmr(impostor: &[f64], target: f64) -> f64 {
    let i = sorted(impostor);
    let n = i.len() as f64;
    let mut candidates: Vec<f64> = i.clone();
    candidates.dedup();
    candidates.push(f64::INFINITY);
    // FMR is non-increasing in t: take the first candidate that meets the target. A
    // threshold just above an impostor score excludes it, so also try next_up(score).
    for &t in &candidates {
        let fmr = if n == 0.0 {
            0.0
        } else {
            (i.len() - below(&i, t)) as f64 / n
        };
        if fmr <= target {
            return t;
        }
        let up = next_up(t);
        let fmr_up = (i.len() - below(&i, up)) as f64 / n;
        if fmr_up <= target {
            return up;
        }
    }
    f64::INFINITY
}

fn next_up(x: f64) -> f64 {
    if x.is_nan() || x == f64::INFINITY {
        return x;
    }
    if x == 0.0 {
        return f64::from_bits(1);
    }
    let bits = x.to_bits();
    f64::from_bits(if x > 0.0 { bits + 1 } else { bits - 1 })
}

/// FNMR at the smallest threshold meeting `target_fmr`. The threshold is reported as an
/// observed score where possible (for integer scores: "accept if score >= 19" rather than
/// "accept if score > 18"): moving it up to the next observed score changes neither rate.
pub fn fnmr_at_fmr(genuine: &[f64], impostor: &[f64], target_fmr: f64) -> FnmrAtFmr {
    let g = sorted(genuine);
    let i = sorted(impostor);
    let mut t = threshold_for_fmr(impostor, target_fmr);
    let next_observed = |v: &[f64]| v.get(v.partition_point(|&x| x < t)).copied();
    if let Some(snap) = [next_observed(&g), next_observed(&i)]
        .into_iter()
        .flatten()
        .reduce(f64::min)
    {
        t = snap;
    }
    FnmrAtFmr {
        target_fmr,
        point: point(&g, &i, t),
        too_few_impostors: (impostor.len() as f64) < 1.0 / target_fmr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separable_scores_have_zero_eer() {
        let g = [5.0, 6.0, 7.0];
        let i = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(eer(&g, &i), 0.0);
        let r = fnmr_at_fmr(&g, &i, 0.0);
        assert_eq!(r.point.fnmr, 0.0);
        assert_eq!(r.point.threshold, 5.0);
        assert!(r.too_few_impostors);
    }

    #[test]
    fn hand_computed_eer() {
        // g = {1,3,5,7}, i = {2,4,6,8}... shifted: genuines 2,4,6,8; impostors 1,3,5,7.
        // t=5: FMR = {5,7}/4 = 0.5, FNMR = {2,4}/4 = 0.5 -> crossing exactly at 0.5.
        let g = [2.0, 4.0, 6.0, 8.0];
        let i = [1.0, 3.0, 5.0, 7.0];
        assert!((eer(&g, &i) - 0.5).abs() < 1e-12);
        // Interpolated case: g = {3, 4}, i = {1, 2, 3.5}.
        // thresholds: 1 (fmr 1, fnmr 0), 2 (2/3, 0), 3 (1/3, 0), 3.5 (1/3, 1/2), 4 (0, 1/2)
        // crossing between t=3 (a = 1/3) and t=3.5 (b = 1/3 - 1/2 = -1/6): lambda = 2/3,
        // fmr = 1/3 + 2/3 * 0 = 1/3.
        let g = [3.0, 4.0];
        let i = [1.0, 2.0, 3.5];
        assert!((eer(&g, &i) - 1.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn hand_computed_fnmr_at_fmr() {
        // 10 impostors 0..9, genuines 5..14 (10 of them).
        let i: Vec<f64> = (0..10).map(f64::from).collect();
        let g: Vec<f64> = (5..15).map(f64::from).collect();
        // FMR <= 0.1 needs at most 1 impostor >= t: any t in (8, 9] (impostor 9 only); the
        // smallest such is just above 8.
        let r = fnmr_at_fmr(&g, &i, 0.1);
        assert_eq!(r.point.threshold, 9.0);
        assert!((r.point.fmr - 0.1).abs() < 1e-12);
        // genuines < 9: 5,6,7,8 -> 0.4
        assert!((r.point.fnmr - 0.4).abs() < 1e-12);
        assert!(!r.too_few_impostors);
        // FMR <= 0 needs t above 9.
        let r0 = fnmr_at_fmr(&g, &i, 0.0);
        // ... reported as the next observed score, 10.
        assert_eq!(r0.point.threshold, 10.0);
        assert_eq!(r0.point.fmr, 0.0);
        assert!((r0.point.fnmr - 0.5).abs() < 1e-12);
        assert!(fnmr_at_fmr(&g, &i, 1e-3).too_few_impostors);
    }

    #[test]
    fn det_points_are_monotone() {
        let g = [3.0, 1.0, 4.0, 1.0, 5.0];
        let i = [9.0, 2.0, 6.0, 5.0];
        let pts = det_points(&g, &i);
        assert_eq!(pts.first().unwrap().fmr, 1.0);
        assert_eq!(pts.last().unwrap().fnmr, 1.0);
        for w in pts.windows(2) {
            assert!(w[1].fmr <= w[0].fmr && w[1].fnmr >= w[0].fnmr);
        }
    }
}
