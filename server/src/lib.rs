//! The Palmline server library: the ledger store, the HTTP API over mutual TLS, the PKI and
//! the operator client. `main.rs` is a thin CLI over this.

pub mod api;
pub mod auth;
pub mod client;
pub mod config;
pub mod conn;
pub mod follow;
pub mod identify;
pub mod ledger;
pub mod limits;
pub mod logs;
pub mod metrics;
pub mod palm;
pub mod pki;
pub mod retention;
pub mod serve;
pub mod store;
pub mod throttle;
pub mod tls;
