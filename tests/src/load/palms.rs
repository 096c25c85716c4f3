//! The load run's shoppers and their palms: shopper `i` is `p{i:05}`, with a palm of the
//! bank test's keypoint model (no OpenCV) at the size of a real template (450 keypoints a
//! capture, as the kiosk's extractor gives), enrolled with three captures; a payment shows
//! a fresh capture, one no enrollment used, as a shopper's next touch is.
//!
//! What the model leaves out: real palm texture crowds some of the index's buckets where
//! these random descriptors spread evenly, and real genuine captures sometimes score below
//! the grey level and run the second, turned query; here none do. Matching costs what it
//! costs on real templates (it depends on keypoint counts). BENCHMARKS.md compares.

use crate::bank::palm::{capture_with, palm_of, Model, Palm};
use palmline_shared::palm::Template;

/// About 450 keypoints a capture (315 of the palm's 450, 135 spurious).
pub const LOAD_MODEL: Model = Model {
    points: 450,
    spurious: 135,
};
pub const ENROLL_CAPTURES: u64 = 3;
/// Captures from this number on are probes, never enrolled.
const FIRST_PROBE: u64 = 100;

pub fn username(i: usize) -> String {
    format!("p{i:05}")
}

fn palm(seed: u64, i: usize) -> Palm {
    palm_of(
        seed.wrapping_mul(0x0100_0000_01B3) ^ (i as u64 + 1),
        LOAD_MODEL,
    )
}

fn shot(seed: u64, i: usize, capture: u64) -> u64 {
    (seed << 40) ^ ((i as u64) << 12) ^ capture
}

/// The three enrollment captures of shopper `i`'s palm.
pub fn enrollment(seed: u64, i: usize) -> Vec<Template> {
    let p = palm(seed, i);
    (0..ENROLL_CAPTURES)
        .map(|c| capture_with(&p, shot(seed, i, c), LOAD_MODEL))
        .collect()
}

/// A fresh capture of shopper `i`'s palm (the `n`-th probe of it).
pub fn probe(seed: u64, i: usize, n: u64) -> Template {
    capture_with(&palm(seed, i), shot(seed, i, FIRST_PROBE + n), LOAD_MODEL)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_are_the_size_of_a_real_template_and_differ_from_enrollment() {
        let enrolled = enrollment(7, 3);
        let fresh = probe(7, 3, 0);
        for t in enrolled.iter().chain([&fresh]) {
            let n = t.keypoints().len();
            assert!((400..=500).contains(&n), "{n} keypoints");
        }
        assert!(enrolled.iter().all(|e| e.encode() != fresh.encode()));
        assert_ne!(enrollment(7, 4)[0].encode(), enrolled[0].encode());
    }
}
