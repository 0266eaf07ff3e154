//! Peak heap memory of a repair stays within a small multiple of the input, whatever its
//! shape: measured with a counting global allocator (this test binary only).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grow(n: usize) {
    let now = CURRENT.fetch_add(n, Ordering::SeqCst) + n;
    PEAK.fetch_max(now, Ordering::SeqCst);
}

// SAFETY: every call is forwarded to `System`; the counters do not affect allocation.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        grow(layout.size());
        // SAFETY: forwarded with the caller's layout
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        CURRENT.fetch_sub(layout.size(), Ordering::SeqCst);
        // SAFETY: forwarded with the caller's pointer and layout
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // counted as the change in size: large blocks are moved by remapping pages, so the
        // old and new blocks do not both occupy memory
        if new_size >= layout.size() {
            grow(new_size - layout.size());
        } else {
            CURRENT.fetch_sub(layout.size() - new_size, Ordering::SeqCst);
        }
        // SAFETY: forwarded with the caller's pointer, layout and size
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// The allocator is global: tests in this binary run one at a time, so that one test's
/// allocations do not count in another's peak.
static SERIAL: Mutex<()> = Mutex::new(());

const MIB: usize = 1 << 20;

/// Peak heap held during `repair(input)` beyond what was held before (the input itself is
/// not counted; the returned JSON is).
fn peak_of(input: &str) -> (usize, usize) {
    let before = CURRENT.load(Ordering::SeqCst);
    PEAK.store(before, Ordering::SeqCst);
    let out = resilient_json::repair(input);
    let peak = PEAK.load(Ordering::SeqCst) - before;
    let len = out.map_or(0, |s| s.len());
    (peak, len)
}

#[track_caller]
fn within_3x(name: &str, input: &str) {
    let (peak, out) = peak_of(input);
    let ratio = peak as f64 / input.len() as f64;
    eprintln!(
        "{name}: {} bytes in, {out} out, peak heap {peak} ({ratio:.2}x)",
        input.len()
    );
    assert!(
        peak <= 3 * input.len(),
        "{name}: peak heap {peak} for {} bytes of input ({ratio:.2}x)",
        input.len()
    );
}

fn sized(prefix: &str, unit: &str, suffix: &str) -> String {
    format!("{prefix}{}{suffix}", unit.repeat(MIB / unit.len()))
}

#[test]
fn deep_nesting_stays_within_three_times_the_input() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for (name, input) in [
        ("deep [", "[".repeat(MIB)),
        (
            "deep [ closed",
            format!("{}{}", "[".repeat(MIB / 2), "]".repeat(MIB / 2)),
        ),
        ("deep {\"a\":", sized("", "{\"a\":", "")),
        ("deep {\"a\": [", sized("", "{\"a\": [", "")),
        ("deep (", "(".repeat(MIB)),
        ("deep (1,", sized("", "(1,", "")),
        ("deep [{\"a\":(", sized("", "[{\"a\":(", "")),
        ("deep cb(", sized("", "cb(", "")),
        ("deep {a:[", sized("", "{a:[", "")),
        ("deep [\"a\":", sized("", "[\"a\":", "")),
        ("deep ((1,2),", sized("", "((1,2),", "")),
    ] {
        within_3x(name, &input);
    }
}

#[test]
fn flat_shapes_stay_within_three_times_the_input() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for (name, input) in [
        ("long string", sized("[\"", "abcdefgh", "\"]")),
        ("long unterminated string", sized("[\"", "abcdefgh", "")),
        ("many numbers", sized("[", "1,", "]")),
        ("many small strings", sized("[", "\"a\",", "")),
        ("many unquoted words", sized("[", "a,", "")),
        ("many members", sized("{", "\"a\": 1, ", "}")),
        ("many unquoted keys", sized("{", "a: 1, ", "")),
        ("python literals", sized("[", "True, None, ", "]")),
        ("single quotes", sized("[", "'a', ", "]")),
        ("comments", sized("[1", "/* c */ ", "]")),
        ("whitespace", sized("[1", " ", "")),
        ("ndjson", sized("", "{\"a\": 1}\n", "")),
        ("tuples", sized("[", "(1, 2), ", "]")),
        ("keys in arrays", sized("[", "[\"a\": 1], ", "]")),
    ] {
        within_3x(name, &input);
    }
}

/// Shapes whose repaired JSON is itself larger than twice the input (`{` becomes `{},`, a raw
/// control character `\u0001`): no repair can hold less than its output, so the bound is the
/// output plus the slack of a growing buffer, not a multiple of the input.
#[test]
fn expanding_shapes_hold_little_beyond_their_output() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for (name, input) in [
        ("empty objects", sized("[", "{", "")),
        ("control characters", sized("[\"", "\u{1}", "\"]")),
    ] {
        let (peak, out) = peak_of(&input);
        eprintln!(
            "{name}: {} bytes in, {out} out, peak heap {peak}",
            input.len()
        );
        assert!(out > 2 * input.len(), "{name}: output {out}");
        assert!(
            peak <= out + out / 2 + input.len(),
            "{name}: peak heap {peak} for {} bytes in, {out} out",
            input.len()
        );
    }
}

/// Escaped JSON holds the unescaped copy besides the output; raw control characters in
/// otherwise valid JSON are validated twice.
#[test]
fn escaped_json_and_raw_controls_stay_within_three_times_the_input() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for (name, input) in [
        (
            "escaped JSON",
            sized("[", "{\\\"k\\\": \\\"x\\\\\\\"y\\\"}, ", "1]"),
        ),
        ("escaped twice", {
            let once = sized("[", "{\\\"k\\\": \\\"v\\\"}, ", "1]");
            let twice = serde_json::to_string(&once).unwrap();
            twice[1..twice.len() - 1].to_owned()
        }),
        ("escaped, cut off", sized("[", "{\\\"k\\\": [1, ", "")),
        ("raw line breaks", sized("[", "\"a\nb\", ", "1]")),
        (
            "commented calls",
            sized("[", "f( /* c */ {\"a\": 1} // d\n), ", "]"),
        ),
    ] {
        within_3x(name, &input);
    }
}
