//! Template extraction behind a small trait, so the capture worker does not care whether
//! templates come from OpenCV ORB (`palmline_shared::palm::extract`, feature `opencv`) or,
//! in a build without it, from nowhere (capture then says extraction is unavailable).
//!
//! Whatever the implementation, only the encoded template leaves this module: the frame
//! it came from stays on the kiosk.

use crate::app::Guidance;
use crate::camera::Frame;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExtractError {
    /// This frame is not good enough (no palm found, too few keypoints): try another. The
    /// guidance says what the shopper should change.
    #[error("frame rejected: {why}")]
    Quality { guidance: Guidance, why: String },
    /// Extraction cannot work at all in this build or setup.
    #[error("palm extraction unavailable: {0}")]
    Unavailable(String),
}

/// Turns an accepted frame into an encoded template (the binary codec of
/// `palmline_shared::palm::Template`).
pub trait PalmExtractor: Send {
    fn name(&self) -> String;
    fn extract(&mut self, frame: &Frame) -> Result<Vec<u8>, ExtractError>;
}

/// Used when the kiosk is built without the `opencv` feature.
pub struct NoExtractor;

impl PalmExtractor for NoExtractor {
    fn name(&self) -> String {
        "none".into()
    }
    fn extract(&mut self, _frame: &Frame) -> Result<Vec<u8>, ExtractError> {
        Err(ExtractError::Unavailable(
            "this kiosk was built without the `opencv` feature".into(),
        ))
    }
}

/// The best extractor this build has.
pub fn default_extractor() -> Box<dyn PalmExtractor> {
    #[cfg(feature = "opencv")]
    {
        match orb::OrbExtractor::new() {
            Ok(e) => return Box::new(e),
            Err(e) => tracing::error!("palm extractor failed to start: {e}"),
        }
    }
    Box::new(NoExtractor)
}

#[cfg(feature = "opencv")]
pub mod orb {
    //! ORB extraction from the palm pipeline.
    use super::{ExtractError, PalmExtractor};
    use crate::app::Guidance;
    use crate::camera::Frame;
    use palmline_shared::palm::extract::QualityError;

    pub struct OrbExtractor {
        inner: palmline_shared::palm::extract::Extractor,
    }

    impl OrbExtractor {
        pub fn new() -> Result<OrbExtractor, String> {
            let inner = palmline_shared::palm::extract::Extractor::new(Default::default())
                .map_err(|e| e.to_string())?;
            Ok(OrbExtractor { inner })
        }
    }

    impl PalmExtractor for OrbExtractor {
        fn name(&self) -> String {
            "orb (opencv)".into()
        }
        fn extract(&mut self, frame: &Frame) -> Result<Vec<u8>, ExtractError> {
            self.inner
                .extract(&frame.gray, frame.width, frame.height)
                .map(|t| t.encode())
                .map_err(|e| ExtractError::Quality {
                    guidance: guidance(&e),
                    why: e.to_string(),
                })
        }
    }

    /// What the shopper should change when the extractor turns a frame away.
    pub fn guidance(e: &QualityError) -> Guidance {
        match e {
            QualityError::NoHand => Guidance::NoHand,
            QualityError::TooDark => Guidance::TooDark,
            QualityError::TooBright => Guidance::TooBright,
            QualityError::TooClose => Guidance::TooClose,
            QualityError::TooFar => Guidance::TooFar,
            // Too few features: a palm out of focus or not held flat.
            QualityError::Blurry { .. } | QualityError::TooFewFeatures { .. } => Guidance::Blurry,
            QualityError::Internal(_) => Guidance::HoldStill,
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn every_rejection_has_its_own_guidance() {
            let cases = [
                (QualityError::NoHand, Guidance::NoHand),
                (QualityError::TooDark, Guidance::TooDark),
                (QualityError::TooBright, Guidance::TooBright),
                (QualityError::TooClose, Guidance::TooClose),
                (QualityError::TooFar, Guidance::TooFar),
                (
                    QualityError::Blurry {
                        sharpness: 0.1,
                        min: 0.35,
                    },
                    Guidance::Blurry,
                ),
            ];
            for (e, g) in cases {
                assert_eq!(guidance(&e), g, "{e}");
            }
            // A real frame: a black one is too dark, and the error says so.
            let mut x = OrbExtractor::new().unwrap();
            let f = Frame {
                gray: vec![0; 640 * 480],
                width: 640,
                height: 480,
                rgb: None,
                captured_at: std::time::Instant::now(),
            };
            assert!(matches!(
                x.extract(&f),
                Err(ExtractError::Quality {
                    guidance: Guidance::TooDark,
                    ..
                })
            ));
        }
    }
}
