//! Palm templates without OpenCV: the server must not link it, and neither does this test.
//! The same keypoint model as `server/tests/common/palms.rs`: a palm is a set of keypoints
//! with descriptors; a capture is that set under a small similarity transform with jitter,
//! bit noise, dropped and spurious points. Real extraction is judged in `lab/`, not here.

use super::rng::Rng;
use base64::Engine;
use palmline_shared::palm::{Keypoint, Template};

const ROI: f32 = 256.0;

/// One synthetic palm: keypoint position, angle and descriptor.
pub type Palm = Vec<(f32, f32, f32, [u8; 32])>;

fn descriptor(r: &mut Rng) -> [u8; 32] {
    let mut d = [0u8; 32];
    for b in d.iter_mut() {
        *b = r.next_u64() as u8;
    }
    d
}

/// The shape of a generated palm: keypoints of the palm itself, and spurious points each
/// capture adds (a capture keeps about 70 % of the palm's points).
#[derive(Debug, Clone, Copy)]
pub struct Model {
    pub points: usize,
    pub spurious: usize,
}

/// The bank test's palms: about 300 keypoints a capture.
pub const BANK_MODEL: Model = Model {
    points: 300,
    spurious: 90,
};

pub fn palm(seed: u64) -> Palm {
    palm_of(seed, BANK_MODEL)
}

pub fn palm_of(seed: u64, model: Model) -> Palm {
    let mut r = Rng::new(seed ^ 0x5EED_0F9A_1D00);
    (0..model.points)
        .map(|_| {
            let d = descriptor(&mut r);
            let x = 16.0 + r.unit() * (ROI - 32.0);
            let y = 16.0 + r.unit() * (ROI - 32.0);
            (x, y, r.unit() * 360.0, d)
        })
        .collect()
}

/// A capture of `p` under the transform and noise that `seed` picks.
pub fn capture(p: &Palm, seed: u64) -> Template {
    capture_with(p, seed, BANK_MODEL)
}

/// As [`capture`], with `model`'s spurious points.
pub fn capture_with(p: &Palm, seed: u64, model: Model) -> Template {
    let mut r = Rng::new(seed.wrapping_mul(0xD1B5_4A32_D192_ED03) | 1);
    let rot = (r.unit() - 0.5) * 10f32.to_radians();
    let scale = 0.95 + r.unit() * 0.1;
    let (tx, ty) = ((r.unit() - 0.5) * 10.0, (r.unit() - 0.5) * 10.0);
    let c = ROI / 2.0;
    let (mut kps, mut descs) = (Vec::new(), Vec::new());
    for &(x, y, a, d) in p {
        if r.unit() < 0.3 {
            continue;
        }
        let (dx, dy) = (x - c, y - c);
        let nx = c + scale * (dx * rot.cos() - dy * rot.sin()) + tx + (r.unit() - 0.5) * 2.0;
        let ny = c + scale * (dx * rot.sin() + dy * rot.cos()) + ty + (r.unit() - 0.5) * 2.0;
        if !(0.0..ROI - 1.0).contains(&nx) || !(0.0..ROI - 1.0).contains(&ny) {
            continue;
        }
        let mut d = d;
        for _ in 0..20 {
            let bit = r.below(256);
            d[(bit / 8) as usize] ^= 1 << (bit % 8);
        }
        let angle = (a + rot.to_degrees()).rem_euclid(360.0);
        kps.push(Keypoint {
            x: nx,
            y: ny,
            angle,
            octave: 0,
        });
        descs.push(d);
    }
    for _ in 0..model.spurious {
        let (x, y) = (r.unit() * (ROI - 1.0), r.unit() * (ROI - 1.0));
        let angle = r.unit() * 360.0;
        kps.push(Keypoint {
            x,
            y,
            angle,
            octave: 0,
        });
        descs.push(descriptor(&mut r));
    }
    Template::new(ROI as u16, kps, descs).expect("a synthetic template within bounds")
}

pub fn b64(t: &Template) -> String {
    base64::engine::general_purpose::STANDARD.encode(t.encode())
}
