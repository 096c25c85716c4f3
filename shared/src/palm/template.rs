//! The palm template: keypoint geometry plus 256-bit ORB descriptors, in the normalised
//! palm ROI's coordinate frame, and its versioned compact binary codec.
//!
//! This is what crosses the network and what the server stores: never raw images. The codec
//! has hard bounds (at most [`MAX_KEYPOINTS`] keypoints, at most [`MAX_TEMPLATE_BYTES`]
//! bytes) and decoding arbitrary bytes must never panic: every length is checked before it
//! is used and every field is validated.
//!
//! Layout of version 1 (all integers little-endian):
//! ```text
//! offset size field
//! 0      4    magic "PLMT"
//! 4      1    version (1)
//! 5      1    flags (reserved, must be 0)
//! 6      2    roi_size: side of the square ROI frame in pixels (1..=1023)
//! 8      2    n: keypoint count (0..=MAX_KEYPOINTS)
//! 10     38n  n records: x u16, y u16 (1/64 px), angle u8 (1/256 turn), octave u8,
//!             descriptor [u8; 32]
//! ```

use thiserror::Error;

/// Current codec version.
pub const TEMPLATE_VERSION: u8 = 1;
/// Magic bytes at the start of every encoded template.
pub const TEMPLATE_MAGIC: [u8; 4] = *b"PLMT";
/// Header length in bytes.
pub const HEADER_LEN: usize = 10;
/// Bytes per keypoint record.
pub const RECORD_LEN: usize = 38;
/// Hard bound on the encoded size (24 KiB; the extractor's 450 keypoints take 16.7 KiB).
pub const MAX_TEMPLATE_BYTES: usize = 24 * 1024;
/// Hard bound on keypoints: the most that fit in [`MAX_TEMPLATE_BYTES`].
pub const MAX_KEYPOINTS: usize = (MAX_TEMPLATE_BYTES - HEADER_LEN) / RECORD_LEN;
/// Largest ROI side the fixed-point coordinates can hold (1/64 px in a u16).
pub const MAX_ROI_SIZE: u16 = 1023;

/// A 256-bit binary descriptor (ORB/rBRIEF).
pub type Descriptor = [u8; 32];

/// One keypoint in ROI pixel coordinates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Keypoint {
    /// Column, pixels, `0 <= x < roi_size` (stored to 1/64 px).
    pub x: f32,
    /// Row, pixels, `0 <= y < roi_size` (stored to 1/64 px).
    pub y: f32,
    /// Orientation in degrees, `[0, 360)` (stored to 1/256 turn).
    pub angle: f32,
    /// Pyramid level the keypoint was found at.
    pub octave: u8,
}

/// A palm template: keypoints and their descriptors, index-aligned.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    roi_size: u16,
    keypoints: Vec<Keypoint>,
    descriptors: Vec<Descriptor>,
}

/// Why a template could not be built or decoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TemplateError {
    #[error("template is {0} bytes, shorter than its {HEADER_LEN}-byte header")]
    TooShort(usize),
    #[error("template is {0} bytes, over the {MAX_TEMPLATE_BYTES}-byte bound")]
    TooLarge(usize),
    #[error("not a palm template (bad magic)")]
    BadMagic,
    #[error("unsupported template version {0}")]
    UnsupportedVersion(u8),
    #[error("reserved flags set: {0:#04x}")]
    BadFlags(u8),
    #[error("invalid ROI size {0}")]
    BadRoiSize(u16),
    #[error("{0} keypoints, over the bound of {MAX_KEYPOINTS}")]
    TooManyKeypoints(usize),
    #[error("length {actual} does not match {expected} for the declared keypoint count")]
    LengthMismatch { expected: usize, actual: usize },
    #[error("keypoint {0} lies outside the ROI")]
    KeypointOutOfRange(usize),
    #[error("{keypoints} keypoints but {descriptors} descriptors")]
    CountMismatch {
        keypoints: usize,
        descriptors: usize,
    },
}

impl Template {
    /// Builds a template, checking the same invariants the decoder checks.
    pub fn new(
        roi_size: u16,
        keypoints: Vec<Keypoint>,
        descriptors: Vec<Descriptor>,
    ) -> Result<Self, TemplateError> {
        if roi_size == 0 || roi_size > MAX_ROI_SIZE {
            return Err(TemplateError::BadRoiSize(roi_size));
        }
        if keypoints.len() != descriptors.len() {
            return Err(TemplateError::CountMismatch {
                keypoints: keypoints.len(),
                descriptors: descriptors.len(),
            });
        }
        if keypoints.len() > MAX_KEYPOINTS {
            return Err(TemplateError::TooManyKeypoints(keypoints.len()));
        }
        let limit = roi_size as f32;
        let mut kps = keypoints;
        for (i, k) in kps.iter_mut().enumerate() {
            if !(k.x >= 0.0 && k.x < limit && k.y >= 0.0 && k.y < limit) {
                return Err(TemplateError::KeypointOutOfRange(i));
            }
            // Quantise now so that a template equals its own decoded encoding.
            k.x = quant_xy(k.x, roi_size) as f32 / 64.0;
            k.y = quant_xy(k.y, roi_size) as f32 / 64.0;
            k.angle = quant_angle(k.angle) as f32 * (360.0 / 256.0);
        }
        Ok(Self {
            roi_size,
            keypoints: kps,
            descriptors,
        })
    }

    /// Side of the square ROI frame the coordinates refer to.
    pub fn roi_size(&self) -> u16 {
        self.roi_size
    }

    pub fn keypoints(&self) -> &[Keypoint] {
        &self.keypoints
    }

    pub fn descriptors(&self) -> &[Descriptor] {
        &self.descriptors
    }

    pub fn len(&self) -> usize {
        self.keypoints.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keypoints.is_empty()
    }

    /// Encoded size in bytes (always `<= MAX_TEMPLATE_BYTES`).
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN + RECORD_LEN * self.keypoints.len()
    }

    /// Encodes to the version-1 binary format.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        out.extend_from_slice(&TEMPLATE_MAGIC);
        out.push(TEMPLATE_VERSION);
        out.push(0);
        out.extend_from_slice(&self.roi_size.to_le_bytes());
        out.extend_from_slice(&(self.keypoints.len() as u16).to_le_bytes());
        for (k, d) in self.keypoints.iter().zip(&self.descriptors) {
            out.extend_from_slice(&quant_xy(k.x, self.roi_size).to_le_bytes());
            out.extend_from_slice(&quant_xy(k.y, self.roi_size).to_le_bytes());
            out.push(quant_angle(k.angle));
            out.push(k.octave);
            out.extend_from_slice(d);
        }
        out
    }

    /// Decodes and validates; never panics, whatever the input.
    pub fn decode(bytes: &[u8]) -> Result<Self, TemplateError> {
        if bytes.len() > MAX_TEMPLATE_BYTES {
            return Err(TemplateError::TooLarge(bytes.len()));
        }
        if bytes.len() < HEADER_LEN {
            return Err(TemplateError::TooShort(bytes.len()));
        }
        if bytes[0..4] != TEMPLATE_MAGIC {
            return Err(TemplateError::BadMagic);
        }
        if bytes[4] != TEMPLATE_VERSION {
            return Err(TemplateError::UnsupportedVersion(bytes[4]));
        }
        if bytes[5] != 0 {
            return Err(TemplateError::BadFlags(bytes[5]));
        }
        let roi_size = u16::from_le_bytes([bytes[6], bytes[7]]);
        if roi_size == 0 || roi_size > MAX_ROI_SIZE {
            return Err(TemplateError::BadRoiSize(roi_size));
        }
        let n = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        if n > MAX_KEYPOINTS {
            return Err(TemplateError::TooManyKeypoints(n));
        }
        let expected = HEADER_LEN + RECORD_LEN * n;
        if bytes.len() != expected {
            return Err(TemplateError::LengthMismatch {
                expected,
                actual: bytes.len(),
            });
        }
        let limit = roi_size as u32 * 64;
        let mut keypoints = Vec::with_capacity(n);
        let mut descriptors = Vec::with_capacity(n);
        for (i, rec) in bytes[HEADER_LEN..].chunks_exact(RECORD_LEN).enumerate() {
            let x = u16::from_le_bytes([rec[0], rec[1]]);
            let y = u16::from_le_bytes([rec[2], rec[3]]);
            if x as u32 >= limit || y as u32 >= limit {
                return Err(TemplateError::KeypointOutOfRange(i));
            }
            keypoints.push(Keypoint {
                x: x as f32 / 64.0,
                y: y as f32 / 64.0,
                angle: rec[4] as f32 * (360.0 / 256.0),
                octave: rec[5],
            });
            let mut d = [0u8; 32];
            d.copy_from_slice(&rec[6..38]);
            descriptors.push(d);
        }
        Ok(Self {
            roi_size,
            keypoints,
            descriptors,
        })
    }
}

fn quant_xy(v: f32, roi_size: u16) -> u16 {
    // Callers guarantee 0 <= v < roi_size; the clamp keeps rounding at the top edge in range.
    ((v * 64.0).round() as i64).clamp(0, roi_size as i64 * 64 - 1) as u16
}

fn quant_angle(deg: f32) -> u8 {
    if !deg.is_finite() {
        return 0;
    }
    let turns = deg.rem_euclid(360.0) / 360.0;
    ((turns * 256.0).round() as i64).rem_euclid(256) as u8
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample(n: usize) -> Template {
        let kps = (0..n)
            .map(|i| Keypoint {
                x: (i * 7 % 150) as f32 + 0.3,
                y: (i * 13 % 150) as f32 + 0.7,
                angle: (i * 37 % 360) as f32,
                octave: (i % 3) as u8,
            })
            .collect();
        let ds = (0..n).map(|i| [i as u8; 32]).collect();
        Template::new(160, kps, ds).unwrap()
    }

    #[test]
    fn round_trip_and_bounds() {
        let t = sample(MAX_KEYPOINTS);
        let bytes = t.encode();
        assert!(bytes.len() <= MAX_TEMPLATE_BYTES);
        assert_eq!(bytes.len(), t.encoded_len());
        assert_eq!(Template::decode(&bytes).unwrap(), t);
        assert_eq!(Template::decode(&sample(0).encode()).unwrap().len(), 0);
    }

    #[test]
    fn rejects_bad_inputs() {
        let good = sample(5).encode();
        assert_eq!(
            Template::decode(&good[..3]),
            Err(TemplateError::TooShort(3))
        );
        let mut b = good.clone();
        b[0] = b'X';
        assert_eq!(Template::decode(&b), Err(TemplateError::BadMagic));
        let mut b = good.clone();
        b[4] = 2;
        assert_eq!(
            Template::decode(&b),
            Err(TemplateError::UnsupportedVersion(2))
        );
        let mut b = good.clone();
        b.pop();
        assert!(matches!(
            Template::decode(&b),
            Err(TemplateError::LengthMismatch { .. })
        ));
        let mut b = good.clone();
        b[HEADER_LEN..HEADER_LEN + 2].copy_from_slice(&u16::MAX.to_le_bytes());
        assert_eq!(
            Template::decode(&b),
            Err(TemplateError::KeypointOutOfRange(0))
        );
        let mut b = good.clone();
        b[8..10].copy_from_slice(&((MAX_KEYPOINTS + 1) as u16).to_le_bytes());
        assert!(matches!(
            Template::decode(&b),
            Err(TemplateError::TooManyKeypoints(_))
        ));
        assert!(matches!(
            Template::decode(&vec![0u8; MAX_TEMPLATE_BYTES + 1]),
            Err(TemplateError::TooLarge(_))
        ));
        assert!(Template::new(160, vec![], vec![[0; 32]]).is_err());
        let out = Keypoint {
            x: 161.0,
            y: 0.0,
            angle: 0.0,
            octave: 0,
        };
        assert_eq!(
            Template::new(160, vec![out], vec![[0; 32]]),
            Err(TemplateError::KeypointOutOfRange(0))
        );
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..13000)) {
            let _ = Template::decode(&bytes);
        }

        #[test]
        fn decode_mutated_never_panics(idx in 0usize..200, val in any::<u8>(), cut in 0usize..200) {
            let mut b = sample(5).encode();
            let i = idx % b.len();
            b[i] = val;
            b.truncate(b.len().saturating_sub(cut % 4));
            if let Ok(t) = Template::decode(&b) {
                // Whatever decodes re-encodes to the same bytes.
                prop_assert_eq!(t.encode(), b);
            }
        }

        #[test]
        fn round_trip(points in proptest::collection::vec(
            (0.0f32..255.9, 0.0f32..255.9, -720.0f32..720.0, any::<u8>(), any::<[u8; 32]>()), 0..MAX_KEYPOINTS)) {
            let kps = points.iter().map(|p| Keypoint { x: p.0, y: p.1, angle: p.2, octave: p.3 }).collect();
            let ds = points.iter().map(|p| p.4).collect();
            let t = Template::new(256, kps, ds).unwrap();
            let b = t.encode();
            prop_assert!(b.len() <= MAX_TEMPLATE_BYTES);
            prop_assert_eq!(Template::decode(&b).unwrap(), t);
        }
    }
}
