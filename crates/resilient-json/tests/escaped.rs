//! Fully escaped JSON without outer quotes (`{\"a\": 1}`, as logs and language models print
//! a JSON string's content): one level of escapes is removed (several for text escaped
//! several times) and the result is repaired; repair positions point into the input.

use proptest::prelude::*;
use resilient_json::{RepairKind, repair, repair_with_report};
use serde_json::{Value, json};

#[track_caller]
fn check(input: &str, expected: Value) {
    let (out, report) = repair_with_report(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
    let got: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{out:?}: {e}"));
    assert_eq!(got, expected, "{input:?} gave {out:?}");
    assert!(
        report.contains(RepairKind::StringifiedJson),
        "{input:?}: {:?}",
        report.repairs()
    );
    assert_eq!(repair(input).unwrap(), out);
}

/// The text of `v` escaped `levels` times, without the outer quotes.
fn escaped(text: &str, levels: usize) -> String {
    let mut t = text.to_owned();
    for _ in 0..levels {
        let quoted = serde_json::to_string(&t).unwrap();
        t = quoted[1..quoted.len() - 1].to_owned();
    }
    t
}

#[test]
fn nested_escapes_are_unescaped_once() {
    check(
        r#"{\"a\": 1, \"b\": {\"c\": \"x \\\"y\\\"\"}}"#,
        json!({"a": 1, "b": {"c": "x \"y\""}}),
    );
    check(
        r#"{\"path\": \"C:\\\\temp\", \"re\": \"\\\\d+\"}"#,
        json!({"path": "C:\\temp", "re": "\\d+"}),
    );
    check(
        r#"[{\"s\": \"line 1\\nline 2\", \"e\": \"\u00e9\"}]"#,
        json!([{"s": "line 1\nline 2", "e": "é"}]),
    );
}

#[test]
fn escaped_line_breaks_between_tokens() {
    check(
        r#"{\n  \"a\": 1,\n  \"b\": {\n    \"c\": \"x \\\"y\\\"\"\n  }\n}"#,
        json!({"a": 1, "b": {"c": "x \"y\""}}),
    );
    check(r#"[\n\t{\"k\": [\r\n1, 2]}\n]"#, json!([{"k": [1, 2]}]));
}

#[test]
fn several_escape_levels() {
    let v = json!({"a": 1, "b": {"c": "x \"y\"\n", "d": ["\\", "/"]}});
    for levels in 1..=3 {
        for text in [v.to_string(), serde_json::to_string_pretty(&v).unwrap()] {
            check(&escaped(&text, levels), v.clone());
        }
    }
    check(r#"{\\\"a\\\": \\\"b\\\"}"#, json!({"a": "b"}));
}

#[test]
fn escaped_json_with_other_defects() {
    check(r#"{\"a\": 1,}"#, json!({"a": 1}));
    check(
        r#"{\"a\": True, \"b\": [1, 2"#,
        json!({"a": true, "b": [1, 2]}),
    );
    check(
        "Here you go: {\\\"name\\\": \\\"Ada\\\"} Hope this helps",
        json!({"name": "Ada"}),
    );
    check("```json\n{\\\"a\\\": \\\"b\\\"}\n```", json!({"a": "b"}));
    // a raw line break inside a string of the escaped text is part of the value
    check("{\\\"a\\\": \\\"x\ny\\\"}", json!({"a": "x\ny"}));
}

#[test]
fn mixed_or_unescaped_quotes_are_left_to_the_string_rules() {
    // one bare quote: not escaped JSON as a whole
    assert_eq!(repair(r#"\"hello""#).unwrap(), r#""hello""#);
    // an escaped root string stays a string
    assert_eq!(repair(r#"\"hello\""#).unwrap(), r#""hello""#);
    // escaped text inside a valid string is kept
    let valid = r#"{"a": "{\"b\": 1}"}"#;
    assert_eq!(repair(valid).unwrap(), valid);
}

/// The character at `pos` in `escaped_input` is the one at `plain_pos` in `plain`, written
/// as is or as an escape sequence.
#[track_caller]
fn same_character(escaped_input: &str, pos: usize, plain: &str, plain_pos: usize) {
    let e = escaped_input.as_bytes()[pos];
    let p = plain.as_bytes()[plain_pos];
    assert!(
        e == p || (e == b'\\' && matches!(p, b'"' | b'\\' | b'\n')),
        "{:?} at {pos} is not {:?} at {plain_pos}",
        &escaped_input[pos..],
        &plain[plain_pos..]
    );
}

#[test]
fn repair_positions_point_into_the_input() {
    for plain in [
        "{\"a\": 1,}",
        "{\"a\": True, \"b\": [1, 2",
        "{\n  \"a\": 'x',\n  \"b\": None\n}",
        "[{\"k\": \"v\"} {\"k\": \"w\"},]",
    ] {
        for levels in 1..=2 {
            let input = escaped(plain, levels);
            let (_, want) = repair_with_report(plain).unwrap();
            let (_, got) = repair_with_report(&input).unwrap();
            let got: Vec<_> = got
                .repairs()
                .iter()
                .filter(|r| r.kind != RepairKind::StringifiedJson)
                .collect();
            assert_eq!(got.len(), want.repairs().len(), "{input:?}");
            for (g, w) in got.iter().zip(want.repairs()) {
                assert_eq!(g.kind, w.kind, "{input:?}");
                if w.position < plain.len() {
                    same_character(&input, g.position, plain, w.position);
                } else {
                    assert_eq!(g.position, input.len(), "{input:?}");
                }
            }
        }
    }
    // the unescaping is reported at the first escaped quote
    let (_, report) = repair_with_report(r#"  {\"a\": 1}"#).unwrap();
    assert!(report.repairs().contains(&resilient_json::Repair {
        kind: RepairKind::StringifiedJson,
        position: 3
    }));
}

#[test]
fn error_positions_point_into_the_input() {
    for (input, position) in [
        (r#"{\"a\": 1, :2}"#, 11),
        (r#"{\"a\": \"\\u12zz\"}"#, 10),
        (r#"{\\\"a\\\": \\\"\\\\u12zz\\\"}"#, 16),
    ] {
        let e = repair(input).unwrap_err();
        assert_eq!(e.position(), position, "{input:?}: {e}");
        assert_eq!(repair_with_report(input).unwrap_err(), e);
    }
}

/// Arbitrary objects (the first token after the brace is a key, so the text is recognised).
fn object() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i32>().prop_map(Value::from),
        r#"[a-z "\\/\n\t'{}\[\],:é]{0,8}"#.prop_map(Value::String),
    ];
    let value = leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z\"\\\\ ]{0,4}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    });
    prop::collection::btree_map("[a-z\"\\\\ ]{0,4}", value, 1..4)
        .prop_map(|m| Value::Object(m.into_iter().collect()))
}

/// JSON-like text, valid or not, escaped once or twice: the engine never fails inside, the
/// output is JSON, and every position lies within the input.
fn escaped_jsonish() -> impl Strategy<Value = String> {
    let part = prop_oneof![
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
        Just("True"),
        Just("\\u12"),
        Just("\\ud800"),
        Just("/*"),
        Just("//"),
        Just("f("),
        Just(")"),
    ];
    (prop::collection::vec(part, 0..30), 1..=2usize).prop_map(|(parts, levels)| {
        // `{"` first, so that the escaped text is recognised as escaped JSON
        escaped(&format!("{{\"{}", parts.concat()), levels)
    })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 1000,
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x0e5c_a9ee),
        ..ProptestConfig::default()
    })]

    #[test]
    fn escaped_jsonish_text_gives_json_or_an_error(input in escaped_jsonish()) {
        match repair_with_report(&input) {
            Ok((out, report)) => {
                prop_assert!(serde_json::from_str::<Value>(&out).is_ok(), "{:?} -> {:?}", input, out);
                prop_assert_eq!(repair(&out).unwrap(), out);
                for r in report.repairs() {
                    prop_assert!(r.position <= input.len(), "{:?}: {:?}", input, r);
                }
            }
            Err(e) => {
                prop_assert_ne!(e.kind(), resilient_json::RepairErrorKind::Internal, "{:?}", input);
                prop_assert!(e.position() <= input.len());
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 1000,
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x0e5c_a9ed),
        ..ProptestConfig::default()
    })]

    #[test]
    fn escaped_json_gives_back_its_value(
        v in object(),
        levels in 1..=3usize,
        pretty in any::<bool>(),
    ) {
        let text = if pretty { serde_json::to_string_pretty(&v) } else { serde_json::to_string(&v) }.unwrap();
        let input = escaped(&text, levels);
        let out = repair(&input).unwrap();
        let got: Value = serde_json::from_str(&out).unwrap();
        prop_assert_eq!(got, v, "{:?} -> {:?}", input, out);
    }
}
