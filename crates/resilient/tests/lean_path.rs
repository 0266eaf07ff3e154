//! The lean path: a call of `execute` on a pipeline with nothing but a retry runs a small
//! state machine instead of the phased engine. It must decide exactly as the engine does.

use std::future::ready;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use resilient::{Error, Pipeline, Retry, RetryBudget};
use tokio::time::Instant;

#[tokio::test(flavor = "current_thread")]
async fn a_zero_delay_retry_loop_gives_control_back_to_the_scheduler() {
    // An operation that fails without ever awaiting, retried with no delay and no end: the
    // call must still give control back (a unit of coop budget per retry), or nothing else
    // on this thread would ever run again.
    let p = Pipeline::builder()
        .retry(Retry::immediate().attempts(u32::MAX))
        .build()
        .unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let seen = calls.clone();
    let task = tokio::spawn(async move {
        p.execute(|| {
            seen.fetch_add(1, Ordering::Relaxed);
            ready(Err::<(), _>("down"))
        })
        .await
    });
    tokio::task::yield_now().await;
    let made = calls.load(Ordering::Relaxed);
    assert!(made > 1, "{made} attempts before the first yield");
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
}

#[tokio::test(start_paused = true)]
async fn lean_retries_wait_their_delays_and_count_their_attempts() {
    let p = Pipeline::builder()
        .retry(
            Retry::constant(Duration::from_millis(100))
                .attempts(3)
                .jitter(resilient::Jitter::None),
        )
        .build()
        .unwrap();
    let start = Instant::now();
    let calls = AtomicU32::new(0);
    let r = p
        .execute(|| {
            calls.fetch_add(1, Ordering::Relaxed);
            ready(Err::<(), _>("down"))
        })
        .await;
    assert!(
        matches!(
            r,
            Err(Error::RetriesExhausted {
                attempts: 3,
                last: "down"
            })
        ),
        "{r:?}"
    );
    assert_eq!(calls.load(Ordering::Relaxed), 3);
    assert_eq!(start.elapsed(), Duration::from_millis(200));

    // Success on the second attempt: one wait.
    let start = Instant::now();
    let calls = AtomicU32::new(0);
    let r = p
        .execute(|| {
            let n = calls.fetch_add(1, Ordering::Relaxed) + 1;
            ready(if n == 1 { Err("down") } else { Ok(n) })
        })
        .await;
    assert_eq!(r.unwrap(), 2);
    assert_eq!(start.elapsed(), Duration::from_millis(100));
}

#[tokio::test(start_paused = true)]
async fn a_lean_call_stops_at_max_elapsed_and_when_its_budget_is_spent() {
    let p = Pipeline::builder()
        .retry(
            Retry::constant(Duration::from_millis(100))
                .attempts(10)
                .jitter(resilient::Jitter::None)
                .max_elapsed(Duration::from_millis(250)),
        )
        .build()
        .unwrap();
    let calls = AtomicU32::new(0);
    let r = p
        .execute(|| {
            calls.fetch_add(1, Ordering::Relaxed);
            ready(Err::<(), _>("down"))
        })
        .await;
    // Attempts at 0, 100 and 200 ms; a third wait would end past 250 ms.
    assert_eq!(calls.load(Ordering::Relaxed), 3);
    assert!(
        matches!(r, Err(Error::RetriesExhausted { attempts: 3, .. })),
        "{r:?}"
    );

    // A budget with a ratio of 0 and no reserve allows no retry at all.
    let p = Pipeline::builder()
        .retry(
            Retry::immediate()
                .attempts(5)
                .budget(RetryBudget::builder(0.0).min_per_sec(0).build().unwrap()),
        )
        .build()
        .unwrap();
    let calls = AtomicU32::new(0);
    let r = p
        .execute(|| {
            calls.fetch_add(1, Ordering::Relaxed);
            ready(Err::<(), _>("down"))
        })
        .await;
    assert_eq!(calls.load(Ordering::Relaxed), 1);
    assert!(matches!(r, Err(Error::Inner("down"))), "{r:?}");
}

#[tokio::test(start_paused = true)]
async fn a_lean_call_dropped_while_waiting_makes_no_further_attempt() {
    let p = Pipeline::builder()
        .retry(
            Retry::constant(Duration::from_secs(1))
                .attempts(3)
                .jitter(resilient::Jitter::None),
        )
        .build()
        .unwrap();
    let calls = AtomicU32::new(0);
    let call = p.execute(|| {
        calls.fetch_add(1, Ordering::Relaxed);
        ready(Err::<(), _>("down"))
    });
    let cut = tokio::time::timeout(Duration::from_millis(500), call).await;
    assert!(cut.is_err());
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(calls.load(Ordering::Relaxed), 1);
}
