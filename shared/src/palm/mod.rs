//! The palm pipeline: synthetic palms, templates and their codec, the pure-Rust matcher,
//! verification metrics, the seed's baseline matcher and (feature `opencv`) extraction.
//!
//! Architecture invariant: everything here but `extract` (and the OpenCV half of
//! `baseline`) is pure Rust, so the server links the codec and matcher without OpenCV.
//! See docs/PALM.md.

mod affine;
pub mod baseline;
#[cfg(feature = "opencv")]
pub mod extract;
pub mod hamming;
pub mod matcher;
pub mod metrics;
#[cfg(feature = "opencv")]
pub mod orient;
pub mod rng;
pub mod sharpness;
pub mod synth;
pub mod template;

pub use matcher::{Decision, DecisionPolicy, MatchResult, Matcher, MatcherConfig};
pub use template::{Keypoint, Template, TemplateError};
