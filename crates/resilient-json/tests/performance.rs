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
