//! `parse` deserializes strictly when it can and repairs only when it must.

use resilient_json::{ParseError, parse};
use serde::Deserialize;

#[derive(Debug, Deserialize, PartialEq)]
struct Item {
    name: String,
    tags: Vec<String>,
    price: Option<f64>,
}

#[test]
fn valid_input_is_parsed_strictly() {
    let item: Item = parse(r#"{"name": "pen", "tags": [], "price": 1.5}"#).unwrap();
    assert_eq!(
        item,
        Item {
            name: "pen".into(),
            tags: vec![],
            price: Some(1.5)
        }
    );
}

#[test]
fn malformed_input_is_repaired_then_parsed() {
    let input =
        "```json\n{name: 'pen', tags: ['blue', 'cheap',], price: None, // no price yet\n```";
    let item: Item = parse(input).unwrap();
    assert_eq!(
        item,
        Item {
            name: "pen".into(),
            tags: vec!["blue".into(), "cheap".into()],
            price: None
        }
    );
}

#[test]
fn truncated_input_is_completed() {
    let v: serde_json::Value = parse(r#"{"a": [1, 2, {"b": "c"#).unwrap();
    assert_eq!(v, serde_json::json!({"a": [1, 2, {"b": "c"}]}));
}

#[test]
fn errors_say_which_step_failed() {
    match parse::<Item>("") {
        Err(ParseError::Repair(e)) => assert_eq!(e.position(), 0),
        other => panic!("expected a repair error, got {other:?}"),
    }
    match parse::<Item>("{name: 'pen'}") {
        Err(ParseError::Json(e)) => assert!(e.to_string().contains("tags"), "{e}"),
        other => panic!("expected a serde error, got {other:?}"),
    }
}

#[test]
fn valid_json_of_the_wrong_type_is_not_repaired() {
    // strict parsing fails on the type, not the syntax: the serde error is returned as is,
    // with its position in the input
    let input = "{\n  \"name\": \"pen\",\n  \"tags\": \"blue\"\n}";
    match parse::<Item>(input) {
        Err(ParseError::Json(e)) => {
            assert_eq!(e.classify(), serde_json::error::Category::Data);
            assert_eq!((e.line(), e.column()), (3, 16), "{e}");
            let message = ParseError::Json(e).to_string();
            assert!(!message.contains("repaired"), "{message}");
        }
        other => panic!("expected a serde error, got {other:?}"),
    }
    assert!(matches!(parse::<u32>("[1, 2]"), Err(ParseError::Json(_))));
}

#[test]
fn a_type_error_in_malformed_input_still_repairs() {
    // serde meets the type error before the syntax error: the input is not valid JSON, so
    // it is still repaired (here NDJSON becomes the array the type asks for)
    let rows: Vec<serde_json::Value> = parse("{\"a\": 1}\n{\"a\": 2}\n").unwrap();
    assert_eq!(
        rows,
        [serde_json::json!({"a": 1}), serde_json::json!({"a": 2})]
    );
    // an object closed too early is missing a field until it is reopened
    let item: Item = parse(r#"{"name": "pen"}, "tags": ["x"], "price": 2}"#).unwrap();
    assert_eq!(item.tags, ["x"]);
}
