//! A second crate registering a name the extension crate registered: an error naming both.

use resilient::registry::{AnyPipeline, Params, RegistryError};
// Links the extension crate, as any application using it does.
use resilient_ext_example as _;

fn mine(_: &Params) -> Result<AnyPipeline, resilient::ConfigError> {
    Ok(resilient::registry::builder().build()?.into())
}

resilient::register_pattern! {
    name: "example-retry",
    description: "clashes with the extension crate's",
    params: [],
    factory: mine,
}

#[test]
fn a_name_registered_by_two_crates_is_an_error_naming_both() {
    let err = resilient::registry().pipeline("example-retry").unwrap_err();
    let RegistryError::Collision {
        name,
        first,
        second,
    } = &err
    else {
        panic!("{err:?}");
    };
    assert_eq!(name, "example-retry");
    let mut crates = [*first, *second];
    crates.sort();
    assert_eq!(crates, ["resilient-ext-app", "resilient-ext-example"]);
    assert!(err.to_string().contains("`resilient-ext-app`"), "{err}");
    assert!(resilient::registry::patterns().is_err());
    // other names are unaffected
    assert!(resilient::registry().pipeline("network").is_ok());
}
