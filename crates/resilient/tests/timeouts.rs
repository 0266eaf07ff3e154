//! Timeout hierarchies, deadline propagation and cancellation, on tokio's paused clock.

use std::time::Duration;

use resilient::{CancellationToken, Error, Pipeline, Retry, Timeout, TimeoutScope, Timeouts};
use tokio::time::{Instant, sleep};

const MS: Duration = Duration::from_millis(1);

async fn slow(d: Duration) -> Result<&'static str, &'static str> {
    sleep(d).await;
    Ok("done")
}

#[tokio::test(start_paused = true)]
async fn operation_timeout_bounds_each_attempt_and_is_retried() {
    let p = Pipeline::builder()
        .retry(Retry::constant(MS * 100).attempts(3))
        .timeout(Timeout::operation(Duration::from_secs(1)))
        .build()
        .unwrap();
    let mut n = 0;
    let start = Instant::now();
    let r = p
        .execute(|| {
            n += 1;
            // the first two attempts hang, the third is quick
            slow(if n < 3 { Duration::from_secs(60) } else { MS })
        })
        .await;
    assert_eq!(r.unwrap(), "done");
    assert_eq!(start.elapsed(), Duration::from_secs(2) + MS * 201);
}

#[tokio::test(start_paused = true)]
async fn operation_timeout_error_names_its_scope() {
    let p = Pipeline::builder()
        .timeout(Timeout::operation(MS * 50))
        .build()
        .unwrap();
    match p.execute(|| slow(Duration::from_secs(1))).await {
        Err(Error::Timeout { scope, elapsed }) => {
            assert_eq!(scope, TimeoutScope::Operation);
            assert_eq!(elapsed, MS * 50);
        }
        other => panic!("unexpected {other:?}"),
    }
}

/// A non-idempotent call may have taken effect when its attempt timed out: retrying it on
/// a timeout can be switched off, while its errors are still retried.
#[tokio::test(start_paused = true)]
async fn timeouts_are_not_retried_when_told_so() {
    let p = Pipeline::builder()
        .retry(
            Retry::constant(MS * 100)
                .attempts(3)
                .retry_on_timeout(false),
        )
        .timeout(Timeout::operation(Duration::from_secs(1)))
        .build()
        .unwrap();
    let calls = std::sync::atomic::AtomicU32::new(0);
    let start = Instant::now();
    let r = p
        .execute(|| {
            calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            slow(Duration::from_secs(5))
        })
        .await;
    assert!(matches!(
        r,
        Err(Error::Timeout {
            scope: TimeoutScope::Operation,
            ..
        })
    ));
    assert_eq!(calls.load(std::sync::atomic::Ordering::Relaxed), 1);
    assert_eq!(start.elapsed(), Duration::from_secs(1));
    // errors are still retried
    let r = p.execute(|| async { Err::<(), _>("refused") }).await;
    assert!(matches!(
        r,
        Err(Error::RetriesExhausted { attempts: 3, .. })
    ));
    // and so are timeouts by default, as the same plan without the opt-out shows
    let p = Pipeline::builder()
        .retry(Retry::constant(MS * 100).attempts(3))
        .timeout(Timeout::operation(Duration::from_secs(1)))
        .build()
        .unwrap();
    calls.store(0, std::sync::atomic::Ordering::Relaxed);
    let _ = p
        .execute(|| {
            calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            slow(Duration::from_secs(5))
        })
        .await;
    assert_eq!(calls.load(std::sync::atomic::Ordering::Relaxed), 3);
}

#[test]
fn blocking_timeouts_are_not_retried_when_told_so() {
    let clock = resilient::ManualClock::new();
    let p = Pipeline::builder()
        .clock(std::sync::Arc::new(clock.clone()))
        .retry(Retry::immediate().attempts(3).retry_on_timeout(false))
        .timeout(Timeout::operation(Duration::from_secs(1)))
        .build()
        .unwrap();
    let mut calls = 0;
    let r = p.execute_blocking(|| {
        calls += 1;
        clock.advance(Duration::from_secs(2));
        Ok::<_, ()>(())
    });
    assert!(matches!(
        r,
        Err(Error::Timeout {
            scope: TimeoutScope::Operation,
            ..
        })
    ));
    assert_eq!(calls, 1);
}

#[tokio::test(start_paused = true)]
async fn request_timeout_covers_retries_and_waits() {
    let p = Pipeline::builder()
        .timeout(Timeout::request(Duration::from_secs(1)))
        .retry(Retry::constant(MS * 100).attempts(4))
        .timeout(Timeout::operation(MS * 300))
        .build()
        .unwrap();
    let start = Instant::now();
    let r = p.execute(|| slow(Duration::from_secs(60))).await;
    // attempts at 0, 400, 800 ms; the third is cut by the request deadline at 1 s
    match r {
        Err(Error::Timeout { scope, elapsed }) => {
            assert_eq!(scope, TimeoutScope::Request);
            assert_eq!(elapsed, Duration::from_secs(1));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(start.elapsed(), Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn a_wait_past_the_deadline_fails_fast_with_the_last_error() {
    let p = Pipeline::builder()
        .timeout(Timeout::request(Duration::from_secs(1)))
        .retry(Retry::exponential(MS * 200).factor(3.0).attempts(3))
        .build()
        .unwrap();
    let start = Instant::now();
    let r: Result<(), _> = p
        .execute(|| async {
            sleep(MS * 100).await;
            Err("down")
        })
        .await;
    // attempts run 0-100 ms and 300-400 ms; the next wait (600 ms) would reach the
    // deadline, so the call ends at 400 ms with the last error instead of a timeout
    assert!(matches!(
        r,
        Err(Error::RetriesExhausted {
            attempts: 2,
            last: "down"
        })
    ));
    assert_eq!(start.elapsed(), MS * 400);
}

#[tokio::test(start_paused = true)]
async fn nested_pipeline_inherits_the_tighter_outer_deadline() {
    let outer = Pipeline::builder()
        .timeout(Timeout::request(Duration::from_secs(1)))
        .build()
        .unwrap();
    let inner = Pipeline::builder()
        .timeout(Timeout::request(Duration::from_secs(10)))
        .build()
        .unwrap();
    let start = Instant::now();
    let r = outer
        .execute(|| {
            let inner = inner.clone();
            async move {
                inner
                    .execute_with(|ctx| {
                        let left = ctx.remaining().unwrap();
                        assert!(left <= Duration::from_secs(1), "inner sees {left:?}");
                        slow(Duration::from_secs(5))
                    })
                    .await
            }
        })
        .await;
    assert_eq!(start.elapsed(), Duration::from_secs(1));
    let err = r.unwrap_err();
    // the inner call ended on the inherited deadline
    match err {
        Error::Inner(Error::Timeout { scope, .. }) => assert_eq!(scope, TimeoutScope::Inherited),
        Error::Timeout { scope, .. } => assert_eq!(scope, TimeoutScope::Request),
        other => panic!("unexpected {other:?}"),
    }
}

/// Runs, inside a call with a 1 s request timeout, a call of `inner` whose operation fails
/// at once (`fails`: with the deadline it sees, in ms from the start) or answers after
/// 5 s; how long it took and the outer call's result.
async fn nested_under_1s(inner: &Pipeline, fails: bool) -> (Duration, String) {
    let outer = Pipeline::builder()
        .timeout(Timeout::request(Duration::from_secs(1)))
        .build()
        .unwrap();
    let start = Instant::now();
    let r = outer
        .execute(|| async move {
            inner
                .execute(|| async move {
                    let seen = resilient::inherited_deadline()
                        .map(|d| d.saturating_duration_since(start).as_millis());
                    if fails {
                        return Err(format!("failed, deadline {seen:?}"));
                    }
                    sleep(Duration::from_secs(5)).await;
                    Ok(1)
                })
                .await
        })
        .await;
    (start.elapsed(), format!("{r:?}"))
}

/// The calls whose first poll `execute` inlines where they are awaited (a pipeline of a
/// retry alone, of an operation timeout alone, of one per-call guard) inherit the deadline
/// of the call they are made in like every other call.
#[tokio::test(start_paused = true)]
async fn nested_calls_of_every_shape_inherit_the_outer_deadline() {
    let retry = Pipeline::builder()
        .retry(
            Retry::constant(MS * 600)
                .attempts(3)
                .jitter(resilient::Jitter::None),
        )
        .build()
        .unwrap();
    let timed = Pipeline::builder()
        .timeout(Timeout::operation(Duration::from_secs(10)))
        .build()
        .unwrap();
    let guarded = Pipeline::builder()
        .bulkhead(resilient::Bulkhead::builder(4))
        .build()
        .unwrap();
    let late = "Err(Inner(Timeout { scope: Inherited, elapsed: 1s }))";
    // A retry that would start past the deadline is not made.
    assert_eq!(
        nested_under_1s(&retry, true).await,
        (
            MS * 600,
            r#"Err(Inner(RetriesExhausted { attempts: 2, last: "failed, deadline Some(1000)" }))"#
                .to_string()
        )
    );
    // The operation sees the tighter of its timeout and the deadline.
    let failed = r#"Err(Inner(Inner("failed, deadline Some(1000)")))"#;
    for p in [&timed, &guarded] {
        assert_eq!(
            nested_under_1s(p, true).await,
            (Duration::ZERO, failed.to_string())
        );
    }
    // A slow call ends at the deadline, as a call that inherited it.
    for p in [&retry, &timed, &guarded] {
        assert_eq!(
            nested_under_1s(p, false).await,
            (Duration::from_secs(1), late.to_string())
        );
    }
}

#[tokio::test(start_paused = true)]
async fn nested_pipeline_keeps_its_own_tighter_deadline() {
    let outer = Pipeline::builder()
        .timeout(Timeout::request(Duration::from_secs(10)))
        .build()
        .unwrap();
    let inner = Pipeline::builder()
        .timeout(Timeout::request(Duration::from_secs(1)))
        .build()
        .unwrap();
    let start = Instant::now();
    let r = outer
        .execute(|| {
            let inner = inner.clone();
            async move { inner.execute(|| slow(Duration::from_secs(5))).await }
        })
        .await;
    assert!(matches!(
        r,
        Err(Error::Inner(Error::Timeout {
            scope: TimeoutScope::Request,
            ..
        }))
    ));
    assert_eq!(start.elapsed(), Duration::from_secs(1));
}

/// The operation timeout tightens the deadline each attempt sees, in its `Context` and in
/// nested pipelines: with operation = 1 s and request = 30 s, an attempt has 1 s, not 30.
#[tokio::test(start_paused = true)]
async fn the_operation_timeout_is_the_attempts_deadline_for_context_and_nested_pipelines() {
    let outer = Pipeline::builder()
        .timeout(Timeout::request(Duration::from_secs(30)))
        .retry(Retry::constant(MS * 100).attempts(2))
        .timeout(Timeout::operation(Duration::from_secs(1)))
        .build()
        .unwrap();
    let inner = Pipeline::builder().build().unwrap();
    let start = Instant::now();
    let seen = std::sync::Mutex::new(Vec::new());
    let r = outer
        .execute_with(|ctx| {
            let inner = inner.clone();
            seen.lock().unwrap().push(ctx.remaining().unwrap());
            async move {
                // a nested pipeline with no timeout of its own inherits the attempt's
                inner
                    .execute_with(|ctx| {
                        let left = ctx.remaining().unwrap();
                        assert!(left <= Duration::from_secs(1), "nested sees {left:?}");
                        slow(Duration::from_secs(5))
                    })
                    .await
            }
        })
        .await;
    // each attempt ended after its 1 s, on the attempt's deadline, not the request's
    assert_eq!(start.elapsed(), MS * 2100);
    assert_eq!(*seen.lock().unwrap(), [Duration::from_secs(1); 2]);
    match r {
        Err(Error::RetriesExhausted { attempts: 2, last }) => assert!(matches!(
            last,
            Error::Timeout {
                scope: TimeoutScope::Inherited,
                ..
            }
        )),
        Err(Error::Timeout {
            scope: TimeoutScope::Operation,
            ..
        }) => {}
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn the_attempt_deadline_is_the_tighter_of_operation_and_request() {
    let p = Pipeline::builder()
        .timeout(Timeout::request(MS * 1500))
        .retry(Retry::constant(MS * 100).attempts(3))
        .timeout(Timeout::operation(Duration::from_secs(1)))
        .build()
        .unwrap();
    let seen = std::sync::Mutex::new(Vec::new());
    let start = Instant::now();
    let r = p
        .execute_with(|ctx| {
            seen.lock().unwrap().push(ctx.remaining().unwrap());
            async move {
                // and the ambient deadline matches what the context says
                let inherited = resilient::inherited_deadline().unwrap();
                assert_eq!(Some(inherited), ctx.deadline());
                slow(Duration::from_secs(5)).await
            }
        })
        .await;
    assert!(matches!(
        r,
        Err(Error::Timeout {
            scope: TimeoutScope::Request,
            ..
        })
    ));
    assert_eq!(start.elapsed(), MS * 1500);
    // attempt 1 at 0 ms: 1 s; attempt 2 at 1100 ms: the request's last 400 ms
    assert_eq!(*seen.lock().unwrap(), [Duration::from_secs(1), MS * 400]);
}

#[tokio::test(start_paused = true)]
async fn cancellation_is_distinct_from_timeout() {
    let p = Pipeline::builder()
        .timeout(Timeout::request(Duration::from_secs(5)))
        .build()
        .unwrap();
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        sleep(MS * 100).await;
        cancel.cancel();
    });
    let start = Instant::now();
    let r = p
        .execute_cancellable(&token, || slow(Duration::from_secs(60)))
        .await;
    assert!(matches!(r, Err(Error::Cancelled)));
    assert_eq!(start.elapsed(), MS * 100);

    let token = CancellationToken::new();
    let r = p
        .execute_cancellable(&token, || slow(Duration::from_secs(60)))
        .await;
    assert!(matches!(
        r,
        Err(Error::Timeout {
            scope: TimeoutScope::Request,
            ..
        })
    ));
}

#[tokio::test(start_paused = true)]
async fn nested_pipelines_inherit_cancellation() {
    let outer = Pipeline::builder().build().unwrap();
    let inner = Pipeline::builder()
        .retry(Retry::constant(Duration::from_secs(1)).attempts(100))
        .build()
        .unwrap();
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        sleep(Duration::from_millis(2500)).await;
        cancel.cancel();
    });
    let start = Instant::now();
    let r = outer
        .execute_cancellable(&token, || {
            let inner = inner.clone();
            async move { inner.execute(|| async { Err::<(), _>("down") }).await }
        })
        .await;
    assert!(matches!(
        r,
        Err(Error::Cancelled) | Err(Error::Inner(Error::Cancelled))
    ));
    assert_eq!(start.elapsed(), Duration::from_millis(2500));
}

/// A blocking call nested in an async pipeline respects the outer deadline: it cannot be
/// interrupted, but it starts no attempt past it.
#[tokio::test(start_paused = true)]
async fn blocking_calls_inherit_the_outer_deadline() {
    let outer = Pipeline::builder()
        .timeout(Timeout::request(Duration::from_secs(1)))
        .build()
        .unwrap();
    let clock = resilient::ManualClock::new();
    clock.set(Duration::from_secs(86_400));
    let blocking = Pipeline::builder()
        .clock(std::sync::Arc::new(clock.clone()))
        .retry(Retry::immediate().attempts(10))
        .build()
        .unwrap();
    let calls = std::cell::Cell::new(0);
    let r = outer
        .execute(|| {
            let (blocking, clock, calls) = (&blocking, &clock, &calls);
            async move {
                sleep(MS * 600).await; // 400 ms left
                let r = blocking.execute_blocking(|| {
                    calls.set(calls.get() + 1);
                    clock.advance(MS * 150);
                    Err::<(), _>("slow and failing")
                });
                Ok::<_, Error<&str>>(r)
            }
        })
        .await;
    // attempts at 0, 150 and 300 ms; at 450 ms the outer deadline has passed, and the
    // last error is returned at once (as in async calls, a wait that cannot fit fails fast)
    assert_eq!(calls.get(), 3);
    assert!(
        matches!(r, Ok(Err(Error::RetriesExhausted { attempts: 3, .. }))),
        "{r:?}"
    );

    // started with no time left, it makes no attempt and names the inherited deadline
    calls.set(0);
    let r = outer
        .execute(|| {
            let (blocking, calls) = (&blocking, &calls);
            async move {
                sleep(Duration::from_secs(1)).await;
                let r = blocking.execute_blocking(|| {
                    calls.set(calls.get() + 1);
                    Ok::<_, &str>(())
                });
                Ok::<_, Error<&str>>(r)
            }
        })
        .await;
    assert_eq!(calls.get(), 0);
    assert!(
        matches!(
            r,
            Ok(Err(Error::Timeout {
                scope: TimeoutScope::Inherited,
                ..
            }))
        ),
        "{r:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn blocking_calls_inherit_cancellation() {
    let outer = Pipeline::builder().build().unwrap();
    let blocking = Pipeline::builder()
        .retry(Retry::immediate().attempts(3))
        .build()
        .unwrap();
    let token = CancellationToken::new();
    let mut calls = 0;
    let r = outer
        .execute_cancellable(&token, || {
            token.cancel();
            let r = blocking.execute_blocking(|| {
                calls += 1;
                Err::<(), _>("x")
            });
            async move { Ok::<_, ()>(r) }
        })
        .await;
    assert!(matches!(
        r,
        Ok(Err(Error::Cancelled)) | Err(Error::Cancelled)
    ));
    assert_eq!(calls, 0);
}

#[test]
fn invalid_hierarchies_are_rejected_with_the_field_named() {
    let e = Pipeline::builder()
        .timeout(Timeout::request(Duration::from_secs(1)))
        .timeout(Timeout::operation(Duration::from_secs(5)))
        .build()
        .unwrap_err();
    assert_eq!(e.field(), "timeout.operation");
    assert!(
        e.to_string().contains("must not exceed timeout.request"),
        "{e}"
    );

    let e = Pipeline::builder()
        .timeouts(Timeouts::hierarchy(
            Duration::from_secs(5),
            Duration::from_secs(30),
            Duration::from_secs(10),
        ))
        .build()
        .unwrap_err();
    assert_eq!(e.field(), "timeout.circuit");

    let e = Pipeline::builder()
        .timeout(Timeout::operation(Duration::ZERO))
        .build()
        .unwrap_err();
    assert_eq!(e.field(), "timeout.operation");
    assert!(e.to_string().contains("greater than zero"));

    // 100 + 200 + 400 + 800 ms of backoff can never fit in one second
    let e = Pipeline::builder()
        .timeout(Timeout::request(Duration::from_secs(1)))
        .retry(Retry::exponential(Duration::from_millis(100)).attempts(5))
        .build()
        .unwrap_err();
    assert_eq!(e.field(), "retry");
    assert!(e.to_string().contains("exceeds timeout.request"), "{e}");

    // with full jitter the minimum wait is zero, so the same plan is accepted
    assert!(
        Pipeline::builder()
            .timeout(Timeout::request(Duration::from_secs(1)))
            .retry(
                Retry::exponential(Duration::from_millis(100))
                    .attempts(5)
                    .jitter(resilient::Jitter::Full)
            )
            .build()
            .is_ok()
    );
}

/// Long plans are summed in full (until they exceed the request timeout), not cut off
/// after the first ten thousand retries; and checking them stays quick.
#[test]
fn long_retry_plans_are_checked_against_the_request_timeout() {
    let plan = |retry: Retry, request: Duration| {
        Pipeline::builder()
            .timeout(Timeout::request(request))
            .retry(retry)
            .build()
    };
    let secs = Duration::from_secs;
    // 99,999 waits of 1 ms: 100 s
    let e = plan(Retry::constant(MS).attempts(100_000), secs(30)).unwrap_err();
    assert_eq!(e.field(), "retry");
    assert!(e.to_string().contains("exceeds timeout.request"), "{e}");
    assert!(plan(Retry::constant(MS).attempts(u32::MAX), secs(30)).is_err());
    assert!(plan(Retry::linear(MS, MS).attempts(u32::MAX), secs(3600)).is_err());
    assert!(plan(Retry::exponential(MS).attempts(u32::MAX), secs(3600)).is_err());
    // what fits is accepted: 19,999 waits of 1 ms
    assert!(plan(Retry::constant(MS).attempts(20_000), secs(30)).is_ok());
    // zero waits never add up, however many
    assert!(plan(Retry::immediate().attempts(u32::MAX), secs(1)).is_ok());
    let full = resilient::Jitter::Full;
    assert!(plan(Retry::constant(MS).attempts(u32::MAX).jitter(full), secs(1)).is_ok());
    // capped schedules are counted at their cap: 999 waits of at most 10 ms
    let capped = Retry::exponential(MS).max_delay(MS * 10).attempts(1_000);
    assert!(plan(capped.clone(), MS * 9_900).is_err());
    assert!(plan(capped, MS * 10_000).is_ok());
    // custom schedules too
    let custom = Retry::custom(|n| Some(MS * (n % 2))).attempts(200_001);
    assert!(plan(custom.clone(), secs(100)).is_err());
    assert!(plan(custom, MS * 100_001).is_ok());
}

#[test]
fn invalid_retry_settings_are_rejected() {
    let cases: Vec<(Retry, &str)> = vec![
        (Retry::immediate().attempts(0), "retry.attempts"),
        (Retry::exponential(MS).factor(0.5), "retry.factor"),
        (Retry::exponential(MS).factor(f64::NAN), "retry.factor"),
        (
            Retry::immediate().jitter(resilient::Jitter::Proportional(1.5)),
            "retry.jitter",
        ),
        (
            Retry::immediate().max_elapsed(Duration::ZERO),
            "retry.max_elapsed",
        ),
    ];
    for (retry, field) in cases {
        let e = Pipeline::builder().retry(retry).build().unwrap_err();
        assert_eq!(e.field(), field, "{e}");
    }
    let e = Pipeline::builder()
        .retry(Retry::immediate())
        .retry(Retry::immediate())
        .build()
        .unwrap_err();
    assert_eq!(e.field(), "retry");
}

/// Records the deadline each admission sees in its `Context`.
#[derive(Debug, Default)]
struct SeesDeadline(std::sync::Mutex<Vec<Option<Instant>>>);

impl resilient::Guard for SeesDeadline {
    fn name(&self) -> &'static str {
        "sees_deadline"
    }
    fn acquire<'a>(&'a self, ctx: &resilient::Context) -> resilient::Acquire<'a> {
        self.0.lock().unwrap().push(ctx.deadline());
        resilient::Acquire::Ready(Ok(resilient::Permit::none()))
    }
    fn on_release(&self, _: u64, _: Option<(resilient::Outcome, Duration)>) {}
}

/// In blocking mode, the pipeline's own request timeout is the `Context`'s deadline, as in
/// async calls (it used to be `None` unless a deadline was inherited); the tighter of it
/// and an inherited one wins.
#[tokio::test(start_paused = true)]
async fn blocking_calls_show_their_request_deadline_in_the_context() {
    let seen = std::sync::Arc::new(SeesDeadline::default());
    let blocking = Pipeline::builder()
        .timeout(Timeout::request(Duration::from_secs(2)))
        .guard_arc(seen.clone())
        .retry(Retry::immediate().attempts(2))
        .guard_arc(seen.clone())
        .build()
        .unwrap();
    let start = Instant::now();
    let mut n = 0;
    let r = blocking.execute_blocking(|| {
        n += 1;
        if n == 1 { Err("first") } else { Ok(n) }
    });
    assert_eq!(r.unwrap(), 2);
    let expected = Some(start + Duration::from_secs(2));
    // per call, then each of the two attempts
    assert_eq!(*seen.0.lock().unwrap(), [expected; 3]);

    // nested in an async call with a tighter deadline, that one
    seen.0.lock().unwrap().clear();
    let outer = Pipeline::builder()
        .timeout(Timeout::request(Duration::from_secs(1)))
        .build()
        .unwrap();
    let start = Instant::now();
    let r = outer
        .execute(|| async { Ok::<_, ()>(blocking.execute_blocking(|| Ok::<_, ()>(1))) })
        .await;
    assert_eq!(r.unwrap().unwrap(), 1);
    let expected = Some(start + Duration::from_secs(1));
    assert_eq!(*seen.0.lock().unwrap(), [expected; 2]);
}
