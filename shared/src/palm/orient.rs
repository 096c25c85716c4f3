//! Which way the hand points, from its mask (feature `opencv`), so that the ROI is cut the
//! same way whatever angle the shopper holds the hand at.
//!
//! In order:
//! 1. **Valleys near upright** (the kiosk's guide asks for an upright hand): the convexity
//!    defects between the fingers within ±40° of the frame's up, lying on one row across the
//!    hand; its normal is "up". The most repeatable cue.
//! 2. **Fingers**, for a hand turned further: the mask minus its opening by a disk a little
//!    smaller than the palm's inscribed circle leaves the fingers (and thumb) as separate
//!    blobs; their area-weighted direction from the palm centre is "up" to within about 15°.
//!    If that direction is itself within ±40° of upright, the frame's up is kept instead
//!    (more repeatable from capture to capture than the fingers' direction).
//! 3. **Valleys near the fingers' direction** refine it when their row agrees.
//!
//! With no cue, the frame's up is assumed.
//! All coordinates are the gate's downscaled mask pixels. Angles are degrees clockwise from
//! the frame's up.

use super::extract::QualityError;
use opencv::core::{Mat, Point, Scalar, Size, Vector, BORDER_CONSTANT, CV_32F, CV_32S};
use opencv::imgproc;
use opencv::prelude::*;

/// Where the ROI orientation came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Orientation {
    /// From `n` finger valleys (refined from the fingers' direction).
    Valleys(u8),
    /// From the fingers' direction alone.
    Fingers,
    /// No usable cue: the frame's up.
    Fallback,
}

/// The palm's largest inscribed circle, mask pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Palm {
    pub center: (f32, f32),
    pub radius: f32,
}

/// How far from the frame's up valleys found without the fingers' help are trusted.
const UPRIGHT: f32 = 40.0;

/// The hand's up direction (degrees clockwise from the frame's up) and where it came from.
/// A direction more than `max_rotation` degrees from upright is not trusted: the frame's up
/// is returned instead (`Fallback`).
pub fn orientation(
    mask: &Mat,
    contour: &Vector<Point>,
    palm: Palm,
    max_rotation: f32,
) -> Result<(f32, Orientation), QualityError> {
    // A hand held about upright, as the kiosk's guide asks: its valleys near the frame's up
    // are the most repeatable cue; on generated hands (wrist in view, fingers cut by the
    // frame) the fingers' direction instead made the EER 2.0 → 5.4 %.
    if let Some((rot, n)) = valley_row(&valleys(contour, palm, 0.0)?, palm, 0.0) {
        if angle_dist(rot, 0.0) <= UPRIGHT.min(max_rotation) {
            return Ok((rot, Orientation::Valleys(n)));
        }
    }
    // Near upright without valleys, the frame's up beats the fingers' direction (which the
    // thumb and the spread of the fingers move by 10° and more from capture to capture).
    let seed = match finger_direction(mask, palm)? {
        Some(seed) if angle_dist(seed, 0.0) > UPRIGHT => seed,
        _ => return Ok((0.0, Orientation::Fallback)),
    };
    let valleys = valleys(contour, palm, seed)?;
    let (rot, source) = match valley_row(&valleys, palm, seed) {
        Some((rot, n)) if angle_dist(rot, seed) <= 40.0 => (rot, Orientation::Valleys(n)),
        _ => (seed, Orientation::Fingers),
    };
    if angle_dist(rot, 0.0) > max_rotation {
        return Ok((0.0, Orientation::Fallback));
    }
    Ok((rot, source))
}

/// A finger (or thumb) blob: its area and the unit direction from the palm centre to its
/// centroid.
#[derive(Debug, Clone, Copy)]
struct Finger {
    area: f32,
    dir: (f32, f32),
}

/// The fingers' direction: the blobs an opening by a disk of 0.8 × the palm radius removes,
/// kept where a blob is big enough, narrow enough and lies where fingers do (1 to 3.2 radii
/// from the centre; see [`finger_of`]): their area-weighted
/// direction from the centre. The thumb pulls it aside by up to about 15°, but the same way
/// on every capture of a hand; dropping the thumb (blobs over 50° from the first direction)
/// or using the blobs' long axes instead made it less repeatable across captures (PolyU EER
/// 0.8 → 1.9 %; docs/PALM.md).
fn finger_direction(mask: &Mat, palm: Palm) -> Result<Option<f32>, QualityError> {
    let (sx, sy) = finger_blobs(mask, palm)?
        .iter()
        .fold((0f32, 0f32), |(sx, sy), b| {
            (sx + b.area * b.dir.0, sy + b.area * b.dir.1)
        });
    Ok((sx != 0.0 || sy != 0.0).then(|| sx.atan2(-sy).to_degrees()))
}

/// The finger blobs of a hand mask (see [`finger_direction`]), with their moments.
fn finger_blobs(mask: &Mat, palm: Palm) -> Result<Vec<Finger>, QualityError> {
    let r = palm.radius;
    let k = (0.8 * r).round().max(1.0) as i32;
    let disk = imgproc::get_structuring_element_def(
        imgproc::MORPH_ELLIPSE,
        Size::new(2 * k + 1, 2 * k + 1),
    )?;
    let mut body = Mat::default();
    imgproc::morphology_ex(
        mask,
        &mut body,
        imgproc::MORPH_OPEN,
        &disk,
        Point::new(-1, -1),
        1,
        BORDER_CONSTANT,
        Scalar::all(0.0),
    )?;
    let mut fingers = Mat::default();
    opencv::core::subtract_def(mask, &body, &mut fingers)?;
    let mut labels = Mat::default();
    let n = imgproc::connected_components(&fingers, &mut labels, 8, CV_32S)? as usize;
    // Each blob's half-width: the largest distance to its own outline.
    let mut width = Mat::default();
    imgproc::distance_transform(&fingers, &mut width, imgproc::DIST_L2, 3, CV_32F)?;
    // Per label: pixel count, Σx, Σy (relative to the palm centre), largest half-width,
    // pixels along the frame's edge (the mask's outermost ring is background).
    let mut m = vec![[0f64; 5]; n];
    let (cols, rows) = (labels.cols() as usize, labels.rows() as usize);
    let edge = |i: usize| {
        let (x, y) = (i % cols, i / cols);
        x <= 1 || y <= 1 || x + 2 >= cols || y + 2 >= rows
    };
    let half_widths = width.data_typed::<f32>()?;
    for (i, &l) in labels.data_typed::<i32>()?.iter().enumerate() {
        if l > 0 {
            let s = &mut m[l as usize];
            s[0] += 1.0;
            s[1] += (i % cols) as f64 - palm.center.0 as f64;
            s[2] += (i / cols) as f64 - palm.center.1 as f64;
            s[3] = s[3].max(half_widths[i] as f64);
            s[4] += edge(i) as u8 as f64;
        }
    }
    Ok(m.iter()
        .skip(1)
        .filter_map(|s| finger_of(s, palm.radius))
        .collect())
}

/// A blob as a finger; `None` when it is too small, not where a finger would be, or a wrist
/// or forearm narrower than the opening's disk: wider than a finger (half-width over 0.45 r,
/// where a finger or thumb is at most about 0.3 r) or leaving the frame over more than a
/// finger's width (0.5 r of edge; a finger cut by the frame leaves it over about 0.4 r).
fn finger_of(s: &[f64; 5], r: f32) -> Option<Finger> {
    let area = s[0] as f32;
    let (cx, cy) = ((s[1] / s[0]) as f32, (s[2] / s[0]) as f32);
    let dist = (cx * cx + cy * cy).sqrt();
    let too_wide = s[3] as f32 > 0.45 * r || s[4] as f32 > 2.0 * 0.5 * r;
    if area < 0.12 * r * r || dist < r || dist > 3.2 * r || too_wide {
        return None;
    }
    Some(Finger {
        area,
        dir: (cx / dist, cy / dist),
    })
}

/// A valley: a deep convexity defect of the hand contour, with its angle from the centre.
#[derive(Debug, Clone, Copy)]
struct Valley {
    x: f32,
    y: f32,
    angle: f32,
}

/// Deep convexity defects at a plausible distance, within 60° of the fingers' direction.
fn valleys(contour: &Vector<Point>, palm: Palm, seed: f32) -> Result<Vec<Valley>, QualityError> {
    if contour.len() < 8 {
        return Ok(Vec::new());
    }
    let mut hull = Vector::<i32>::new();
    imgproc::convex_hull(contour, &mut hull, false, false)?;
    let mut defects = Vector::<opencv::core::Vec4i>::new();
    if imgproc::convexity_defects(contour, &hull, &mut defects).is_err() {
        return Ok(Vec::new());
    }
    let (r, (cx, cy)) = (palm.radius, palm.center);
    let mut out = Vec::new();
    for d in defects.iter() {
        if (d[3] as f32 / 256.0) < 0.3 * r {
            continue;
        }
        let p = contour.get(d[2] as usize)?;
        let (dx, dy) = (p.x as f32 - cx, p.y as f32 - cy);
        let dist = (dx * dx + dy * dy).sqrt();
        let angle = dx.atan2(-dy).to_degrees();
        if dist >= 0.6 * r && dist <= 2.6 * r && angle_dist(angle, seed) <= 60.0 {
            out.push(Valley {
                x: p.x as f32,
                y: p.y as f32,
                angle,
            });
        }
    }
    Ok(out)
}

/// The normal of the row the valleys lie on (pointing away from the palm), with how many
/// valleys made it; `None` when fewer than two agree or they do not form a row across the
/// hand. Two passes: around `seed`, then around the chosen valleys' own mean direction.
fn valley_row(valleys: &[Valley], palm: Palm, seed: f32) -> Option<(f32, u8)> {
    let mut dir = seed;
    let mut chosen: Vec<Valley> = Vec::new();
    for window in [40.0f32, 30.0] {
        chosen = valleys
            .iter()
            .copied()
            .filter(|v| angle_dist(v.angle, dir) <= window)
            .collect();
        if chosen.is_empty() {
            return None;
        }
        let (sx, sy) = chosen.iter().fold((0.0f32, 0.0f32), |(sx, sy), v| {
            (
                sx + v.angle.to_radians().sin(),
                sy + v.angle.to_radians().cos(),
            )
        });
        dir = sx.atan2(sy).to_degrees();
    }
    if chosen.len() < 2 {
        // One valley cannot say which one it is (thumb side, between two fingers, little
        // finger side): its direction is off by up to ±30°.
        return None;
    }
    // Order along the row: by angle relative to the mean direction (no wrap-around).
    chosen.sort_by(|a, b| signed_diff(a.angle, dir).total_cmp(&signed_diff(b.angle, dir)));
    let (a, b) = (chosen[0], chosen[chosen.len() - 1]);
    let (lx, ly) = (b.x - a.x, b.y - a.y);
    // Two neighbouring valleys lie at different depths: their line tilts by up to 25°.
    let min_span = if chosen.len() == 2 { 0.6 } else { 0.4 };
    if (lx * lx + ly * ly).sqrt() < min_span * palm.radius {
        return None;
    }
    // Normal candidates (ly, -lx) and (-ly, lx): the one pointing from the centre towards
    // the valleys.
    let (mx, my) = (
        (a.x + b.x) / 2.0 - palm.center.0,
        (a.y + b.y) / 2.0 - palm.center.1,
    );
    let (nx, ny) = if ly * mx - lx * my >= 0.0 {
        (ly, -lx)
    } else {
        (-ly, lx)
    };
    let normal = nx.atan2(-ny).to_degrees();
    // Valleys that are not one row across the hand give a normal that disagrees with
    // where they lie.
    (angle_dist(normal, dir) <= 15.0).then_some((normal, chosen.len().min(255) as u8))
}

/// `a − b` wrapped into (−180, 180].
fn signed_diff(a: f32, b: f32) -> f32 {
    let d = (a - b).rem_euclid(360.0);
    if d > 180.0 {
        d - 360.0
    } else {
        d
    }
}

fn angle_dist(a: f32, b: f32) -> f32 {
    signed_diff(a, b).abs()
}

#[cfg(test)]
mod tests {
    use super::*;
    use opencv::core::{Point2f, CV_8U};

    /// A hand mask: palm disk of radius `r` at the centre, four fingers and a thumb, turned
    /// by `deg` clockwise; with its outer contour.
    fn hand(deg: f32, r: f32, fingers: bool) -> (Mat, Vector<Point>, Palm) {
        let (w, h) = (240, 240);
        let mut m = Mat::new_rows_cols_with_default(h, w, CV_8U, Scalar::all(0.0)).unwrap();
        let c = (120.0f32, 130.0f32);
        imgproc::circle(
            &mut m,
            Point::new(c.0 as i32, c.1 as i32),
            r as i32,
            Scalar::all(255.0),
            imgproc::FILLED,
            imgproc::LINE_8,
            0,
        )
        .unwrap();
        // Fingers: (angle from the hand's up, length in radii); the thumb at -75°.
        let digits: &[(f32, f32)] = if fingers {
            &[
                (-30.0, 2.2),
                (-10.0, 2.5),
                (10.0, 2.4),
                (30.0, 2.0),
                (-75.0, 1.7),
            ]
        } else {
            &[]
        };
        for &(a, len) in digits {
            let t = (deg + a).to_radians();
            let (ux, uy) = (t.sin(), -t.cos());
            let (px, py) = (-uy, ux);
            let half = 0.22 * r;
            let base = (c.0 + ux * 0.5 * r, c.1 + uy * 0.5 * r);
            let tip = (c.0 + ux * len * r, c.1 + uy * len * r);
            let pts: Vector<Point> = [
                Point2f::new(base.0 + px * half, base.1 + py * half),
                Point2f::new(tip.0 + px * half, tip.1 + py * half),
                Point2f::new(tip.0 - px * half, tip.1 - py * half),
                Point2f::new(base.0 - px * half, base.1 - py * half),
            ]
            .iter()
            .map(|p| Point::new(p.x.round() as i32, p.y.round() as i32))
            .collect();
            imgproc::fill_convex_poly_def(&mut m, &pts, Scalar::all(255.0)).unwrap();
        }
        let mut contours = Vector::<Vector<Point>>::new();
        imgproc::find_contours(
            &m,
            &mut contours,
            imgproc::RETR_EXTERNAL,
            imgproc::CHAIN_APPROX_NONE,
            Point::new(0, 0),
        )
        .unwrap();
        let contour = contours.get(0).unwrap();
        (
            m,
            contour,
            Palm {
                center: c,
                radius: r,
            },
        )
    }

    #[test]
    fn finds_up_at_any_angle() {
        for deg in [
            -170.0f32, -120.0, -60.0, -15.0, 0.0, 25.0, 90.0, 135.0, 180.0,
        ] {
            let (m, contour, palm) = hand(deg, 28.0, true);
            let (rot, source) = orientation(&m, &contour, palm, 180.0).unwrap();
            // Near upright the frame's up may stand (the matcher absorbs ±30°); beyond
            // UPRIGHT the hand's own direction must be found.
            if angle_dist(deg, 0.0) > UPRIGHT {
                assert_ne!(source, Orientation::Fallback, "at {deg}°");
            }
            let tolerance = if source == Orientation::Fallback {
                30.0
            } else {
                15.0
            };
            assert!(
                angle_dist(rot, deg) <= tolerance,
                "turned {deg}°, found {rot}° ({source:?})"
            );
        }
    }

    #[test]
    fn beyond_max_rotation_falls_back_to_upright() {
        let (m, contour, palm) = hand(120.0, 28.0, true);
        let (rot, source) = orientation(&m, &contour, palm, 40.0).unwrap();
        assert_eq!((rot, source), (0.0, Orientation::Fallback));
        let (rot, source) = orientation(&m, &contour, palm, 180.0).unwrap();
        assert_ne!(source, Orientation::Fallback);
        assert!(angle_dist(rot, 120.0) <= 15.0, "found {rot}°");
    }

    #[test]
    fn a_fist_without_fingers_falls_back() {
        let (m, contour, palm) = hand(45.0, 28.0, false);
        let (rot, source) = orientation(&m, &contour, palm, 180.0).unwrap();
        assert_eq!((rot, source), (0.0, Orientation::Fallback));
    }

    #[test]
    fn signed_difference_wraps() {
        assert_eq!(signed_diff(170.0, -170.0), -20.0);
        assert_eq!(signed_diff(-170.0, 170.0), 20.0);
        assert_eq!(angle_dist(359.0, 1.0), 2.0);
    }
}
