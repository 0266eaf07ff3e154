//! Inputs that cannot be repaired give an error with a position and a message.

use resilient_json::{RepairErrorKind, repair};

#[track_caller]
fn fails(input: &str, kind: RepairErrorKind, position: usize) {
    let err = repair(input).expect_err(input);
    assert_eq!(err.kind(), kind, "{input:?}");
    assert_eq!(err.position(), position, "{input:?}");
    assert!(
        err.to_string()
            .ends_with(&format!("at position {position}")),
        "{err}"
    );
}

#[test]
fn nothing_to_repair() {
    fails("", RepairErrorKind::Empty, 0);
    fails("  \n\t", RepairErrorKind::Empty, 4);
    fails("/* only a comment */", RepairErrorKind::Empty, 20);
}

#[test]
fn structural_errors() {
    fails("{:2}", RepairErrorKind::ObjectKeyExpected, 1);
    fails("}", RepairErrorKind::UnexpectedCharacter('}'), 0);
    fails("1 : 2", RepairErrorKind::UnexpectedCharacter(':'), 2);
}

#[test]
fn invalid_unicode_escapes() {
    fails("\"\\uZ000\"", RepairErrorKind::InvalidUnicodeEscape, 1);
    fails("[\"\\u12\", 1]", RepairErrorKind::InvalidUnicodeEscape, 2);
}

#[test]
fn errors_are_std_errors() {
    let err: Box<dyn std::error::Error> = Box::new(repair("").unwrap_err());
    assert_eq!(err.to_string(), "no JSON value found at position 0");
}
