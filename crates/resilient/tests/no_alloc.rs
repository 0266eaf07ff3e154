//! The success path allocates nothing: counted with a global allocator, per thread (the
//! tests of this binary run in parallel, each on its own current-thread runtime).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::Duration;

use resilient::{
    Bulkhead, CancellationToken, Error, FailedAttempt, Pipeline, Retry, RetryBudget, RetryEvent,
    Timeout,
};

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

/// Starts counting this thread's allocations from zero.
fn start_counting() {
    ALLOCS.with(|a| a.set(0));
    COUNTING.with(|c| c.set(true));
}

/// Stops counting and returns this thread's allocations since [`start_counting`].
fn stop_counting() -> usize {
    COUNTING.with(|c| c.set(false));
    ALLOCS.with(Cell::get)
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.try_with(Cell::get).unwrap_or(false) {
            let _ = ALLOCS.try_with(|a| a.set(a.get() + 1));
        }
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn assert_send_sync_clone<T: Send + Sync + Clone + 'static>() {}

#[test]
fn pipelines_are_shareable() {
    assert_send_sync_clone::<Pipeline>();
}

#[test]
fn success_path_does_not_allocate() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let pipelines = [
        Pipeline::builder()
            .retry(Retry::exponential(Duration::from_millis(10)).attempts(3))
            .build()
            .unwrap(),
        // request timeout, no per-call guards: the lean path under a deadline (its timer
        // armed only when the call is pending)
        Pipeline::builder()
            .timeout(Timeout::request(Duration::from_secs(30)))
            .retry(Retry::exponential(Duration::from_millis(10)).attempts(3))
            .build()
            .unwrap(),
        // operation timeout alone: the attempt's deadline and ambient scope
        Pipeline::builder()
            .retry(Retry::exponential(Duration::from_millis(10)).attempts(3))
            .timeout(Timeout::operation(Duration::from_secs(5)))
            .build()
            .unwrap(),
        // a per-call guard and an operation timeout, nothing else: the lean path
        Pipeline::builder()
            .guard(Bulkhead::builder(4).build().unwrap())
            .retry(Retry::exponential(Duration::from_millis(10)).attempts(3))
            .timeout(Timeout::operation(Duration::from_secs(5)))
            .build()
            .unwrap(),
        // per-call and per-attempt guards without a request timeout, with a name and tags
        // (the guards read no labels: the lean path)
        Pipeline::builder()
            .name("direct")
            .tag("tier", "gold")
            .guard(Bulkhead::builder(4).build().unwrap())
            .retry(Retry::exponential(Duration::from_millis(10)).attempts(3))
            .guard(Bulkhead::builder(4).build().unwrap())
            .build()
            .unwrap(),
        // every level: the lean path with a request deadline, per-call and per-attempt
        // guards and an operation timeout
        Pipeline::builder()
            .name("full")
            .timeout(Timeout::request(Duration::from_secs(30)))
            .guard(Bulkhead::builder(4).build().unwrap())
            .retry(
                Retry::exponential(Duration::from_millis(10))
                    .attempts(3)
                    .budget(RetryBudget::builder(0.1).build().unwrap()),
            )
            .guard(Bulkhead::builder(4).build().unwrap())
            .timeout(Timeout::operation(Duration::from_secs(5)))
            .build()
            .unwrap(),
    ];
    rt.block_on(async {
        for p in &pipelines {
            // warm up lazily initialised runtime structures (timer wheel, task-locals)
            for _ in 0..3 {
                let _: Result<u64, Error<()>> = p.execute(|| async { Ok(1) }).await;
            }
            start_counting();
            for i in 0..100u64 {
                let r: Result<u64, Error<()>> = p.execute(|| async move { Ok(i) }).await;
                assert_eq!(r.unwrap(), i);
            }
            assert_eq!(
                stop_counting(),
                0,
                "allocations on the success path of {:?}",
                p.stages()
            );
            // the same with the context handed to the operation, and blocking
            start_counting();
            for i in 0..100u64 {
                let r: Result<u64, Error<()>> = p
                    .execute_with(|ctx| async move { Ok(i + u64::from(ctx.attempt())) })
                    .await;
                assert_eq!(r.unwrap(), i + 1);
                let r: Result<u64, Error<()>> = p.execute_blocking(|| Ok(i));
                assert_eq!(r.unwrap(), i);
            }
            assert_eq!(
                stop_counting(),
                0,
                "allocations on the success path of {:?} (execute_with, execute_blocking)",
                p.stages()
            );
        }
    });
}

/// Caller cancellation (with and without a request timeout) and a typed retry hook cost
/// no allocation on the success path either.
#[test]
fn cancellable_success_path_does_not_allocate() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let plain = Pipeline::builder()
        .retry(Retry::exponential(Duration::from_millis(10)).attempts(3))
        .on_retry(|_: &RetryEvent<'_>, _: FailedAttempt<'_, u64, ()>| {})
        .build()
        .unwrap();
    let timed = Pipeline::builder()
        .timeout(Timeout::request(Duration::from_secs(30)))
        .retry(Retry::exponential(Duration::from_millis(10)).attempts(3))
        .timeout(Timeout::operation(Duration::from_secs(5)))
        .build()
        .unwrap();
    let token = CancellationToken::new();
    rt.block_on(async {
        for _ in 0..3 {
            let _ = plain
                .execute_cancellable(&token, || async { Ok(1u64) })
                .await;
            let _: Result<u64, Error<()>> =
                timed.execute_cancellable(&token, || async { Ok(1) }).await;
        }
        start_counting();
        for i in 0..100u64 {
            let r: Result<u64, Error<()>> = plain
                .execute_cancellable(&token, || async move { Ok(i) })
                .await;
            assert_eq!(r.unwrap(), i);
            let r: Result<u64, Error<()>> = timed
                .execute_cancellable(&token, || async move { Ok(i) })
                .await;
            assert_eq!(r.unwrap(), i);
        }
        assert_eq!(stop_counting(), 0);
    });
}

/// A call's own cost and key ([`Pipeline::call`]) cost no allocation on the success path,
/// with a rate limiter charging the cost and a keyed limiter over known keys.
#[test]
fn per_call_cost_and_key_do_not_allocate() {
    use resilient::ratelimit::{Gcra, KeyedLimiter, Rate, RateLimiter};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let p = Pipeline::builder()
        .rate_limit(
            RateLimiter::gcra(Rate::per_second(1_000_000))
                .build()
                .unwrap(),
        )
        .rate_limit(
            KeyedLimiter::builder(Gcra::new(Rate::per_second(1_000_000)).unwrap())
                .build::<u64>()
                .unwrap(),
        )
        .retry(Retry::exponential(Duration::from_millis(10)).attempts(3))
        .build()
        .unwrap();
    rt.block_on(async {
        // the keys' entries are stored on their first call
        for user in 0..4u64 {
            let _: Result<u64, Error<()>> = p
                .call()
                .cost(3)
                .key(&user)
                .execute(|| async { Ok(1) })
                .await;
        }
        start_counting();
        for i in 0..100u64 {
            let r: Result<u64, Error<()>> = p
                .call()
                .cost(3)
                .key(&(i % 4))
                .execute(|| async move { Ok(i) })
                .await;
            assert_eq!(r.unwrap(), i);
        }
        assert_eq!(stop_counting(), 0);
    });
}

#[test]
fn hedge_and_fallback_success_paths_do_not_allocate() {
    use resilient::fallback::Fallback;
    use resilient::hedge::Hedge;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        let p = Pipeline::builder()
            .retry(Retry::exponential(Duration::from_millis(10)).attempts(3))
            .bulkhead(Bulkhead::builder(10))
            .hedge(Hedge::delayed(Duration::from_millis(50)).build().unwrap())
            .idempotent(true)
            .fallback(Fallback::builder().or_value(0u64).build().unwrap())
            .build()
            .unwrap();
        let _: Result<u64, Error<()>> = p.execute(|| async { Ok(1) }).await;
        start_counting();
        for i in 0..100u64 {
            let r: Result<u64, Error<()>> = p.execute(|| async move { Ok(i) }).await;
            assert_eq!(r.unwrap(), i);
        }
        assert_eq!(stop_counting(), 0);
    });
}

/// A pipeline service whose pipeline has nothing to do but the call's one attempt (no
/// strategy, or an operation timeout) runs the call in place: no box, no allocation for an
/// answer at the first poll, and only its timer (boxed) for a call that is pending under
/// an operation timeout. Any other pipeline's call boxes the engine's call: one allocation.
#[cfg(feature = "tower")]
#[test]
fn tower_calls_of_one_bare_attempt_do_not_allocate() {
    use tower::{Service, ServiceBuilder, service_fn};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let untimed = Pipeline::builder().build().unwrap();
    let timed = Pipeline::builder()
        .timeout(Timeout::operation(Duration::from_secs(5)))
        .build()
        .unwrap();
    // Odd requests are pending once.
    let service = service_fn(|x: u64| async move {
        if x % 2 == 1 {
            tokio::task::yield_now().await;
        }
        Ok::<_, ()>(x)
    });
    let boxed_errors = service_fn(|x: u64| async move { Ok::<_, std::io::Error>(x) });
    rt.block_on(async {
        for (p, timers) in [(&untimed, 0), (&timed, 1)] {
            let mut svc = ServiceBuilder::new().layer(p.layer()).service(service);
            let mut boxed = ServiceBuilder::new()
                .layer(p.layer().boxed_errors())
                .service(boxed_errors);
            for i in 0..3 {
                assert_eq!(svc.call(i).await, Ok(i));
            }
            start_counting();
            for i in (0..200u64).step_by(2) {
                assert_eq!(svc.call(i).await, Ok(i));
                assert_eq!(boxed.call(i).await.unwrap(), i);
            }
            assert_eq!(stop_counting(), 0, "allocations of {:?}", p.stages());
            start_counting();
            assert_eq!(svc.call(1).await, Ok(1));
            assert_eq!(
                stop_counting(),
                timers,
                "a pending call of {:?}",
                p.stages()
            );
        }
        let retrying = Pipeline::builder()
            .retry(Retry::immediate().attempts(2))
            .build()
            .unwrap();
        let mut svc = ServiceBuilder::new()
            .layer(retrying.layer())
            .service(service);
        assert_eq!(svc.call(2).await, Ok(2));
        start_counting();
        assert_eq!(svc.call(2).await, Ok(2));
        assert_eq!(stop_counting(), 1, "a retrying pipeline's call is boxed");
    });
}

/// A tower service of a pipeline whose only strategy is one bulkhead, one breaker or one
/// rejecting rate limiter (with no cost or key) runs a call in place: the guard's permit is
/// held in the service's future, not in a box. A guard added through `guard(..)` is any
/// guard to the pipeline, and a limiter that waits holds its wait in the engine: their
/// calls take the engine's path, one box each.
#[cfg(feature = "tower")]
#[test]
fn tower_calls_under_one_bulkhead_breaker_or_limiter_do_not_allocate() {
    use resilient::ratelimit::{Mode, Rate, RateLimiter};
    use resilient::{Bulkhead, CircuitBreaker};
    use tower::{Service, ServiceBuilder, service_fn};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let bulkhead = Pipeline::builder()
        .bulkhead(Bulkhead::builder(4))
        .build()
        .unwrap();
    let breaker = Pipeline::builder()
        .circuit_breaker(CircuitBreaker::consecutive_failures(1_000))
        .build()
        .unwrap();
    let slow_calls = Pipeline::builder()
        .circuit_breaker(CircuitBreaker::failure_rate(1.0).slow_calls(Duration::from_secs(1), 1.0))
        .build()
        .unwrap();
    let limiter = RateLimiter::gcra(Rate::per_second(1_000_000_000))
        .build()
        .unwrap();
    let any_guard = Pipeline::builder()
        .guard(Bulkhead::builder(4).build().unwrap())
        .build()
        .unwrap();
    let waiting = Pipeline::builder()
        .rate_limit(
            RateLimiter::gcra(Rate::per_second(1_000_000_000))
                .mode(Mode::Wait(Duration::from_secs(1))),
        )
        .build()
        .unwrap();
    // Odd requests are pending once; requests over 100 fail.
    let service = service_fn(|x: u64| async move {
        if x % 2 == 1 {
            tokio::task::yield_now().await;
        }
        if x > 100 { Err(x) } else { Ok(x) }
    });
    rt.block_on(async {
        for layer in [
            bulkhead.layer(),
            breaker.layer(),
            slow_calls.layer(),
            limiter.layer(),
        ] {
            let stages = format!("{layer:?}");
            let mut svc = ServiceBuilder::new().layer(layer).service(service);
            for i in 0..3 {
                let _ = svc.call(i).await;
            }
            start_counting();
            for i in 0..200u64 {
                let r = svc.call(i).await;
                assert_eq!(r.is_ok(), i <= 100, "{r:?}");
            }
            assert_eq!(stop_counting(), 0, "allocations of {stages}");
        }
        for p in [&any_guard, &waiting] {
            let mut svc = ServiceBuilder::new().layer(p.layer()).service(service);
            assert_eq!(svc.call(2).await, Ok(2));
            start_counting();
            assert_eq!(svc.call(2).await, Ok(2));
            assert_eq!(stop_counting(), 1, "a call of {:?} is boxed", p.stages());
        }
    });
}
