//! A blur measure that does not depend on how much contrast a palm's texture has: the
//! "blur effect" of Crete, Dolmiere, Ladret and Nicolas (SPIE 2007).
//!
//! Re-blur the image with a 9-tap box filter along one axis and see how much of its
//! neighbour-to-neighbour variation survives: a sharp image loses most of it, an already
//! blurred one loses little. The ratio is scale-free in the gray levels, so a faint palm
//! (real palm texture is faint) is not mistaken for a blurred one, which an absolute
//! measure such as the variance of the Laplacian does: that is what rejected half of real
//! palm frames as blurry when it was calibrated on generated hands.
//!
//! Pure Rust (no OpenCV): the kiosk's live gate and the extractor's gate share it.

/// Sharpness in `[0, 1]` (1 − the blur effect, the worse of the two axes): about 0.5–0.8 for
/// an in-focus camera frame, falling towards 0 as blur grows. `mask`, if given, selects the
/// pixels that count (same size as the image). A flat or too small region scores 0.
pub fn sharpness(pixels: &[u8], w: usize, h: usize, mask: Option<&[bool]>) -> f32 {
    if w < 10 || h < 10 || pixels.len() != w * h || mask.is_some_and(|m| m.len() != w * h) {
        return 0.0;
    }
    let keep = |i: usize| mask.is_none_or(|m| m[i]);
    let along_x = blur_effect(pixels, w, h, 1, w, &keep);
    let along_y = blur_effect(pixels, h, w, w, 1, &keep);
    1.0 - along_x.max(along_y)
}

/// The blur effect along one axis: lines of `len` pixels `step` apart, `lines` of them
/// `stride` apart.
fn blur_effect(
    px: &[u8],
    len: usize,
    lines: usize,
    step: usize,
    stride: usize,
    keep: &impl Fn(usize) -> bool,
) -> f32 {
    const HALF: usize = 4; // 9 taps
    let (mut sum_f, mut sum_v) = (0f64, 0f64);
    let mut blurred = vec![0f32; len];
    for line in 0..lines {
        let at = |k: usize| line * stride + k * step;
        // Box filter with clamped ends, by a running sum.
        let mut acc: f32 = (0..=HALF)
            .map(|k| px[at(k.min(len - 1))] as f32)
            .sum::<f32>()
            + HALF as f32 * px[at(0)] as f32;
        for (k, b) in blurred.iter_mut().enumerate() {
            *b = acc / (2 * HALF + 1) as f32;
            let add = px[at((k + HALF + 1).min(len - 1))] as f32;
            let sub = px[at(k.saturating_sub(HALF))] as f32;
            acc += add - sub;
        }
        for k in 1..len {
            if !keep(at(k)) || !keep(at(k - 1)) {
                continue;
            }
            let d_f = (px[at(k)] as f32 - px[at(k - 1)] as f32).abs();
            if d_f < 1.5 {
                // One gray level: 8-bit quantisation, not an edge (a heavily blurred ramp is
                // a staircase of such steps, which would look sharp).
                continue;
            }
            let d_b = (blurred[k] - blurred[k - 1]).abs();
            sum_f += d_f as f64;
            sum_v += (d_f - d_b).max(0.0) as f64;
        }
    }
    if sum_f <= 0.0 {
        return 1.0;
    }
    ((sum_f - sum_v) / sum_f) as f32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::palm::rng::Rng;

    /// Thin dark lines (as palm creases) of a given depth in gray levels on a flat skin,
    /// box-blurred `blur_passes` times.
    fn texture(depth: f64, blur_passes: usize) -> Vec<u8> {
        let (w, h) = (96, 96);
        let mut rng = Rng::new(3);
        let mut f = vec![0f64; w * h];
        for _ in 0..40 {
            let (x0, y0) = (rng.range(0.0, 96.0), rng.range(0.0, 96.0));
            let a = rng.range(0.0, std::f64::consts::PI);
            for t in -60..60 {
                let (x, y) = (x0 + t as f64 * a.cos(), y0 + t as f64 * a.sin());
                if (0.0..96.0).contains(&x) && (0.0..96.0).contains(&y) {
                    f[y as usize * w + x as usize] = -1.0;
                }
            }
        }
        for _ in 0..blur_passes {
            let g = f.clone();
            for y in 1..h - 1 {
                for x in 1..w - 1 {
                    let mut s = 0.0;
                    for dy in 0..3 {
                        for dx in 0..3 {
                            s += g[(y + dy - 1) * w + x + dx - 1];
                        }
                    }
                    f[y * w + x] = s / 9.0;
                }
            }
        }
        // Same depth whatever the blur (blurring also flattens the lines).
        let lo = f.iter().copied().fold(0.0, f64::min).min(-1e-9);
        f.iter()
            .map(|v| (160.0 + depth * v / -lo).round().clamp(0.0, 255.0) as u8)
            .collect()
    }

    #[test]
    fn does_not_depend_on_contrast() {
        let strong = sharpness(&texture(40.0, 1), 96, 96, None);
        let faint = sharpness(&texture(12.0, 1), 96, 96, None);
        assert!((strong - faint).abs() < 0.08, "{strong} vs {faint}");
    }

    #[test]
    fn falls_with_blur() {
        let s: Vec<f32> = [0, 1, 3, 8]
            .iter()
            .map(|&b| sharpness(&texture(40.0, b), 96, 96, None))
            .collect();
        assert!(s.windows(2).all(|w| w[0] > w[1]), "{s:?}");
        assert!(s[0] > 0.85 && s[0] - s[3] > 0.25, "{s:?}");
    }

    #[test]
    fn flat_small_or_mismatched_input_scores_zero() {
        assert_eq!(sharpness(&[100; 96 * 96], 96, 96, None), 0.0);
        assert_eq!(sharpness(&[1, 2, 3], 3, 1, None), 0.0);
        assert_eq!(sharpness(&[0; 100], 96, 96, None), 0.0);
        let mask = vec![false; 96 * 96];
        assert_eq!(sharpness(&texture(40.0, 0), 96, 96, Some(&mask)), 0.0);
    }
}
