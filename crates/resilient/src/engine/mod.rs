//! The engine's lower layer: clock, randomness, errors, context, classification, the
//! failed-attempt types, the timeout hierarchy and the guard seam and the telemetry event model. It imports no strategy
//! module; strategies and the pipeline build on it.

pub(crate) mod attempt;
pub(crate) mod clock;
pub(crate) mod context;
pub(crate) mod count;
pub(crate) mod error;
pub(crate) mod guard;
pub(crate) mod outcome;
pub(crate) mod random;
pub(crate) mod telemetry;
pub(crate) mod timeouts;
