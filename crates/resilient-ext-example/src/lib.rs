//! An example extension crate for `resilient`: it registers the pattern `example-retry`
//! with [`resilient::register_pattern!`], and an application that depends on it finds the
//! pattern by name with no call of its own (naming the crate once, as any dependency is
//! named, so that it is linked: `use resilient_ext_example as _;`).
//!
//! ```
//! use resilient_ext_example as _;
//!
//! let p = resilient::registry().pipeline("example-retry(attempts = 2)").unwrap();
//! assert_eq!(p.stages(), ["Retry"]);
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use resilient::registry::{AnyPipeline, Params};
use resilient::{ConfigError, Retry};
use std::time::Duration;

/// The pattern's name.
pub const NAME: &str = "example-retry";

/// Builds the `example-retry` pattern: a constant backoff retry.
///
/// ```
/// let params = resilient::registry::Params::new();
/// let p = resilient_ext_example::build(&params).unwrap();
/// assert_eq!(p.stages(), ["Retry"]);
/// ```
pub fn build(params: &Params) -> Result<AnyPipeline, ConfigError> {
    let attempts = params.u32("attempts", 3)?;
    let delay = params.duration("delay", Duration::from_millis(10))?;
    Ok(resilient::registry::builder()
        .retry(Retry::constant(delay).attempts(attempts))
        .build()?
        .into())
}

resilient::register_pattern! {
    name: NAME,
    description: "an example extension: a constant backoff retry",
    params: [
        attempts = "3": "total attempts, the first included",
        delay = "\"10ms\"": "wait between attempts",
    ],
    factory: build,
}
