//! The atomics of the bulkhead's slot counter and queue count: std's normally, loom's under
//! `cfg(loom)` (so that the loom model in `tests/loom_bulkhead.rs` explores the
//! interleavings of releases, arrivals and waiters leaving).

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU64, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU64, Ordering};
