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
//! and exposure, defocus or motion blur, sensor noise and JPEG artefacts. On top of these,
//! [`Conditions::REALISTIC`] (the default: [`Identity::capture`], [`render`]) adds what
//! makes real palm photographs hard, each drawn per capture: faint creases, soft focus,
//! fingers cut by the frame, uneven skin and light, and a non-rigid bending of the palm
//! (see [`Conditions`]). [`Conditions::EASY`] ([`Identity::capture_easy`],
//! [`render_easy`]) leaves them out, for tests and demos that need a frame any extractor
//! accepts; it renders the same bytes as the generator did before those effects existed.
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

    /// Renders capture `sample` of this identity under [`Conditions::REALISTIC`].
    pub fn capture(&self, sample: u64) -> Frame {
        self.capture_with(sample, Conditions::REALISTIC)
    }

    /// Renders capture `sample` under [`Conditions::EASY`]: the hand fully in view, crisp
    /// and evenly lit (the generator as it was before the harder conditions existed).
    pub fn capture_easy(&self, sample: u64) -> Frame {
        self.capture_with(sample, Conditions::EASY)
    }

    /// Renders capture `sample` of this identity under the given conditions. The same
    /// `sample` shares its pose, exposure and noise under every `Conditions`; each harder
    /// effect only adds to it.
    pub fn capture_with(&self, sample: u64, conditions: Conditions) -> Frame {
        self.render_capture(
            sample,
            &Hard::draw(self.seed, self.id, sample).only(conditions),
        )
    }

    fn render_capture(&self, sample: u64, hard: &Hard) -> Frame {
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
        let mut scale = 180.0 * rng.range(0.9, 1.1) as f32;
        let mut cx = 320.0 + rng.range(-64.0, 64.0) as f32;
        let mut cy = 270.0 + rng.range(-48.0, 48.0) as f32;
        if let Some(fr) = &hard.framing {
            (scale, cx, cy) = fr.place(scale, cx, cy);
        }
        let p1 = rng.range(-0.06, 0.06) as f32;
        let p2 = rng.range(-0.06, 0.06) as f32;
        let el_amp = rng.range(0.0, 0.012) as f32;
        let el_f = [rng.range(3.0, 6.0) as f32, rng.range(3.0, 6.0) as f32];
        let el_ph = [rng.range(0.0, 6.3) as f32, rng.range(0.0, 6.3) as f32];
        let exposure = rng.range(0.72, 1.15) as f32;
        let skin = 0.62 * exposure;
        let mut crease_gain = rng.range(0.8, 1.15) as f32;
        if let Some(c) = hard.contrast {
            crease_gain *= c;
        }
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
                if let Some(b) = &hard.bend {
                    (u, v) = b.apply(u, v);
                }
                let (sdf, tu, tv) = self.hand_sdf(&pose, u, v);
                let px_per_unit = scale / w;
                let alpha = (0.5 - sdf * px_per_unit).clamp(0.0, 1.0);
                let gx = (x as f32 - 320.0) / 320.0;
                let gy = (y as f32 - 240.0) / 320.0;
                let mut light = 1.0 + g_amp * (g_dir.cos() * gx + g_dir.sin() * gy);
                if let Some(s) = &hard.skin {
                    light *= s.illumination(x as f32 + 0.5, y as f32 + 0.5);
                }
                let bg = background * light;
                let val = if alpha > 0.0 {
                    let a = self.sample_albedo(tu, tv);
                    let a = 1.0 - (1.0 - a) * crease_gain;
                    let shade = 0.72 + 0.28 * smoothstep(0.0, 0.14, -sdf);
                    match &hard.skin {
                        None => skin * a * shade * light,
                        Some(s) => {
                            skin * a * s.reflectance(tu, tv) * shade * light
                                + exposure * s.specular(u, v)
                        }
                    }
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
        if let Some(r) = hard.defocus {
            img = disk_blur(&img, r);
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

/// Convenience: capture `sample` of identity `identity` of data set `seed`, under
/// [`Conditions::REALISTIC`].
pub fn render(seed: u64, identity: u64, sample: u64) -> Frame {
    Identity::new(seed, identity).capture(sample)
}

/// Convenience: the same capture under [`Conditions::EASY`] (the whole hand in view, crisp,
/// evenly lit): for tests and demos that need a frame every extractor accepts.
pub fn render_easy(seed: u64, identity: u64, sample: u64) -> Frame {
    Identity::new(seed, identity).capture_easy(sample)
}

/// Convenience: the same capture under chosen conditions.
pub fn render_with(seed: u64, identity: u64, sample: u64, conditions: Conditions) -> Frame {
    Identity::new(seed, identity).capture_with(sample, conditions)
}

/// Which of the harder capture effects a frame may show. Whether and how strongly each one
/// shows is drawn per capture, from a random stream of the capture's own (never per
/// identity), so a palm is sometimes easy and sometimes hard. Switching an effect off leaves
/// every other draw unchanged: the same sample keeps its pose, exposure and noise under
/// every `Conditions`, and [`Conditions::EASY`] renders exactly what the generator rendered
/// before these effects existed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Conditions {
    /// Faint creases and skin texture: their depth × 0.45–0.65 on 20 % of captures,
    /// × 0.7–1.0 on the rest.
    pub low_contrast: bool,
    /// Defocus, a disk PSF after the usual optics: radius 1–2.5 px on 40 % of captures,
    /// 3–5 px on 4 %.
    pub soft_focus: bool,
    /// On 25 % of captures the hand is 1.1–1.45× larger and shifted so that the fingertips
    /// (15–65 % of the middle finger), the thumb (with up to 0.2 palm widths of the palm's
    /// edge) or the little-finger side (up to 0.18 palm widths of the palm) leave the frame.
    pub cut_by_frame: bool,
    /// Low-frequency reflectance blotches that move with the skin (1.5–4 cycles per palm
    /// width, amplitude 1.5–7.5 %), specular highlights on 45 % of captures (1–2 patches of
    /// radius 0.05–0.14 palm widths, up to +20 % of full scale) and a light falloff across
    /// the frame (10–45 % darker away from a random bright point).
    pub uneven_skin: bool,
    /// A smooth non-rigid bending of the hand on top of the mild elastic warp every capture
    /// has: cupping that foreshortens the palm towards its edges (by up to 0.04 palm widths
    /// there) plus a random smooth displacement field of 0.004–0.02 palm widths.
    pub bending: bool,
}

impl Conditions {
    /// None of the harder effects.
    pub const EASY: Conditions = Conditions {
        low_contrast: false,
        soft_focus: false,
        cut_by_frame: false,
        uneven_skin: false,
        bending: false,
    };
    /// All of them: the default, as a kiosk camera sees real palms.
    pub const REALISTIC: Conditions = Conditions {
        low_contrast: true,
        soft_focus: true,
        cut_by_frame: true,
        uneven_skin: true,
        bending: true,
    };
}

impl Default for Conditions {
    fn default() -> Self {
        Conditions::REALISTIC
    }
}

/// Share of captures with faint creases, and their crease depth factor.
const FAINT_SHARE: f64 = 0.2;
const FAINT_CONTRAST: (f64, f64) = (0.45, 0.65);
const USUAL_CONTRAST: (f64, f64) = (0.7, 1.0);
/// Shares of captures with strong and with mild defocus, and the disk radii (pixels).
const STRONG_DEFOCUS_SHARE: f64 = 0.04;
const MILD_DEFOCUS_SHARE: f64 = 0.40;
const STRONG_DEFOCUS: (f64, f64) = (3.0, 5.0);
const MILD_DEFOCUS: (f64, f64) = (1.0, 2.5);
/// Share of captures cut by the frame, and their enlargement.
const CUT_SHARE: f64 = 0.25;
const CUT_ZOOM: (f64, f64) = (1.1, 1.45);

/// The harder conditions of one capture; `None` = that effect does not show.
#[derive(Debug, Clone, PartialEq)]
struct Hard {
    /// Factor on crease and texture depth.
    contrast: Option<f32>,
    /// Defocus disk radius, pixels.
    defocus: Option<f32>,
    framing: Option<Framing>,
    skin: Option<Skin>,
    bend: Option<Bend>,
}

impl Hard {
    /// Draws every effect of capture `sample` (each from a sub-stream of its own).
    fn draw(seed: u64, id: u64, sample: u64) -> Hard {
        let key = super::rng::splitmix64(
            seed ^ 0x0DD_BA11_5EED ^ super::rng::splitmix64(id.wrapping_mul(1_000_003) ^ sample),
        );
        let stream = |effect: u64| Rng::derive(key, effect);

        let mut r = stream(1);
        let contrast = if r.f64() < FAINT_SHARE {
            r.range(FAINT_CONTRAST.0, FAINT_CONTRAST.1)
        } else {
            r.range(USUAL_CONTRAST.0, USUAL_CONTRAST.1)
        } as f32;

        let mut r = stream(2);
        let u = r.f64();
        let defocus = if u < STRONG_DEFOCUS_SHARE {
            Some(r.range(STRONG_DEFOCUS.0, STRONG_DEFOCUS.1) as f32)
        } else if u < STRONG_DEFOCUS_SHARE + MILD_DEFOCUS_SHARE {
            Some(r.range(MILD_DEFOCUS.0, MILD_DEFOCUS.1) as f32)
        } else {
            None
        };

        let mut r = stream(3);
        let cut = r.f64() < CUT_SHARE;
        let side = match r.below(10) {
            0..=3 => Side::Top,
            4 | 5 => Side::Thumb,
            6 | 7 => Side::Little,
            8 => Side::TopThumb,
            _ => Side::TopLittle,
        };
        let framing = Framing {
            zoom: r.range(CUT_ZOOM.0, CUT_ZOOM.1) as f32,
            side,
            finger_out: r.range(0.15, 0.65) as f32,
            thumb_out: r.range(0.2, 0.65) as f32,
            little_out: r.range(-0.05, 0.18) as f32,
        };

        let mut r = stream(4);
        let n_spots = if r.f64() < 0.55 { 0 } else { 1 + r.below(2) };
        let spots = (0..n_spots)
            .map(|_| {
                let radius = r.range(0.05, 0.14) as f32;
                Spot {
                    u: r.range(-0.4, 0.4) as f32,
                    v: r.range(-0.4, 0.5) as f32,
                    inv_2r2: 1.0 / (2.0 * radius * radius),
                    intensity: (0.04 + 0.16 * r.f64().powi(2)) as f32,
                }
            })
            .collect();
        let light_radius = r.range(120.0, 320.0) as f32;
        let skin = Skin {
            blotch_seed: r.next_u64(),
            blotch_amp: (0.015 + 0.06 * r.f64().powi(2)) as f32,
            blotch_freq: r.range(1.5, 4.0) as f32,
            spots,
            light_at: (r.range(0.0, 640.0) as f32, r.range(0.0, 480.0) as f32),
            light_inv_2r2: 1.0 / (2.0 * light_radius * light_radius),
            light_depth: r.range(0.1, 0.45) as f32,
        };

        let mut r = stream(5);
        let bend = Bend {
            cup_u: r.range(0.0, 0.45) as f32,
            cup_v: r.range(-0.1, 0.2) as f32,
            seed: r.next_u64(),
            amp: r.range(0.004, 0.02) as f32,
            freq: r.range(1.6, 3.0) as f32,
        };

        Hard {
            contrast: Some(contrast),
            defocus,
            framing: cut.then_some(framing),
            skin: Some(skin),
            bend: Some(bend),
        }
    }

    /// Keeps only the effects `c` allows.
    fn only(mut self, c: Conditions) -> Hard {
        if !c.low_contrast {
            self.contrast = None;
        }
        if !c.soft_focus {
            self.defocus = None;
        }
        if !c.cut_by_frame {
            self.framing = None;
        }
        if !c.uneven_skin {
            self.skin = None;
        }
        if !c.bending {
            self.bend = None;
        }
        self
    }
}

/// Which part of the hand the frame cuts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    /// Fingertips (the hand too high).
    Top,
    /// The thumb (the hand too far to the thumb's side).
    Thumb,
    /// The little finger and the edge of the palm below it.
    Little,
    TopThumb,
    TopLittle,
}

/// A hand held too close and off centre.
#[derive(Debug, Clone, PartialEq)]
struct Framing {
    zoom: f32,
    side: Side,
    /// Fraction of the middle finger out of the frame (top cuts).
    finger_out: f32,
    /// Palm units by which the thumb's tip is out (thumb cuts; > 0.45 cuts the palm's edge).
    thumb_out: f32,
    /// Palm units by which the palm's little-finger edge is out (little-finger cuts).
    little_out: f32,
}

impl Framing {
    /// New scale (pixels per palm unit) and palm centre from the easy ones (rotation
    /// ignored: the hand is within ±15° of upright). The generator's thumb points left.
    fn place(&self, scale: f32, cx: f32, cy: f32) -> (f32, f32, f32) {
        let s = scale * self.zoom;
        let top = s * (0.5 + FINGER_LEN[1] * (1.0 - self.finger_out));
        let thumb = s * (0.95 - self.thumb_out);
        let little = WIDTH as f32 - s * (0.5 - self.little_out);
        match self.side {
            Side::Top => (s, cx, top),
            Side::Thumb => (s, thumb, cy),
            Side::Little => (s, little, cy),
            Side::TopThumb => (s, thumb, top),
            Side::TopLittle => (s, little, top),
        }
    }
}

/// A specular highlight on the palm (palm units).
#[derive(Debug, Clone, PartialEq)]
struct Spot {
    u: f32,
    v: f32,
    inv_2r2: f32,
    intensity: f32,
}

/// Uneven skin and light for one capture.
#[derive(Debug, Clone, PartialEq)]
struct Skin {
    blotch_seed: u64,
    /// Relative reflectance swing of the blotches, and their frequency (per palm unit).
    blotch_amp: f32,
    blotch_freq: f32,
    spots: Vec<Spot>,
    /// Light falloff: brightest at `light_at` (frame pixels), `light_depth` darker far away.
    light_at: (f32, f32),
    light_inv_2r2: f32,
    light_depth: f32,
}

impl Skin {
    /// Reflectance factor at canonical texture coordinates (blotches move with the skin).
    fn reflectance(&self, tu: f32, tv: f32) -> f32 {
        let f = self.blotch_freq;
        let n = value_noise(self.blotch_seed, tu * f, tv * f)
            + 0.35 * value_noise(self.blotch_seed ^ 0xB1, tu * f * 2.0, tv * f * 2.0);
        1.0 + self.blotch_amp * n
    }

    /// Specular light (fraction of full scale before exposure) at palm coordinates.
    fn specular(&self, u: f32, v: f32) -> f32 {
        self.spots
            .iter()
            .map(|s| {
                let d2 = (u - s.u).powi(2) + (v - s.v).powi(2);
                let e = d2 * s.inv_2r2;
                if e > 9.0 {
                    0.0
                } else {
                    s.intensity * (-e).exp()
                }
            })
            .sum()
    }

    /// Illumination factor at a frame pixel: 1 − depth far from the bright point, 1 at it,
    /// rescaled so that its typical value over the hand stays near 1.
    fn illumination(&self, x: f32, y: f32) -> f32 {
        let d2 = (x - self.light_at.0).powi(2) + (y - self.light_at.1).powi(2);
        let g = (-d2 * self.light_inv_2r2).exp();
        (1.0 - self.light_depth + self.light_depth * g) / (1.0 - 0.3 * self.light_depth)
    }
}

/// Non-rigid bending: frame-side palm coordinates → skin coordinates.
#[derive(Debug, Clone, PartialEq)]
struct Bend {
    /// Cupping across (u) and along (v) the palm: the periphery is foreshortened.
    cup_u: f32,
    cup_v: f32,
    /// A smooth random displacement field: amplitude (palm units) and frequency.
    seed: u64,
    amp: f32,
    freq: f32,
}

impl Bend {
    fn apply(&self, u: f32, v: f32) -> (f32, f32) {
        // Foreshortening grows towards the palm's edges (|u|, |v| ≈ 0.55) and fades beyond
        // them: the fingers and thumb move with the palm's edge rather than stretch.
        let edge = |t: f32| t * t * t / (1.0 + 12.0 * t * t * t * t);
        let cu = u + self.cup_u * edge(u);
        let cv = v + self.cup_v * edge(v);
        let (fu, fv) = (u * self.freq, v * self.freq);
        (
            cu + self.amp * value_noise(self.seed, fu, fv),
            cv + self.amp * value_noise(self.seed ^ 0x77, fu, fv),
        )
    }
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

/// Defocus: convolution with a uniform disk of `radius` pixels (anti-aliased rim), edges
/// replicated.
fn disk_blur(img: &[f32], radius: f32) -> Vec<f32> {
    let r = (radius + 0.5).ceil() as i32;
    let (w, h) = (WIDTH as i32, HEIGHT as i32);
    let pw = w + 2 * r;
    let mut taps: Vec<(isize, f32)> = Vec::new();
    for dy in -r..=r {
        for dx in -r..=r {
            let d = ((dx * dx + dy * dy) as f32).sqrt();
            let wt = (radius + 0.5 - d).clamp(0.0, 1.0);
            if wt > 0.0 {
                taps.push(((dy * pw + dx) as isize, wt));
            }
        }
    }
    let total: f32 = taps.iter().map(|t| t.1).sum();
    for t in &mut taps {
        t.1 /= total;
    }
    let mut pad = vec![0f32; (pw * (h + 2 * r)) as usize];
    for py in 0..h + 2 * r {
        let sy = (py - r).clamp(0, h - 1);
        for px in 0..pw {
            let sx = (px - r).clamp(0, w - 1);
            pad[(py * pw + px) as usize] = img[(sy * w + sx) as usize];
        }
    }
    let mut out = vec![0f32; img.len()];
    for y in 0..h {
        for x in 0..w {
            let c = ((y + r) * pw + x + r) as isize;
            out[(y * w + x) as usize] =
                taps.iter().map(|&(o, wt)| wt * pad[(c + o) as usize]).sum();
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

    /// Conditions with only the effects `set` switches on.
    fn only(set: impl FnOnce(&mut Conditions)) -> Conditions {
        let mut c = Conditions::EASY;
        set(&mut c);
        c
    }

    /// The first sample of identity 0 of seed 9 whose drawn conditions satisfy `pred`.
    fn sample_where(pred: impl Fn(&Hard) -> bool) -> u64 {
        (0..1000)
            .find(|&s| pred(&Hard::draw(9, 0, s)))
            .expect("no such capture in 1000 draws")
    }

    fn px(f: &Frame, x: u32, y: u32) -> u8 {
        f.gray[(y * f.width + x) as usize]
    }

    fn hand_pixels(f: &Frame) -> usize {
        f.gray.iter().filter(|&&p| p > 60).count()
    }

    /// Detail inside the hand: mean squared 4-neighbour Laplacian of the frame binned
    /// 2×2 (which averages most sensor noise away), over binned pixels at least 3 from the
    /// hand's outline (the outline itself is not texture).
    fn detail(f: &Frame) -> f64 {
        let (w, h) = (f.width / 2, f.height / 2);
        let b: Vec<f64> = (0..w * h)
            .map(|i| {
                let (x, y) = (2 * (i % w), 2 * (i / w));
                [(0, 0), (1, 0), (0, 1), (1, 1)]
                    .iter()
                    .map(|&(dx, dy)| px(f, x + dx, y + dy) as f64)
                    .sum::<f64>()
                    / 4.0
            })
            .collect();
        let at = |x: u32, y: u32| b[(y * w + x) as usize];
        let (mut sum, mut n) = (0f64, 0usize);
        for y in 3..h - 3 {
            for x in 3..w - 3 {
                let inside = [(0, 0), (-3, 0), (3, 0), (0, -3), (0, 3)]
                    .iter()
                    .all(|&(dx, dy)| at((x as i32 + dx) as u32, (y as i32 + dy) as u32) > 60.0);
                if inside {
                    let l =
                        4.0 * at(x, y) - at(x - 1, y) - at(x + 1, y) - at(x, y - 1) - at(x, y + 1);
                    sum += l * l;
                    n += 1;
                }
            }
        }
        sum / n.max(1) as f64
    }

    #[test]
    fn deterministic_from_seed() {
        let a = render(7, 3, 1);
        let b = render(7, 3, 1);
        assert_eq!(a, b);
        assert_eq!(a.gray.len(), (WIDTH * HEIGHT) as usize);
        assert_ne!(a.gray, render(7, 3, 2).gray, "captures differ");
        assert_ne!(a.gray, render(8, 3, 1).gray, "seeds differ");
        assert_eq!(render_easy(7, 3, 1), render_easy(7, 3, 1));
        assert_ne!(render_easy(7, 3, 1).gray, a.gray, "harder conditions show");
    }

    #[test]
    fn looks_like_a_hand_on_dark_background() {
        let f = render_easy(1, 0, 0);
        let bright = f.gray.iter().filter(|&&p| p > 60).count() as f64 / f.gray.len() as f64;
        // The hand covers a good part of the frame but not all of it.
        assert!((0.15..0.75).contains(&bright), "hand fraction {bright}");
        // Corners are background (dark).
        assert!(f.gray[0] < 40 && f.gray[(WIDTH - 1) as usize] < 40);
        // Harder conditions keep a hand in view over a dark background.
        for s in 0..3 {
            let f = render(1, 0, s);
            let bright = hand_pixels(&f) as f64 / f.gray.len() as f64;
            assert!(
                (0.1..0.85).contains(&bright),
                "sample {s}: hand fraction {bright}"
            );
            let dark = f.gray.iter().filter(|&&p| p < 40).count() as f64 / f.gray.len() as f64;
            assert!(dark > 0.1, "sample {s}: background fraction {dark}");
        }
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

    #[test]
    fn harder_conditions_are_drawn_per_capture_not_per_identity() {
        let n = 300u64;
        let mut total = [0usize; 4];
        for id in 0..4 {
            let draws: Vec<Hard> = (0..n).map(|s| Hard::draw(9, id, s)).collect();
            assert_eq!(draws[0], Hard::draw(9, id, 0), "deterministic");
            assert_ne!(draws[0], draws[1], "captures differ");
            let faint = draws
                .iter()
                .filter(|h| h.contrast.unwrap() < USUAL_CONTRAST.0 as f32)
                .count();
            let strong = draws
                .iter()
                .filter(|h| h.defocus.is_some_and(|r| r >= STRONG_DEFOCUS.0 as f32))
                .count();
            let mild = draws.iter().filter(|h| h.defocus.is_some()).count() - strong;
            let cut = draws.iter().filter(|h| h.framing.is_some()).count();
            // Every identity gets easy and hard captures alike, in the same proportions.
            for (what, count, share) in [
                ("faint", faint, FAINT_SHARE),
                ("strong defocus", strong, STRONG_DEFOCUS_SHARE),
                ("mild defocus", mild, MILD_DEFOCUS_SHARE),
                ("cut", cut, CUT_SHARE),
            ] {
                let got = count as f64 / n as f64;
                assert!(
                    (got - share).abs() < 0.4 * share + 0.02,
                    "identity {id}: {what} share {got}, want ≈ {share}"
                );
                assert!(
                    count > 0 && count < n as usize,
                    "identity {id}: {what} {count}"
                );
            }
            for (t, c) in total.iter_mut().zip([faint, strong, mild, cut]) {
                *t += c;
            }
        }
        let shares = total.map(|c| c as f64 / (4 * n) as f64);
        let want = [
            FAINT_SHARE,
            STRONG_DEFOCUS_SHARE,
            MILD_DEFOCUS_SHARE,
            CUT_SHARE,
        ];
        for (got, want) in shares.iter().zip(want) {
            assert!(
                (got - want).abs() < 0.2 * want + 0.01,
                "share {got}, want {want}"
            );
        }
    }

    #[test]
    fn easy_conditions_are_the_realistic_capture_without_its_effects() {
        assert_eq!(Conditions::default(), Conditions::REALISTIC);
        let id = Identity::new(9, 0);
        // A capture neither defocused nor cut by the frame: those two effects, switched on
        // alone, change nothing; uneven skin (always drawn) does.
        let s = sample_where(|h| h.defocus.is_none() && h.framing.is_none());
        let easy = id.capture_easy(s);
        assert_eq!(easy, id.capture_with(s, Conditions::EASY));
        assert_eq!(id.capture(s), id.capture_with(s, Conditions::REALISTIC));
        assert_ne!(id.capture(s), easy);
        assert_eq!(id.capture_with(s, only(|c| c.soft_focus = true)), easy);
        assert_eq!(id.capture_with(s, only(|c| c.cut_by_frame = true)), easy);
        assert_ne!(id.capture_with(s, only(|c| c.uneven_skin = true)), easy);
    }

    #[test]
    fn faint_lines_and_soft_focus_remove_detail() {
        let id = Identity::new(9, 0);
        let faint = sample_where(|h| h.contrast.unwrap() < 0.55);
        let (easy, hard) = (
            detail(&id.capture_easy(faint)),
            detail(&id.capture_with(faint, only(|c| c.low_contrast = true))),
        );
        assert!(hard < 0.75 * easy, "faint creases: detail {hard} vs {easy}");
        let strong = sample_where(|h| h.defocus.is_some_and(|r| r > 3.5));
        let (easy, hard) = (
            detail(&id.capture_easy(strong)),
            detail(&id.capture_with(strong, only(|c| c.soft_focus = true))),
        );
        assert!(hard < 0.5 * easy, "strong defocus: detail {hard} vs {easy}");
        let mild = sample_where(|h| h.defocus.is_some_and(|r| r < 2.0));
        let (easy, hard) = (
            detail(&id.capture_easy(mild)),
            detail(&id.capture_with(mild, only(|c| c.soft_focus = true))),
        );
        assert!(
            hard < 0.95 * easy && hard > 0.2 * easy,
            "mild defocus: detail {hard} vs {easy}"
        );
    }

    #[test]
    fn cut_captures_leave_the_frame() {
        let id = Identity::new(9, 0);
        let cut = only(|c| c.cut_by_frame = true);
        // Bright pixels along the top row, the left column (thumb side) and the right column.
        let top = |f: &Frame| (0..WIDTH).filter(|&x| px(f, x, 0) > 60).count();
        let left = |f: &Frame| (0..HEIGHT).filter(|&y| px(f, 0, y) > 60).count();
        let right = |f: &Frame| (0..HEIGHT).filter(|&y| px(f, WIDTH - 1, y) > 60).count();
        for (side, edge) in [
            (Side::Top, &top as &dyn Fn(&Frame) -> usize),
            (Side::Thumb, &left),
            (Side::Little, &right),
        ] {
            let s = sample_where(|h| h.framing.as_ref().is_some_and(|f| f.side == side));
            let (easy, hard) = (id.capture_easy(s), id.capture_with(s, cut));
            assert!(
                edge(&hard) >= edge(&easy) + 30,
                "{side:?}: {} hand pixels on that edge, {} when easy",
                edge(&hard),
                edge(&easy)
            );
            assert!(
                hand_pixels(&hard) as f64 > 1.05 * hand_pixels(&easy) as f64,
                "{side:?}: the hand is closer"
            );
        }
    }

    #[test]
    fn uneven_skin_and_bending_change_the_palm_not_the_hand() {
        let id = Identity::new(9, 0);
        // Specular highlights: local bright patches on top of the rest of the capture.
        let s = sample_where(|h| {
            h.skin
                .as_ref()
                .is_some_and(|k| k.spots.iter().any(|p| p.intensity > 0.15))
        });
        let hard = Hard::draw(9, 0, s).only(only(|c| c.uneven_skin = true));
        let mut no_spots = hard.clone();
        no_spots.skin.as_mut().unwrap().spots.clear();
        let (with, without) = (id.render_capture(s, &hard), id.render_capture(s, &no_spots));
        let diff: Vec<i32> = with
            .gray
            .iter()
            .zip(&without.gray)
            .map(|(a, b)| *a as i32 - *b as i32)
            .collect();
        let brightest = *diff.iter().max().unwrap();
        let lit = diff.iter().filter(|&&d| d > 8).count();
        let hand = hand_pixels(&without);
        assert!(brightest >= 25, "highlight peak +{brightest} gray levels");
        assert!(
            lit > 200 && (lit as f64) < 0.25 * hand as f64,
            "{lit} of {hand} hand pixels lit by highlights"
        );
        // Blotches and uneven light: the palm's brightness, relative to the evenly lit
        // capture, varies across it by more than the noise does.
        let s = sample_where(|h| {
            h.skin
                .as_ref()
                .is_some_and(|k| k.light_depth > 0.35 && k.blotch_amp > 0.04 && k.spots.is_empty())
        });
        let (easy, hard) = (
            id.capture_easy(s),
            id.capture_with(s, only(|c| c.uneven_skin = true)),
        );
        // Ratio of 16×16 block means where the block is all hand in both frames.
        let mut ratios = Vec::new();
        for by in 0..HEIGHT / 16 {
            for bx in 0..WIDTH / 16 {
                let (mut a, mut b, mut ok) = (0f64, 0f64, true);
                for y in by * 16..by * 16 + 16 {
                    for x in bx * 16..bx * 16 + 16 {
                        let (pa, pb) = (px(&easy, x, y), px(&hard, x, y));
                        ok &= pa > 60 && pb > 60;
                        a += pa as f64;
                        b += pb as f64;
                    }
                }
                if ok {
                    ratios.push(b / a);
                }
            }
        }
        ratios.sort_by(f64::total_cmp);
        let (lo, hi) = (ratios[ratios.len() / 20], ratios[ratios.len() * 19 / 20]);
        assert!(
            ratios.len() > 50 && hi / lo > 1.1,
            "{} blocks, relative brightness {lo:.3}..{hi:.3}",
            ratios.len()
        );
        // Bending moves the skin by a few pixels: the silhouette barely changes.
        let s = sample_where(|h| {
            h.bend
                .as_ref()
                .is_some_and(|b| b.cup_u > 0.3 && b.amp > 0.012)
        });
        let (easy, hard) = (
            id.capture_easy(s),
            id.capture_with(s, only(|c| c.bending = true)),
        );
        let moved = easy
            .gray
            .iter()
            .zip(&hard.gray)
            .filter(|(a, b)| (**a > 60) != (**b > 60))
            .count();
        let hand = hand_pixels(&easy);
        assert!(
            moved > 0 && (moved as f64) < 0.08 * hand as f64,
            "{moved} of {hand} hand pixels moved in or out"
        );
        let changed = easy
            .gray
            .iter()
            .zip(&hard.gray)
            .filter(|(a, b)| a.abs_diff(**b) > 12)
            .count();
        assert!(
            changed as f64 > 0.01 * hand as f64,
            "bending moved the creases ({changed} pixels changed)"
        );
    }
}
