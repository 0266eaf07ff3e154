//! Fuzzes the client-side rate-limit header parsers: they must never panic, whatever the
//! bytes. Input: `name:value` lines, each fed to `ServerLimits::from_headers`, and the whole
//! input fed to each parser.
//!
//! Run: `RUSTC_BOOTSTRAP=1 cargo fuzz run headers -- -max_total_time=120`
//! (from `crates/resilient/fuzz`).
#![no_main]

use std::time::{Duration, UNIX_EPOCH};

use libfuzzer_sys::fuzz_target;
use resilient::ratelimit::headers::{
    ServerLimits, parse_ratelimit, parse_ratelimit_policy, parse_retry_after,
};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let _ = parse_retry_after(&text, now);
    let _ = parse_ratelimit(&text);
    let _ = parse_ratelimit_policy(&text);
    let headers: Vec<(&str, &str)> = text.lines().filter_map(|l| l.split_once(':')).collect();
    let limits = ServerLimits::from_headers(headers, now);
    let _ = limits.delay();
});
