//! A bounded affine refit of a match's inliers, for skin that does not move rigidly: a
//! palm held flatter or more cupped than at enrollment stretches one way more than the
//! other, which a similarity cannot follow. The affine map is fitted by least squares on
//! the similarity's inliers and kept only while it stays close to a similarity (its two
//! singular values within `max_anisotropy` of each other, no reflection, its mean scale
//! in the matcher's range). An experiment of `palmline-lab eval --max-anisotropy`; the
//! matcher's default leaves it off (`max_anisotropy = 1`): see docs/PALM.md.

/// q = M·p + t.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Affine {
    m: [f32; 4],
    t: (f32, f32),
}

/// A correspondence (point in the first ROI, point in the second).
type PointPair = ((f32, f32), (f32, f32));

impl Affine {
    /// Least squares over the pairs; `None` with fewer than 3 or degenerate points.
    pub fn fit(pairs: &[PointPair]) -> Option<Affine> {
        if pairs.len() < 3 {
            return None;
        }
        let n = pairs.len() as f32;
        let mean = |f: fn(&PointPair) -> f32| pairs.iter().map(f).sum::<f32>() / n;
        let (px, py) = (mean(|p| p.0 .0), mean(|p| p.0 .1));
        let (qx, qy) = (mean(|p| p.1 .0), mean(|p| p.1 .1));
        // S = Σ p pᵀ, C = Σ q pᵀ over centred points; M = C S⁻¹.
        let (mut sxx, mut sxy, mut syy) = (0.0f32, 0.0f32, 0.0f32);
        let (mut c00, mut c01, mut c10, mut c11) = (0.0f32, 0.0f32, 0.0f32, 0.0f32);
        for ((ax, ay), (bx, by)) in pairs {
            let (x, y, u, v) = (ax - px, ay - py, bx - qx, by - qy);
            sxx += x * x;
            sxy += x * y;
            syy += y * y;
            c00 += u * x;
            c01 += u * y;
            c10 += v * x;
            c11 += v * y;
        }
        let det = sxx * syy - sxy * sxy;
        if det.abs() < 1e-3 * (sxx * syy).max(1.0) {
            return None;
        }
        let (i00, i01, i11) = (syy / det, -sxy / det, sxx / det);
        let m = [
            c00 * i00 + c01 * i01,
            c00 * i01 + c01 * i11,
            c10 * i00 + c11 * i01,
            c10 * i01 + c11 * i11,
        ];
        let t = (qx - (m[0] * px + m[1] * py), qy - (m[2] * px + m[3] * py));
        Some(Affine { m, t })
    }

    pub fn apply(&self, x: f32, y: f32) -> (f32, f32) {
        let m = &self.m;
        (
            m[0] * x + m[1] * y + self.t.0,
            m[2] * x + m[3] * y + self.t.1,
        )
    }

    /// The rotation of the map's closest rotation (polar decomposition), degrees.
    pub fn rotation_deg(&self) -> f32 {
        let m = &self.m;
        (m[2] - m[1]).atan2(m[0] + m[3]).to_degrees()
    }

    /// The two singular values, largest first.
    pub fn singular_values(&self) -> (f32, f32) {
        let [a, b, c, d] = self.m;
        // For a 2×2 matrix: σ₁,₂ = (√((a+d)²+(c−b)²) ± √((a−d)²+(c+b)²)) / 2.
        let s = ((a + d).powi(2) + (c - b).powi(2)).sqrt();
        let r = ((a - d).powi(2) + (c + b).powi(2)).sqrt();
        ((s + r) / 2.0, (s - r).abs() / 2.0)
    }

    /// Close enough to a similarity: no reflection, singular values within
    /// `max_anisotropy` of each other, their geometric mean within the scale range.
    pub fn near_similarity(&self, max_anisotropy: f32, scale: (f32, f32)) -> bool {
        let [a, b, c, d] = self.m;
        let (s1, s2) = self.singular_values();
        let mean = (s1 * s2).sqrt();
        a * d - b * c > 0.0
            && s2 > 0.0
            && s1 / s2 <= max_anisotropy
            && mean >= scale.0
            && mean <= scale.1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(f: impl Fn(f32, f32) -> (f32, f32)) -> Vec<PointPair> {
        let mut v = Vec::new();
        for i in 0..5 {
            for j in 0..4 {
                let p = (20.0 + 30.0 * i as f32, 15.0 + 35.0 * j as f32);
                v.push((p, f(p.0, p.1)));
            }
        }
        v
    }

    #[test]
    fn recovers_a_stretched_and_turned_map() {
        // Stretch x by 1.1, turn by 20°, shift.
        let (s, c) = 20f32.to_radians().sin_cos();
        let map = |x: f32, y: f32| {
            let x = 1.1 * x;
            (c * x - s * y + 7.0, s * x + c * y - 3.0)
        };
        let a = Affine::fit(&pairs(map)).unwrap();
        for (p, q) in pairs(map) {
            let got = a.apply(p.0, p.1);
            assert!((got.0 - q.0).abs() < 1e-2 && (got.1 - q.1).abs() < 1e-2);
        }
        let (s1, s2) = a.singular_values();
        assert!(
            (s1 - 1.1).abs() < 1e-3 && (s2 - 1.0).abs() < 1e-3,
            "{s1} {s2}"
        );
        assert!(
            (a.rotation_deg() - 20.0).abs() < 3.0,
            "{}",
            a.rotation_deg()
        );
        assert!(a.near_similarity(1.15, (0.75, 1.33)));
        assert!(!a.near_similarity(1.05, (0.75, 1.33)));
    }

    #[test]
    fn refuses_reflections_and_degenerate_points() {
        let mirrored = Affine::fit(&pairs(|x, y| (-x, y))).unwrap();
        assert!(!mirrored.near_similarity(2.0, (0.5, 2.0)));
        let line: Vec<PointPair> = (0..6)
            .map(|i| ((i as f32, 2.0 * i as f32), (i as f32, 2.0 * i as f32)))
            .collect();
        assert!(Affine::fit(&line).is_none());
        assert!(Affine::fit(&pairs(|x, y| (x, y))[..2]).is_none());
    }
}
