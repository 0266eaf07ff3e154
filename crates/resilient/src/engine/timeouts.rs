//! The timeout hierarchy a pipeline is configured with, as the engine and its guards see
//! it (the [`Timeout`](crate::timeout::Timeout) values that set it live with the timeout
//! strategy).

use std::time::Duration;

use crate::engine::error::ConfigError;

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
