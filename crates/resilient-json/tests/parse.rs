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
