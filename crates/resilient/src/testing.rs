//! Tools for testing code that uses resilience strategies deterministically: the manual
//! clock and seeded randomness our own tests use, and a scripted flaky operation.
//!
//! ```
//! use resilient::testing::Script;
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let script = Script::new([Err("down"), Err("down"), Ok(7)]);
//! assert_eq!(script.next().await, Err("down"));
//! assert_eq!(script.calls(), 1);
//! # }
//! ```

pub use crate::engine::clock::ManualClock;
pub use crate::engine::random::SeededRandom;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

/// A scripted operation: each call returns the next scripted result; after the script
/// runs out, the last result repeats. Clones share the script.
#[derive(Debug, Clone)]
pub struct Script<T, E> {
    steps: Arc<Mutex<VecDeque<Result<T, E>>>>,
    calls: Arc<AtomicU32>,
}

impl<T: Clone, E: Clone> Script<T, E> {
    /// A script of results, returned in order.
    pub fn new(steps: impl IntoIterator<Item = Result<T, E>>) -> Self {
        Self {
            steps: Arc::new(Mutex::new(steps.into_iter().collect())),
            calls: Arc::new(AtomicU32::new(0)),
        }
    }

    /// The next result (synchronously).
    pub fn next_now(&self) -> Result<T, E> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let mut steps = self.steps.lock().unwrap_or_else(|e| e.into_inner());
        if steps.len() > 1 {
            steps.pop_front().expect("non-empty")
        } else {
            steps
                .front()
                .cloned()
                .expect("a script needs at least one step")
        }
    }

    /// The next result, as an async operation.
    pub async fn next(&self) -> Result<T, E> {
        self.next_now()
    }

    /// How many times the operation was called.
    pub fn calls(&self) -> u32 {
        self.calls.load(Ordering::SeqCst)
    }
}
