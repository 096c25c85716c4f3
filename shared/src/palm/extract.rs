//! Extraction (feature `opencv`): camera frame → quality gate → palm ROI → contrast
//! normalisation → ORB keypoints spread over a grid → [`Template`].
//!
//! - **Quality gate** ([`Extractor::quality`], cheap enough for live guidance): works on a
//!   4× downscaled frame. Every failure is a typed [`QualityError`] the kiosk can show.
//! - **ROI**: centred and scaled on the largest inscribed circle of the hand mask (distance
//!   transform), which stays put when fingers touch or leave the frame; turned upright at
//!   any angle from the fingers' direction, refined by the finger valleys
//!   ([`super::orient`]); the frame's "up" only when no finger is seen.
//! - **Features**: CLAHE, then ORB with a low FAST threshold (palm skin is smooth) and the
//!   strongest keypoints of each grid cell, so that they cover the whole palm.
//!
//! Never sends or keeps the frame: the template is all that leaves this module.

use super::template::{Descriptor, Keypoint, Template, MAX_KEYPOINTS};
use opencv::core::{Mat, Point, Ptr, Rect, Scalar, Size, Vector, BORDER_CONSTANT, CV_32F, CV_8U};
use opencv::features2d::{ORB_ScoreType, ORB};
use opencv::imgproc;
use opencv::prelude::*;
use thiserror::Error;

/// Why a frame gives no template. `code()` is stable, for the kiosk's messages and logs.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum QualityError {
    #[error("no hand in view")]
    NoHand,
    #[error("too dark")]
    TooDark,
    #[error("too bright")]
    TooBright,
    #[error("blurry (sharpness {sharpness:.2}, need {min:.2})")]
    Blurry { sharpness: f32, min: f32 },
    #[error("hand too close to the camera")]
    TooClose,
    #[error("hand too far from the camera")]
    TooFar,
    #[error("too few palm features ({found}, need {min})")]
    TooFewFeatures { found: usize, min: usize },
    #[error("image processing failed: {0}")]
    Internal(String),
}

impl QualityError {
    pub fn code(&self) -> &'static str {
        match self {
            QualityError::NoHand => "no_hand",
            QualityError::TooDark => "too_dark",
            QualityError::TooBright => "too_bright",
            QualityError::Blurry { .. } => "blurry",
            QualityError::TooClose => "too_close",
            QualityError::TooFar => "too_far",
            QualityError::TooFewFeatures { .. } => "too_few_features",
            QualityError::Internal(_) => "internal",
        }
    }
}

impl From<opencv::Error> for QualityError {
    fn from(e: opencv::Error) -> Self {
        QualityError::Internal(e.to_string())
    }
}

pub use super::orient::Orientation;

/// What the quality gate measured on an accepted frame.
#[derive(Debug, Clone, PartialEq)]
pub struct QualityReport {
    /// Fraction of the frame covered by the hand.
    pub hand_fraction: f32,
    /// Mean gray level of the hand.
    pub brightness: f32,
    /// Fraction of the hand at gray level 250 or more (clipped highlights).
    pub saturated: f32,
    /// Palm centre and inscribed-circle radius, frame pixels.
    pub palm_center: (f32, f32),
    pub palm_radius: f32,
    /// Sharpness measure (see [`ExtractConfig::min_sharpness`]).
    pub sharpness: f32,
    /// Hand "up" direction, degrees clockwise from the frame's up.
    pub rotation_deg: f32,
    pub orientation: Orientation,
}

/// Extraction parameters. Defaults are for a 640×480 kiosk frame but scale-free where
/// possible (radii are relative to the frame height).
#[derive(Debug, Clone, PartialEq)]
pub struct ExtractConfig {
    /// Side of the ROI's keypoint area, pixels.
    pub roi_inner: u16,
    /// Extra border around it so that descriptors near the edge see real pixels.
    pub roi_margin: u16,
    /// The ROI's inner square spans `roi_span` × the inscribed-circle diameter.
    pub roi_span: f32,
    /// At most this many keypoints (≤ [`MAX_KEYPOINTS`]).
    pub max_keypoints: usize,
    /// Fewer than this and the frame is rejected.
    pub min_keypoints: usize,
    pub fast_threshold: i32,
    /// Keypoints are spread over `grid` × `grid` cells.
    pub grid: usize,
    pub clahe_clip: f64,
    pub clahe_tiles: i32,
    /// Inscribed radius bounds, as fractions of the frame height.
    pub min_radius: f32,
    pub max_radius: f32,
    /// High-pass before CLAHE: subtract a Gaussian blur of this σ (ROI pixels; 0 = off).
    pub highpass_sigma: f32,
    /// Keypoints stay this many ROI pixels inside the hand's outline (the silhouette and the
    /// frame's edge are not identity-specific).
    pub edge_margin: u16,
    /// Minimum sharpness of the half-resolution palm square ([`super::sharpness`], 0–1,
    /// independent of the palm's contrast). Calibrated on real frames: docs/PALM.md.
    pub min_sharpness: f32,
    /// Largest fraction of the hand that may be clipped (≥ 250) before `too_bright`.
    /// Calibrated on real frames: docs/PALM.md.
    pub max_saturated: f32,
    /// The input is already a palm ROI (as in data sets that publish crops, e.g. PolyU): skip
    /// the hand mask and ROI steps and use the whole image, resized to `roi_inner`.
    pub input_is_roi: bool,
    /// The hand may be turned this many degrees from the frame's up (180 = any angle);
    /// beyond it the ROI is cut upright ([`Orientation::Fallback`]).
    pub max_hand_rotation_deg: f32,
}

impl Default for ExtractConfig {
    fn default() -> Self {
        Self {
            roi_inner: 160,
            roi_margin: 24,
            roi_span: 1.0,
            max_keypoints: 450,
            min_keypoints: 30,
            fast_threshold: 5,
            grid: 6,
            clahe_clip: 2.5,
            clahe_tiles: 4,
            min_radius: 0.09,
            max_radius: 0.49,
            highpass_sigma: 5.0,
            edge_margin: 5,
            min_sharpness: 0.35,
            max_saturated: 0.35,
            input_is_roi: false,
            max_hand_rotation_deg: 180.0,
        }
    }
}

/// Sets OpenCV's internal worker threads (0 = its default). The lab sets 1 so that timings
/// are per core and its own workers do not fight OpenCV's.
pub fn set_opencv_threads(n: i32) -> Result<(), QualityError> {
    opencv::core::set_num_threads(n)?;
    Ok(())
}

/// Downscale factor of the quality gate.
const SMALL: i32 = 4;

/// Holds the OpenCV objects; one per thread (`extract` takes `&mut self`).
pub struct Extractor {
    config: ExtractConfig,
    orb: Ptr<ORB>,
    clahe: Ptr<imgproc::CLAHE>,
}

/// Internal result of the gate: the report plus what the ROI step needs.
struct Gate {
    report: QualityReport,
    /// Filled hand mask at 1/4 resolution.
    mask: Mat,
}

pub(crate) fn mat_from_gray(gray: &[u8], width: u32, height: u32) -> opencv::Result<Mat> {
    if width == 0 || height == 0 || gray.len() != width as usize * height as usize {
        return Err(opencv::Error::new(
            opencv::core::StsBadArg,
            format!("{} bytes for a {width}×{height} frame", gray.len()),
        ));
    }
    Mat::new_rows_cols_with_data(height as i32, width as i32, gray)?.try_clone()
}

pub(crate) fn descriptors_of(desc: &Mat) -> opencv::Result<Vec<Descriptor>> {
    if desc.empty() || desc.cols() != 32 {
        return Ok(Vec::new());
    }
    let bytes = desc.data_bytes()?;
    Ok(bytes
        .chunks_exact(32)
        .map(|c| {
            let mut d = [0u8; 32];
            d.copy_from_slice(c);
            d
        })
        .collect())
}

/// Otsu threshold of a histogram, with the two class means.
fn otsu(hist: &[u64; 256]) -> (usize, f64, f64) {
    let total: u64 = hist.iter().sum();
    let sum: f64 = hist
        .iter()
        .enumerate()
        .map(|(i, &h)| i as f64 * h as f64)
        .sum();
    let (mut wb, mut sb) = (0u64, 0f64);
    let (mut best, mut best_t, mut means) = (-1f64, 0usize, (0.0, 0.0));
    for (t, &h) in hist.iter().enumerate() {
        wb += h;
        sb += t as f64 * h as f64;
        let wf = total - wb;
        if wb == 0 || wf == 0 {
            continue;
        }
        let mb = sb / wb as f64;
        let mf = (sum - sb) / wf as f64;
        let between = wb as f64 * wf as f64 * (mb - mf).powi(2);
        if between > best {
            best = between;
            best_t = t;
            means = (mb, mf);
        }
    }
    (best_t, means.0, means.1)
}

impl Extractor {
    pub fn new(config: ExtractConfig) -> Result<Self, QualityError> {
        let orb = ORB::create(
            (config.max_keypoints * 4) as i32,
            1.3,
            3,
            16,
            0,
            2,
            ORB_ScoreType::HARRIS_SCORE,
            31,
            config.fast_threshold,
        )?;
        let clahe = imgproc::create_clahe(
            config.clahe_clip,
            Size::new(config.clahe_tiles, config.clahe_tiles),
        )?;
        Ok(Self { config, orb, clahe })
    }

    pub fn config(&self) -> &ExtractConfig {
        &self.config
    }

    /// The quality gate alone (a few milliseconds): for live guidance at the kiosk.
    pub fn quality(
        &mut self,
        gray: &[u8],
        width: u32,
        height: u32,
    ) -> Result<QualityReport, QualityError> {
        let frame = mat_from_gray(gray, width, height)?;
        Ok(self.gate(&frame)?.report)
    }

    /// Full extraction: the gate, the ROI and the template.
    pub fn extract(
        &mut self,
        gray: &[u8],
        width: u32,
        height: u32,
    ) -> Result<Template, QualityError> {
        self.extract_with_report(gray, width, height)
            .map(|(t, _)| t)
    }

    /// Like [`Extractor::extract`], with the quality report.
    pub fn extract_with_report(
        &mut self,
        gray: &[u8],
        width: u32,
        height: u32,
    ) -> Result<(Template, QualityReport), QualityError> {
        let frame = mat_from_gray(gray, width, height)?;
        if self.config.input_is_roi {
            let (roi, mask, report) = self.roi_from_crop(&frame)?;
            let t = self.features(&roi, &mask)?;
            return Ok((t, report));
        }
        let gate = self.gate(&frame)?;
        let (roi, mask) = self.roi(&frame, &gate)?;
        let t = self.features(&roi, &mask)?;
        Ok((t, gate.report))
    }

    /// [`ExtractConfig::input_is_roi`]: the whole image is the palm.
    fn roi_from_crop(&mut self, frame: &Mat) -> Result<(Mat, Mat, QualityReport), QualityError> {
        let c = &self.config;
        let inner = c.roi_inner as i32;
        let m = c.roi_margin as i32;
        let mut resized = Mat::default();
        imgproc::resize(
            frame,
            &mut resized,
            Size::new(inner, inner),
            0.0,
            0.0,
            imgproc::INTER_AREA,
        )?;
        let brightness = opencv::core::mean(&resized, &opencv::core::no_array())?[0] as f32;
        if brightness < 30.0 {
            return Err(QualityError::TooDark);
        }
        if brightness > 235.0 {
            return Err(QualityError::TooBright);
        }
        let mut padded = Mat::default();
        opencv::core::copy_make_border(
            &resized,
            &mut padded,
            m,
            m,
            m,
            m,
            opencv::core::BORDER_REFLECT_101,
            Scalar::all(0.0),
        )?;
        let eq = self.normalise(&padded)?;
        let side = inner + 2 * m;
        let mut mask = Mat::new_rows_cols_with_default(side, side, CV_8U, Scalar::all(0.0))?;
        imgproc::rectangle(
            &mut mask,
            Rect::new(m, m, inner, inner),
            Scalar::all(255.0),
            imgproc::FILLED,
            imgproc::LINE_8,
            0,
        )?;
        let (w, h) = (frame.cols() as f32, frame.rows() as f32);
        let report = QualityReport {
            hand_fraction: 1.0,
            brightness,
            saturated: f32::NAN,
            palm_center: (w / 2.0, h / 2.0),
            palm_radius: w.min(h) / 2.0,
            sharpness: f32::NAN,
            rotation_deg: 0.0,
            orientation: Orientation::Fallback,
        };
        Ok((eq, mask, report))
    }

    /// The normalised, contrast-equalised ROI as row-major bytes (side `inner + 2·margin`):
    /// for debugging and documentation.
    pub fn roi_image(
        &mut self,
        gray: &[u8],
        width: u32,
        height: u32,
    ) -> Result<Vec<u8>, QualityError> {
        let frame = mat_from_gray(gray, width, height)?;
        let gate = self.gate(&frame)?;
        let (roi, _) = self.roi(&frame, &gate)?;
        Ok(roi.data_bytes()?.to_vec())
    }

    fn gate(&mut self, frame: &Mat) -> Result<Gate, QualityError> {
        let c = &self.config;
        let (w, h) = (frame.cols(), frame.rows());
        const F: i32 = SMALL;
        let mut small = Mat::default();
        imgproc::resize(
            frame,
            &mut small,
            Size::new(w / F, h / F),
            0.0,
            0.0,
            imgproc::INTER_AREA,
        )?;
        let px = small.data_bytes()?;
        let mut hist = [0u64; 256];
        for &p in px {
            hist[p as usize] += 1;
        }
        let n = px.len() as u64;
        let pct = |q: f64| {
            let target = (q * n as f64) as u64;
            let mut acc = 0;
            for (i, &hc) in hist.iter().enumerate() {
                acc += hc;
                if acc > target {
                    return i;
                }
            }
            255
        };
        if pct(0.99) < 45 {
            return Err(QualityError::TooDark);
        }
        if pct(0.05) > 200 {
            return Err(QualityError::TooBright);
        }
        let (t, mean_bg, mean_fg) = otsu(&hist);
        if mean_fg - mean_bg < 25.0 {
            return Err(QualityError::NoHand);
        }
        // Hand mask: a threshold a little below Otsu's (creases and shadowed edges stay in),
        // then the largest outer contour filled, so that deep creases leave no holes.
        let t_mask = (t as f64).min(mean_bg + 0.35 * (mean_fg - mean_bg));
        let mut raw = Mat::default();
        imgproc::threshold(&small, &mut raw, t_mask, 255.0, imgproc::THRESH_BINARY)?;
        let mut contours = Vector::<Vector<Point>>::new();
        imgproc::find_contours(
            &raw,
            &mut contours,
            imgproc::RETR_EXTERNAL,
            imgproc::CHAIN_APPROX_NONE,
            Point::new(0, 0),
        )?;
        let Some(contour) = contours.iter().max_by(|a, b| {
            let aa = imgproc::contour_area_def(a).unwrap_or(0.0);
            let bb = imgproc::contour_area_def(b).unwrap_or(0.0);
            aa.total_cmp(&bb)
        }) else {
            return Err(QualityError::NoHand);
        };
        let mut mask =
            Mat::new_rows_cols_with_default(small.rows(), small.cols(), CV_8U, Scalar::all(0.0))?;
        let mut one = Vector::<Vector<Point>>::new();
        one.push(contour.clone());
        imgproc::draw_contours(
            &mut mask,
            &one,
            0,
            Scalar::all(255.0),
            imgproc::FILLED,
            imgproc::LINE_8,
            &opencv::core::no_array(),
            i32::MAX,
            Point::new(0, 0),
        )?;
        let fg: Vec<u8> = px.iter().copied().filter(|&p| p as usize > t).collect();
        let hand_fraction = fg.len() as f32 / n as f32;
        if hand_fraction < 0.01 {
            return Err(QualityError::NoHand);
        }
        let brightness = fg.iter().map(|&p| p as f32).sum::<f32>() / fg.len() as f32;
        let saturated = fg.iter().filter(|&&p| p >= 250).count() as f32 / fg.len() as f32;
        if brightness < 55.0 {
            return Err(QualityError::TooDark);
        }
        if saturated > c.max_saturated || brightness > 235.0 {
            return Err(QualityError::TooBright);
        }
        if hand_fraction > 0.9 {
            return Err(QualityError::TooClose);
        }
        // Largest inscribed circle of the hand mask. Outside the frame counts as background:
        // otherwise a wrist or forearm running off the edge looks like the widest part.
        let (sw, sh) = (mask.cols(), mask.rows());
        imgproc::rectangle(
            &mut mask,
            Rect::new(0, 0, sw, sh),
            Scalar::all(0.0),
            1,
            imgproc::LINE_8,
            0,
        )?;
        let mut dist = Mat::default();
        imgproc::distance_transform(&mask, &mut dist, imgproc::DIST_L2, 5, CV_32F)?;
        let (mut maxv, mut maxp) = (0f64, Point::default());
        opencv::core::min_max_loc(
            &dist,
            None,
            Some(&mut maxv),
            None,
            Some(&mut maxp),
            &opencv::core::no_array(),
        )?;
        let r = maxv as f32 * F as f32;
        let center = (
            (maxp.x as f32 + 0.5) * F as f32,
            (maxp.y as f32 + 0.5) * F as f32,
        );
        if r < c.min_radius * h as f32 {
            return Err(QualityError::TooFar);
        }
        if r > c.max_radius * h as f32 {
            return Err(QualityError::TooClose);
        }
        let palm = super::orient::Palm {
            center: (maxp.x as f32, maxp.y as f32),
            radius: maxv as f32,
        };
        let (rotation_deg, orientation) =
            super::orient::orientation(&mask, &contour, palm, c.max_hand_rotation_deg)?;
        // Sharpness on the palm square at half resolution (noise-robust), contrast-free.
        let side = (r * 1.4) as i32;
        let rect = Rect::new(
            (center.0 as i32 - side / 2).clamp(0, w - 1),
            (center.1 as i32 - side / 2).clamp(0, h - 1),
            side,
            side,
        );
        let rect = Rect::new(
            rect.x,
            rect.y,
            rect.width.min(w - rect.x),
            rect.height.min(h - rect.y),
        );
        let patch = Mat::roi(frame, rect)?;
        let mut half = Mat::default();
        imgproc::resize(
            &patch,
            &mut half,
            Size::new(rect.width / 2, rect.height / 2),
            0.0,
            0.0,
            imgproc::INTER_AREA,
        )?;
        let sharpness = super::sharpness::sharpness(
            half.data_bytes()?,
            half.cols() as usize,
            half.rows() as usize,
            None,
        );
        if sharpness < c.min_sharpness {
            return Err(QualityError::Blurry {
                sharpness,
                min: c.min_sharpness,
            });
        }
        Ok(Gate {
            report: QualityReport {
                hand_fraction,
                brightness,
                saturated,
                palm_center: center,
                palm_radius: r,
                sharpness,
                rotation_deg,
                orientation,
            },
            mask,
        })
    }

    /// Warps the palm square into the ROI frame (rotation and scale normalised), equalises
    /// contrast, and returns it with the keypoint mask (inner square ∩ eroded hand).
    fn roi(&mut self, frame: &Mat, gate: &Gate) -> Result<(Mat, Mat), QualityError> {
        let c = &self.config;
        let r = &gate.report;
        let s = (c.roi_inner + 2 * c.roi_margin) as f32;
        let k = 2.0 * r.palm_radius * c.roi_span / c.roi_inner as f32; // frame px per ROI px
        let phi = r.rotation_deg.to_radians();
        let (ux, uy) = (phi.sin(), -phi.cos()); // hand up, in the frame
        let (rx, ry) = (-uy, ux); // hand right
        let (cx, cy) = r.palm_center;
        let h = s / 2.0;
        let m = Mat::from_slice_2d(&[
            [
                (k * rx) as f64,
                (-k * ux) as f64,
                (cx - k * rx * h + k * ux * h) as f64,
            ],
            [
                (k * ry) as f64,
                (-k * uy) as f64,
                (cy - k * ry * h + k * uy * h) as f64,
            ],
        ])?;
        let size = Size::new(s as i32, s as i32);
        let mut warped = Mat::default();
        imgproc::warp_affine(
            frame,
            &mut warped,
            &m,
            size,
            imgproc::INTER_LINEAR | imgproc::WARP_INVERSE_MAP,
            BORDER_CONSTANT,
            Scalar::all(0.0),
        )?;
        // The filled hand mask, warped the same way (small pixel centres: x = 4·xs + 1.5).
        let f = SMALL as f64;
        let mut ms = m.clone();
        for row in 0..2 {
            for col in 0..3 {
                let v = *ms.at_2d::<f64>(row, col)?;
                *ms.at_2d_mut::<f64>(row, col)? = if col == 2 {
                    (v - (f - 1.0) / 2.0) / f
                } else {
                    v / f
                };
            }
        }
        let mut hand = Mat::default();
        imgproc::warp_affine(
            &gate.mask,
            &mut hand,
            &ms,
            size,
            imgproc::INTER_LINEAR | imgproc::WARP_INVERSE_MAP,
            BORDER_CONSTANT,
            Scalar::all(0.0),
        )?;
        let hand_src = hand.clone();
        imgproc::threshold(&hand_src, &mut hand, 127.0, 255.0, imgproc::THRESH_BINARY)?;
        let kernel = imgproc::get_structuring_element(
            imgproc::MORPH_ELLIPSE,
            Size::new(2 * c.edge_margin as i32 + 1, 2 * c.edge_margin as i32 + 1),
            Point::new(-1, -1),
        )?;
        let mut eroded = Mat::default();
        imgproc::erode(
            &hand,
            &mut eroded,
            &kernel,
            Point::new(-1, -1),
            1,
            BORDER_CONSTANT,
            Scalar::all(0.0),
        )?;
        let mut mask =
            Mat::new_rows_cols_with_default(size.height, size.width, CV_8U, Scalar::all(0.0))?;
        let inner = Rect::new(
            c.roi_margin as i32,
            c.roi_margin as i32,
            c.roi_inner as i32,
            c.roi_inner as i32,
        );
        {
            let src = Mat::roi(&eroded, inner)?;
            let mut dst = Mat::roi_mut(&mut mask, inner)?;
            src.copy_to(&mut dst)?;
        }
        Ok((self.normalise(&warped)?, mask))
    }

    /// Contrast normalisation of a ROI, the same whatever it was cut from: Gaussian 3×3
    /// against sensor noise, then CLAHE.
    fn normalise(&mut self, roi: &Mat) -> Result<Mat, QualityError> {
        let mut smooth = Mat::default();
        imgproc::gaussian_blur(
            roi,
            &mut smooth,
            Size::new(3, 3),
            0.8,
            0.8,
            opencv::core::BORDER_REPLICATE,
        )?;
        if self.config.highpass_sigma > 0.0 {
            // Subtract the broad structure (illumination, the principal lines every palm
            // has in about the same place), keep the fine creases, re-centre on mid-gray.
            let s = self.config.highpass_sigma as f64;
            let mut broad = Mat::default();
            imgproc::gaussian_blur(
                &smooth,
                &mut broad,
                Size::new(0, 0),
                s,
                s,
                opencv::core::BORDER_REPLICATE,
            )?;
            let mut hp = Mat::default();
            opencv::core::add_weighted(&smooth, 1.0, &broad, -1.0, 128.0, &mut hp, CV_8U)?;
            smooth = hp;
        }
        let mut eq = Mat::default();
        self.clahe.apply(&smooth, &mut eq)?;
        Ok(eq)
    }

    fn features(&mut self, roi: &Mat, mask: &Mat) -> Result<Template, QualityError> {
        let c = &self.config;
        let mut kps = Vector::<opencv::core::KeyPoint>::new();
        self.orb.detect(roi, &mut kps, mask)?;
        // Spread: the strongest keypoints of each grid cell first, then the best of the rest.
        let g = c.grid.max(1);
        let cell = c.roi_inner as f32 / g as f32;
        let m0 = c.roi_margin as f32;
        let mut cells: Vec<Vec<opencv::core::KeyPoint>> = vec![Vec::new(); g * g];
        for kp in kps.iter() {
            let p = kp.pt();
            let gx = (((p.x - m0) / cell) as usize).min(g - 1);
            let gy = (((p.y - m0) / cell) as usize).min(g - 1);
            cells[gy * g + gx].push(kp);
        }
        let want = c.max_keypoints.min(MAX_KEYPOINTS);
        let per_cell = want.div_ceil(g * g);
        let mut chosen = Vec::new();
        let mut rest = Vec::new();
        for mut v in cells {
            v.sort_by(|a, b| b.response().total_cmp(&a.response()));
            let take = per_cell.min(v.len());
            rest.extend(v.drain(take..));
            chosen.extend(v);
        }
        if chosen.len() < want {
            rest.sort_by(|a, b| b.response().total_cmp(&a.response()));
            chosen.extend(rest.into_iter().take(want - chosen.len()));
        }
        chosen.sort_by(|a, b| b.response().total_cmp(&a.response()));
        chosen.truncate(want);
        let mut sel: Vector<opencv::core::KeyPoint> = chosen.into_iter().collect();
        let mut desc = Mat::default();
        self.orb.compute(roi, &mut sel, &mut desc)?;
        let descriptors = descriptors_of(&desc)?;
        if descriptors.len() < c.min_keypoints || descriptors.len() != sel.len() {
            return Err(QualityError::TooFewFeatures {
                found: descriptors.len(),
                min: c.min_keypoints,
            });
        }
        let side = c.roi_inner + 2 * c.roi_margin;
        let limit = side as f32 - 0.01;
        let keypoints = sel
            .iter()
            .map(|k| Keypoint {
                x: k.pt().x.clamp(0.0, limit),
                y: k.pt().y.clamp(0.0, limit),
                angle: k.angle(),
                octave: k.octave().clamp(0, 255) as u8,
            })
            .collect();
        Template::new(side, keypoints, descriptors)
            .map_err(|e| QualityError::Internal(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::palm::matcher::Matcher;
    use crate::palm::synth;

    fn extractor() -> Extractor {
        Extractor::new(ExtractConfig::default()).unwrap()
    }

    fn blur(gray: &[u8], w: u32, h: u32, sigma: f64) -> Vec<u8> {
        let m = mat_from_gray(gray, w, h).unwrap();
        let mut out = Mat::default();
        imgproc::gaussian_blur(
            &m,
            &mut out,
            Size::new(0, 0),
            sigma,
            sigma,
            opencv::core::BORDER_REPLICATE,
        )
        .unwrap();
        out.data_bytes().unwrap().to_vec()
    }

    #[test]
    fn rejects_blank_black_white_and_blurred_frames() {
        let mut ex = extractor();
        let (w, h) = (640u32, 480u32);
        let n = (w * h) as usize;
        assert_eq!(
            ex.extract(&vec![128; n], w, h).unwrap_err(),
            QualityError::NoHand
        );
        assert_eq!(
            ex.extract(&vec![0; n], w, h).unwrap_err(),
            QualityError::TooDark
        );
        assert_eq!(
            ex.extract(&vec![255; n], w, h).unwrap_err(),
            QualityError::TooBright
        );
        // Far out of focus (real frames: sharpness 0.5–0.8 in focus, 0.16–0.32 under a
        // σ = 5–8 px blur; generated ones fall slower: 0.26 at σ = 12; docs/PALM.md).
        let f = synth::render_easy(3, 1, 0);
        let blurred = blur(&f.gray, w, h, 12.0);
        let e = ex
            .extract(&blurred, w, h)
            .map(|_| ex.quality(&blurred, w, h))
            .unwrap_err();
        assert_eq!(e.code(), "blurry", "{e}");
        assert!(matches!(
            ex.quality(&blurred, w, h),
            Err(QualityError::Blurry { .. })
        ));
        // Wrong buffer size is an error, not a panic.
        assert_eq!(ex.extract(&[0u8; 10], w, h).unwrap_err().code(), "internal");
    }

    #[test]
    fn rejects_a_hand_too_far() {
        // The same hand shrunk to a quarter of its size, centred on a dark frame.
        let f = synth::render_easy(3, 2, 0);
        let m = mat_from_gray(&f.gray, f.width, f.height).unwrap();
        let mut small = Mat::default();
        imgproc::resize(
            &m,
            &mut small,
            Size::new(160, 120),
            0.0,
            0.0,
            imgproc::INTER_AREA,
        )
        .unwrap();
        let mut frame = vec![8u8; (f.width * f.height) as usize];
        let sb = small.data_bytes().unwrap();
        for y in 0..120 {
            for x in 0..160 {
                frame[(y + 180) * 640 + x + 240] = sb[y * 160 + x];
            }
        }
        let e = extractor().extract(&frame, 640, 480).unwrap_err();
        assert_eq!(e, QualityError::TooFar);
    }

    #[test]
    fn extracts_from_roi_crops_when_told_so() {
        // Crops as a data set of ROIs would publish them: our own ROI images.
        let mut ex = extractor();
        let crop = |ex: &mut Extractor, id, sample| {
            let f = synth::render_easy(4, id, sample);
            ex.roi_image(&f.gray, f.width, f.height).unwrap()
        };
        let (a, b, c) = (
            crop(&mut ex, 1, 0),
            crop(&mut ex, 1, 1),
            crop(&mut ex, 2, 0),
        );
        let side = 208;
        let mut roi_ex = Extractor::new(ExtractConfig {
            input_is_roi: true,
            ..ExtractConfig::default()
        })
        .unwrap();
        let ta = roi_ex.extract(&a, side, side).unwrap();
        let tb = roi_ex.extract(&b, side, side).unwrap();
        let tc = roi_ex.extract(&c, side, side).unwrap();
        let m = Matcher::default();
        let (g, i) = (m.compare(&ta, &tb).score, m.compare(&ta, &tc).score);
        assert!(g > i && g >= 20, "genuine {g} impostor {i}");
    }

    #[test]
    fn rejects_a_hand_too_close() {
        // A 3× enlargement of the palm's middle: the palm overflows the frame.
        let f = synth::render_easy(3, 2, 0);
        let mut ex = extractor();
        let r = ex.quality(&f.gray, f.width, f.height).unwrap();
        let m = mat_from_gray(&f.gray, f.width, f.height).unwrap();
        let (cw, ch) = (213, 160);
        let x = (r.palm_center.0 as i32 - cw / 2).clamp(0, 640 - cw);
        let y = (r.palm_center.1 as i32 - ch / 2).clamp(0, 480 - ch);
        let crop = Mat::roi(&m, Rect::new(x, y, cw, ch)).unwrap();
        let mut big = Mat::default();
        imgproc::resize(
            &crop,
            &mut big,
            Size::new(640, 480),
            0.0,
            0.0,
            imgproc::INTER_LINEAR,
        )
        .unwrap();
        let e = ex.extract(big.data_bytes().unwrap(), 640, 480).unwrap_err();
        assert_eq!(e, QualityError::TooClose);
    }

    #[test]
    fn accepts_generated_palms_and_matches_genuine_above_impostor() {
        let mut ex = extractor();
        let a = synth::render_easy(3, 1, 0);
        let b = synth::render_easy(3, 1, 1);
        let c = synth::render_easy(3, 2, 0);
        let (ta, report) = ex.extract_with_report(&a.gray, a.width, a.height).unwrap();
        assert!(ta.len() >= 150, "{} keypoints", ta.len());
        assert!(ta.encoded_len() <= crate::palm::template::MAX_TEMPLATE_BYTES);
        assert!(
            report.palm_radius > 50.0 && report.palm_radius < 150.0,
            "{report:?}"
        );
        assert!(
            matches!(report.orientation, Orientation::Valleys(_)),
            "{report:?}"
        );
        let q = ex.quality(&a.gray, a.width, a.height).unwrap();
        assert_eq!(q, report);
        let tb = ex.extract(&b.gray, b.width, b.height).unwrap();
        let tc = ex.extract(&c.gray, c.width, c.height).unwrap();
        let m = Matcher::default();
        let genuine = m.compare(&ta, &tb).score;
        let impostor = m.compare(&ta, &tc).score;
        assert!(genuine > impostor, "genuine {genuine} impostor {impostor}");
        assert!(genuine >= 30, "genuine {genuine}");
        assert!(
            impostor < crate::palm::DecisionPolicy::DEFAULT.accept,
            "impostor {impostor}"
        );
        // The template survives the codec unchanged.
        let back = Template::decode(&ta.encode()).unwrap();
        assert_eq!(back, ta);
    }

    #[test]
    fn seed_baseline_finds_features_on_small_crops() {
        // The seed resizes to 640×480 before anything else, so a 128-px palm crop (as ROI data
        // sets publish them) is upsampled first and still gives it features to match.
        let f = synth::render_easy(3, 1, 0);
        let roi = extractor().roi_image(&f.gray, f.width, f.height).unwrap();
        let m = mat_from_gray(&roi, 208, 208).unwrap();
        let mut small = Mat::default();
        imgproc::resize(
            &m,
            &mut small,
            Size::new(128, 128),
            0.0,
            0.0,
            imgproc::INTER_AREA,
        )
        .unwrap();
        let feats =
            crate::palm::baseline::extract_seed(small.data_bytes().unwrap(), 128, 128).unwrap();
        assert!(feats.len() >= 100, "{} features", feats.len());
    }

    #[test]
    fn seed_baseline_extracts_500_features() {
        let a = synth::render_easy(3, 1, 0);
        let f = crate::palm::baseline::extract_seed(&a.gray, a.width, a.height).unwrap();
        assert!(f.len() > 300 && f.len() <= 500, "{}", f.len());
        let b = synth::render_easy(3, 1, 1);
        let g = crate::palm::baseline::extract_seed(&b.gray, b.width, b.height).unwrap();
        let s = crate::palm::baseline::seed_compare(&f, &g);
        assert!((0.0..=1.0).contains(&s));
    }
}
