//! Invalid attributes are compile errors that point at the offending token.
//!
//! Regenerate the expected output with `TRYBUILD=overwrite cargo test -p resilient-macros
//! --test compile_fail` after a deliberate change of message (and review the diff).

#[test]
fn compile_errors() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/bad_arguments.rs");
    t.compile_fail("tests/ui/bad_functions.rs");
    t.compile_fail("tests/ui/bad_names.rs");
}
