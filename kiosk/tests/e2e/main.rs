//! End-to-end tests of the kiosk against a real server over mutual TLS.

mod common;
mod lost_response;
mod ui_flow;
