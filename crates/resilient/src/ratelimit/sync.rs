//! The atomic of a packed limiter's state ([`AtomicLimiter`](super::AtomicLimiter)): std's
//! normally, loom's under `cfg(loom)` (so that the loom model in `tests/loom_gcra.rs`
//! explores the interleavings of reservations and refunds).

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU64, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU64, Ordering};
