//! Regression test, alone in its own binary so that nothing has read [`SystemClock`] before:
//! a paused runtime created *before* the clock's origin is first fixed must still see its
//! virtual time advance exactly. (It once read a saturated zero, and a breaker's open
//! period never seemed to end.)

use resilient::{Clock, SystemClock};
use std::time::Duration;

#[test]
fn a_paused_runtime_older_than_the_clock_origin_still_sees_time_move() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    // Fix the origin now, from a plain thread: later than the runtime's paused base.
    let outside = std::thread::spawn(|| SystemClock.now()).join().unwrap();
    assert!(
        outside > Duration::ZERO,
        "the origin lies before the first reading"
    );
    runtime.block_on(async {
        let a = SystemClock.now();
        tokio::time::advance(Duration::from_millis(1)).await;
        let b = SystemClock.now();
        assert_eq!(b - a, Duration::from_millis(1), "{a:?} -> {b:?}");
        assert!(a > Duration::ZERO);
    });
}
