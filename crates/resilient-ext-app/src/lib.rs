//! An application crate that only depends on the extension crate `resilient-ext-example`:
//! its tests find the extension's pattern by name, with no registration call.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

// Links the extension crate (its patterns register themselves at link time).
use resilient_ext_example as _;

/// The pipeline the application uses, found by name in the program's registry.
///
/// ```
/// let p = resilient_ext_app::pipeline().unwrap();
/// assert_eq!(p.stages(), ["Retry"]);
/// ```
pub fn pipeline() -> Result<resilient::registry::NamedPipeline, resilient::registry::RegistryError>
{
    resilient::registry().pipeline("example-retry(attempts = 4)")
}
