//! The capture quality gate: decides from a grayscale frame whether a palm is in place and
//! what to tell the shopper (no hand / too close / too far / too dark / blurry / hold still),
//! and accepts a frame only after the hand has been steady for a few frames.
//!
//! It works on a 4× downsampled copy (160×120 for a 640×480 camera), so it costs well under
//! a millisecond and never slows the preview. It assumes what the kiosk's camera sees: a
//! hand lit from the front over a dark background.

use crate::app::Guidance;

/// Thresholds of the gate (the `[quality]` section of kiosk.toml; every field optional).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GateConfig {
    /// Hand pixels as a fraction of the frame.
    pub min_cover: f32,
    pub max_cover: f32,
    /// Below this the frame has no hand at all.
    pub no_hand_cover: f32,
    pub min_brightness: f32,
    pub max_saturated: f32,
    /// Sharpness of the palm (`palmline_shared::palm::sharpness`, 0–1, independent of
    /// how much contrast the skin has): lower is blurry. Calibrated on real palm frames
    /// (docs/PALM.md), the same check and level as the extractor's gate.
    pub min_sharpness: f32,
    /// Mean absolute difference from the previous frame inside the hand: higher is moving.
    pub max_motion: f32,
    /// Consecutive good frames before accepting.
    pub steady_frames: u32,
}

impl Default for GateConfig {
    fn default() -> Self {
        GateConfig {
            min_cover: 0.12,
            max_cover: 0.85,
            no_hand_cover: 0.015,
            min_brightness: 60.0,
            max_saturated: 0.35,
            min_sharpness: 0.35,
            max_motion: 6.0,
            steady_frames: 3,
        }
    }
}

/// The gate's verdict on one frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Assessment {
    pub guidance: Guidance,
    /// True once the hand has been good and steady for `steady_frames`.
    pub accept: bool,
    pub cover: f32,
    pub sharpness: f32,
    pub motion: f32,
}

pub struct QualityGate {
    cfg: GateConfig,
    prev: Option<Vec<u8>>,
    steady: u32,
}

const DOWN: usize = 4;

impl QualityGate {
    pub fn new(cfg: GateConfig) -> QualityGate {
        QualityGate {
            cfg,
            prev: None,
            steady: 0,
        }
    }

    /// Forgets history (after an accepted capture, so the next one needs fresh steadiness).
    pub fn reset(&mut self) {
        self.prev = None;
        self.steady = 0;
    }

    pub fn assess(&mut self, gray: &[u8], width: u32, height: u32) -> Assessment {
        let (w, h) = (width as usize / DOWN, height as usize / DOWN);
        let mut small = vec![0u8; w * h];
        for y in 0..h {
            for x in 0..w {
                // Box filter of each DOWN×DOWN cell.
                let mut sum = 0u32;
                for dy in 0..DOWN {
                    let row = (y * DOWN + dy) * width as usize + x * DOWN;
                    for dx in 0..DOWN {
                        sum += u32::from(gray[row + dx]);
                    }
                }
                small[y * w + x] = (sum / (DOWN * DOWN) as u32) as u8;
            }
        }
        let threshold = otsu(&small).max(45);
        let mask: Vec<bool> = small.iter().map(|&v| v >= threshold).collect();
        let hand = mask.iter().filter(|&&m| m).count();
        let cover = hand as f32 / (w * h).max(1) as f32;
        let mut brightness = 0f32;
        let mut saturated = 0usize;
        for (v, m) in small.iter().zip(&mask) {
            if *m {
                brightness += f32::from(*v);
                if *v >= 250 {
                    saturated += 1;
                }
            }
        }
        brightness /= hand.max(1) as f32;
        let sharpness = palm_sharpness(gray, width as usize, height as usize, &mask, w, h);
        let motion = match &self.prev {
            Some(p) if p.len() == small.len() => {
                let mut d = 0u64;
                let mut m = 0u64;
                for i in 0..small.len() {
                    if mask[i] {
                        d += u64::from(small[i].abs_diff(p[i]));
                        m += 1;
                    }
                }
                d as f32 / m.max(1) as f32
            }
            _ => f32::INFINITY,
        };
        self.prev = Some(small);
        let c = &self.cfg;
        let guidance = if cover < c.no_hand_cover {
            Guidance::NoHand
        } else if cover > c.max_cover {
            Guidance::TooClose
        } else if cover < c.min_cover {
            Guidance::TooFar
        } else if brightness < c.min_brightness {
            Guidance::TooDark
        } else if saturated as f32 / hand.max(1) as f32 > c.max_saturated {
            Guidance::TooBright
        } else if sharpness < c.min_sharpness {
            Guidance::Blurry
        } else if motion > c.max_motion {
            Guidance::HoldStill
        } else {
            Guidance::Steady
        };
        if guidance == Guidance::Steady {
            self.steady += 1;
        } else {
            self.steady = 0;
        }
        Assessment {
            guidance,
            accept: self.steady >= c.steady_frames,
            cover,
            sharpness,
            motion,
        }
    }
}

/// Sharpness of the hand's interior (at least two gate cells inside its outline, which is
/// sharp even when the palm is not), measured at half resolution as the extractor does.
fn palm_sharpness(
    gray: &[u8],
    width: usize,
    height: usize,
    mask: &[bool],
    w: usize,
    h: usize,
) -> f32 {
    let (w2, h2) = (width / 2, height / 2);
    let mut half = vec![0u8; w2 * h2];
    let mut inside = vec![false; w2 * h2];
    let interior = |x: usize, y: usize| {
        let i = y * w + x;
        x >= 2
            && y >= 2
            && x + 2 < w
            && y + 2 < h
            && mask[i]
            && mask[i - 2]
            && mask[i + 2]
            && mask[i - 2 * w]
            && mask[i + 2 * w]
    };
    for y in 0..h2 {
        for x in 0..w2 {
            let r = 2 * y * width + 2 * x;
            let sum = u32::from(gray[r])
                + u32::from(gray[r + 1])
                + u32::from(gray[r + width])
                + u32::from(gray[r + width + 1]);
            half[y * w2 + x] = (sum / 4) as u8;
            let (sx, sy) = (x * 2 / DOWN, y * 2 / DOWN);
            inside[y * w2 + x] = sx < w && sy < h && interior(sx, sy);
        }
    }
    palmline_shared::palm::sharpness::sharpness(&half, w2, h2, Some(&inside))
}

/// Otsu's threshold of an 8-bit image.
fn otsu(pixels: &[u8]) -> u8 {
    let mut hist = [0u64; 256];
    for &p in pixels {
        hist[p as usize] += 1;
    }
    let total = pixels.len() as f64;
    let sum_all: f64 = hist
        .iter()
        .enumerate()
        .map(|(i, &c)| i as f64 * c as f64)
        .sum();
    let (mut w_b, mut sum_b, mut best, mut best_t) = (0f64, 0f64, 0f64, 0u8);
    for (t, &count) in hist.iter().enumerate() {
        w_b += count as f64;
        if w_b == 0.0 {
            continue;
        }
        let w_f = total - w_b;
        if w_f == 0.0 {
            break;
        }
        sum_b += t as f64 * count as f64;
        let m_b = sum_b / w_b;
        let m_f = (sum_all - sum_b) / w_f;
        let between = w_b * w_f * (m_b - m_f) * (m_b - m_f);
        if between > best {
            best = between;
            best_t = t as u8;
        }
    }
    best_t.saturating_add(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::camera::sim::{procedural_hand, SimCamera, SimControl};
    use crate::camera::Camera;

    const W: u32 = 640;
    const H: u32 = 480;

    fn gate() -> QualityGate {
        QualityGate::new(GateConfig::default())
    }

    #[test]
    fn empty_frame_has_no_hand() {
        let mut g = gate();
        let a = g.assess(&vec![15u8; (W * H) as usize], W, H);
        assert_eq!(a.guidance, Guidance::NoHand);
        assert!(!a.accept);
    }

    #[test]
    fn a_steady_hand_is_accepted_after_a_few_frames() {
        let hand = procedural_hand("alice", 0, W, H);
        let mut g = gate();
        let first = g.assess(&hand, W, H);
        // First frame: no previous frame to judge motion.
        assert_eq!(first.guidance, Guidance::HoldStill, "{first:?}");
        let second = g.assess(&hand, W, H);
        assert_eq!(second.guidance, Guidance::Steady, "{second:?}");
        assert!(!second.accept);
        g.assess(&hand, W, H);
        assert!(g.assess(&hand, W, H).accept);
        g.reset();
        assert!(!g.assess(&hand, W, H).accept);
    }

    #[test]
    fn a_far_hand_and_a_huge_hand_get_guidance() {
        // Far: shrink the hand to a quarter of its size.
        let hand = procedural_hand("bob", 0, W, H);
        let mut far = vec![15u8; (W * H) as usize];
        for y in 0..H / 3 {
            for x in 0..W / 3 {
                far[((y + H / 3) * W + x + W / 3) as usize] = hand[(y * 3 * W + x * 3) as usize];
            }
        }
        assert_eq!(gate().assess(&far, W, H).guidance, Guidance::TooFar);
        let close = vec![180u8; (W * H) as usize];
        let mut with_bg = close.clone();
        with_bg[..(W * 20) as usize].fill(10);
        assert_eq!(gate().assess(&with_bg, W, H).guidance, Guidance::TooClose);
    }

    /// Separable box blur of radius `r` (clamped at the borders).
    fn box_blur(px: &[u8], w: usize, h: usize, r: usize) -> Vec<u8> {
        let pass = |src: &[u8], step: usize, len: usize, lines: usize, stride: usize| {
            let mut out = vec![0u8; src.len()];
            for l in 0..lines {
                for k in 0..len {
                    let (lo, hi) = (k.saturating_sub(r), (k + r).min(len - 1));
                    let sum: u32 = (lo..=hi)
                        .map(|j| u32::from(src[l * stride + j * step]))
                        .sum();
                    out[l * stride + k * step] = (sum / (hi - lo + 1) as u32) as u8;
                }
            }
            out
        };
        let across = pass(px, 1, w, h, w);
        pass(&across, w, h, w, 1)
    }

    #[test]
    fn dark_blurry_and_moving_hands_are_refused() {
        let hand = procedural_hand("carol", 0, W, H);
        let dark: Vec<u8> = hand.iter().map(|&v| if v > 30 { 50 } else { 5 }).collect();
        let mut g = gate();
        g.assess(&dark, W, H);
        assert_eq!(g.assess(&dark, W, H).guidance, Guidance::TooDark);
        // Far out of focus: the same hand box-blurred three times over 17 pixels.
        let mut blurred = hand.clone();
        for _ in 0..3 {
            blurred = box_blur(&blurred, W as usize, H as usize, 8);
        }
        let mut g = gate();
        g.assess(&blurred, W, H);
        let a = g.assess(&blurred, W, H);
        assert_eq!(a.guidance, Guidance::Blurry, "{a:?}");
        // In focus, the same hand is sharp enough.
        let mut g = gate();
        g.assess(&hand, W, H);
        assert!(g.assess(&hand, W, H).sharpness > GateConfig::default().min_sharpness);
        // Moving: shift by 12 pixels between frames.
        let mut shifted = vec![15u8; hand.len()];
        for y in 0..H as usize {
            for x in 12..W as usize {
                shifted[y * W as usize + x] = hand[y * W as usize + x - 12];
            }
        }
        let mut g = gate();
        g.assess(&hand, W, H);
        assert_eq!(g.assess(&shifted, W, H).guidance, Guidance::HoldStill);
    }

    #[test]
    fn the_simulated_camera_passes_the_gate_once_the_hand_rests() {
        let control = SimControl::default();
        let mut cam = SimCamera::new(control.clone(), W, H, 30).unpaced();
        cam.open().unwrap();
        control.present(Some("dave"));
        let mut g = gate();
        let first = cam.next_frame().unwrap();
        let a = g.assess(&first.gray, W, H);
        assert_ne!(a.guidance, Guidance::Steady, "approaching hand: {a:?}");
        // Wait for the approach to finish (simulated time is wall time here).
        let mut accepted = false;
        let start = std::time::Instant::now();
        while start.elapsed() < std::time::Duration::from_secs(5) {
            let f = cam.next_frame().unwrap();
            if g.assess(&f.gray, W, H).accept {
                accepted = true;
                break;
            }
        }
        assert!(accepted, "the resting simulated hand is accepted");
    }
}
/// The palm pipeline's synthetic hands pass this gate and give templates.
#[cfg(all(test, feature = "opencv"))]
mod with_synth {
    use super::*;

    #[test]
    fn synthetic_palms_pass_the_gate_and_extract() {
        let mut ex = crate::extract::default_extractor();
        for id in ["alice", "bob", "stranger"] {
            for sample in 1..4u64 {
                let f = crate::camera::sim::synth_hand(id, sample, 640, 480);
                let mut g = QualityGate::new(GateConfig::default());
                g.assess(&f, 640, 480);
                let a = g.assess(&f, 640, 480);
                assert_eq!(a.guidance, Guidance::Steady, "{id}/{sample}: {a:?}");
                let frame = crate::camera::Frame::from_gray(640, 480, f);
                let t = ex.extract(&frame).expect("template");
                palmline_shared::palm::Template::decode(&t).expect("decodable template");
            }
        }
    }
}
