//! The simulated camera: plays a hand of a chosen identity (or no hand) over a dark
//! background at a steady frame rate, or a folder of images in name order.
//!
//! A [`SimControl`] handle, shared with the UI, the demo and tests, chooses what the camera
//! "sees": `present(Some("alice"))` brings alice's hand in (it approaches from far, then
//! holds still with a little tremor), `present(None)` takes it away. Each identity's palm
//! texture (creases and fine lines) is derived from its name, so the same name always gives
//! the same palm and different names give different palms.

use super::{Camera, CameraError, Frame};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Draws the resting image of an identity's hand for one presentation (`sample` changes
/// each time the hand is presented again): width × height grayscale.
pub type HandRenderer = Arc<dyn Fn(&str, u64, u32, u32) -> Vec<u8> + Send + Sync>;

/// Data set seed of the kiosk's simulated shoppers (palm pipeline's synthetic hands).
pub const SIM_SEED: u64 = 0x5EED_CAFE;

/// The palm pipeline's synthetic hand generator (`palmline_shared::palm::synth`): the
/// identity number is derived from the name, the capture sample from the presentation.
/// Frames of another size are resampled. Easy capture conditions (the whole hand in view,
/// crisp, evenly lit): the demo shopper's hand is held still under the guide for as long as
/// a presentation lasts, so one bad draw (a cut or defocused frame) would stall the demo;
/// the harder conditions are for the lab's data sets.
pub fn synth_hand(identity: &str, sample: u64, width: u32, height: u32) -> Vec<u8> {
    use palmline_shared::palm::synth;
    let f = synth::Identity::new(SIM_SEED, seed_of(identity) % 1_000_000).capture_easy(sample);
    if (f.width, f.height) == (width, height) {
        return f.gray;
    }
    let img = image::GrayImage::from_raw(f.width, f.height, f.gray).expect("synth frame");
    image::imageops::resize(&img, width, height, image::imageops::FilterType::Triangle).into_raw()
}

#[derive(Debug, Clone, PartialEq)]
struct Scene {
    identity: Option<String>,
    since: Instant,
    /// Generation counter, bumped on every change (lets the camera restart the approach).
    generation: u64,
}

/// Shared handle choosing what the simulated camera shows.
#[derive(Clone)]
pub struct SimControl {
    scene: Arc<Mutex<Scene>>,
}

impl Default for SimControl {
    fn default() -> Self {
        SimControl {
            scene: Arc::new(Mutex::new(Scene {
                identity: None,
                since: Instant::now(),
                generation: 0,
            })),
        }
    }
}

impl SimControl {
    /// Shows the hand of `identity` (approaching, then steady), or no hand.
    pub fn present(&self, identity: Option<&str>) {
        let mut s = self.scene.lock().expect("sim scene");
        s.identity = identity.map(str::to_string);
        s.since = Instant::now();
        s.generation += 1;
    }

    pub fn showing(&self) -> Option<String> {
        self.scene.lock().expect("sim scene").identity.clone()
    }

    fn snapshot(&self) -> Scene {
        self.scene.lock().expect("sim scene").clone()
    }
}

/// How the hand moves in: far (small) to its resting size over `approach`.
const APPROACH: Duration = Duration::from_millis(500);
const FAR_SCALE: f32 = 0.35;

pub struct SimCamera {
    control: SimControl,
    width: u32,
    height: u32,
    frame_period: Duration,
    next_due: Option<Instant>,
    renderer: HandRenderer,
    cache: HashMap<(String, u64), Arc<Vec<u8>>>,
    folder: Option<Vec<PathBuf>>,
    folder_frames: Vec<Vec<u8>>,
    frame_no: u64,
    /// Don't pace frames (tests and benchmarks).
    unpaced: bool,
}

impl SimCamera {
    pub fn new(control: SimControl, width: u32, height: u32, fps: u32) -> SimCamera {
        SimCamera {
            control,
            width,
            height,
            frame_period: Duration::from_secs_f64(1.0 / f64::from(fps.max(1))),
            next_due: None,
            renderer: Arc::new(synth_hand),
            cache: HashMap::new(),
            folder: None,
            folder_frames: Vec::new(),
            frame_no: 0,
            unpaced: false,
        }
    }

    /// Uses another hand renderer (for example the palm pipeline's synthetic generator).
    pub fn with_renderer(mut self, renderer: HandRenderer) -> SimCamera {
        self.renderer = renderer;
        self
    }

    /// Plays the images of `dir` (png/jpg, name order), each for one second, in a loop.
    pub fn from_folder(
        dir: PathBuf,
        width: u32,
        height: u32,
        fps: u32,
    ) -> Result<SimCamera, CameraError> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map_err(|e| CameraError::NotFound(format!("{}: {e}", dir.display())))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                matches!(
                    p.extension()
                        .and_then(|e| e.to_str())
                        .map(str::to_ascii_lowercase)
                        .as_deref(),
                    Some("png" | "jpg" | "jpeg")
                )
            })
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(CameraError::NotFound(format!(
                "no images in {}",
                dir.display()
            )));
        }
        let mut cam = SimCamera::new(SimControl::default(), width, height, fps);
        cam.folder = Some(files);
        Ok(cam)
    }

    pub fn unpaced(mut self) -> SimCamera {
        self.unpaced = true;
        self
    }

    fn base(&mut self, identity: &str, sample: u64) -> Arc<Vec<u8>> {
        let key = (identity.to_string(), sample);
        if let Some(b) = self.cache.get(&key) {
            return b.clone();
        }
        if self.cache.len() > 16 {
            self.cache.clear();
        }
        let img = Arc::new((self.renderer)(identity, sample, self.width, self.height));
        self.cache.insert(key, img.clone());
        img
    }

    fn render(&mut self, scene: &Scene, now: Instant) -> Vec<u8> {
        let (w, h) = (self.width as usize, self.height as usize);
        let mut rng = Rng(self.frame_no.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5);
        // Dark background with sensor noise.
        let mut out: Vec<u8> = (0..w * h).map(|_| 14 + (rng.next() % 8) as u8).collect();
        let Some(identity) = &scene.identity else {
            return out;
        };
        let base = self.base(identity, scene.generation);
        let t = now.saturating_duration_since(scene.since).as_secs_f32() / APPROACH.as_secs_f32();
        let scale = if t >= 1.0 {
            1.0
        } else {
            FAR_SCALE + (1.0 - FAR_SCALE) * t
        };
        // A little tremor once resting: sub-pixel-ish jitter of one or two pixels.
        let (jx, jy) = if t >= 1.0 {
            ((rng.next() % 3) as f32 - 1.0, (rng.next() % 3) as f32 - 1.0)
        } else {
            (0.0, 0.0)
        };
        let (cx, cy) = (w as f32 / 2.0, h as f32 / 2.0);
        let inv = 1.0 / scale;
        for y in 0..h {
            let sy = ((y as f32 - cy - jy) * inv + cy) as isize;
            if sy < 0 || sy >= h as isize {
                continue;
            }
            let row = sy as usize * w;
            for x in 0..w {
                let sx = ((x as f32 - cx - jx) * inv + cx) as isize;
                if sx < 0 || sx >= w as isize {
                    continue;
                }
                let v = base[row + sx as usize];
                if v > 30 {
                    let noise = (rng.next() % 5) as i16 - 2;
                    out[y * w + x] = (i16::from(v) + noise).clamp(0, 255) as u8;
                }
            }
        }
        out
    }

    fn folder_frame(&mut self) -> Result<Vec<u8>, CameraError> {
        let files = self.folder.as_ref().expect("folder source");
        let fps = (1.0 / self.frame_period.as_secs_f64()).round().max(1.0) as u64;
        let idx = ((self.frame_no / fps) as usize) % files.len();
        if self.folder_frames.len() != files.len() {
            let mut frames = Vec::new();
            for f in files {
                let img = image::open(f)
                    .map_err(|e| CameraError::Other(format!("{}: {e}", f.display())))?
                    .resize_exact(
                        self.width,
                        self.height,
                        image::imageops::FilterType::Triangle,
                    )
                    .into_luma8();
                frames.push(img.into_raw());
            }
            self.folder_frames = frames;
        }
        Ok(self.folder_frames[idx].clone())
    }
}

impl Camera for SimCamera {
    fn describe(&self) -> String {
        match &self.folder {
            Some(f) => format!("image folder ({} images)", f.len()),
            None => "simulated camera".into(),
        }
    }

    fn open(&mut self) -> Result<(), CameraError> {
        self.next_due = None;
        Ok(())
    }

    fn next_frame(&mut self) -> Result<Frame, CameraError> {
        // Pace like a real camera: one frame per period.
        if !self.unpaced {
            let now = Instant::now();
            let due = self.next_due.unwrap_or(now);
            if due > now {
                std::thread::sleep(due - now);
            }
            let after = Instant::now();
            self.next_due = Some(if after > due + self.frame_period {
                after + self.frame_period
            } else {
                due + self.frame_period
            });
        }
        let gray = if self.folder.is_some() {
            self.folder_frame()?
        } else {
            let scene = self.control.snapshot();
            self.render(&scene, Instant::now())
        };
        self.frame_no += 1;
        Ok(Frame::from_gray(self.width, self.height, gray))
    }

    fn close(&mut self) {}
}

/// xorshift64*: small, deterministic, good enough for textures and noise.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0 | 1;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }
}

fn seed_of(name: &str) -> u64 {
    // FNV-1a: stable across runs and platforms (std's hasher is not).
    name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A simple hand: palm ellipse, four fingers and a thumb, lit from the front, with creases
/// and fine lines derived from `identity` (a fallback renderer and a fixed test image; the
/// simulated camera uses [`synth_hand`]).
pub fn procedural_hand(identity: &str, _sample: u64, width: u32, height: u32) -> Vec<u8> {
    let (w, h) = (width as usize, height as usize);
    let mut img = vec![0u8; w * h];
    let s = h as f32 / 480.0;
    let (pcx, pcy) = (w as f32 * 0.5, h as f32 * 0.60);
    let (prx, pry) = (120.0 * s, 130.0 * s);
    // Fingers: (base x offset, length, width, angle radians from vertical).
    let fingers = [
        (-85.0, 150.0, 42.0, -0.18),
        (-28.0, 180.0, 44.0, -0.05),
        (30.0, 170.0, 44.0, 0.06),
        (82.0, 135.0, 40.0, 0.20),
        (-135.0, 110.0, 48.0, -1.0), // thumb
    ];
    let inside = |x: f32, y: f32| -> Option<f32> {
        let dx = (x - pcx) / prx;
        let dy = (y - pcy) / pry;
        let d = dx * dx + dy * dy;
        if d <= 1.0 {
            return Some(1.0 - d);
        }
        for (i, &(ox, len, fw, ang)) in fingers.iter().enumerate() {
            let (bx, by) = if i == 4 {
                (pcx + ox * s, pcy + 20.0 * s)
            } else {
                (pcx + ox * s, pcy - pry * 0.75)
            };
            let (dxu, dyu) = (f32::sin(ang), -f32::cos(ang));
            let (px, py) = (x - bx, y - by);
            let t = (px * dxu + py * dyu).clamp(0.0, len * s);
            let (qx, qy) = (px - t * dxu, py - t * dyu);
            let r = fw * s / 2.0;
            let dist2 = qx * qx + qy * qy;
            if dist2 <= r * r {
                return Some(0.6 * (1.0 - dist2 / (r * r)));
            }
        }
        None
    };
    for y in 0..h {
        for x in 0..w {
            if let Some(depth) = inside(x as f32, y as f32) {
                img[y * w + x] = (150.0 + 60.0 * depth.sqrt()) as u8;
            }
        }
    }
    // Identity texture: three major creases and many fine lines inside the palm.
    let mut rng = Rng(seed_of(identity));
    let line =
        |img: &mut Vec<u8>, x0: f32, y0: f32, x1: f32, y1: f32, bend: f32, dark: u8, thick: f32| {
            let steps = ((x1 - x0).abs() + (y1 - y0).abs()).max(1.0) as usize * 2;
            for i in 0..=steps {
                let t = i as f32 / steps as f32;
                let bx = x0 + (x1 - x0) * t;
                let by = y0 + (y1 - y0) * t + bend * 4.0 * t * (1.0 - t);
                let r = thick.ceil() as isize;
                for oy in -r..=r {
                    for ox in -r..=r {
                        if (ox * ox + oy * oy) as f32 > thick * thick {
                            continue;
                        }
                        let (px, py) = (bx as isize + ox, by as isize + oy);
                        if px < 0 || py < 0 || px >= w as isize || py >= h as isize {
                            continue;
                        }
                        let idx = py as usize * w + px as usize;
                        if img[idx] > 100 {
                            img[idx] = img[idx].saturating_sub(dark);
                        }
                    }
                }
            }
        };
    for k in 0..3 {
        let y0 = pcy - pry * 0.5 + k as f32 * pry * 0.45 + (rng.unit() - 0.5) * 30.0 * s;
        let y1 = y0 + (rng.unit() - 0.5) * 80.0 * s;
        let bend = (rng.unit() - 0.5) * 60.0 * s;
        line(
            &mut img,
            pcx - prx * 0.85,
            y0,
            pcx + prx * 0.8,
            y1,
            bend,
            70,
            2.5 * s,
        );
    }
    for _ in 0..70 {
        let x0 = pcx + (rng.unit() - 0.5) * prx * 1.6;
        let y0 = pcy + (rng.unit() - 0.5) * pry * 1.6;
        let ang = rng.unit() * std::f32::consts::TAU;
        let len = (10.0 + rng.unit() * 35.0) * s;
        let bend = (rng.unit() - 0.5) * 10.0 * s;
        line(
            &mut img,
            x0,
            y0,
            x0 + len * ang.cos(),
            y0 + len * ang.sin(),
            bend,
            35 + (rng.next() % 30) as u8,
            1.2 * s,
        );
    }
    img
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_hand_is_dark_and_a_presented_hand_is_bright() {
        let control = SimControl::default();
        let mut cam = SimCamera::new(control.clone(), 320, 240, 30).unpaced();
        cam.open().unwrap();
        let empty = cam.next_frame().unwrap();
        assert!(empty.gray.iter().all(|&v| v < 40));
        control.present(Some("alice"));
        assert_eq!(control.showing().as_deref(), Some("alice"));
        let f = cam.next_frame().unwrap();
        let bright = f.gray.iter().filter(|&&v| v > 100).count();
        assert!(bright > 500, "hand visible while approaching ({bright})");
    }

    #[test]
    fn identities_differ_and_repeat() {
        let a1 = procedural_hand("alice", 0, 320, 240);
        let a2 = procedural_hand("alice", 0, 320, 240);
        let b = procedural_hand("bob", 0, 320, 240);
        assert_eq!(a1, a2);
        let diff = a1.iter().zip(&b).filter(|(x, y)| x != y).count();
        assert!(
            diff > 1000,
            "palms of alice and bob differ in {diff} pixels"
        );
    }

    #[test]
    fn folder_source_plays_images() {
        let dir = tempfile::tempdir().unwrap();
        for (i, v) in [10u8, 200].iter().enumerate() {
            image::GrayImage::from_pixel(64, 48, image::Luma([*v]))
                .save(dir.path().join(format!("{i}.png")))
                .unwrap();
        }
        let mut cam = SimCamera::from_folder(dir.path().into(), 32, 24, 1)
            .unwrap()
            .unpaced();
        let first = cam.next_frame().unwrap();
        let second = cam.next_frame().unwrap();
        assert_eq!((first.width, first.height), (32, 24));
        assert!(first.gray[0] < 20 && second.gray[0] > 190);
        assert!(
            SimCamera::from_folder(tempfile::tempdir().unwrap().path().into(), 1, 1, 1).is_err()
        );
    }
}
