//! Support for the attribute macros of `resilient-macros`. Not public API: no stability
//! promise.

/// Maps a function's `Result<T, E>` return type, however it is spelled (an alias such as
/// `io::Result<T>` included), to `Result<T, Error<E>>`.
#[diagnostic::on_unimplemented(
    message = "a function with resilience attributes must return a `Result`, not `{Self}`",
    label = "not a `Result`"
)]
pub trait IntoResilient {
    /// The type callers see.
    type Output;
}

impl<T, E> IntoResilient for Result<T, E> {
    type Output = Result<T, crate::Error<E>>;
}

/// `Result<T, E>` as `Result<T, Error<E>>`.
pub type Resilient<R> = <R as IntoResilient>::Output;
