//! Every request body the server parses (the `palmline_shared::api` request types and the
//! money amounts inside them): arbitrary bytes never panic, and whatever parses survives a
//! round trip through JSON unchanged (what the server echoes back is what it understood).
#![no_main]

use libfuzzer_sys::fuzz_target;
use palmline_shared::api::*;
use palmline_shared::{Currency, Money};
use serde::{de::DeserializeOwned, Serialize};
use std::fmt::Debug;

fn round_trip<T: DeserializeOwned + Serialize + PartialEq + Debug>(data: &[u8]) {
    if let Ok(v) = serde_json::from_slice::<T>(data) {
        let again: T = serde_json::from_slice(&serde_json::to_vec(&v).unwrap()).unwrap();
        assert_eq!(again, v);
    }
}

fuzz_target!(|data: &[u8]| {
    round_trip::<RegisterShopper>(data);
    round_trip::<SessionRequest>(data);
    round_trip::<CashierSessionRequest>(data);
    round_trip::<DepositRequest>(data);
    round_trip::<WithdrawalRequest>(data);
    round_trip::<PaymentRequest>(data);
    round_trip::<TransferRequest>(data);
    round_trip::<PalmEnrollRequest>(data);
    round_trip::<PalmPaymentRequest>(data);
    round_trip::<FreezeRequest>(data);
    round_trip::<RefundRequest>(data);
    round_trip::<NewCashier>(data);
    round_trip::<CashierPinChange>(data);
    if let Ok(s) = std::str::from_utf8(data) {
        for c in [Currency::EUR, Currency::from_code("JPY").unwrap()] {
            if let Ok(m) = Money::parse(s, c) {
                assert_eq!(Money::parse(&m.amount_string(), c).ok(), Some(m), "{s:?}");
            }
        }
    }
});
