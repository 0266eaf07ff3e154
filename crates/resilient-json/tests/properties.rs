//! Properties that hold for every input.

use proptest::prelude::*;
use resilient_json::repair;
use serde_json::Value;

/// Arbitrary JSON values (small, so that serde_json's recursion limit is not reached).
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        (-1e9f64..1e9).prop_map(Value::from),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(".{0,6}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Text that looks a bit like JSON, to reach deeper into the engine than random text.
fn jsonish_text() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            Just("{"),
            Just("}"),
            Just("["),
            Just("]"),
            Just(","),
            Just(":"),
            Just("\""),
            Just("'"),
            Just("\\"),
            Just(" "),
            Just("\n"),
            Just("a"),
            Just("1"),
            Just("-"),
            Just("."),
            Just("e"),
            Just("true"),
            Just("None"),
            Just("/*"),
            Just("*/"),
            Just("//"),
            Just("#"),
            Just("("),
            Just(")"),
            Just("+"),
            Just("..."),
            Just("```"),
            Just("\u{201c}"),
            Just("\u{a0}"),
            Just("\\u12"),
            Just("NaN"),
            Just("f("),
        ],
        0..40,
    )
    .prop_map(|parts| parts.concat())
}

/// The output of `repair` must be strict JSON (in debug builds an engine bug shows up as an
/// `Internal` error, which must never happen).
fn assert_repairs_to_json(input: &str) {
    let result = repair(input);
    if let Err(e) = &result {
        assert_ne!(
            e.kind(),
            resilient_json::RepairErrorKind::Internal,
            "{input:?}"
        );
    }
    if let Ok(out) = result {
        assert!(
            serde_json::from_str::<Value>(&out).is_ok(),
            "{input:?} -> {out:?}"
        );
        // repairing again changes nothing
        assert_eq!(repair(&out).unwrap(), out);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn never_panics_and_output_is_json(input in any::<String>()) {
        assert_repairs_to_json(&input);
    }

    #[test]
    fn jsonish_input_gives_json_or_an_error(input in jsonish_text()) {
        assert_repairs_to_json(&input);
    }

    #[test]
    fn valid_json_is_unchanged(v in json_value(), pretty in any::<bool>()) {
        let text = if pretty { serde_json::to_string_pretty(&v) } else { serde_json::to_string(&v) }.unwrap();
        prop_assert_eq!(repair(&text).unwrap(), text);
    }

    #[test]
    fn truncated_json_is_completed(v in json_value(), cut in any::<prop::sample::Index>()) {
        let text = serde_json::to_string(&v).unwrap();
        let mut end = cut.index(text.len() + 1);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        let prefix = &text[..end];
        if prefix.trim().is_empty() {
            prop_assert!(repair(prefix).is_err());
        } else {
            let out = repair(prefix).unwrap();
            prop_assert!(serde_json::from_str::<Value>(&out).is_ok(), "{:?} -> {:?}", prefix, out);
        }
    }
}

/// A cut-off root string with a `{` before a trailing `+` (found by the truncation
/// property): the `+` is not a concatenation whose re-scan would end the string at the
/// `{`; the string is closed as it is.
#[test]
fn a_cut_off_root_string_with_a_brace_before_a_plus_is_closed() {
    for (input, expected) in [("\"{ +", "\"{ +\""), ("\"¡A¡{  +", "\"¡A¡{  +\"")] {
        assert_eq!(repair(input).unwrap(), expected, "{input}");
    }
    // a real concatenation still joins
    assert_eq!(repair("\"a\" + \"b\"").unwrap(), "\"ab\"");
}
