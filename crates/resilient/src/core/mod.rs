//! The execution core: clock, randomness, errors, context, classification, the guard seam
//! and the pipeline engine.

pub(crate) mod clock;
pub(crate) mod context;
pub(crate) mod error;
pub(crate) mod guard;
pub(crate) mod outcome;
pub(crate) mod pipeline;
pub(crate) mod random;
