//! Store-level helpers of the ledger tests (`store.rs`, `migrate.rs`): no server, no TLS.
#![allow(dead_code)]

use palmline_server::store::{Command, KioskRef, Outcome, Store};
use palmline_shared::{Currency, Money};

pub const EUR: Currency = Currency::EUR;

pub fn eur(minor: i64) -> Money {
    Money::from_minor(minor, EUR)
}

/// A runtime of two workers, as the server runs on these machines.
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Kiosk `k-MERCHANT` of `merchant`.
pub fn kiosk(merchant: &str) -> KioskRef {
    KioskRef {
        kiosk_id: format!("k-{merchant}"),
        merchant: merchant.to_string(),
    }
}

/// Registers shopper `name` without a PIN; its account id.
pub async fn register(store: &dyn Store, name: &str) -> i64 {
    register_as(store, name, None).await
}

/// Registers shopper `name` with a PIN; its account id.
pub async fn register_with_pin(store: &dyn Store, name: &str) -> i64 {
    let pin = "$argon2id$v=19$m=8,t=1,p=1$cGlucGlucGlu$aGFzaA";
    register_as(store, name, Some(pin)).await
}

async fn register_as(store: &dyn Store, name: &str, pin_hash: Option<&str>) -> i64 {
    let cmd = Command::RegisterShopper {
        username: name.into(),
        email: format!("{name}@example.com"),
        password_hash: "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaA".into(),
        pin_hash: pin_hash.map(str::to_string),
    };
    match store.execute(None, cmd).await.unwrap() {
        Outcome::Shopper(s) => s.id,
        o => panic!("unexpected {o:?}"),
    }
}
