//! Synthetic hands as a kiosk camera sees them: 640×480 grayscale, a whole hand (palm,
//! four fingers with valleys between them, thumb, wrist) over a dark background. Pure Rust
//! and deterministic: the same (seed, identity, sample) gives the same bytes everywhere.
//!
//! Identity = a skin albedo map in canonical palm coordinates (palm width = 1 unit): the
//! three principal lines and 10–40 secondary creases as cubic Bézier curves (the BezierPalm
//! idea, ECCV 2022), a few hundred fine wrinkles, finger joint creases and a two-scale skin
//! texture, plus small finger-length proportions. Global cues are deliberately *not*
//! identity-specific: overall size, brightness and crease contrast are drawn per capture,
//! so identities cannot be told apart by them.
//!
//! Capture = rotation ±15°, translation ±10 % of the frame, scale ±10 %, a small
//! perspective tilt, a mild elastic deformation, finger spread, an illumination gradient
//! and exposure, defocus or motion blur, sensor noise and JPEG artefacts.
//!
//! This generator is one test bed among others: nothing in extraction or matching may
//! depend on its particulars.

use super::rng::Rng;

pub const WIDTH: u32 = 640;
pub const HEIGHT: u32 = 480;

/// Canonical albedo raster: palm units → pixels.
const RES: f32 = 200.0;
const DOM_X0: f32 = -1.25;
const DOM_Y0: f32 = -1.55;
const DOM_W: usize = (2.5 * RES as f64) as usize;
const DOM_H: usize = (3.25 * RES as f64) as usize;

/// Base angles (radians from "up") of the fingers at spread 0.5, index to little.
const FINGER_BASE_X: [f32; 4] = [-0.36, -0.12, 0.12, 0.36];
const FINGER_ANGLE: [f32; 4] = [-0.12, -0.035, 0.045, 0.14];
const FINGER_SPREAD: [f32; 4] = [-0.16, -0.05, 0.07, 0.2];
const FINGER_LEN: [f32; 4] = [0.78, 0.88, 0.8, 0.62];
const FINGER_HW: [f32; 4] = [0.105, 0.11, 0.105, 0.09];
const THUMB_BASE: (f32, f32) = (-0.42, 0.12);
const THUMB_ANGLE: f32 = -0.95;
const THUMB_LEN: f32 = 0.62;
const THUMB_HW: f32 = 0.135;

/// One synthetic identity: its albedo map and hand proportions.
pub struct Identity {
    albedo: Vec<f32>,
    finger_len: [f32; 4],
    thumb_len: f32,
    seed: u64,
    id: u64,
}

/// A grayscale frame, row-major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub width: u32,
    pub height: u32,
    pub gray: Vec<u8>,
}

struct Pose {
    /// Finger direction angles this capture.
    finger_angle: [f32; 4],
    thumb_angle: f32,
}

impl Identity {
    /// Builds identity `id` of data set `seed`.
    pub fn new(seed: u64, id: u64) -> Self {
        let mut rng = Rng::derive(seed, id);
        let mut finger_len = FINGER_LEN;
        for l in &mut finger_len {
            *l *= rng.range(0.96, 1.04) as f32;
        }
        let thumb_len = THUMB_LEN * rng.range(0.95, 1.05) as f32;
        let mut albedo = vec![0f32; DOM_W * DOM_H];
        let mut crease = vec![0f32; DOM_W * DOM_H];
        let tex_seed = rng.next_u64();

        // Skin texture: a broad and a fine octave of value noise.
        for py in 0..DOM_H {
            for px in 0..DOM_W {
                let (u, v) = raster_to_unit(px as f32, py as f32);
                let n = 0.05 * value_noise(tex_seed, u / 0.22, v / 0.22)
                    + 0.035 * value_noise(tex_seed ^ 0xA5, u / 0.028, v / 0.028)
                    + 0.02 * value_noise(tex_seed ^ 0x5A, u / 0.012, v / 0.012);
                albedo[py * DOM_W + px] = 1.0 + n;
            }
        }

        // Principal lines: heart, head, life.
        let principal: [[(f32, f32); 4]; 3] = [
            [(0.52, -0.28), (0.2, -0.2), (-0.05, -0.3), (-0.22, -0.47)],
            [(-0.5, -0.12), (-0.15, -0.04), (0.1, 0.02), (0.34, 0.14)],
            [(-0.48, -0.1), (-0.24, 0.04), (-0.22, 0.3), (-0.1, 0.58)],
        ];
        for line in principal {
            let mut c = line;
            for p in &mut c {
                p.0 += rng.range(-0.05, 0.05) as f32;
                p.1 += rng.range(-0.05, 0.05) as f32;
            }
            let sigma = rng.range(0.009, 0.014) as f32;
            let depth = rng.range(0.35, 0.55) as f32;
            draw_bezier(&mut crease, c, sigma, depth, 0.15);
        }
        // Secondary creases.
        let n_secondary = 10 + rng.below(31) as usize;
        for _ in 0..n_secondary {
            let len = rng.range(0.1, 0.45) as f32;
            let sigma = rng.range(0.005, 0.009) as f32;
            let depth = rng.range(0.12, 0.35) as f32;
            let c = random_curve(&mut rng, len, (0.42, 0.5));
            draw_bezier(&mut crease, c, sigma, depth, 0.3);
        }
        // Fine wrinkles: short, faint, with a locally preferred direction.
        let n_fine = 160 + rng.below(140) as usize;
        let dir_seed = rng.next_u64();
        for _ in 0..n_fine {
            let len = rng.range(0.03, 0.09) as f32;
            let cx = rng.range(-0.45, 0.45) as f32;
            let cy = rng.range(-0.5, 0.55) as f32;
            let a = 3.0 * value_noise(dir_seed, cx / 0.3, cy / 0.3) + rng.normal() as f32 * 0.4;
            let c = curve_at(&mut rng, cx, cy, a, len);
            draw_bezier(
                &mut crease,
                c,
                rng.range(0.003, 0.005) as f32,
                rng.range(0.06, 0.16) as f32,
                0.4,
            );
        }
        // Finger joint creases, in the canonical finger pose.
        for f in 0..4 {
            let base = (FINGER_BASE_X[f], -0.5);
            let a = FINGER_ANGLE[f];
            let dir = (a.sin(), -a.cos());
            let perp = (a.cos(), a.sin());
            for frac in [0.08, 0.36, 0.63] {
                let t = frac * finger_len[f] + rng.range(-0.02, 0.02) as f32;
                let c = (base.0 + dir.0 * t, base.1 + dir.1 * t);
                let hw = FINGER_HW[f] * 0.95;
                let bow = rng.range(-0.02, 0.02) as f32;
                let p0 = (c.0 - perp.0 * hw, c.1 - perp.1 * hw);
                let p3 = (c.0 + perp.0 * hw, c.1 + perp.1 * hw);
                let p1 = (
                    c.0 - perp.0 * hw / 3.0 + dir.0 * bow,
                    c.1 - perp.1 * hw / 3.0 + dir.1 * bow,
                );
                let p2 = (
                    c.0 + perp.0 * hw / 3.0 + dir.0 * bow,
                    c.1 + perp.1 * hw / 3.0 + dir.1 * bow,
                );
                draw_bezier(&mut crease, [p0, p1, p2, p3], 0.008, 0.3, 0.2);
            }
        }
        for (a, c) in albedo.iter_mut().zip(&crease) {
            *a *= 1.0 - c;
        }
        Self {
            albedo,
            finger_len,
            thumb_len,
            seed,
            id,
        }
    }

    /// Renders capture `sample` of this identity.
    pub fn capture(&self, sample: u64) -> Frame {
        let mut rng = Rng::derive(
            self.seed ^ 0xCAFE_F00D,
            self.id.wrapping_mul(1_000_003) ^ sample,
        );
        let spread = rng.range(0.0, 1.0) as f32;
        let pose = Pose {
            finger_angle: std::array::from_fn(|f| {
                FINGER_ANGLE[f]
                    + (spread - 0.5) * FINGER_SPREAD[f] * 2.0
                    + rng.range(-0.03, 0.03) as f32
            }),
            thumb_angle: THUMB_ANGLE + rng.range(-0.2, 0.2) as f32,
        };
        let theta = rng.range(-15.0, 15.0).to_radians() as f32;
        let scale = 180.0 * rng.range(0.9, 1.1) as f32;
        let cx = 320.0 + rng.range(-64.0, 64.0) as f32;
        let cy = 270.0 + rng.range(-48.0, 48.0) as f32;
        let p1 = rng.range(-0.06, 0.06) as f32;
        let p2 = rng.range(-0.06, 0.06) as f32;
        let el_amp = rng.range(0.0, 0.012) as f32;
        let el_f = [rng.range(3.0, 6.0) as f32, rng.range(3.0, 6.0) as f32];
        let el_ph = [rng.range(0.0, 6.3) as f32, rng.range(0.0, 6.3) as f32];
        let exposure = rng.range(0.72, 1.15) as f32;
        let skin = 0.62 * exposure;
        let crease_gain = rng.range(0.8, 1.15) as f32;
        let g_dir = rng.range(0.0, std::f64::consts::TAU) as f32;
        let g_amp = rng.range(0.0, 0.3) as f32;
        let background = rng.range(0.02, 0.07) as f32;

        let (sin_t, cos_t) = theta.sin_cos();
        let mut img = vec![0f32; (WIDTH * HEIGHT) as usize];
        for y in 0..HEIGHT {
            for x in 0..WIDTH {
                let (dx, dy) = (x as f32 + 0.5 - cx, y as f32 + 0.5 - cy);
                // Undo rotation and scale, then the perspective tilt.
                let up = (cos_t * dx + sin_t * dy) / scale;
                let vp = (-sin_t * dx + cos_t * dy) / scale;
                let w = 1.0 / (1.0 - p1 * up - p2 * vp);
                let mut u = up * w;
                let mut v = vp * w;
                // Mild elastic deformation of the skin.
                u += el_amp * (el_f[0] * v + el_ph[0]).sin();
                v += el_amp * (el_f[1] * u + el_ph[1]).sin();
                let (sdf, tu, tv) = self.hand_sdf(&pose, u, v);
                let px_per_unit = scale / w;
                let alpha = (0.5 - sdf * px_per_unit).clamp(0.0, 1.0);
                let gx = (x as f32 - 320.0) / 320.0;
                let gy = (y as f32 - 240.0) / 320.0;
                let light = 1.0 + g_amp * (g_dir.cos() * gx + g_dir.sin() * gy);
                let bg = background * light;
                let val = if alpha > 0.0 {
                    let a = self.sample_albedo(tu, tv);
                    let a = 1.0 - (1.0 - a) * crease_gain;
                    let shade = 0.72 + 0.28 * smoothstep(0.0, 0.14, -sdf);
                    skin * a * shade * light
                } else {
                    0.0
                };
                img[(y * WIDTH + x) as usize] = alpha * val + (1.0 - alpha) * bg;
            }
        }
        // Optics: defocus or motion blur.
        if rng.f64() < 0.3 {
            let len = rng.range(2.0, 5.0) as f32;
            let ang = rng.range(0.0, std::f64::consts::PI) as f32;
            img = motion_blur(&img, len, ang);
        } else {
            img = gaussian_blur(&img, rng.range(0.4, 1.2) as f32);
        }
        // Sensor noise, quantisation, JPEG.
        let sigma = rng.range(1.5, 4.0) as f32;
        let gray: Vec<u8> = img
            .iter()
            .map(|&p| {
                (p * 255.0 + sigma * rng.normal() as f32)
                    .round()
                    .clamp(0.0, 255.0) as u8
            })
            .collect();
        let quality = 55 + rng.below(36) as u8;
        let gray = jpeg_round_trip(&gray, quality).unwrap_or(gray);
        Frame {
            width: WIDTH,
            height: HEIGHT,
            gray,
        }
    }

    /// Signed distance (palm units, negative inside) to the hand in this pose, and the
    /// canonical texture coordinate of the point.
    fn hand_sdf(&self, pose: &Pose, u: f32, v: f32) -> (f32, f32, f32) {
        // Palm: rounded box; wrist: a box running off the bottom of the hand.
        let palm = rounded_box(u, v, 0.5, 0.55, 0.18);
        let wrist = rounded_box(u, v - 1.3, 0.4, 0.9, 0.05);
        let mut d = smin(palm, wrist, 0.12);
        let (mut tu, mut tv) = (u, v);
        let mut best_part = palm.min(wrist);
        for f in 0..4 {
            let base = (FINGER_BASE_X[f], -0.5);
            let (df, ru, rv) = capsule(
                u,
                v,
                base,
                pose.finger_angle[f],
                FINGER_ANGLE[f],
                self.finger_len[f],
                FINGER_HW[f],
            );
            d = smin(d, df, 0.03);
            if df < best_part {
                best_part = df;
                tu = ru;
                tv = rv;
            }
        }
        let (dt, ru, rv) = capsule(
            u,
            v,
            THUMB_BASE,
            pose.thumb_angle,
            THUMB_ANGLE,
            self.thumb_len,
            THUMB_HW,
        );
        d = smin(d, dt, 0.06);
        if dt < best_part {
            tu = ru;
            tv = rv;
        }
        (d, tu, tv)
    }

    fn sample_albedo(&self, u: f32, v: f32) -> f32 {
        let x = (u - DOM_X0) * RES - 0.5;
        let y = (v - DOM_Y0) * RES - 0.5;
        if x < 0.0 || y < 0.0 || x >= (DOM_W - 1) as f32 || y >= (DOM_H - 1) as f32 {
            return 1.0;
        }
        let (x0, y0) = (x as usize, y as usize);
        let (fx, fy) = (x - x0 as f32, y - y0 as f32);
        let i = y0 * DOM_W + x0;
        let a = &self.albedo;
        let top = a[i] * (1.0 - fx) + a[i + 1] * fx;
        let bot = a[i + DOM_W] * (1.0 - fx) + a[i + DOM_W + 1] * fx;
        top * (1.0 - fy) + bot * fy
    }
}

/// Convenience: capture `sample` of identity `identity` of data set `seed`.
pub fn render(seed: u64, identity: u64, sample: u64) -> Frame {
    Identity::new(seed, identity).capture(sample)
}

fn raster_to_unit(px: f32, py: f32) -> (f32, f32) {
    ((px + 0.5) / RES + DOM_X0, (py + 0.5) / RES + DOM_Y0)
}

fn smoothstep(e0: f32, e1: f32, x: f32) -> f32 {
    let t = ((x - e0) / (e1 - e0)).clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

/// Polynomial smooth minimum (rounded unions: finger valleys are curved, not sharp).
fn smin(a: f32, b: f32, k: f32) -> f32 {
    let h = (0.5 + 0.5 * (b - a) / k).clamp(0.0, 1.0);
    b * (1.0 - h) + a * h - k * h * (1.0 - h)
}

fn rounded_box(u: f32, v: f32, hx: f32, hy: f32, r: f32) -> f32 {
    let qx = u.abs() - (hx - r);
    let qy = v.abs() - (hy - r);
    let outside = (qx.max(0.0).powi(2) + qy.max(0.0).powi(2)).sqrt();
    outside + qx.max(qy).min(0.0) - r
}

/// Capsule from `base` along `angle` (from "up"); returns the distance and the point
/// rotated back into the canonical finger pose `angle0` (for texture lookup).
fn capsule(
    u: f32,
    v: f32,
    base: (f32, f32),
    angle: f32,
    angle0: f32,
    len: f32,
    hw: f32,
) -> (f32, f32, f32) {
    let (s, c) = angle.sin_cos();
    let (px, py) = (u - base.0, v - base.1);
    // Along-axis coordinate (towards the tip) and across.
    let along = px * s - py * c;
    let t = along.clamp(0.0, len);
    let (ax, ay) = (s * t, -c * t);
    let d = ((px - ax).powi(2) + (py - ay).powi(2)).sqrt() - hw * (1.0 - 0.12 * t / len);
    let rot = angle0 - angle;
    let (rs, rc) = rot.sin_cos();
    (d, base.0 + rc * px - rs * py, base.1 + rs * px + rc * py)
}

fn lattice(seed: u64, x: i64, y: i64) -> f32 {
    let h = super::rng::splitmix64(
        seed ^ (x as u64).wrapping_mul(0x9E37_79B9)
            ^ (y as u64).wrapping_mul(0x85EB_CA6B_0000_0001),
    );
    (h >> 40) as f32 / (1u64 << 23) as f32 - 1.0
}

/// Smooth value noise in [-1, 1].
fn value_noise(seed: u64, x: f32, y: f32) -> f32 {
    let (xf, yf) = (x.floor(), y.floor());
    let (xi, yi) = (xf as i64, yf as i64);
    let (fx, fy) = (x - xf, y - yf);
    let (sx, sy) = (fx * fx * (3.0 - 2.0 * fx), fy * fy * (3.0 - 2.0 * fy));
    let a = lattice(seed, xi, yi);
    let b = lattice(seed, xi + 1, yi);
    let c = lattice(seed, xi, yi + 1);
    let d = lattice(seed, xi + 1, yi + 1);
    (a * (1.0 - sx) + b * sx) * (1.0 - sy) + (c * (1.0 - sx) + d * sx) * sy
}

fn random_curve(rng: &mut Rng, len: f32, half: (f32, f32)) -> [(f32, f32); 4] {
    let cx = rng.range(-half.0 as f64, half.0 as f64) as f32;
    let cy = rng.range(-half.1 as f64, half.1 as f64) as f32;
    let a = rng.range(0.0, std::f64::consts::PI) as f32;
    curve_at(rng, cx, cy, a, len)
}

/// A gently bent cubic Bézier of length ≈ `len` centred at (cx, cy) along angle `a`.
fn curve_at(rng: &mut Rng, cx: f32, cy: f32, a: f32, len: f32) -> [(f32, f32); 4] {
    let (s, c) = a.sin_cos();
    let h = len / 2.0;
    let bend1 = rng.range(-0.25, 0.25) as f32 * len;
    let bend2 = rng.range(-0.25, 0.25) as f32 * len;
    let p = |t: f32, b: f32| (cx + c * t - s * b, cy + s * t + c * b);
    [p(-h, 0.0), p(-h / 3.0, bend1), p(h / 3.0, bend2), p(h, 0.0)]
}

/// Splats a crease along a cubic Bézier into the crease-depth raster (max-combined), with
/// a Gaussian cross-section and tapered ends.
fn draw_bezier(buf: &mut [f32], c: [(f32, f32); 4], sigma: f32, depth: f32, taper: f32) {
    let bez = |t: f32| {
        let m = 1.0 - t;
        let (a, b, cc, d) = (m * m * m, 3.0 * m * m * t, 3.0 * m * t * t, t * t * t);
        (
            a * c[0].0 + b * c[1].0 + cc * c[2].0 + d * c[3].0,
            a * c[0].1 + b * c[1].1 + cc * c[2].1 + d * c[3].1,
        )
    };
    let approx_len: f32 = (0..3)
        .map(|i| ((c[i + 1].0 - c[i].0).powi(2) + (c[i + 1].1 - c[i].1).powi(2)).sqrt())
        .sum();
    let steps = ((approx_len * RES * 2.0) as usize).max(4);
    let sp = sigma * RES;
    let r = (3.0 * sp).ceil() as i64;
    let inv = 1.0 / (2.0 * sp * sp);
    for k in 0..=steps {
        let t = k as f32 / steps as f32;
        let end = (t.min(1.0 - t) / taper.max(1e-3)).min(1.0);
        let dk = depth * (0.35 + 0.65 * end);
        let (u, v) = bez(t);
        let x = (u - DOM_X0) * RES - 0.5;
        let y = (v - DOM_Y0) * RES - 0.5;
        let (xi, yi) = (x.round() as i64, y.round() as i64);
        for yy in (yi - r).max(0)..=(yi + r).min(DOM_H as i64 - 1) {
            for xx in (xi - r).max(0)..=(xi + r).min(DOM_W as i64 - 1) {
                let d2 = (xx as f32 - x).powi(2) + (yy as f32 - y).powi(2);
                let val = dk * (-d2 * inv).exp();
                let cell = &mut buf[yy as usize * DOM_W + xx as usize];
                if val > *cell {
                    *cell = val;
                }
            }
        }
    }
}

fn gaussian_blur(img: &[f32], sigma: f32) -> Vec<f32> {
    let r = (sigma * 3.0).ceil() as i32;
    let k: Vec<f32> = (-r..=r)
        .map(|i| (-(i * i) as f32 / (2.0 * sigma * sigma)).exp())
        .collect();
    let s: f32 = k.iter().sum();
    let k: Vec<f32> = k.iter().map(|v| v / s).collect();
    let (w, h) = (WIDTH as i32, HEIGHT as i32);
    let mut tmp = vec![0f32; img.len()];
    for y in 0..h {
        for x in 0..w {
            let mut acc = 0.0;
            for (j, kv) in k.iter().enumerate() {
                let xx = (x + j as i32 - r).clamp(0, w - 1);
                acc += kv * img[(y * w + xx) as usize];
            }
            tmp[(y * w + x) as usize] = acc;
        }
    }
    let mut out = vec![0f32; img.len()];
    for y in 0..h {
        for x in 0..w {
            let mut acc = 0.0;
            for (j, kv) in k.iter().enumerate() {
                let yy = (y + j as i32 - r).clamp(0, h - 1);
                acc += kv * tmp[(yy * w + x) as usize];
            }
            out[(y * w + x) as usize] = acc;
        }
    }
    out
}

fn motion_blur(img: &[f32], len: f32, angle: f32) -> Vec<f32> {
    let n = len.ceil() as i32 + 1;
    let (dx, dy) = (angle.cos(), angle.sin());
    let offsets: Vec<(i32, i32)> = (0..n)
        .map(|i| {
            let t = i as f32 / (n - 1) as f32 * len - len / 2.0;
            ((t * dx).round() as i32, (t * dy).round() as i32)
        })
        .collect();
    let (w, h) = (WIDTH as i32, HEIGHT as i32);
    let mut out = vec![0f32; img.len()];
    for y in 0..h {
        for x in 0..w {
            let mut acc = 0.0;
            for &(ox, oy) in &offsets {
                let xx = (x + ox).clamp(0, w - 1);
                let yy = (y + oy).clamp(0, h - 1);
                acc += img[(yy * w + xx) as usize];
            }
            out[(y * w + x) as usize] = acc / offsets.len() as f32;
        }
    }
    out
}

fn jpeg_round_trip(gray: &[u8], quality: u8) -> Option<Vec<u8>> {
    use image::codecs::jpeg::JpegEncoder;
    let mut buf = Vec::new();
    JpegEncoder::new_with_quality(&mut buf, quality)
        .encode(gray, WIDTH, HEIGHT, image::ExtendedColorType::L8)
        .ok()?;
    let img = image::load_from_memory_with_format(&buf, image::ImageFormat::Jpeg).ok()?;
    Some(img.to_luma8().into_raw())
}

/// Writes a frame as an 8-bit grayscale PNG.
pub fn save_png(frame: &Frame, path: &std::path::Path) -> image::ImageResult<()> {
    image::save_buffer(
        path,
        &frame.gray,
        frame.width,
        frame.height,
        image::ExtendedColorType::L8,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_from_seed() {
        let a = render(7, 3, 1);
        let b = render(7, 3, 1);
        assert_eq!(a, b);
        assert_eq!(a.gray.len(), (WIDTH * HEIGHT) as usize);
        assert_ne!(a.gray, render(7, 3, 2).gray, "captures differ");
        assert_ne!(a.gray, render(8, 3, 1).gray, "seeds differ");
    }

    #[test]
    fn looks_like_a_hand_on_dark_background() {
        let f = render(1, 0, 0);
        let bright = f.gray.iter().filter(|&&p| p > 60).count() as f64 / f.gray.len() as f64;
        // The hand covers a good part of the frame but not all of it.
        assert!((0.15..0.75).contains(&bright), "hand fraction {bright}");
        // Corners are background (dark).
        assert!(f.gray[0] < 40 && f.gray[(WIDTH - 1) as usize] < 40);
    }

    #[test]
    fn global_cues_do_not_separate_identities() {
        // Mean brightness of a frame varies more across captures of one identity than the
        // identity means vary between identities.
        let mean = |f: &Frame| f.gray.iter().map(|&p| p as f64).sum::<f64>() / f.gray.len() as f64;
        let ids: Vec<Vec<f64>> = (0..3)
            .map(|i| {
                let id = Identity::new(5, i);
                (0..4).map(|s| mean(&id.capture(s))).collect()
            })
            .collect();
        let within: f64 = ids
            .iter()
            .map(|v| {
                let m = v.iter().sum::<f64>() / v.len() as f64;
                v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / v.len() as f64
            })
            .sum::<f64>()
            / ids.len() as f64;
        let means: Vec<f64> = ids
            .iter()
            .map(|v| v.iter().sum::<f64>() / v.len() as f64)
            .collect();
        let gm = means.iter().sum::<f64>() / means.len() as f64;
        let between = means.iter().map(|x| (x - gm).powi(2)).sum::<f64>() / means.len() as f64;
        assert!(within > between, "within {within} between {between}");
    }
}
