//! Benchmarks of `resilient` side by side with peer crates live in `benches/`; this library
//! holds what several of them share: the operation every contender wraps, its error type,
//! the runtime and the timing loop.

#![forbid(unsafe_code)]

use std::hint::black_box;

/// The operation's error type (never produced).
#[derive(Debug)]
pub struct Fail;

impl std::fmt::Display for Fail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("fail")
    }
}

impl std::error::Error for Fail {}

/// The operation every contender wraps: succeeds at once.
pub async fn op(x: u64) -> Result<u64, Fail> {
    Ok(black_box(x))
}

/// A current-thread tokio runtime with time enabled, as every bench uses.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("tokio runtime")
}

/// Times `iters` sequential calls of `$call` (an async expression using `$i`) inside one
/// `block_on`. A macro rather than a function so the call may borrow local state mutably
/// (a tower service).
#[macro_export]
macro_rules! calls {
    ($rt:expr, $iters:expr, |$i:ident| $call:expr) => {
        $rt.block_on(async {
            let start = ::std::time::Instant::now();
            for n in 0..$iters {
                let $i = ::std::hint::black_box(n);
                let _ = ::std::hint::black_box($call.await);
            }
            start.elapsed()
        })
    };
}
