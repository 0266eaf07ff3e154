//! The stream repairer's work is linear in the stream length whatever the chunk sizes, and a
//! snapshot costs its output, not the input read. No test asserts a wall-clock duration: each
//! shape is timed at one size and at eight times that size (fastest of several runs), and the
//! larger must take at most sixteen times as long (a linear reader needs about eight, a
//! quadratic one sixty-four). The tests of this binary run one at a time, so that they do not
//! time each other.

use std::time::{Duration, Instant};

use resilient_json::Repairer;

static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The fastest of `runs` runs of `f`.
fn best_of(runs: usize, mut f: impl FnMut()) -> Duration {
    (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .min()
        .unwrap_or_default()
}

/// Checks that `time(n)` grows linearly: at `8 * n` at most 16 times as long as at `n`
/// (fastest of several runs, measured up to four times before failing, for a busy machine; a linear reader needs about 8, a
/// quadratic one 64). No wall-clock duration is asserted.
#[track_caller]
fn linear(name: &str, base: usize, time: impl Fn(usize) -> Duration) {
    let mut last = (Duration::ZERO, Duration::ZERO);
    for _ in 0..4 {
        let small = time(base);
        let large = time(8 * base);
        last = (small, large);
        if large <= small * 16 + Duration::from_micros(500) {
            eprintln!("{name}: {small:?} -> {large:?} for 8x the input");
            return;
        }
    }
    panic!(
        "{name}: {:?} at {base} bytes but {:?} at 8x",
        last.0, last.1
    );
}

/// An LLM-style document of about `n` bytes: an array of objects with strings, escapes,
/// numbers and literals.
fn document(n: usize) -> String {
    let item = r#"{"id": 12345, "name": "caf\u00e9 \"quoted\" 😀", "score": -1.5e3, "ok": true, "tags": ["a", "b"]}, "#;
    format!("```json\n[{}0]\n```", item.repeat(n / item.len()))
}

#[test]
fn pushes_take_linear_time_whatever_the_chunk_size() {
    let _serial = serial();
    let base = 128 << 10;
    // one byte at a time, then chunks of varying sizes (some inside characters)
    linear("1-byte chunks", base, |n| {
        let doc = document(n);
        best_of(3, || {
            let mut r = Repairer::new();
            for b in doc.as_bytes().chunks(1) {
                r.push_bytes(b);
            }
            assert!(r.finish().is_ok());
        })
    });
    linear("varying chunks", base, |n| {
        let doc = document(n);
        best_of(3, || {
            let mut r = Repairer::new();
            let mut rest = doc.as_bytes();
            let mut size = 1;
            while !rest.is_empty() {
                let (chunk, tail) = rest.split_at(size.min(rest.len()));
                r.push_bytes(chunk);
                rest = tail;
                size = size * 7 % 97 + 1;
            }
            assert!(r.finish().is_ok());
        })
    });
    // a very long word or unquoted string read one byte at a time
    linear("long unquoted string", base, |n| {
        let doc = format!("[{}]", "ab ".repeat(n / 3));
        best_of(3, || {
            let mut r = Repairer::new();
            for b in doc.as_bytes().chunks(1) {
                r.push_bytes(b);
            }
            assert!(r.finish().is_ok());
        })
    });
    linear("long word", base, |n| {
        let doc = format!("[{}]", "7".repeat(n));
        best_of(3, || {
            let mut r = Repairer::new();
            for b in doc.as_bytes().chunks(1) {
                r.push_bytes(b);
            }
            assert!(r.finish().is_ok());
        })
    });
}

#[test]
fn a_snapshot_costs_its_output_not_the_input_read() {
    let _serial = serial();
    // the same small output after a little or a lot of input (comments)
    let time = |n: usize| {
        let mut r = Repairer::new();
        r.push("{\"a\": [1, 2, 3],");
        r.push(&"/* ignored */".repeat(n / 13));
        r.push("\"b\": \"x");
        assert_eq!(r.snapshot().unwrap(), "{\"a\": [1, 2, 3],\"b\": \"x\"}");
        best_of(50, || {
            let s = r.snapshot().unwrap();
            assert!(s.ends_with("\"x\"}"));
        })
    };
    let (small, large) = (time(1 << 20), time(8 << 20));
    // reading the input again would take milliseconds for 8 MiB
    assert!(
        large <= small * 4 + Duration::from_micros(200),
        "{small:?} -> {large:?}"
    );
}
