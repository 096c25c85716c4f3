//! Decoding arbitrary bytes as a palm template must never panic, and whatever decodes must
//! re-encode to the same bytes and be comparable by the matcher.
#![no_main]

use libfuzzer_sys::fuzz_target;
use palmline_shared::palm::{Matcher, Template};

fuzz_target!(|data: &[u8]| {
    if let Ok(t) = Template::decode(data) {
        assert_eq!(t.encode(), data);
        let _ = Matcher::default().compare(&t, &t);
    }
});
