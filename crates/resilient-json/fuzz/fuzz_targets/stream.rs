//! Fuzzes the stream repairer: the input is cut into chunks of sizes taken from its first
//! bytes (anywhere, even inside a character). It must never panic, every snapshot and the
//! final result must be JSON that serde_json accepts, and valid JSON must come back unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use resilient_json::Repairer;

/// serde_json stops at 128 levels of nesting: deeper text is not checked.
fn assert_json(text: &str) {
    let v: Result<serde::de::IgnoredAny, _> = serde_json::from_str(text);
    assert!(
        v.is_ok() || text.matches('[').count() + text.matches('{').count() > 100,
        "not JSON: {text:?}"
    );
}

fuzz_target!(|data: &[u8]| {
    let (sizes, body) = data.split_at(data.len().min(4));
    let mut r = Repairer::new();
    let mut rest = body;
    let mut k = 0;
    while !rest.is_empty() {
        let size = sizes.get(k % 4).map_or(rest.len(), |&s| usize::from(s % 16) + 1);
        let (chunk, tail) = rest.split_at(size.min(rest.len()));
        r.push_bytes(chunk);
        if let Some(s) = r.snapshot() {
            assert_json(&s);
        }
        rest = tail;
        k += 1;
    }
    match r.finish() {
        Ok(out) => {
            assert_json(&out);
            if let Ok(input) = std::str::from_utf8(body)
                && serde_json::from_str::<serde_json::Value>(input).is_ok()
            {
                assert_eq!(out, input, "valid JSON was changed");
            }
        }
        Err(e) => assert!(e.position() <= body.len()),
    }
});
