//! JSONP and function-call wrappers with comments around or inside them: the argument alone
//! is the result, as it is without the comments.

use resilient_json::{RepairKind, repair, repair_with_report};
use serde_json::{Value, json};

#[track_caller]
fn check(input: &str, expected: Value) {
    let (out, report) = repair_with_report(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
    let got: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{out:?}: {e}"));
    assert_eq!(got, expected, "{input:?} gave {out:?}");
    assert!(
        report.contains(RepairKind::FunctionCall),
        "{input:?}: {:?}",
        report.repairs()
    );
    assert_eq!(repair(input).unwrap(), out);
}

#[test]
fn a_line_comment_before_the_argument() {
    check("cb( // note\n{\"a\": 1})", json!({"a": 1}));
    check("cb( // note\n{\"a\": 1});", json!({"a": 1}));
    check("cb(\n  // note\n  {\"a\": 1}\n);\n", json!({"a": 1}));
    check("cb(// x\n\"str\")", json!("str"));
    check("cb( // note\n[1, 2])", json!([1, 2]));
}

#[test]
fn a_block_comment_before_the_argument() {
    check("cb( /* note */ {\"a\": 1})", json!({"a": 1}));
    check("cb(/* a */ /* b */{\"a\": 1});", json!({"a": 1}));
    check("cb(/* x */ 2 /* y */)", json!(2));
    check("cb(/* x */ true)", json!(true));
}

#[test]
fn comments_between_the_name_and_the_parenthesis() {
    check("cb /* x */ ({\"a\": 1})", json!({"a": 1}));
    check("cb // x\n({\"a\": 1})", json!({"a": 1}));
}

#[test]
fn comments_after_the_argument_and_after_the_call() {
    check("cb({\"a\": 1} // c\n);", json!({"a": 1}));
    check("cb({\"a\": 1} /* c */ );", json!({"a": 1}));
    check("cb({\"a\": 1}); // done", json!({"a": 1}));
    check("cb({\"a\": 1}) /* done */ ;", json!({"a": 1}));
    check(
        "/* header */ callback_123( /* a */ [1, 2] /* b */ ); /* c */",
        json!([1, 2]),
    );
}

#[test]
fn comments_and_a_cut_off_call() {
    check("cb( // note\n{\"a\": 1}", json!({"a": 1}));
    check("cb( /* note */ {\"a\": [1, 2", json!({"a": [1, 2]}));
}

#[test]
fn the_comments_are_reported() {
    let input = "cb( // note\n{\"a\": 1})";
    let (_, report) = repair_with_report(input).unwrap();
    let comment = report
        .repairs()
        .iter()
        .find(|r| r.kind == RepairKind::Comment)
        .expect("a comment repair");
    assert_eq!(comment.position, input.find("//").unwrap());
    let call = report
        .repairs()
        .iter()
        .find(|r| r.kind == RepairKind::FunctionCall)
        .unwrap();
    assert_eq!(call.position, 0);
}

#[test]
fn calls_inside_values_take_comments_too() {
    check(
        "{\"d\": new Date(/* c */ \"2020\"), \"n\": NumberLong( // n\n7)}",
        json!({"d": "2020", "n": 7}),
    );
}

#[test]
fn text_that_is_not_a_call_stays_text() {
    // a word and a parenthesis holding several items is text, comment or not
    assert_eq!(repair("foo(1, 2)").unwrap(), r#""foo(1, 2)""#);
    assert_eq!(
        repair("{\"e\": foo(/* c */ 1, 2)}").unwrap(),
        r#"{"e": "foo(/* c */ 1, 2)"}"#
    );
    // a word followed by a comment and no parenthesis
    assert_eq!(repair("[a /* x */]").unwrap(), r#"["a" ]"#);
}
