//! What the engine pays for per call: clock reads in blocking execution, and the size of
//! a call's future.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use resilient::ratelimit::{Rate, RateLimiter};
use resilient::{Bulkhead, CircuitBreaker, Clock, Error, ManualClock, Pipeline, Retry, Timeout};

/// A manual clock that counts its readings.
#[derive(Debug, Default)]
struct Counting {
    clock: ManualClock,
    reads: AtomicUsize,
}

impl Clock for Counting {
    fn now(&self) -> Duration {
        self.reads.fetch_add(1, Ordering::Relaxed);
        self.clock.now()
    }

    fn sleep_blocking(&self, duration: Duration) {
        self.clock.advance(duration);
    }
}

fn reads_of(build: impl FnOnce(resilient::PipelineBuilder) -> resilient::PipelineBuilder) -> usize {
    let clock = Arc::new(Counting::default());
    let p = build(Pipeline::builder().clock(clock.clone()))
        .build()
        .unwrap();
    let r: Result<u32, Error<()>> = p.execute_blocking(|| Ok(7));
    assert_eq!(r.unwrap(), 7);
    clock.reads.load(Ordering::Relaxed)
}

#[test]
fn blocking_calls_read_the_clock_only_when_something_needs_it() {
    // Nothing timed: no reading at all.
    assert_eq!(reads_of(|b| b), 0);
    assert_eq!(reads_of(|b| b.retry(Retry::immediate().attempts(3))), 0);
    // A breaker that does not time calls, a bulkhead, a rate limiter: none either.
    assert_eq!(
        reads_of(|b| b.circuit_breaker(CircuitBreaker::consecutive_failures(5))),
        0
    );
    assert_eq!(reads_of(|b| b.bulkhead(Bulkhead::builder(2))), 0);
    assert_eq!(
        reads_of(|b| b.rate_limit(RateLimiter::gcra(Rate::per_second(10)))),
        0
    );
    // A request timeout: its start and one check before the attempt.
    assert_eq!(
        reads_of(|b| b.timeout(Timeout::request(Duration::from_secs(1)))),
        2
    );
    // An operation timeout: around the attempt.
    assert_eq!(
        reads_of(|b| b.timeout(Timeout::operation(Duration::from_secs(1)))),
        2
    );
}

#[test]
fn telemetry_reads_the_clock_only_for_an_observer() {
    // Without an observer (above): no reading. With one: the call's start and end and the
    // attempt's start and end.
    let observed = reads_of(|b| b.observer(|_: &resilient::telemetry::Event<'_>| {}));
    assert_eq!(observed, 4);
}

#[test]
fn a_blocking_operation_timeout_still_counts_an_overrun() {
    let clock = Arc::new(Counting::default());
    let p = Pipeline::builder()
        .clock(clock.clone())
        .timeout(Timeout::operation(Duration::from_millis(10)))
        .build()
        .unwrap();
    let r: Result<u32, Error<()>> = p.execute_blocking(|| {
        clock.clock.advance(Duration::from_millis(11));
        Ok(7)
    });
    assert!(matches!(r, Err(Error::Timeout { .. })), "{r:?}");
}

async fn op() -> Result<u64, ()> {
    Ok(1)
}

/// The call future's size, printed (`--nocapture`) and bounded so that it cannot grow
/// unnoticed. One engine serves every configuration, so every pipeline's call future has
/// the same size for the same operation. Its largest variant is a hedged attempt (the
/// first attempt inline, each hedge boxed when it starts), which costs every call future
/// about 250 bytes. Beside the phased engine's future sits the lean path's attempt, in a
/// place of its own so that a call never runs the drop glue of a future it did not hold;
/// the lean path's other state (its slow states, such as a queued admission, an attempt
/// under an operation timeout or the sleep before a retry, its permits, the request
/// deadline's timer, the hedges) shares its room with the phased engine's future, as a
/// call takes one path or the other.
#[test]
fn call_futures_stay_within_their_size_bound() {
    const BOUND: usize = 1792;
    let retry_only = Pipeline::builder()
        .retry(Retry::exponential(Duration::from_millis(1)).attempts(3))
        .build()
        .unwrap();
    let f = retry_only.execute(op);
    let retry_size = std::mem::size_of_val(&f);
    drop(f);
    let five = Pipeline::builder()
        .rate_limit(RateLimiter::gcra(Rate::per_second(1000)))
        .timeout(Timeout::request(Duration::from_secs(30)))
        .retry(Retry::exponential(Duration::from_millis(1)).attempts(3))
        .circuit_breaker(CircuitBreaker::consecutive_failures(5))
        .bulkhead(Bulkhead::builder(10))
        .build()
        .unwrap();
    let f = five.execute(op);
    let five_size = std::mem::size_of_val(&f);
    drop(f);
    println!("call future: retry only {retry_size} bytes, 5 strategies {five_size} bytes");
    assert!(retry_size <= BOUND, "{retry_size}");
    assert!(five_size <= BOUND, "{five_size}");
}

/// Records the largest allocation this thread makes while `RECORDING` is set.
struct Recording;

thread_local! {
    static RECORDING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    static LARGEST: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
}

/// The size of the largest allocation `f` makes on this thread, if it makes any.
#[cfg(feature = "tower")]
fn largest_allocation<R>(f: impl FnOnce() -> R) -> (R, Option<usize>) {
    LARGEST.with(|l| l.set(None));
    RECORDING.with(|r| r.set(true));
    let out = f();
    RECORDING.with(|r| r.set(false));
    (out, LARGEST.with(std::cell::Cell::get))
}

unsafe impl std::alloc::GlobalAlloc for Recording {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        if RECORDING.try_with(std::cell::Cell::get).unwrap_or(false) {
            let _ = LARGEST.try_with(|l| l.set(Some(l.get().unwrap_or(0).max(layout.size()))));
        }
        unsafe { std::alloc::System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Recording = Recording;

/// The tower adapter runs a call of a pipeline with nothing but its one attempt (at most an
/// operation timeout around it), or one attempt under one bulkhead or breaker, in place:
/// its future is small and holds no box. Any other
/// call's future boxes the engine's call. A lean call's box holds the call without the
/// phased engine's future (that is boxed on its own, only by a call that takes the phased
/// path), which keeps it under glibc's per-thread cache limit (1,032 bytes): its
/// allocation and free take the allocator's fast path. Both are measured over a
/// `service_fn`.
#[cfg(feature = "tower")]
#[test]
fn tower_call_futures_fit_the_allocators_fast_path() {
    use tower::{Service, ServiceBuilder, service_fn};
    const BOUND: usize = 1024;
    const BARE_BOUND: usize = 64;
    const GUARDED_BOUND: usize = 96;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let timed = Pipeline::builder()
        .timeout(Timeout::operation(Duration::from_secs(5)))
        .build()
        .unwrap();
    let mut svc = ServiceBuilder::new()
        .layer(timed.layer())
        .service(service_fn(|x: u64| async move { Ok::<_, ()>(x) }));
    let (f, boxed) = largest_allocation(|| svc.call(7));
    let bare = std::mem::size_of_val(&f);
    assert_eq!(boxed, None, "a bare attempt's call allocates nothing");
    println!("tower call future: operation timeout {bare} bytes, not boxed");
    assert!(bare <= BARE_BOUND, "{bare}");
    assert_eq!(rt.block_on(f).unwrap(), 7);

    // One bulkhead: its permit is held in the future, which holds the pipeline.
    let guarded = Pipeline::builder()
        .bulkhead(Bulkhead::builder(10))
        .build()
        .unwrap();
    let mut svc = ServiceBuilder::new()
        .layer(guarded.layer())
        .service(service_fn(|x: u64| async move { Ok::<_, ()>(x) }));
    let (f, boxed) = largest_allocation(|| svc.call(7));
    let one_guard = std::mem::size_of_val(&f);
    assert_eq!(boxed, None, "a call under one bulkhead allocates nothing");
    println!("tower call future: one bulkhead {one_guard} bytes, not boxed");
    assert!(one_guard <= GUARDED_BOUND, "{one_guard}");
    assert_eq!(rt.block_on(f).unwrap(), 7);

    let five = Pipeline::builder()
        .rate_limit(RateLimiter::gcra(Rate::per_second(1000)))
        .timeout(Timeout::request(Duration::from_secs(30)))
        .timeout(Timeout::operation(Duration::from_secs(5)))
        .retry(Retry::exponential(Duration::from_millis(1)).attempts(3))
        .circuit_breaker(CircuitBreaker::consecutive_failures(5))
        .bulkhead(Bulkhead::builder(10))
        .build()
        .unwrap();
    let mut svc = ServiceBuilder::new()
        .layer(five.layer())
        .service(service_fn(|x: u64| async move { Ok::<_, ()>(x) }));
    let (f, boxed) = largest_allocation(|| svc.call(7));
    let Some(size) = boxed else {
        panic!("a five-strategy call boxes the engine's call")
    };
    println!(
        "tower call future: 5 strategies {} bytes, boxing {size} bytes",
        std::mem::size_of_val(&f)
    );
    assert!(size <= BOUND, "{size}");
    assert_eq!(rt.block_on(f).unwrap(), 7);
    // A call with a key takes the phased path: its future is the same, and it still runs.
    let mut keyed = ServiceBuilder::new()
        .layer(five.layer().key(|x: &u64| *x))
        .service(service_fn(|x: u64| async move { Ok::<_, ()>(x) }));
    assert_eq!(rt.block_on(keyed.call(9)).unwrap(), 9);
}

/// A guard that records the labels it sees (it keeps the default `reads_labels`).
#[derive(Debug, Default)]
struct Labels(std::sync::Mutex<Vec<(Option<String>, Option<String>)>>);

impl resilient::Guard for Labels {
    fn name(&self) -> &'static str {
        "labels"
    }

    fn acquire<'a>(&'a self, ctx: &resilient::Context) -> resilient::Acquire<'a> {
        self.0.lock().unwrap().push((
            ctx.operation().map(str::to_owned),
            ctx.tag("team").map(str::to_owned),
        ));
        resilient::Acquire::Ready(Ok(resilient::Permit::new(self, 0)))
    }

    fn on_release(&self, _token: u64, _outcome: Option<(resilient::Outcome, Duration)>) {}

    fn measures_duration(&self) -> bool {
        false
    }
}

#[tokio::test]
async fn guards_that_read_labels_still_see_them_when_the_operation_does_not() {
    // Leaving name and tags out of a context is only for guards that say they don't read
    // them: a custom guard (per call and per attempt, async and blocking) sees both.
    let guard = Arc::new(Labels::default());
    let p = Pipeline::builder()
        .name("users")
        .tag("team", "core")
        .guard_arc(guard.clone())
        .retry(Retry::immediate().attempts(2))
        .guard_arc(guard.clone())
        .build()
        .unwrap();
    let r: Result<u32, Error<()>> = p.execute(|| async { Ok(1) }).await;
    assert_eq!(r.unwrap(), 1);
    let r: Result<u32, Error<()>> = p.execute_blocking(|| Ok(2));
    assert_eq!(r.unwrap(), 2);
    let seen = guard.0.lock().unwrap();
    assert_eq!(seen.len(), 4);
    for s in seen.iter() {
        assert_eq!(s, &(Some("users".to_owned()), Some("core".to_owned())));
    }
    // The crate's own guards read neither.
    use resilient::Guard;
    assert!(
        !CircuitBreaker::consecutive_failures(5)
            .build()
            .unwrap()
            .reads_labels()
    );
    assert!(!Bulkhead::builder(2).build().unwrap().reads_labels());
    assert!(
        !RateLimiter::gcra(Rate::per_second(1))
            .build()
            .unwrap()
            .reads_labels()
    );
}
