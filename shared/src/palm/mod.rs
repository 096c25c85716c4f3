//! The palm pipeline: synthetic palms, templates, the matcher and (feature `opencv`)
//! extraction. Filled in by the palm pipeline work.
