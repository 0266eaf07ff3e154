//! The atomics of the packed limiters' state word and of their configuration cell: std's
//! normally, loom's under `cfg(loom)` (so that the loom model in `tests/loom_gcra.rs`
//! explores the interleavings of GCRA reservations and their refunds).

#[cfg(loom)]
pub(crate) use loom::hint::spin_loop;
#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU64, Ordering, fence};
#[cfg(not(loom))]
pub(crate) use std::hint::spin_loop;
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU64, Ordering, fence};
