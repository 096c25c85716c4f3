//! Code both the Palmline kiosk and server need: money, the API's wire types, and the palm
//! pipeline (template codec, pure-Rust matcher, synthetic palms; ORB extraction only behind
//! the `opencv` feature, which the server never enables).

pub mod api;
pub mod money;
pub mod palm;

pub use money::{Currency, Money, MoneyError};
