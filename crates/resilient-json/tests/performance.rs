//! Large and adversarial inputs are repaired in linear time. No test asserts a wall-clock
//! duration: each shape is timed at one size and at eight times that size, taking the
//! fastest of several runs, and the larger must take at most sixteen times as long (a linear
//! engine needs about eight, a quadratic one sixty-four). A ratio of best times does not
//! depend on how fast or how busy the machine is.

use std::time::{Duration, Instant};

use resilient_json::repair;

const MIB: usize = 1 << 20;

/// Held by each test for its whole run: tests running in parallel would time each other
/// (a test's large repairs compete for the cores with another's measurement).
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The smaller size of the linearity check, in bytes. Below about 128 KiB the working set
/// fits in the processor caches and the ratio to a larger input grows beyond eight for
/// reasons that have nothing to do with the engine.
const BASE: usize = 128 << 10;

/// The fastest of `runs` repairs of `input`.
fn best_of(input: &str, runs: usize) -> Duration {
    (0..runs)
        .map(|_| {
            let start = Instant::now();
            let _ = repair(input);
            start.elapsed()
        })
        .min()
        .unwrap_or_default()
}

/// Checks that `make(n)`, an input of about `n` bytes, is repaired in time linear in `n`:
/// at `8 * BASE` bytes at most 16 times as long as at `BASE` bytes (a quadratic engine takes
/// 64 times as long; the margin absorbs cache effects and a busy machine). Each size's time
/// is the fastest of several runs, and a failing shape is measured up to four times before
/// the test fails. A small absolute allowance covers timer resolution.
#[track_caller]
fn linear(name: &str, make: impl Fn(usize) -> String) {
    let small_input = make(BASE);
    let large_input = make(8 * BASE);
    let mut last = (Duration::ZERO, Duration::ZERO);
    for _ in 0..4 {
        let small = best_of(&small_input, 5);
        let large = best_of(&large_input, 3);
        last = (small, large);
        if large <= small * 16 + Duration::from_micros(500) {
            eprintln!("{name}: {small:?} -> {large:?} for 8x the input");
            return;
        }
    }
    let (small, large) = last;
    panic!(
        "{name}: {} bytes took {small:?} but {} bytes took {large:?}",
        small_input.len(),
        large_input.len()
    );
}

/// `prefix`, then `unit` repeated to about `n` bytes, then `suffix`.
fn shape<'a>(prefix: &'a str, unit: &'a str, suffix: &'a str) -> impl Fn(usize) -> String + 'a {
    move |n| format!("{prefix}{}{suffix}", unit.repeat((n / unit.len()).max(1)))
}

/// Repairs `input`, which must succeed.
#[track_caller]
fn repaired(name: &str, input: &str) -> String {
    repair(input).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn trailing_commas() {
    let _serial = serial();
    let items = "1,".repeat(MIB / 2);
    let out = repaired("items with trailing comma", &format!("[{items}]"));
    assert_eq!(out.len(), MIB + 1);
    let commas = ",".repeat(MIB);
    assert_eq!(
        repaired("comma run in array", &format!("[1{commas}]")),
        "[1]"
    );
    assert_eq!(
        repaired("comma run in object", &format!("{{\"a\":1{commas}}}")),
        "{\"a\":1}"
    );
    assert_eq!(
        repaired("comma run after root", &format!("[1]{commas}")),
        "[1]"
    );
    let nested = "[1,],".repeat(MIB / 5);
    let out = repaired("many nested trailing commas", &format!("[{nested}]"));
    assert!(out.starts_with("[[1],[1]"));

    linear("items with trailing comma", shape("[", "1,", "]"));
    linear("comma run in array", shape("[1", ",", "]"));
    linear("comma run in object", shape("{\"a\":1", ",", "}"));
    linear("comma run after root", shape("[1]", ",", ""));
    linear("many nested trailing commas", shape("[", "[1,],", "]"));
}

#[test]
fn deep_nesting() {
    let _serial = serial();
    let n = 200_000;
    let open = "[".repeat(n);
    let out = repaired("unclosed arrays", &open);
    assert_eq!(out, format!("{open}{}", "]".repeat(n)));
    let objects = "{\"a\":".repeat(n);
    let out = repaired("unclosed objects", &objects);
    assert!(out.ends_with(&format!("null{}", "}".repeat(n))));
    let balanced = format!("{}{}", "[".repeat(n), "]".repeat(n));
    assert_eq!(repaired("balanced", &balanced), balanced);

    linear("unclosed arrays", shape("", "[", ""));
    linear("unclosed objects", shape("", "{\"a\":", ""));
    linear("balanced", |n| {
        format!("{}{}", "[".repeat(n / 2), "]".repeat(n / 2))
    });
    linear("mixed", |n| {
        format!("{}1{}", "[{\"a\":(".repeat(n / 8), ")".repeat(n / 8))
    });
}

#[test]
fn long_ndjson() {
    let _serial = serial();
    let line = "{\"id\": 12345, \"name\": \"item\", \"tags\": [\"a\", \"b\"]}\n";
    let n = MIB / line.len();
    let out = repaired("ndjson", &line.repeat(n));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v.as_array().map(Vec::len), Some(n));
    linear("ndjson", shape("", line, ""));
}

#[test]
fn adversarial_strings() {
    let _serial = serial();
    linear("quotes followed by text", shape("{\"a\": \"", "x \"", "}"));
    linear("commas before quotes", shape("{\"a\": \"", "x, \"", "}"));
    linear("unterminated strings", shape("[", "\"a, ", ""));
    linear("single quotes", shape("[", "'a' b", ""));
    linear("brackets in strings", shape("[\"", "([{\"", "\"]"));
    linear("stray words", shape("{", "a b \"c\": 1, ", "}"));
    linear("unquoted with parens", shape("[", "f(1, 2) ", "]"));
    linear("many fences", shape("", "```json\n[1]\n``` text ", ""));
    linear("escapes", shape("\"", "\\u00e9\\q\\", "\""));
    linear("prose", shape("", "word ", " {\"a\": 1}"));
}

/// Repetitive shapes found by a search for superlinear behaviour (every ASCII punctuation
/// character, keyword fragments, quotes, brackets and comments, with and without whitespace,
/// at the root and inside arrays, objects and strings).
#[test]
fn repetitive_shapes_are_linear() {
    let _serial = serial();
    for (prefix, unit) in [
        // stray characters between whitespace inside an array: pending whitespace was
        // written and taken back for each of them
        ("[", " ;"),
        ("[", " :"),
        ("[", " ="),
        ("[", " \\"),
        ("[\"a\"", " + "),
        ("```json\n[", ": "),
        // each unquoted item looked up to 256 bytes ahead for an end quote
        ("[\"", "a,"),
        ("{", "a,"),
        ("{\"a\": \"", "a,"),
        // comparison shapes that were linear already
        ("[", "1,"),
        ("{\"a\": ", "+1"),
        ("(", "..., "),
    ] {
        linear(&format!("{prefix:?} + {unit:?}"), shape(prefix, unit, ""));
    }
}

/// Escaped JSON (unescaped level by level), JSON that is valid but for raw control
/// characters (validated twice), and words or calls followed by comments (looked past for a
/// parenthesis).
#[test]
fn escaped_json_raw_controls_and_commented_calls_are_linear() {
    let _serial = serial();
    let once = "{\\\"k\\\": \\\"x \\\\\\\"y\\\\\\\"\\\"}, ";
    let twice = serde_json::to_string(once).unwrap();
    let twice = twice[1..twice.len() - 1].to_owned();
    let out = repaired("escaped", &format!("[{}1]", once.repeat(MIB / once.len())));
    assert!(out.starts_with(r#"[{"k": "x \"y\""}, "#), "{}", &out[..40]);
    for (name, prefix, unit, suffix) in [
        ("escaped JSON", "[", once, "1]"),
        ("escaped twice", "[", twice.as_str(), "1]"),
        ("escaped, cut off", "[", once, ""),
        (
            "escaped, line breaks",
            "{\\n",
            "\\\"a\\\": [1],\\n  ",
            "\\\"z\\\": 1}",
        ),
        ("raw controls", "[", "\"a\nb\t\", ", "1]"),
        ("raw controls, cut off", "[", "\"a\nb\t\", ", ""),
        ("words and comments", "[", "a /* c */ ", "]"),
        ("words and line comments", "[", "a // c\n", "]"),
        (
            "commented calls",
            "[",
            "f( /* c */ {\"a\": 1} // d\n), ",
            "]",
        ),
        ("unclosed comments", "[", "a /* ", ""),
    ] {
        linear(name, shape(prefix, unit, suffix));
        repaired(name, &shape(prefix, unit, suffix)(MIB));
    }
}
