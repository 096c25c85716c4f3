//! The Palmline kiosk: the state machine ([`app`]), the API client ([`api`]), camera
//! sources ([`camera`]), the capture quality gate ([`quality`]), template extraction
//! ([`extract`]), the capture thread ([`worker`]) and the Slint UI glue ([`ui`]).

pub mod api;
pub mod app;
pub mod bench;
pub mod camera;
pub mod config;
pub mod demo;
pub mod extract;
pub mod quality;
pub mod runtime;
pub mod server_proc;
pub mod ui;
pub mod worker;

slint::include_modules!();
