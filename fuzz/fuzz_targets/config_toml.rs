//! The server's TOML configuration: arbitrary text never panics; it is either refused with
//! an error or gives a configuration whose protections are on (no zero limits).
#![no_main]

use libfuzzer_sys::fuzz_target;
use palmline_server::config::ServerConfig;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(c) =
        ServerConfig::from_toml(Path::new("/nonexistent"), text, Path::new("/nonexistent"))
    {
        assert!(c.conn.max_connections >= 1);
        assert!(!c.conn.header_timeout.is_zero() && !c.conn.request_timeout.is_zero());
        assert!(c.palm.accept >= 2 && c.palm.grey >= 1 && c.palm.grey <= c.palm.accept);
        assert!(c.api.guesses.lock_after >= 1 && c.api.guesses.max_per_day >= 1);
    }
});
