//! Template extraction behind a small trait, so the capture worker does not care whether
//! templates come from OpenCV ORB (`palmline_shared::palm::extract`, feature `opencv`) or,
//! in a build without it, from nowhere (capture then says extraction is unavailable).
//!
//! Whatever the implementation, only the encoded template leaves this module: the frame
//! it came from stays on the kiosk.

use crate::camera::Frame;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExtractError {
    /// This frame is not good enough (no palm found, too few keypoints): try another.
    #[error("frame rejected: {0}")]
    Quality(String),
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
    use crate::camera::Frame;

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
                .map_err(|e| ExtractError::Quality(e.to_string()))
        }
    }
}
