//! The atomics of the breaker's state machine: std's normally, loom's under `cfg(loom)`
//! (so that the loom model in `tests/loom_circuit.rs` explores their interleavings).

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
