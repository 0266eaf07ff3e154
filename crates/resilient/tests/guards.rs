//! The guard seam: placement per call or per attempt, permits released on every path,
//! the bulkhead, blocking execution and the tower adapter.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use resilient::testing::{ManualClock, Script};
use resilient::{
    Acquire, Bulkhead, Context, Error, Guard, Outcome, Permit, Pipeline, Rejection, Retry, Timeout,
    TimeoutScope,
};
use tokio::time::{Instant, sleep};

const MS: Duration = Duration::from_millis(1);

/// Counts admissions and records every release.
#[derive(Debug, Default)]
struct Recorder {
    admitted: AtomicU32,
    released: Mutex<Vec<Option<Outcome>>>,
    reject_after: Option<u32>,
}

impl Guard for Recorder {
    fn name(&self) -> &'static str {
        "recorder"
    }
    fn acquire<'a>(&'a self, _ctx: &Context) -> Acquire<'a> {
        let n = self.admitted.fetch_add(1, Ordering::SeqCst) + 1;
        if self.reject_after.is_some_and(|max| n > max) {
            return Acquire::Ready(Err(Rejection::Other {
                guard: "recorder",
                retry_after: Some(MS * 7),
            }));
        }
        Acquire::Ready(Ok(Permit::new(self, u64::from(n))))
    }
    fn on_release(&self, _token: u64, outcome: Option<(Outcome, Duration)>) {
        self.released.lock().unwrap().push(outcome.map(|(o, _)| o));
    }
}

#[tokio::test(start_paused = true)]
async fn guards_before_retry_count_calls_after_retry_count_attempts() {
    let per_call = Arc::new(Recorder::default());
    let per_attempt = Arc::new(Recorder::default());
    let p = Pipeline::builder()
        .guard_arc(per_call.clone())
        .retry(Retry::immediate().attempts(3))
        .guard_arc(per_attempt.clone())
        .build()
        .unwrap();
    assert_eq!(
        p.stages(),
        ["recorder(per call)", "Retry", "recorder(per attempt)"]
    );
    let script = Script::new([Err("a"), Err("b"), Ok(1)]);
    p.execute(|| script.next()).await.unwrap();
    assert_eq!(per_call.admitted.load(Ordering::SeqCst), 1);
    assert_eq!(
        *per_call.released.lock().unwrap(),
        vec![Some(Outcome::Success)]
    );
    assert_eq!(per_attempt.admitted.load(Ordering::SeqCst), 3);
    assert_eq!(
        *per_attempt.released.lock().unwrap(),
        vec![
            Some(Outcome::Failure),
            Some(Outcome::Failure),
            Some(Outcome::Success)
        ]
    );
}

#[test]
fn the_typed_retry_hook_is_not_a_stage() {
    let p = Pipeline::builder()
        .retry(Retry::immediate().attempts(2))
        .timeout(Timeout::operation(MS * 50))
        .on_retry(|_: &resilient::RetryEvent<'_>, _: resilient::FailedAttempt<'_, (), ()>| {})
        .build()
        .unwrap();
    assert_eq!(p.stages(), ["Retry", "Operation(50ms)"]);
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_call_releases_its_permits_unrecorded() {
    let g = Arc::new(Recorder::default());
    let p = Pipeline::builder().guard_arc(g.clone()).build().unwrap();
    let fut = p.execute(|| async {
        sleep(Duration::from_secs(10)).await;
        Ok::<_, ()>(())
    });
    let r = tokio::time::timeout(MS * 10, fut).await;
    assert!(r.is_err(), "the call should still be running when dropped");
    assert_eq!(*g.released.lock().unwrap(), vec![None]);
}

#[tokio::test(start_paused = true)]
async fn rejections_map_to_errors_and_are_retried_only_when_asked() {
    let g = Arc::new(Recorder {
        reject_after: Some(1),
        ..Default::default()
    });
    let p = Pipeline::builder()
        .retry(Retry::immediate().attempts(3))
        .guard_arc(g.clone())
        .build()
        .unwrap();
    let r: Result<(), _> = p.execute(|| async { Err("down") }).await;
    match r {
        Err(Error::Rejected { guard, retry_after }) => {
            assert_eq!(guard, "recorder");
            assert_eq!(retry_after, Some(MS * 7));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(g.admitted.load(Ordering::SeqCst), 2);

    let g = Arc::new(Recorder {
        reject_after: Some(0),
        ..Default::default()
    });
    let p = Pipeline::builder()
        .retry(Retry::constant(MS).attempts(3).retry_rejected(true))
        .guard_arc(g.clone())
        .build()
        .unwrap();
    let start = Instant::now();
    let r: Result<(), Error<()>> = p.execute(|| async { Ok(()) }).await;
    assert!(matches!(r, Err(Error::Rejected { .. })));
    assert_eq!(g.admitted.load(Ordering::SeqCst), 3);
    // the rejection's retry_after (7 ms) directs the waits
    assert_eq!(start.elapsed(), MS * 14);
}

#[tokio::test(start_paused = true)]
async fn bulkhead_caps_concurrency_queues_and_rejects() {
    let p = Pipeline::builder()
        .guard(Bulkhead::builder(2).queue(1).build().unwrap())
        .build()
        .unwrap();
    let running = Arc::new(AtomicU32::new(0));
    let peak = Arc::new(AtomicU32::new(0));
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (p, running, peak) = (p.clone(), running.clone(), peak.clone());
        tasks.push(tokio::spawn(async move {
            p.execute(|| {
                let (running, peak) = (running.clone(), peak.clone());
                async move {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    sleep(MS * 100).await;
                    running.fetch_sub(1, Ordering::SeqCst);
                    Ok::<_, ()>(())
                }
            })
            .await
        }));
    }
    let mut ok = 0;
    let mut full = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(()) => ok += 1,
            Err(Error::BulkheadFull) => full += 1,
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!((ok, full), (3, 1)); // 2 run, 1 waits, 1 is turned away
    assert_eq!(peak.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_waiter_leaves_the_bulkhead_queue() {
    let bulkhead = Arc::new(Bulkhead::builder(1).queue(1).build().unwrap());
    let p = Pipeline::builder()
        .guard_arc(bulkhead.clone())
        .build()
        .unwrap();
    let busy = tokio::spawn({
        let p = p.clone();
        async move {
            p.execute(|| async {
                sleep(Duration::from_secs(1)).await;
                Ok::<_, ()>(())
            })
            .await
        }
    });
    tokio::task::yield_now().await;
    assert_eq!(bulkhead.in_flight(), 1);
    let waiter = p.execute(|| async { Ok::<_, ()>(()) });
    assert!(tokio::time::timeout(MS * 10, waiter).await.is_err());
    assert_eq!(
        bulkhead.queued(),
        0,
        "the dropped waiter must leave the queue"
    );
    busy.await.unwrap().unwrap();
    assert_eq!(bulkhead.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn bulkhead_max_wait_rejects_after_waiting() {
    let p = Pipeline::builder()
        .guard(
            Bulkhead::builder(1)
                .queue(5)
                .max_wait(MS * 50)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let q = p.clone();
    let _busy = tokio::spawn(async move {
        q.execute(|| async {
            sleep(Duration::from_secs(1)).await;
            Ok::<_, ()>(())
        })
        .await
    });
    tokio::task::yield_now().await;
    let start = Instant::now();
    let r = p.execute(|| async { Ok::<_, ()>(()) }).await;
    assert!(matches!(r, Err(Error::BulkheadFull)));
    assert_eq!(start.elapsed(), MS * 50);
}

#[test]
fn blocking_execution_waits_on_the_pipeline_clock() {
    let clock = ManualClock::new();
    let g = Arc::new(Recorder::default());
    let p = Pipeline::builder()
        .clock(Arc::new(clock.clone()))
        .retry(Retry::exponential(MS * 100).attempts(3))
        .guard_arc(g.clone())
        .build()
        .unwrap();
    let script = Script::new([Err("a"), Err("b"), Ok(5)]);
    assert_eq!(p.execute_blocking(|| script.next_now()).unwrap(), 5);
    assert_eq!(clock.now_for_test(), MS * 300);
    assert_eq!(g.admitted.load(Ordering::SeqCst), 3);
}

#[test]
fn blocking_overruns_count_as_timeouts_and_the_deadline_holds() {
    let clock = ManualClock::new();
    let p = Pipeline::builder()
        .clock(Arc::new(clock.clone()))
        .timeout(Timeout::request(Duration::from_secs(10)))
        .retry(Retry::constant(Duration::from_secs(1)).attempts(5))
        .timeout(Timeout::operation(Duration::from_secs(2)))
        .build()
        .unwrap();
    let mut calls = 0;
    let r: Result<(), Error<()>> = p.execute_blocking(|| {
        calls += 1;
        clock.advance(Duration::from_secs(3)); // every attempt overruns
        Ok(())
    });
    // attempts start at 0, 4 and 8 s; the wait after the third would cross 10 s
    assert_eq!(calls, 3);
    assert!(matches!(
        r,
        Err(Error::Timeout {
            scope: TimeoutScope::Operation,
            ..
        })
    ));
}

trait NowForTest {
    fn now_for_test(&self) -> Duration;
}
impl NowForTest for ManualClock {
    fn now_for_test(&self) -> Duration {
        resilient::Clock::now(self)
    }
}

#[cfg(feature = "tower")]
#[tokio::test(start_paused = true)]
async fn tower_layer_retries_a_service_with_cloned_requests() {
    use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
    let calls = Arc::new(AtomicU32::new(0));
    let counter = calls.clone();
    let inner = service_fn(move |req: String| {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        async move {
            if n < 2 {
                Err(format!("fail {n}"))
            } else {
                Ok(format!("{req}!"))
            }
        }
    });
    let p = Pipeline::builder()
        .retry(Retry::constant(MS).attempts(3))
        .build()
        .unwrap();
    let mut svc = ServiceBuilder::new().layer(p.layer()).service(inner);
    let out = svc.ready().await.unwrap().call("hi".to_owned()).await;
    assert_eq!(out.unwrap(), "hi!");
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    let out = svc.ready().await.unwrap().call("x".to_owned()).await;
    assert_eq!(out.unwrap(), "x!");
}

/// `pipeline.layer().boxed_errors()` composes with stacks of `BoxError` services: inner
/// errors that are already `BoxError`s, layers above that need `Error: Into<BoxError>`, and
/// type-erased services.
#[cfg(feature = "tower")]
#[tokio::test(start_paused = true)]
async fn tower_layer_composes_with_box_error_stacks() {
    use resilient::{BoxError, BoxedError, Timeout, TimeoutScope};
    use tower::util::BoxCloneService;
    use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

    /// Like tower's own middleware (timeout, buffer, load-shed): needs `Into<BoxError>`.
    fn needs_box_errors<S>(svc: S) -> BoxCloneService<u32, u32, BoxError>
    where
        S: Service<u32, Response = u32> + Clone + Send + 'static,
        S::Error: Into<BoxError>,
        S::Future: Send,
    {
        ServiceBuilder::new()
            .boxed_clone()
            .map_err(Into::into)
            .service(svc)
    }

    let p = Pipeline::builder()
        .timeout(Timeout::request(Duration::from_secs(1)))
        .retry(Retry::constant(MS).attempts(2))
        .build()
        .unwrap();
    // the inner service's error is already a BoxError
    let inner = service_fn(|x: u32| async move {
        match x {
            0 => Err::<u32, BoxError>(std::io::Error::other("refused").into()),
            1 => {
                tokio::time::sleep(Duration::from_secs(5)).await;
                Ok(1)
            }
            _ => Ok(x * 2),
        }
    });
    let mut svc = needs_box_errors(
        ServiceBuilder::new()
            .layer(p.layer().boxed_errors())
            .service(inner),
    );
    assert_eq!(svc.ready().await.unwrap().call(21).await.unwrap(), 42);
    // a strategy's verdict: downcast to Error<BoxedError>
    let err = svc.ready().await.unwrap().call(0).await.unwrap_err();
    match err.downcast_ref::<Error<BoxedError>>() {
        Some(Error::RetriesExhausted { attempts: 2, last }) => {
            assert_eq!(last.to_string(), "refused");
            assert!(last.0.downcast_ref::<std::io::Error>().is_some());
        }
        other => panic!("unexpected {other:?}"),
    }
    let err = svc.ready().await.unwrap().call(1).await.unwrap_err();
    assert!(matches!(
        err.downcast_ref::<Error<BoxedError>>(),
        Some(Error::Timeout {
            scope: TimeoutScope::Request,
            ..
        })
    ));
    // without retries the inner error comes out as itself
    let once = Pipeline::builder().build().unwrap();
    let mut svc = ServiceBuilder::new()
        .layer(once.layer().boxed_errors())
        .service(service_fn(|_: u32| async {
            Err::<u32, _>(std::io::Error::other("refused"))
        }));
    let err: BoxError = svc.ready().await.unwrap().call(0).await.unwrap_err();
    assert_eq!(
        err.downcast_ref::<std::io::Error>().unwrap().to_string(),
        "refused"
    );
}

#[tokio::test(start_paused = true)]
async fn a_per_attempt_rejection_is_not_a_failure_of_the_call() {
    let per_call = Arc::new(Recorder::default());
    let limiter = Arc::new(Recorder {
        reject_after: Some(0),
        ..Default::default()
    });
    let p = Pipeline::builder()
        .guard_arc(per_call.clone())
        .retry(Retry::immediate().attempts(2))
        .guard_arc(limiter)
        .build()
        .unwrap();
    let r: Result<(), Error<()>> = p.execute(|| async { Ok(()) }).await;
    assert!(matches!(r, Err(Error::Rejected { .. })));
    assert_eq!(
        *per_call.released.lock().unwrap(),
        vec![Some(Outcome::Ignored)]
    );
}

/// Records the durations it is given; may decline to use them.
#[derive(Debug)]
struct Durations {
    wants: bool,
    seen: Mutex<Vec<Duration>>,
}

impl Guard for Durations {
    fn name(&self) -> &'static str {
        "durations"
    }
    fn acquire<'a>(&'a self, _ctx: &Context) -> Acquire<'a> {
        Acquire::Ready(Ok(Permit::new(self, 0)))
    }
    fn on_release(&self, _token: u64, outcome: Option<(Outcome, Duration)>) {
        self.seen.lock().unwrap().push(outcome.unwrap().1);
    }
    fn measures_duration(&self) -> bool {
        self.wants
    }
}

#[tokio::test(start_paused = true)]
async fn durations_are_measured_only_for_guards_that_use_them() {
    let timed = Arc::new(Durations {
        wants: true,
        seen: Mutex::default(),
    });
    let untimed = Arc::new(Durations {
        wants: false,
        seen: Mutex::default(),
    });
    let p = Pipeline::builder()
        .guard_arc(untimed.clone())
        .retry(Retry::immediate())
        .guard_arc(timed.clone())
        .build()
        .unwrap();
    p.execute(|| async {
        sleep(MS * 100).await;
        Ok::<_, ()>(())
    })
    .await
    .unwrap();
    assert_eq!(*timed.seen.lock().unwrap(), vec![MS * 100]);
    assert_eq!(*untimed.seen.lock().unwrap(), vec![Duration::ZERO]);
}

#[test]
fn blocking_callers_get_the_guards_own_rejection_instead_of_waiting() {
    use resilient::ratelimit::{Rate, RateLimiter};
    let clock = ManualClock::new();
    let limiter = RateLimiter::gcra(Rate::per_second(1))
        .max_wait(Duration::from_secs(5))
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    let p = Pipeline::builder().rate_limit(limiter).build().unwrap();
    assert!(p.execute_blocking(|| Ok::<_, ()>(())).is_ok());
    match p.execute_blocking(|| Ok::<_, ()>(())) {
        Err(Error::RateLimited { retry_after, .. }) => {
            assert_eq!(retry_after, Some(Duration::from_secs(1)));
        }
        other => panic!("unexpected {other:?}"),
    }

    let bulkhead = Arc::new(Bulkhead::builder(1).queue(10).build().unwrap());
    let p = Pipeline::builder()
        .guard_arc(bulkhead.clone())
        .build()
        .unwrap();
    let ctx = Context::new();
    let held = bulkhead.acquire_now(&ctx).unwrap();
    assert!(matches!(
        p.execute_blocking(|| Ok::<_, ()>(())),
        Err(Error::BulkheadFull)
    ));
    drop(held);
    assert!(p.execute_blocking(|| Ok::<_, ()>(())).is_ok());
}

#[tokio::test(start_paused = true)]
async fn the_request_timeout_bounds_queueing_in_a_per_call_guard() {
    let bulkhead = Arc::new(Bulkhead::builder(1).queue(4).build().unwrap());
    let p = Pipeline::builder()
        .timeout(Timeout::request(MS * 200))
        .guard_arc(bulkhead.clone())
        .build()
        .unwrap();
    let q = p.clone();
    let _busy = tokio::spawn(async move {
        q.execute(|| async {
            sleep(MS * 150).await;
            Ok::<_, ()>(())
        })
        .await
    });
    tokio::task::yield_now().await;
    let never = Pipeline::builder()
        .timeout(Timeout::request(MS * 50))
        .guard_arc(bulkhead.clone())
        .build()
        .unwrap();
    let start = Instant::now();
    let r = never.execute(|| async { Ok::<_, ()>(()) }).await;
    assert!(matches!(
        r,
        Err(Error::Timeout {
            scope: TimeoutScope::Request,
            ..
        })
    ));
    assert_eq!(start.elapsed(), MS * 50);
    assert_eq!(bulkhead.queued(), 0, "the timed-out waiter left the queue");
}

/// A breaker on a manual clock that opens on one failure, for a second, then for ten.
fn shared_breaker(clock: &ManualClock) -> resilient::CircuitBreaker {
    resilient::CircuitBreaker::consecutive_failures(1)
        .open_for(Duration::from_secs(1))
        .break_backoff(10.0, Duration::from_secs(3600))
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap()
}

/// Trips `b`, lets its first break pass and fails the probe: the second break.
fn second_break(b: &resilient::CircuitBreaker, clock: &ManualClock) -> Option<Duration> {
    let _ = b.call_blocking(|| Err::<(), _>("down"));
    assert_eq!(b.snapshot().retry_after, Some(Duration::from_secs(1)));
    clock.advance(Duration::from_secs(1));
    let _ = b.call_blocking(|| Err::<(), _>("down"));
    b.snapshot().retry_after
}

/// A failed `build()` leaves a breaker it shares unchanged: the failed pipeline's circuit
/// timeout does not cap the breaker's break, whichever check fails (the retry plan, or a
/// guard added after the breaker).
#[test]
fn a_failed_build_leaves_a_shared_breaker_unchanged() {
    type Make = fn(&resilient::CircuitBreaker) -> resilient::PipelineBuilder;
    let attempts: [Make; 2] = [
        |b| {
            Pipeline::builder()
                .timeout(Timeout::circuit(Duration::from_secs(3)))
                .timeout(Timeout::request(Duration::from_secs(1)))
                .circuit_breaker(b)
                // waits 4 s in all: longer than the request timeout
                .retry(Retry::constant(Duration::from_secs(2)).attempts(3))
        },
        |b| {
            Pipeline::builder()
                .timeout(Timeout::circuit(Duration::from_secs(3)))
                .circuit_breaker(b)
                // a break longer than the circuit timeout
                .circuit_breaker(
                    resilient::CircuitBreaker::failure_rate(0.5).open_for(Duration::from_secs(60)),
                )
        },
    ];
    for (i, make) in attempts.into_iter().enumerate() {
        let clock = ManualClock::new();
        let b = shared_breaker(&clock);
        let before = b.snapshot();
        let err = make(&b).build().unwrap_err();
        assert_eq!(err.field(), ["retry", "circuit.open_for"][i]);
        assert_eq!(b.snapshot(), before);
        // the second break is 10 s, not capped at the failed pipeline's 3 s
        assert_eq!(second_break(&b, &clock), Some(Duration::from_secs(10)));
    }
    // a build that succeeds does cap it
    let clock = ManualClock::new();
    let b = shared_breaker(&clock);
    Pipeline::builder()
        .timeout(Timeout::circuit(Duration::from_secs(3)))
        .circuit_breaker(&b)
        .build()
        .unwrap();
    assert_eq!(second_break(&b, &clock), Some(Duration::from_secs(3)));
}

/// A lone guard's permit is held on its own, without a list (per call or per attempt,
/// blocking or async): it is released exactly once, with the outcome, on success, failure
/// and panic, and as a cancellation when the call is rejected further on.
#[tokio::test(start_paused = true)]
async fn a_lone_guards_permit_is_released_once_on_every_path() {
    for per_attempt in [false, true] {
        let lone = Arc::new(Recorder::default());
        let builder = Pipeline::builder();
        let builder = if per_attempt {
            builder
                .retry(Retry::immediate().attempts(2))
                .guard_arc(lone.clone())
        } else {
            builder.guard_arc(lone.clone())
        };
        let p = builder.build().unwrap();
        // blocking: a success, a failure (retried per attempt), a panic
        assert!(p.execute_blocking(|| Ok::<_, ()>(1)).is_ok());
        assert!(p.execute_blocking(|| Err::<(), _>("no")).is_err());
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            p.execute_blocking(|| -> Result<(), ()> { panic!("boom") })
        }));
        assert!(panicked.is_err());
        // async: a success and a failure
        assert!(p.execute(|| async { Ok::<_, ()>(1) }).await.is_ok());
        assert!(p.execute(|| async { Err::<(), _>("no") }).await.is_err());
        let attempts_of_failure = if per_attempt { 2 } else { 1 };
        let mut expected = vec![Some(Outcome::Success)];
        expected.extend(vec![Some(Outcome::Failure); attempts_of_failure]);
        expected.push(Some(Outcome::Failure)); // the panic
        expected.push(Some(Outcome::Success));
        expected.extend(vec![Some(Outcome::Failure); attempts_of_failure]);
        assert_eq!(*lone.released.lock().unwrap(), expected, "{per_attempt}");
        assert_eq!(
            lone.admitted.load(Ordering::SeqCst) as usize,
            expected.len(),
            "{per_attempt}"
        );
    }

    // A second guard rejects: the first's permit goes back as a cancellation.
    let first = Arc::new(Recorder::default());
    let second = Arc::new(Recorder {
        reject_after: Some(0),
        ..Recorder::default()
    });
    let p = Pipeline::builder()
        .guard_arc(first.clone())
        .guard_arc(second.clone())
        .build()
        .unwrap();
    assert!(matches!(
        p.execute_blocking(|| Ok::<_, ()>(1)),
        Err(Error::Rejected {
            guard: "recorder",
            ..
        })
    ));
    assert!(matches!(
        p.execute(|| async { Ok::<_, ()>(1) }).await,
        Err(Error::Rejected {
            guard: "recorder",
            ..
        })
    ));
    assert_eq!(*first.released.lock().unwrap(), vec![None, None]);
    assert!(second.released.lock().unwrap().is_empty());
}

/// Records the tokens of the permits released to it.
#[derive(Debug, Default)]
struct Tally {
    issued: AtomicU32,
    released: Mutex<Vec<u64>>,
}

impl Guard for Tally {
    fn name(&self) -> &'static str {
        "tally"
    }
    fn acquire<'a>(&'a self, _ctx: &Context) -> Acquire<'a> {
        let n = self.issued.fetch_add(1, Ordering::SeqCst) + 1;
        Acquire::Ready(Ok(Permit::new(self, 100 + u64::from(n))))
    }
    fn on_release(&self, token: u64, _outcome: Option<(Outcome, Duration)>) {
        self.released.lock().unwrap().push(token);
    }
}

/// Hands out the permits of the guard in its first field, which sits at this guard's own
/// address (`repr(C)`), or of a guard elsewhere; releases to itself are kept apart.
#[repr(C)]
#[derive(Debug, Default)]
struct Front {
    inner: Tally,
    own: Tally,
    elsewhere: Option<Arc<Tally>>,
}

impl Guard for Front {
    fn name(&self) -> &'static str {
        "front"
    }
    fn acquire<'a>(&'a self, ctx: &Context) -> Acquire<'a> {
        match &self.elsewhere {
            Some(other) => other.acquire(ctx),
            None => self.inner.acquire(ctx),
        }
    }
    fn on_release(&self, token: u64, outcome: Option<(Outcome, Duration)>) {
        self.own.on_release(token, outcome);
    }
}

/// Every way a pipeline runs its guards, with `guard` per call (before the retry) or per
/// attempt (after it), alone or beside another guard.
async fn run_every_path(guard: Arc<dyn Guard>, per_attempt: bool, with_other: bool) {
    let build = |timeout: bool| {
        let mut b = Pipeline::builder();
        if !per_attempt {
            b = b.guard_arc(guard.clone());
            if with_other {
                b = b.guard(Tally::default());
            }
        }
        b = b.retry(Retry::immediate().attempts(2));
        if per_attempt {
            b = b.guard_arc(guard.clone());
            if with_other {
                b = b.guard(Tally::default());
            }
        }
        if timeout {
            b = b.timeout(Timeout::operation(MS * 50));
        }
        b.build().unwrap()
    };
    for timeout in [false, true] {
        let p = build(timeout);
        let script = Script::new([Err("a"), Ok(1)]);
        assert_eq!(p.execute(|| script.next()).await, Ok(1));
        let script = Script::new([Err("a"), Ok(2)]);
        assert_eq!(p.execute_with(|_ctx| script.next()).await, Ok(2));
        let mut runs = 0;
        let r = p.execute_blocking(|| {
            runs += 1;
            if runs == 1 { Err("a") } else { Ok(3) }
        });
        assert_eq!(r, Ok(3));
        assert_eq!(p.execute_blocking(|| Ok::<_, &str>(4)), Ok(4));
    }
}

#[tokio::test(start_paused = true)]
async fn a_permit_is_released_to_the_guard_that_issued_it_with_its_token() {
    for per_attempt in [false, true] {
        for with_other in [false, true] {
            // Its own permits: every token comes back to it, once.
            let tally = Arc::new(Tally::default());
            run_every_path(tally.clone(), per_attempt, with_other).await;
            let issued = u64::from(tally.issued.load(Ordering::SeqCst));
            assert!(issued >= 8, "{issued}");
            let mut released = tally.released.lock().unwrap().clone();
            released.sort_unstable();
            assert_eq!(released, (101..=100 + issued).collect::<Vec<_>>());

            // The permits of the guard at its own address go to that guard, not to it.
            let front = Arc::new(Front::default());
            run_every_path(front.clone(), per_attempt, with_other).await;
            let issued = u64::from(front.inner.issued.load(Ordering::SeqCst));
            assert!(issued >= 8, "{issued}");
            assert_eq!(front.inner.released.lock().unwrap().len() as u64, issued);
            assert!(front.own.released.lock().unwrap().is_empty());

            // And those of a guard elsewhere to that one.
            let other = Arc::new(Tally::default());
            let front = Arc::new(Front {
                elsewhere: Some(other.clone()),
                ..Front::default()
            });
            run_every_path(front.clone(), per_attempt, with_other).await;
            let issued = u64::from(other.issued.load(Ordering::SeqCst));
            assert!(issued >= 8, "{issued}");
            assert_eq!(other.released.lock().unwrap().len() as u64, issued);
            assert!(front.own.released.lock().unwrap().is_empty());
            assert!(front.inner.released.lock().unwrap().is_empty());
        }
    }
}
