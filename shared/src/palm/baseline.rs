//! The seed's palm matcher, reproduced faithfully so that every figure of ours is compared
//! against it in the same run. It is a baseline, not a product path: nothing but the lab
//! should call it.
//!
//! Seed pipeline: resize to 640×480 (first, whatever the input size) → bilateral filter
//! (9, 75, 75) → CLAHE (clip 3, 8×8) → Gaussian 3×3 → sharpen with [[-1,-1,-1],[-1,9,-1],[-1,-1,-1]] blended 0.7 sharpened +
//! 0.3 unsharpened; ORB with 500 features; brute-force Hamming matching with cross-check,
//! matches sorted by distance; then [`seed_score`]; accept at [`SEED_ACCEPT`].
//!
//! The preprocessing and ORB need OpenCV (feature `opencv`, [`extract_seed`]); the matching
//! and the score are pure Rust.

use super::hamming::{nearest_two, to_words, Words};
use super::template::Descriptor;

/// The seed's accept threshold.
pub const SEED_ACCEPT: f64 = 0.3;

/// What the seed keeps of an image: its ORB descriptors (it never used the geometry).
#[derive(Debug, Clone, Default)]
pub struct SeedFeatures {
    words: Vec<Words>,
}

impl SeedFeatures {
    pub fn from_descriptors(d: &[Descriptor]) -> Self {
        Self {
            words: d.iter().map(to_words).collect(),
        }
    }

    pub fn len(&self) -> usize {
        self.words.len()
    }

    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }
}

/// Brute-force Hamming matching with cross-check, as OpenCV's `BFMatcher(NORM_HAMMING,
/// crossCheck=True)`: i↔j is kept when j is i's nearest and i is j's nearest (first index on
/// ties). Returns the match distances sorted ascending (stable), as the seed sorted them.
pub fn cross_check_distances(a: &SeedFeatures, b: &SeedFeatures) -> Vec<u32> {
    let (rows, cols) = nearest_two(&a.words, &b.words);
    let mut d: Vec<u32> = rows
        .iter()
        .enumerate()
        .filter(|(i, r)| {
            (r.index as usize) < cols.len() && cols[r.index as usize].index as usize == *i
        })
        .map(|(_, r)| r.best)
        .collect();
    d.sort();
    d
}

/// The seed's score from its sorted match distances and the two descriptor counts:
/// `min(1, 0.4·good/min(n1,n2) + 0.4·max(0, (80 − mean top)/80) + 0.2·excellent/min(20,
/// min(n1,n2)))` where good = matches with distance < 60, top = the first max(10, n/5)
/// matches (n = number of matches, integer division), excellent = top with distance < 45.
/// No matches (or an empty side) scores 0.
pub fn seed_score(sorted_distances: &[u32], n1: usize, n2: usize) -> f64 {
    let min_n = n1.min(n2);
    if sorted_distances.is_empty() || min_n == 0 {
        return 0.0;
    }
    let n = sorted_distances.len();
    let good = sorted_distances.iter().filter(|&&d| d < 60).count();
    let top = &sorted_distances[..n.min(10.max(n / 5))];
    let excellent = top.iter().filter(|&&d| d < 45).count();
    let mean_top = top.iter().map(|&d| d as f64).sum::<f64>() / top.len() as f64;
    let s = 0.4 * good as f64 / min_n as f64
        + 0.4 * ((80.0 - mean_top) / 80.0).max(0.0)
        + 0.2 * excellent as f64 / (min_n.min(20)) as f64;
    s.min(1.0)
}

/// Matches two feature sets and scores them the seed's way.
pub fn seed_compare(a: &SeedFeatures, b: &SeedFeatures) -> f64 {
    seed_score(&cross_check_distances(a, b), a.len(), b.len())
}

#[cfg(feature = "opencv")]
pub use cv::extract_seed;

#[cfg(feature = "opencv")]
mod cv {
    use super::SeedFeatures;
    use opencv::core::{Mat, Ptr, Size, Vector, BORDER_DEFAULT, CV_8U};
    use opencv::features2d::{ORB_ScoreType, ORB};
    use opencv::imgproc;
    use opencv::prelude::*;

    /// The seed's preprocessing and ORB-500, on an 8-bit grayscale frame (row-major).
    pub fn extract_seed(gray: &[u8], width: u32, height: u32) -> opencv::Result<SeedFeatures> {
        let src = super::super::extract::mat_from_gray(gray, width, height)?;
        // The seed standardises the size first: every later step sees a 640×480 image,
        // whatever the camera or data set gave (a 128-px crop is upsampled before filtering).
        let mut resized = Mat::default();
        imgproc::resize(
            &src,
            &mut resized,
            Size::new(640, 480),
            0.0,
            0.0,
            imgproc::INTER_LINEAR,
        )?;
        let mut bil = Mat::default();
        imgproc::bilateral_filter(&resized, &mut bil, 9, 75.0, 75.0, BORDER_DEFAULT)?;
        let mut clahe = imgproc::create_clahe(3.0, Size::new(8, 8))?;
        let mut eq = Mat::default();
        clahe.apply(&bil, &mut eq)?;
        let mut blur = Mat::default();
        imgproc::gaussian_blur_def(&eq, &mut blur, Size::new(3, 3), 0.0)?;
        let kernel =
            Mat::from_slice_2d(&[[-1.0f32, -1.0, -1.0], [-1.0, 9.0, -1.0], [-1.0, -1.0, -1.0]])?;
        let mut sharp = Mat::default();
        imgproc::filter_2d_def(&blur, &mut sharp, CV_8U, &kernel)?;
        let mut blended = Mat::default();
        opencv::core::add_weighted_def(&sharp, 0.7, &blur, 0.3, 0.0, &mut blended)?;
        let mut orb: Ptr<ORB> =
            ORB::create(500, 1.2, 8, 31, 0, 2, ORB_ScoreType::HARRIS_SCORE, 31, 20)?;
        let mut kps = Vector::new();
        let mut desc = Mat::default();
        orb.detect_and_compute_def(&blended, &Mat::default(), &mut kps, &mut desc)?;
        Ok(SeedFeatures::from_descriptors(
            &super::super::extract::descriptors_of(&desc)?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn score_hand_computed_small_list() {
        // 4 matches, n1 = 100, n2 = 50: good (<60) = 3, top = all 4 (max(10, 0) > 4),
        // excellent (<45) = 2, mean top = (10+40+50+70)/4 = 42.5.
        // 0.4·3/50 + 0.4·(80−42.5)/80 + 0.2·2/20 = 0.024 + 0.1875 + 0.02 = 0.2315
        let s = seed_score(&[10, 40, 50, 70], 100, 50);
        assert!((s - 0.2315).abs() < 1e-12, "{s}");
    }

    #[test]
    fn score_hand_computed_top_fifth() {
        // 60 matches: 12 at distance 30, 48 at distance 70; n1 = n2 = 500.
        // good = 12, top = first max(10, 12) = 12 (all 30), excellent = 12, mean top = 30.
        // 0.4·12/500 + 0.4·50/80 + 0.2·12/20 = 0.0096 + 0.25 + 0.12 = 0.3796
        let mut d = vec![30; 12];
        d.extend(vec![70; 48]);
        let s = seed_score(&d, 500, 500);
        assert!((s - 0.3796).abs() < 1e-12, "{s}");
        // 0.3796 ≥ 0.3: the seed accepts.
        assert!(s >= SEED_ACCEPT);
    }

    #[test]
    fn score_clamps_and_handles_empty() {
        assert_eq!(seed_score(&[], 10, 10), 0.0);
        assert_eq!(seed_score(&[1, 2], 0, 10), 0.0);
        // 3 matches at 0 with n = 3: 0.4·3/3 + 0.4·1 + 0.2·3/3 = 1.0 → clamped to 1.
        assert_eq!(seed_score(&[0, 0, 0], 3, 3), 1.0);
        // Mean top distance above 80 contributes nothing (no negative part).
        let s = seed_score(&[90, 100], 10, 10);
        assert_eq!(s, 0.0);
    }

    #[test]
    fn cross_check_keeps_mutual_only() {
        let mut a = vec![[0u8; 32], [0xff; 32]];
        a[1][0] = 0; // a1 = all ones but 8 bits
        let b = vec![[0u8; 32], [1u8; 32]];
        // a0 → b0 (0) ; a1 → b1 (distance 256-8-... ) ; b0 → a0 ; b1 → a0 (32 bits) ≠ a1.
        let fa = SeedFeatures::from_descriptors(&a);
        let fb = SeedFeatures::from_descriptors(&b);
        assert_eq!(cross_check_distances(&fa, &fb), vec![0]);
        assert_eq!(seed_compare(&fa, &fa), seed_score(&[0, 0], 2, 2));
    }
}
