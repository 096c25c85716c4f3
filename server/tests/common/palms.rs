//! A small synthetic template model shared by the palm tests: a palm is a set of
//! keypoints with descriptors; a capture is that set under a small similarity transform
//! with jitter, bit noise, dropped and spurious points.

use super::{eur, rand_key, TestServer};
use base64::Engine;
use palmline_shared::palm::{Keypoint, Template};
use reqwest::StatusCode;
use serde_json::{json, Value};

const ROI: f32 = 256.0;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn unit(&mut self) -> f32 {
        (self.next() % 1_000_000) as f32 / 1_000_000.0
    }
}

pub type Palm = Vec<(f32, f32, f32, [u8; 32])>;

pub fn palm(seed: u64) -> Palm {
    let mut r = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    (0..300)
        .map(|_| {
            let mut d = [0u8; 32];
            for b in d.iter_mut() {
                *b = r.next() as u8;
            }
            (
                16.0 + r.unit() * (ROI - 32.0),
                16.0 + r.unit() * (ROI - 32.0),
                r.unit() * 360.0,
                d,
            )
        })
        .collect()
}

pub fn capture(p: &Palm, seed: u64) -> Template {
    let mut r = Rng(seed.wrapping_mul(0xD1B5_4A32_D192_ED03) | 1);
    let rot = (r.unit() - 0.5) * 10f32.to_radians();
    let scale = 0.95 + r.unit() * 0.1;
    let (tx, ty) = ((r.unit() - 0.5) * 10.0, (r.unit() - 0.5) * 10.0);
    let c = ROI / 2.0;
    let mut kps = Vec::new();
    let mut descs = Vec::new();
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
            let bit = r.next() % 256;
            d[(bit / 8) as usize] ^= 1 << (bit % 8);
        }
        kps.push(Keypoint {
            x: nx,
            y: ny,
            angle: (a + rot.to_degrees()).rem_euclid(360.0),
            octave: 0,
        });
        descs.push(d);
    }
    for _ in 0..90 {
        let mut d = [0u8; 32];
        for b in d.iter_mut() {
            *b = r.next() as u8;
        }
        kps.push(Keypoint {
            x: r.unit() * (ROI - 1.0),
            y: r.unit() * (ROI - 1.0),
            angle: r.unit() * 360.0,
            octave: 0,
        });
        descs.push(d);
    }
    Template::new(ROI as u16, kps, descs).unwrap()
}

/// `t` with every keypoint turned by `deg` degrees about the ROI centre (those leaving the
/// ROI dropped): a capture whose ROI the kiosk cut at the wrong angle.
pub fn turned(t: &Template, deg: f32) -> Template {
    let (sin, cos) = deg.to_radians().sin_cos();
    let c = ROI / 2.0;
    let (kps, descs): (Vec<Keypoint>, Vec<[u8; 32]>) = t
        .keypoints()
        .iter()
        .zip(t.descriptors())
        .filter_map(|(k, d)| {
            let (dx, dy) = (k.x - c, k.y - c);
            let (x, y) = (c + dx * cos - dy * sin, c + dx * sin + dy * cos);
            let inside = (0.0..ROI - 1.0).contains(&x) && (0.0..ROI - 1.0).contains(&y);
            let angle = (k.angle + deg).rem_euclid(360.0);
            inside.then_some((
                Keypoint {
                    x,
                    y,
                    angle,
                    octave: k.octave,
                },
                *d,
            ))
        })
        .unzip();
    Template::new(ROI as u16, kps, descs).unwrap()
}

pub fn b64(t: &Template) -> String {
    base64::engine::general_purpose::STANDARD.encode(t.encode())
}

/// Enrolls three captures of `p` (seeds `seed`, `seed + 1`, `seed + 2`) for the session's
/// shopper.
pub async fn enroll(
    t: &TestServer,
    c: &reqwest::Client,
    token: &str,
    p: &Palm,
    seed: u64,
) -> (StatusCode, Value) {
    let templates: Vec<String> = (0..3).map(|i| b64(&capture(p, seed + i))).collect();
    t.post_raw(
        c,
        "/v1/palms",
        Some(&rand_key()),
        Some(token),
        json!({"templates": templates}).to_string().into_bytes(),
    )
    .await
}

/// Pays `amount` EUR by palm at the kiosk `c` (with the PIN, if given).
pub async fn pay_by_palm(
    t: &TestServer,
    c: &reqwest::Client,
    key: &str,
    probe: &Template,
    amount: &str,
    pin: Option<&str>,
) -> (StatusCode, Value) {
    let mut body = json!({"template": b64(probe), "amount": eur(amount)});
    if let Some(p) = pin {
        body["pin"] = json!(p);
    }
    t.post_raw(
        c,
        "/v1/payments/palm",
        Some(key),
        None,
        body.to_string().into_bytes(),
    )
    .await
}
