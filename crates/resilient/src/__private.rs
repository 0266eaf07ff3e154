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
    type Output = Result<T, crate::engine::error::Error<E>>;
}

/// The `T` and `E` of a function's `Result<T, E>` return type, however it is spelled (for
/// the `retry_if =` and `delay_from =` keys, whose wrappers name both).
pub trait ResultParts {
    /// `T`.
    type Ok;
    /// `E`.
    type Err;
}

impl<T, E> ResultParts for Result<T, E> {
    type Ok = T;
    type Err = E;
}

/// `Result<T, E>` as `Result<T, Error<E>>`.
pub type Resilient<R> = <R as IntoResilient>::Output;

/// How each attempt gets its own copy of an argument: a clone. A trait (rather than
/// `Clone::clone`) only for the message when an argument is not `Clone`.
#[diagnostic::on_unimplemented(
    message = "the arguments of a function with resilience attributes must be `Clone`, and `{Self}` is not",
    label = "each attempt runs the body on a fresh clone of this argument",
    note = "take a reference instead (references are `Copy`), or share the value in an `Arc`"
)]
pub trait AttemptArg: Sized {
    /// A copy for one attempt.
    fn attempt_clone(&self) -> Self;
}

impl<T: Clone> AttemptArg for T {
    #[inline(always)]
    fn attempt_clone(&self) -> Self {
        self.clone()
    }
}

/// The panic of a function whose resilience configuration `PipelineBuilder::build`
/// rejected: on every call, with the configuration error.
#[cold]
#[track_caller]
pub fn invalid_configuration(function: &str, error: &crate::engine::error::ConfigError) -> ! {
    panic!("invalid resilience configuration on `{function}`: {error}")
}

/// `breaker = PATH` of the attributes: a registry [`Name`](crate::registry::Name) (looked
/// up in the program's registry) or a `static` holding a breaker (used as it is).
pub trait ResolveBreaker {
    /// The breaker.
    fn resolve_breaker(
        &self,
    ) -> Result<crate::circuit::CircuitBreaker, crate::engine::error::ConfigError>;
}

impl ResolveBreaker for crate::circuit::CircuitBreaker {
    fn resolve_breaker(
        &self,
    ) -> Result<crate::circuit::CircuitBreaker, crate::engine::error::ConfigError> {
        Ok(self.clone())
    }
}

impl ResolveBreaker for crate::registry::Name {
    fn resolve_breaker(
        &self,
    ) -> Result<crate::circuit::CircuitBreaker, crate::engine::error::ConfigError> {
        Ok(crate::registry::registry().breaker(*self)?)
    }
}

/// `limiter = PATH`: a registry name or a `static` holding a limiter.
pub trait ResolveLimiter {
    /// The limiter.
    fn resolve_limiter(
        &self,
    ) -> Result<crate::ratelimit::RateLimiter, crate::engine::error::ConfigError>;
}

impl ResolveLimiter for crate::ratelimit::RateLimiter {
    fn resolve_limiter(
        &self,
    ) -> Result<crate::ratelimit::RateLimiter, crate::engine::error::ConfigError> {
        Ok(self.clone())
    }
}

impl ResolveLimiter for crate::registry::Name {
    fn resolve_limiter(
        &self,
    ) -> Result<crate::ratelimit::RateLimiter, crate::engine::error::ConfigError> {
        Ok(crate::registry::registry().limiter(*self)?)
    }
}

/// `bulkhead = PATH`: a registry name or a `static` holding a bulkhead.
pub trait ResolveBulkhead {
    /// The bulkhead.
    fn resolve_bulkhead(
        &self,
    ) -> Result<crate::bulkhead::Bulkhead, crate::engine::error::ConfigError>;
}

impl ResolveBulkhead for crate::bulkhead::Bulkhead {
    fn resolve_bulkhead(
        &self,
    ) -> Result<crate::bulkhead::Bulkhead, crate::engine::error::ConfigError> {
        Ok(self.clone())
    }
}

impl ResolveBulkhead for crate::registry::Name {
    fn resolve_bulkhead(
        &self,
    ) -> Result<crate::bulkhead::Bulkhead, crate::engine::error::ConfigError> {
        Ok(crate::registry::registry().bulkhead(*self)?)
    }
}
