//! Camera sources behind one trait: a real camera through nokhwa ([`device`]) and a
//! simulated one ([`sim`]) that plays generated palms or a folder of images.
//!
//! A source is created and used on the capture thread only (nokhwa's camera is not `Send`),
//! so the worker receives a factory, not a camera. Frames stay on the kiosk: only templates
//! extracted from them ever leave it.

pub mod device;
pub mod sim;

use std::time::Instant;

/// One camera frame: 8-bit grayscale for the pipeline, RGB for the preview when the
/// source has colour.
#[derive(Clone)]
pub struct Frame {
    pub width: u32,
    pub height: u32,
    pub gray: Vec<u8>,
    /// Packed RGB8, `width * height * 3`, if the source has colour.
    pub rgb: Option<Vec<u8>>,
    pub captured_at: Instant,
}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Frame({}x{})", self.width, self.height)
    }
}

impl Frame {
    pub fn from_gray(width: u32, height: u32, gray: Vec<u8>) -> Frame {
        assert_eq!(gray.len(), (width * height) as usize);
        Frame {
            width,
            height,
            gray,
            rgb: None,
            captured_at: Instant::now(),
        }
    }

    /// Grayscale from packed RGB (BT.601 luma, integer arithmetic).
    pub fn from_rgb(width: u32, height: u32, rgb: Vec<u8>) -> Frame {
        let gray = rgb
            .chunks_exact(3)
            .map(|p| {
                ((77 * u32::from(p[0]) + 150 * u32::from(p[1]) + 29 * u32::from(p[2])) >> 8) as u8
            })
            .collect();
        Frame {
            width,
            height,
            gray,
            rgb: Some(rgb),
            captured_at: Instant::now(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CameraError {
    /// No such camera (not plugged in).
    #[error("camera not found: {0}")]
    NotFound(String),
    /// The camera was there and went away, or stopped delivering frames.
    #[error("camera lost: {0}")]
    Lost(String),
    #[error("camera error: {0}")]
    Other(String),
}

/// A source of frames. `next_frame` blocks until the next frame (paced by the camera).
pub trait Camera {
    fn describe(&self) -> String;
    fn open(&mut self) -> Result<(), CameraError>;
    fn next_frame(&mut self) -> Result<Frame, CameraError>;
    fn close(&mut self);
}

/// What the worker tells diagnostics about the camera.
#[derive(Debug, Clone, PartialEq)]
pub enum CameraStatus {
    Starting,
    Running { source: String, fps: f32 },
    Reconnecting { error: String },
}

impl CameraStatus {
    pub fn text(&self) -> String {
        match self {
            CameraStatus::Starting => "starting".into(),
            CameraStatus::Running { source, fps } => format!("{source}, {fps:.1} fps"),
            CameraStatus::Reconnecting { error } => format!("reconnecting ({error})"),
        }
    }
}
