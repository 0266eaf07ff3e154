//! Large and adversarial inputs are repaired in linear time. The bounds are generous (2 s
//! in a debug build for about 1 MiB) so that the test is reliable on a busy machine; a
//! quadratic engine needs minutes on these inputs.

use std::time::{Duration, Instant};

use resilient_json::repair;

const MIB: usize = 1 << 20;
const BOUND: Duration = Duration::from_secs(2);

/// Times `repair` on `input`, which may be repaired or rejected.
#[track_caller]
fn handled_quickly(name: &str, input: &str) {
    let start = Instant::now();
    let _ = repair(input);
    let took = start.elapsed();
    eprintln!("{name}: {} bytes in {took:?}", input.len());
    assert!(took < BOUND, "{name}: {} bytes took {took:?}", input.len());
}

#[track_caller]
fn repaired_quickly(name: &str, input: &str) -> String {
    let start = Instant::now();
    let out = repair(input).unwrap_or_else(|e| panic!("{name}: {e}"));
    let took = start.elapsed();
    eprintln!("{name}: {} bytes in {took:?}", input.len());
    assert!(took < BOUND, "{name}: {} bytes took {took:?}", input.len());
    out
}

#[test]
fn a_mebibyte_of_trailing_commas() {
    let items = "1,".repeat(MIB / 2);
    let out = repaired_quickly("items with trailing comma", &format!("[{items}]"));
    assert_eq!(out.len(), MIB + 1);

    let commas = ",".repeat(MIB);
    assert_eq!(
        repaired_quickly("comma run in array", &format!("[1{commas}]")),
        "[1]"
    );
    assert_eq!(
        repaired_quickly("comma run in object", &format!("{{\"a\":1{commas}}}")),
        "{\"a\":1}"
    );
    assert_eq!(
        repaired_quickly("comma run after root", &format!("[1]{commas}")),
        "[1]"
    );

    let nested = "[1,],".repeat(MIB / 5);
    let out = repaired_quickly("many nested trailing commas", &format!("[{nested}]"));
    assert!(out.starts_with("[[1],[1]"));
}

#[test]
fn deep_nesting() {
    let n = 200_000;
    let open = "[".repeat(n);
    let out = repaired_quickly("unclosed arrays", &open);
    assert_eq!(out, format!("{open}{}", "]".repeat(n)));

    let objects = "{\"a\":".repeat(n);
    let out = repaired_quickly("unclosed objects", &objects);
    assert!(out.ends_with(&format!("null{}", "}".repeat(n))));

    let balanced = format!("{}{}", "[".repeat(n), "]".repeat(n));
    assert_eq!(repaired_quickly("balanced", &balanced), balanced);

    let mixed = format!("{}1{}", "[{\"a\":(".repeat(n / 4), ")".repeat(n / 4));
    repaired_quickly("mixed", &mixed);
}

#[test]
fn long_ndjson() {
    let line = "{\"id\": 12345, \"name\": \"item\", \"tags\": [\"a\", \"b\"]}\n";
    let n = MIB / line.len();
    let out = repaired_quickly("ndjson", &line.repeat(n));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v.as_array().map(Vec::len), Some(n));
}

#[test]
fn adversarial_strings() {
    let n = MIB / 4;
    for (name, input) in [
        (
            "quotes followed by text",
            format!("{{\"a\": \"{}}}", "x \"".repeat(n)),
        ),
        (
            "commas before quotes",
            format!("{{\"a\": \"{}}}", "x, \"".repeat(n)),
        ),
        ("unterminated strings", format!("[{}", "\"a, ".repeat(n))),
        ("single quotes", format!("[{}", "'a' b".repeat(n))),
        (
            "brackets in strings",
            format!("[\"{}\"]", "([{\"".repeat(n)),
        ),
        (
            "stray words",
            format!("{{{}}}", "a b \"c\": 1, ".repeat(n / 2)),
        ),
        (
            "unquoted with parens",
            format!("[{}]", "f(1, 2) ".repeat(n / 2)),
        ),
        ("many fences", "```json\n[1]\n``` text ".repeat(n / 8)),
        ("escapes", format!("\"{}\"", "\\u00e9\\q\\".repeat(n / 4))),
        ("prose", format!("{} {{\"a\": 1}}", "word ".repeat(n))),
    ] {
        handled_quickly(name, &input);
    }
}

/// The fastest of `runs` repairs of `prefix` followed by `unit` repeated to about `bytes`.
fn best_time(prefix: &str, unit: &str, bytes: usize, runs: usize) -> Duration {
    let input = format!("{prefix}{}", unit.repeat(bytes / unit.len()));
    (0..runs)
        .map(|_| {
            let start = Instant::now();
            let _ = repair(&input);
            start.elapsed()
        })
        .min()
        .unwrap_or_default()
}

/// `true` when repairing 4 times the input takes clearly more than 4 times as long: a
/// linear engine needs about 4 times (up to 6 with cache effects), a quadratic one 16 times.
/// The fastest of several runs, a factor of 10 and a small absolute allowance keep a busy
/// machine from failing the test.
fn superlinear(prefix: &str, unit: &str) -> (bool, Duration, Duration) {
    const N: usize = 128 << 10;
    let small = best_time(prefix, unit, N, 3);
    let large = best_time(prefix, unit, 4 * N, 2);
    (large > small * 10 + Duration::from_millis(30), small, large)
}

/// Repetitive shapes found by a search for superlinear behaviour (every ASCII punctuation
/// character, keyword fragments, quotes, brackets and comments, with and without whitespace,
/// at the root and inside arrays, objects and strings).
#[test]
fn repetitive_shapes_are_linear() {
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
        let (mut slow, mut small, mut large) = superlinear(prefix, unit);
        if slow {
            // measure again before calling it superlinear: the machine may have been busy
            (slow, small, large) = superlinear(prefix, unit);
        }
        eprintln!("{prefix:?} + {unit:?}: {small:?} -> {large:?} for 4x the input");
        assert!(
            !slow,
            "{prefix:?} + {unit:?} repeated: {small:?} for 128 KiB but {large:?} for 512 KiB"
        );
        let input = format!("{prefix}{}", unit.repeat(MIB / unit.len()));
        handled_quickly(&format!("{prefix:?} + {unit:?}"), &input);
    }
}
