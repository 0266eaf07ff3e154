//! Timeout hierarchies: per attempt (`operation`), per logical call (`request`) and the
//! breaker's time scale (`circuit`).
//!
//! `operation <= request <= circuit` is checked when the pipeline is built. The engine
//! enforces `operation` around each attempt and `request` around the whole call, including
//! retries, backoff waits and queueing in guards; nested pipelines inherit the tighter
//! deadline.

use std::time::Duration;

use crate::ConfigError;

/// One level of the timeout hierarchy.
///
/// Any positive duration is accepted, `Duration::MAX` included: a timeout longer than about
/// a hundred years never fires and counts as none (no deadline in the
/// [`Context`](crate::Context), no timer), so deadline sums never overflow at call time.
///
/// ```
/// use resilient::{Pipeline, Timeout};
/// use std::time::Duration;
/// let p = Pipeline::builder()
///     .timeout(Timeout::request(Duration::from_secs(30)))
///     .timeout(Timeout::operation(Duration::from_secs(5)))
///     .build()
///     .unwrap();
/// assert_eq!(p.timeouts().operation, Some(Duration::from_secs(5)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timeout {
    /// Bounds one attempt.
    Operation(Duration),
    /// Bounds the whole logical call, retries and waits included.
    Request(Duration),
    /// The circuit breaker's time scale (its window and longest open time).
    Circuit(Duration),
}

impl Timeout {
    /// A per-attempt timeout.
    pub fn operation(d: Duration) -> Self {
        Timeout::Operation(d)
    }

    /// A whole-call timeout.
    pub fn request(d: Duration) -> Self {
        Timeout::Request(d)
    }

    /// The breaker's time scale.
    pub fn circuit(d: Duration) -> Self {
        Timeout::Circuit(d)
    }
}

/// The configured timeout hierarchy of a pipeline.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timeouts {
    /// Per attempt.
    pub operation: Option<Duration>,
    /// Per logical call.
    pub request: Option<Duration>,
    /// The breaker's time scale.
    pub circuit: Option<Duration>,
}

impl Timeouts {
    /// The seed library's form: `timeout(operation, request, circuit)`.
    ///
    /// ```
    /// use resilient::Timeouts;
    /// use std::time::Duration;
    /// let t = Timeouts::hierarchy(
    ///     Duration::from_secs(5),
    ///     Duration::from_secs(30),
    ///     Duration::from_secs(300),
    /// );
    /// assert!(t.validate().is_ok());
    /// ```
    pub fn hierarchy(operation: Duration, request: Duration, circuit: Duration) -> Self {
        Self {
            operation: Some(operation),
            request: Some(request),
            circuit: Some(circuit),
        }
    }

    pub(crate) fn set(&mut self, t: Timeout) {
        match t {
            Timeout::Operation(d) => self.operation = Some(d),
            Timeout::Request(d) => self.request = Some(d),
            Timeout::Circuit(d) => self.circuit = Some(d),
        }
    }

    /// Checks each level is positive and `operation <= request <= circuit`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (name, v) in [
            ("timeout.operation", self.operation),
            ("timeout.request", self.request),
            ("timeout.circuit", self.circuit),
        ] {
            if v == Some(Duration::ZERO) {
                return Err(ConfigError::new(name, "must be greater than zero"));
            }
        }
        if let (Some(op), Some(req)) = (self.operation, self.request)
            && op > req
        {
            return Err(ConfigError::new(
                "timeout.operation",
                format!("must not exceed timeout.request ({op:?} > {req:?})"),
            ));
        }
        let upper = self.request.or(self.operation);
        if let (Some(inner), Some(circuit)) = (upper, self.circuit)
            && inner > circuit
        {
            return Err(ConfigError::new(
                "timeout.circuit",
                format!("must be at least the request timeout ({circuit:?} < {inner:?})"),
            ));
        }
        Ok(())
    }
}
