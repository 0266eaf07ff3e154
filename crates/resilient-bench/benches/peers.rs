//! Issue 10's harness: every row of its table in ONE binary, `resilient` and its peers side
//! by side, each peer set up as its docs recommend, every builder, policy and service built
//! once outside the timed loop.
//!
//! Method: for each row, every contender is calibrated (about a tenth of a round, which is
//! also its warm-up) to run about `--ms` milliseconds per round; then `--rounds` rounds run,
//! interleaving the contenders round by round (A B C A B C ...). A round's figure is its
//! per-call time; a contender's figure is the median of its rounds. "ratio" is ours over the
//! fastest peer of the same row and run (below 1 = we are faster); floors (`bare` calls)
//! are shown but are not peers. Async contenders run back to back inside one `block_on` of a
//! current-thread tokio runtime; inputs and outputs go through `black_box`. Each
//! contender's result is checked once before it is timed.
//!
//! Run (full; add `--profile bench-lto` for the LTO build, see `scripts/bench-peers.sh`):
//!
//! ```sh
//! cargo bench -p resilient-bench --bench peers
//! cargo bench -p resilient-bench --bench peers -- retry --rounds 3 --ms 50
//! ```
//!
//! Arguments after `--`: a filter (a substring of row names; several are OR-ed),
//! `--rounds N` (default 7, env `PEERS_ROUNDS`), `--ms M` (round length per contender,
//! default 200, env `PEERS_MS`), `--tsv` (also print one tab-separated line per contender
//! with every round's figure), `--only NAME` (only the contender of that exact name; may be
//! repeated), `--list` (print every row and contender, tab-separated, and run nothing). Without `--bench` (as `cargo test --all-targets` runs it) every contender is
//! only checked and run twice `--iters N` calls (default 1,000): run under callgrind with two
//! values of N, the difference of the totals gives exact instructions per call
//! (`scripts/peers-instructions.sh` does it for every contender).

use std::fmt;
use std::future::Future;
use std::hint::black_box;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use backon::{ConstantBuilder, ExponentialBuilder, Retryable};
use resilient::bulkhead::Aimd;
use resilient::circuit::Window;
use resilient::fallback::Fallback;
use resilient::hedge::Hedge;
use resilient::ratelimit::{Gcra, KeyedLimiter, Rate, RateLimiter};
use resilient::{Bulkhead, CircuitBreaker, Error, Pipeline, Retry, Timeout};
use resilient_bench::{Fail, calls, op, runtime};
use tokio::runtime::Runtime;
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

const ATTEMPTS: u32 = 3;
const FIRST_DELAY: Duration = Duration::from_millis(1);
const OPERATION_TIMEOUT: Duration = Duration::from_secs(5);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const SLOTS: usize = 10;
/// Limiter quotas large enough that every check is an admission (the costlier path).
const PER_SECOND: u32 = 1_000_000_000;

// ---------------------------------------------------------------------------------------
// The harness
// ---------------------------------------------------------------------------------------

/// Times `iters` calls of a blocking expression using `$i`.
macro_rules! blocking_calls {
    ($iters:expr, |$i:ident| $call:expr) => {{
        let start = Instant::now();
        for n in 0..$iters {
            let $i = black_box(n);
            let _ = black_box($call);
        }
        start.elapsed()
    }};
}

/// What a contender is in its row.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    /// A `resilient` variant: gets a ratio.
    Ours,
    /// A peer (or, for the degradation row, the reference pipeline): the ratio's divisor.
    Peer,
    /// A lower bound (the bare call): shown, not compared.
    Floor,
}

/// Runs `iters` calls and returns the time they took.
type Runner<'a> = Box<dyn FnMut(u64) -> Duration + 'a>;

struct Contender<'a> {
    name: &'static str,
    kind: Kind,
    run: Runner<'a>,
}

fn ours<'a>(name: &'static str, run: impl FnMut(u64) -> Duration + 'a) -> Contender<'a> {
    Contender {
        name,
        kind: Kind::Ours,
        run: Box::new(run),
    }
}

fn peer<'a>(name: &'static str, run: impl FnMut(u64) -> Duration + 'a) -> Contender<'a> {
    Contender {
        name,
        kind: Kind::Peer,
        run: Box::new(run),
    }
}

fn floor<'a>(name: &'static str, run: impl FnMut(u64) -> Duration + 'a) -> Contender<'a> {
    Contender {
        name,
        kind: Kind::Floor,
        run: Box::new(run),
    }
}

struct Config {
    filters: Vec<String>,
    /// contender filter (exact contender names)
    only: Vec<String>,
    /// print the rows and contenders (tab-separated), run nothing
    list: bool,
    /// calls per run in quick mode
    iters: u64,
    rounds: usize,
    round: Duration,
    tsv: bool,
    /// Not under `cargo bench` (`cargo test --all-targets`): check and run briefly.
    quick: bool,
}

impl Config {
    fn from_env_and_args() -> Self {
        let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok());
        let mut cfg = Config {
            filters: Vec::new(),
            only: Vec::new(),
            list: false,
            iters: 1_000,
            rounds: env("PEERS_ROUNDS").unwrap_or(7) as usize,
            round: Duration::from_millis(env("PEERS_MS").unwrap_or(200)),
            tsv: std::env::var_os("PEERS_TSV").is_some(),
            quick: true,
        };
        let mut args = std::env::args().skip(1);
        while let Some(a) = args.next() {
            let mut number = |what: &str| -> u64 {
                args.next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| panic!("{what} needs a number"))
            };
            match a.as_str() {
                "--bench" => cfg.quick = false,
                "--rounds" => cfg.rounds = number("--rounds") as usize,
                "--ms" => cfg.round = Duration::from_millis(number("--ms")),
                "--tsv" => cfg.tsv = true,
                "--iters" => cfg.iters = number("--iters").max(1),
                "--only" => cfg.only.extend(args.next()),
                "--list" => cfg.list = true,
                // what libtest-style runners may pass
                s if s.starts_with('-') => {}
                s => cfg.filters.push(s.to_owned()),
            }
        }
        cfg.rounds = cfg.rounds.max(1);
        cfg
    }
}

struct Measured {
    row: &'static str,
    name: &'static str,
    kind: Kind,
    /// ns per call, one per round
    rounds: Vec<f64>,
    median: f64,
    /// ours over the fastest peer of the row
    ratio: Option<f64>,
    /// ours minus the fastest peer, ns
    added: Option<f64>,
}

struct Harness {
    cfg: Config,
    results: Vec<Measured>,
}

fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

impl Harness {
    fn wants(&self, row: &str) -> bool {
        self.cfg.filters.is_empty() || self.cfg.filters.iter().any(|f| row.contains(f.as_str()))
    }

    /// Iterations for one round of about `cfg.round` (also the contender's warm-up).
    fn calibrate(&self, run: &mut Runner<'_>) -> u64 {
        if self.cfg.quick {
            run(self.cfg.iters);
            return self.cfg.iters;
        }
        let probe = self.cfg.round / 10;
        let mut n: u64 = 1_000;
        loop {
            let took = run(n);
            if took >= probe || n >= 1 << 36 {
                let per_call = took.as_secs_f64() / n as f64;
                return ((self.cfg.round.as_secs_f64() / per_call.max(1e-12)) as u64).max(1);
            }
            n *= 4;
        }
    }

    fn measure(&mut self, row: &'static str, mut contenders: Vec<Contender<'_>>) {
        if !self.wants(row) {
            return;
        }
        let only = &self.cfg.only;
        contenders.retain(|c| only.is_empty() || only.iter().any(|o| c.name == o.as_str()));
        if self.cfg.list {
            for c in &contenders {
                println!("{row}\t{}", c.name);
            }
            return;
        }
        if contenders.is_empty() {
            return;
        }
        eprintln!("peers: {row}");
        let iters: Vec<u64> = contenders
            .iter_mut()
            .map(|c| self.calibrate(&mut c.run))
            .collect();
        let rounds = if self.cfg.quick { 1 } else { self.cfg.rounds };
        let mut samples = vec![Vec::with_capacity(rounds); contenders.len()];
        for _ in 0..rounds {
            for (k, c) in contenders.iter_mut().enumerate() {
                let took = (c.run)(iters[k]);
                samples[k].push(took.as_nanos() as f64 / iters[k] as f64);
            }
        }
        let medians: Vec<f64> = samples.iter().map(|s| median(s)).collect();
        let fastest_peer = contenders
            .iter()
            .zip(&medians)
            .filter(|(c, _)| c.kind == Kind::Peer)
            .map(|(_, m)| *m)
            .min_by(f64::total_cmp);
        for ((c, s), m) in contenders.iter().zip(samples).zip(medians) {
            let vs = fastest_peer.filter(|_| c.kind == Kind::Ours);
            self.results.push(Measured {
                row,
                name: c.name,
                kind: c.kind,
                rounds: s,
                median: m,
                ratio: vs.map(|p| m / p),
                added: vs.map(|p| m - p),
            });
        }
    }

    fn report(&self) {
        let cfg = &self.cfg;
        if cfg.list {
            return;
        }
        println!(
            "rounds: {}, round length per contender: {} ms{}",
            if cfg.quick { 1 } else { cfg.rounds },
            cfg.round.as_millis(),
            if cfg.quick {
                " (quick check: not a measurement)"
            } else {
                ""
            }
        );
        println!();
        println!("| row | contender | median ns | min–max ns | ratio vs fastest peer | added ns |");
        println!("|---|---|---:|---:|---:|---:|");
        for r in &self.results {
            let lo = r.rounds.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = r.rounds.iter().copied().fold(0.0, f64::max);
            let (ratio, added) = match (r.ratio, r.added) {
                (Some(q), Some(a)) => (format!("**{q:.2}x**"), format!("{a:+.1}")),
                _ if r.kind == Kind::Peer => ("peer".to_owned(), String::new()),
                _ => ("floor".to_owned(), String::new()),
            };
            println!(
                "| {} | {} | {:.1} | {:.1}–{:.1} | {} | {} |",
                r.row,
                r.name.replace('|', "\\|"),
                r.median,
                lo,
                hi,
                ratio,
                added
            );
        }
        if cfg.tsv {
            println!();
            for r in &self.results {
                let rounds: Vec<String> = r.rounds.iter().map(|x| format!("{x:.2}")).collect();
                println!(
                    "peers\t{}\t{}\t{:?}\t{:.2}\t{}\t{}",
                    r.row,
                    r.name,
                    r.kind,
                    r.median,
                    r.ratio.map_or(String::from("-"), |q| format!("{q:.3}")),
                    rounds.join(",")
                );
            }
        }
    }
}

/// Asserts that an async contender returns the operation's value (7) before it is timed.
fn check<F: Future<Output = Result<u64, E>>, E: fmt::Debug>(rt: &Runtime, f: F) {
    assert_eq!(rt.block_on(f).unwrap(), 7);
}

// ---------------------------------------------------------------------------------------
// Shared setups
// ---------------------------------------------------------------------------------------

/// A tower retry policy equivalent to the others: 3 attempts, exponential backoff.
#[derive(Clone)]
struct Attempts {
    left: u32,
    delay: Duration,
}

impl Attempts {
    fn new() -> Self {
        Self {
            left: ATTEMPTS - 1,
            delay: FIRST_DELAY,
        }
    }
}

impl<Req: Clone, Res, E> tower::retry::Policy<Req, Res, E> for Attempts {
    type Future = tokio::time::Sleep;

    fn retry(&mut self, _req: &mut Req, result: &mut Result<Res, E>) -> Option<Self::Future> {
        match result {
            Ok(_) => None,
            Err(_) if self.left > 0 => {
                self.left -= 1;
                let d = self.delay;
                self.delay = d.saturating_mul(2);
                Some(tokio::time::sleep(d))
            }
            Err(_) => None,
        }
    }

    fn clone_request(&mut self, req: &Req) -> Option<Req> {
        Some(req.clone())
    }
}

fn resilient_retry() -> Retry {
    Retry::exponential(FIRST_DELAY).attempts(ATTEMPTS)
}

/// `op` under `#[resilient::retry]` with the same plan (3 attempts, exponential from 1 ms).
#[resilient::retry(attempts = 3, backoff = exponential("1ms"))]
async fn op_macro(x: u64) -> Result<u64, Fail> {
    Ok(black_box(x))
}

/// A blocking fn under `#[resilient::circuit]` (failure rate 50% over the last 100 calls).
#[resilient::circuit(failure_rate = 0.5, window = 100)]
fn guarded(x: u64) -> Result<u64, ()> {
    Ok(black_box(x))
}

fn rate_breaker() -> CircuitBreaker {
    CircuitBreaker::failure_rate(0.5)
        .window(Window::count(100))
        .build()
        .unwrap()
}

fn recloser_rate() -> recloser::Recloser {
    recloser::Recloser::custom()
        .error_rate(0.5)
        .closed_len(100)
        .build()
}

fn quota() -> governor::Quota {
    governor::Quota::per_second(NonZeroU32::new(PER_SECOND).unwrap())
}

fn gcra_rate() -> Rate {
    Rate::per_second(u64::from(PER_SECOND))
}

// ---------------------------------------------------------------------------------------
// Rows
// ---------------------------------------------------------------------------------------

fn retry_ok(h: &mut Harness, rt: &Runtime) {
    const ROW: &str = "retry, Ok at once";
    if !h.wants(ROW) {
        return;
    }
    let pipeline = Pipeline::builder()
        .retry(resilient_retry())
        .build()
        .unwrap();
    check(rt, pipeline.execute(|| op(7)));
    check(rt, op_macro(7));
    let builder = ExponentialBuilder::default()
        .with_min_delay(FIRST_DELAY)
        .with_max_times(ATTEMPTS as usize - 1);
    check(rt, (|| op(7)).retry(&builder));
    let mut svc = ServiceBuilder::new()
        .retry(Attempts::new())
        .service(service_fn(op));
    check(rt, svc.clone().oneshot(7));
    h.measure(
        ROW,
        vec![
            floor("bare op", |n| calls!(rt, n, |i| op(i))),
            floor("bare op, returning the engine's result type", |n| {
                calls!(rt, n, |i| async move { op(i).await.map_err(Error::Inner) })
            }),
            ours("resilient Pipeline", |n| {
                calls!(rt, n, |i| pipeline.execute(|| op(i)))
            }),
            ours("resilient #[retry]", |n| calls!(rt, n, |i| op_macro(i))),
            peer("backon (|| op()).retry(&builder)", |n| {
                calls!(rt, n, |i| (|| op(i)).retry(&builder))
            }),
            peer("tower retry", move |n| {
                calls!(rt, n, |i| async {
                    svc.ready().await.unwrap().call(i).await
                })
            }),
        ],
    );
}

/// Fails on the first attempt of each call, succeeds on the second.
async fn flaky(x: u64, attempt: u32) -> Result<u64, Fail> {
    if attempt == 1 {
        Err(Fail)
    } else {
        Ok(black_box(x))
    }
}

fn retry_one_failure(h: &mut Harness, rt: &Runtime) {
    const ROW: &str = "retry, 1 failure then Ok, zero delay";
    if !h.wants(ROW) {
        return;
    }
    let pipeline = Pipeline::builder()
        .retry(Retry::immediate().attempts(ATTEMPTS))
        .build()
        .unwrap();
    let resilient_call = |i: u64| {
        let mut n = 0;
        pipeline.execute(move || {
            n += 1;
            flaky(i, n)
        })
    };
    check(rt, resilient_call(7));
    let builder = ConstantBuilder::default()
        .with_delay(Duration::ZERO)
        .with_max_times(ATTEMPTS as usize - 1);
    let backon_call = |i: u64| {
        let mut n = 0;
        (move || {
            n += 1;
            flaky(i, n)
        })
        .retry(&builder)
        .sleep(|_| async {})
    };
    check(rt, backon_call(7));
    h.measure(
        ROW,
        vec![
            ours("resilient Pipeline (Retry::immediate)", |n| {
                calls!(rt, n, |i| resilient_call(i))
            }),
            peer("backon, no-op sleeper", |n| {
                calls!(rt, n, |i| backon_call(i))
            }),
        ],
    );
}

fn circuit_blocking(h: &mut Harness, _rt: &Runtime) {
    const ROW: &str = "circuit, closed, blocking fn";
    if !h.wants(ROW) {
        return;
    }
    assert_eq!(guarded(7), Ok(7));
    let breaker = rate_breaker();
    assert_eq!(breaker.call_blocking(|| Ok::<u64, ()>(7)).unwrap(), 7);
    let pipeline = Pipeline::builder()
        .circuit_breaker(rate_breaker())
        .build()
        .unwrap();
    assert_eq!(
        pipeline
            .execute_blocking(|| Ok::<u64, ()>(black_box(7)))
            .unwrap(),
        7
    );
    let rc = recloser_rate();
    assert_eq!(rc.call(|| Ok::<u64, ()>(7)).unwrap(), 7);
    let fs = failsafe::Config::new().build();
    assert_eq!(
        failsafe::CircuitBreaker::call(&fs, || Ok::<u64, ()>(7)).unwrap(),
        7
    );
    h.measure(
        ROW,
        vec![
            ours("resilient #[circuit] fn", |n| {
                blocking_calls!(n, |i| guarded(i))
            }),
            ours("resilient CircuitBreaker::call_blocking", |n| {
                blocking_calls!(n, |i| breaker.call_blocking(|| Ok::<u64, ()>(black_box(i))))
            }),
            ours("resilient Pipeline::execute_blocking", |n| {
                blocking_calls!(n, |i| pipeline
                    .execute_blocking(|| Ok::<u64, ()>(black_box(i))))
            }),
            peer("recloser call", |n| {
                blocking_calls!(n, |i| rc.call(|| Ok::<u64, ()>(black_box(i))))
            }),
            peer("failsafe call", |n| {
                blocking_calls!(n, |i| failsafe::CircuitBreaker::call(&fs, || {
                    Ok::<u64, ()>(black_box(i))
                }))
            }),
        ],
    );
}

fn circuit_pipeline_closed(h: &mut Harness, rt: &Runtime) {
    const ROW: &str = "circuit, closed, in a Pipeline (async)";
    if !h.wants(ROW) {
        return;
    }
    let pipeline = Pipeline::builder()
        .circuit_breaker(rate_breaker())
        .build()
        .unwrap();
    check(rt, pipeline.execute(|| op(7)));
    let rc = recloser::AsyncRecloser::from(recloser_rate());
    check(rt, rc.call(op(7)));
    let fs = failsafe::Config::new().build();
    check(rt, failsafe::futures::CircuitBreaker::call(&fs, op(7)));
    h.measure(
        ROW,
        vec![
            floor("bare op", |n| calls!(rt, n, |i| op(i))),
            ours("resilient Pipeline", |n| {
                calls!(rt, n, |i| pipeline.execute(|| op(i)))
            }),
            peer("recloser AsyncRecloser::call", |n| {
                calls!(rt, n, |i| rc.call(op(i)))
            }),
            peer("failsafe futures call", |n| {
                calls!(rt, n, |i| failsafe::futures::CircuitBreaker::call(
                    &fs,
                    op(i)
                ))
            }),
        ],
    );
}

fn circuit_open(h: &mut Harness, rt: &Runtime) {
    const ROW: &str = "circuit, open, rejection";
    if !h.wants(ROW) {
        return;
    }
    let breaker = CircuitBreaker::consecutive_failures(1)
        .open_for(Duration::from_secs(3600))
        .build()
        .unwrap();
    let _ = breaker.call_blocking(|| Err::<u64, ()>(()));
    assert!(!breaker.is_ready());
    let pipeline = Pipeline::builder()
        .circuit_breaker(&breaker)
        .build()
        .unwrap();
    let r: Result<u64, Error<Fail>> = rt.block_on(pipeline.execute(|| op(7)));
    assert!(r.is_err(), "the open breaker rejects");
    let r: Result<u64, Error<()>> = pipeline.execute_blocking(|| Ok(7));
    assert!(r.is_err(), "the open breaker rejects");
    let fs = failsafe::Config::new()
        .failure_policy(failsafe::failure_policy::consecutive_failures(
            1,
            failsafe::backoff::constant(Duration::from_secs(3600)),
        ))
        .build();
    let _ = failsafe::CircuitBreaker::call(&fs, || Err::<u64, ()>(()));
    assert!(!failsafe::CircuitBreaker::is_call_permitted(&fs));
    assert!(
        rt.block_on(failsafe::futures::CircuitBreaker::call(&fs, op(7)))
            .is_err()
    );
    h.measure(
        ROW,
        vec![
            ours("resilient Pipeline (async)", |n| {
                calls!(rt, n, |i| pipeline.execute(|| op(i)))
            }),
            ours("resilient Pipeline::execute_blocking", |n| {
                blocking_calls!(n, |i| pipeline
                    .execute_blocking(|| Ok::<u64, ()>(black_box(i))))
            }),
            peer("failsafe futures call", |n| {
                calls!(rt, n, |i| failsafe::futures::CircuitBreaker::call(
                    &fs,
                    op(i)
                ))
            }),
            peer("failsafe call (blocking)", |n| {
                blocking_calls!(n, |i| failsafe::CircuitBreaker::call(&fs, || {
                    Ok::<u64, ()>(black_box(i))
                }))
            }),
        ],
    );
}

fn ratelimit_direct(h: &mut Harness, _rt: &Runtime) {
    const ROW: &str = "rate limiter, direct, 1 thread";
    if !h.wants(ROW) {
        return;
    }
    // the default clock: no `.fast_clock()` or `.clock(..)`
    let limiter = RateLimiter::builder()
        .limit(Gcra::limiter(gcra_rate()).unwrap())
        .build()
        .unwrap();
    assert!(limiter.allow().is_ok());
    assert!(limiter.check().allowed);
    let gov = governor::RateLimiter::direct(quota());
    assert!(gov.check().is_ok());
    h.measure(
        ROW,
        vec![
            ours("resilient allow() (default clock)", |n| {
                blocking_calls!(n, |_i| limiter.allow().is_ok())
            }),
            ours("resilient check() (default clock, full decision)", |n| {
                blocking_calls!(n, |_i| limiter.check().allowed)
            }),
            peer("governor direct check()", |n| {
                blocking_calls!(n, |_i| gov.check().is_ok())
            }),
        ],
    );
}

fn ratelimit_keyed<const KEYS: u64>(h: &mut Harness, row: &'static str) {
    if !h.wants(row) {
        return;
    }
    let limiter: KeyedLimiter<u64, Gcra> = KeyedLimiter::builder(Gcra::new(gcra_rate()).unwrap())
        .build()
        .unwrap();
    let gov = governor::RateLimiter::keyed(quota());
    // every key present before timing, in both
    for k in 0..KEYS {
        assert!(limiter.allow(&k, 1).is_ok());
        assert!(gov.check_key(&k).is_ok());
    }
    h.measure(
        row,
        vec![
            ours("resilient KeyedLimiter allow() (default clock)", |n| {
                blocking_calls!(n, |i| limiter.allow(&(i % KEYS), 1).is_ok())
            }),
            peer("governor keyed check_key()", |n| {
                blocking_calls!(n, |i| gov.check_key(&(i % KEYS)).is_ok())
            }),
        ],
    );
}

fn bulkhead(h: &mut Harness, rt: &Runtime) {
    const ROW: &str = "bulkhead, free slots";
    if !h.wants(ROW) {
        return;
    }
    let pipeline = Pipeline::builder()
        .bulkhead(Bulkhead::builder(SLOTS))
        .build()
        .unwrap();
    check(rt, pipeline.execute(|| op(7)));
    let mut pipeline_layer = ServiceBuilder::new()
        .layer(pipeline.layer())
        .service(service_fn(op));
    check(rt, pipeline_layer.clone().oneshot(7));
    let mut layered = ServiceBuilder::new()
        .layer(Bulkhead::builder(SLOTS).build().unwrap().layer())
        .service(service_fn(op));
    check(rt, layered.clone().oneshot(7));
    let mut adaptive = ServiceBuilder::new()
        .layer(
            Bulkhead::builder(SLOTS)
                .adaptive(Aimd::new(SLOTS, 1, SLOTS))
                .build()
                .unwrap()
                .layer(),
        )
        .service(service_fn(op));
    check(rt, adaptive.clone().oneshot(7));
    let mut limit = ServiceBuilder::new()
        .concurrency_limit(SLOTS)
        .service(service_fn(op));
    check(rt, limit.clone().oneshot(7));
    h.measure(
        ROW,
        vec![
            floor("bare op", |n| calls!(rt, n, |i| op(i))),
            ours("resilient Pipeline", |n| {
                calls!(rt, n, |i| pipeline.execute(|| op(i)))
            }),
            ours("resilient Pipeline layer", move |n| {
                calls!(rt, n, |i| async {
                    pipeline_layer.ready().await.unwrap().call(i).await
                })
            }),
            ours("resilient Bulkhead layer", move |n| {
                calls!(rt, n, |i| async {
                    layered.ready().await.unwrap().call(i).await
                })
            }),
            ours("resilient adaptive (AIMD) Bulkhead layer", move |n| {
                calls!(rt, n, |i| async {
                    adaptive.ready().await.unwrap().call(i).await
                })
            }),
            peer("tower ConcurrencyLimit", move |n| {
                calls!(rt, n, |i| async {
                    limit.ready().await.unwrap().call(i).await
                })
            }),
        ],
    );
}

fn timeout(h: &mut Harness, rt: &Runtime) {
    const ROW: &str = "operation timeout, ready future";
    if !h.wants(ROW) {
        return;
    }
    let pipeline = Pipeline::builder()
        .timeout(Timeout::operation(OPERATION_TIMEOUT))
        .build()
        .unwrap();
    check(rt, pipeline.execute(|| op(7)));
    let mut layered = ServiceBuilder::new()
        .layer(pipeline.layer())
        .service(service_fn(op));
    check(rt, layered.clone().oneshot(7));
    let mut tower_timeout = ServiceBuilder::new()
        .timeout(OPERATION_TIMEOUT)
        .service(service_fn(op));
    check(rt, tower_timeout.clone().oneshot(7));
    let mut own_layer = ServiceBuilder::new()
        .layer(Timeout::operation(OPERATION_TIMEOUT).layer())
        .service(service_fn(op));
    check(rt, own_layer.clone().oneshot(7));
    h.measure(
        ROW,
        vec![
            floor("tokio::time::timeout", |n| {
                calls!(rt, n, |i| tokio::time::timeout(OPERATION_TIMEOUT, op(i)))
            }),
            ours("resilient Pipeline", |n| {
                calls!(rt, n, |i| pipeline.execute(|| op(i)))
            }),
            ours("resilient Pipeline layer", move |n| {
                calls!(rt, n, |i| async {
                    layered.ready().await.unwrap().call(i).await
                })
            }),
            ours("resilient Timeout layer", move |n| {
                calls!(rt, n, |i| async {
                    own_layer.ready().await.unwrap().call(i).await
                })
            }),
            peer("tower Timeout", move |n| {
                calls!(rt, n, |i| async {
                    tower_timeout.ready().await.unwrap().call(i).await
                })
            }),
        ],
    );
}

type StackError = tower_resilience::circuitbreaker::CircuitBreakerError<
    tower_resilience::bulkhead::BulkheadServiceError<Fail>,
>;

fn stack(h: &mut Harness, rt: &Runtime) {
    const ROW: &str = "5-strategy stack";
    if !h.wants(ROW) {
        return;
    }
    // limiter, request timeout, retry, breaker, bulkhead (outermost first)
    let pipeline = Pipeline::builder()
        .rate_limit(RateLimiter::gcra(gcra_rate()))
        .timeout(Timeout::request(REQUEST_TIMEOUT))
        .retry(resilient_retry())
        .circuit_breaker(rate_breaker())
        .bulkhead(Bulkhead::builder(SLOTS))
        .build()
        .unwrap();
    check(rt, pipeline.execute(|| op(7)));
    let mut layered = ServiceBuilder::new()
        .layer(pipeline.layer())
        .service(service_fn(op));
    check(rt, layered.clone().oneshot(7));

    let mut theirs = ServiceBuilder::new()
        .layer(
            tower_resilience::ratelimiter::RateLimiterLayer::builder()
                .limit_for_period(PER_SECOND as usize)
                .refresh_period(Duration::from_secs(1))
                .build()
                .unwrap(),
        )
        .layer(
            tower_resilience::timelimiter::TimeLimiterLayer::builder()
                .timeout_duration(REQUEST_TIMEOUT)
                .build(),
        )
        .layer(
            tower_resilience::retry::RetryLayer::<u64, u64, StackError>::builder()
                .max_attempts(ATTEMPTS as usize)
                .exponential_backoff(FIRST_DELAY)
                .build(),
        )
        .layer(
            tower_resilience::circuitbreaker::CircuitBreakerLayer::builder()
                .failure_rate_threshold(0.5)
                .sliding_window_size(100)
                .build()
                .unwrap(),
        )
        .layer(
            tower_resilience::bulkhead::BulkheadLayer::builder()
                .max_concurrent_calls(SLOTS)
                .build()
                .unwrap(),
        )
        .service(service_fn(op));
    check(rt, theirs.clone().oneshot(7));
    h.measure(
        ROW,
        vec![
            ours("resilient Pipeline", |n| {
                calls!(rt, n, |i| pipeline.execute(|| op(i)))
            }),
            ours("resilient Pipeline layer", move |n| {
                calls!(rt, n, |i| async {
                    layered.ready().await.unwrap().call(i).await
                })
            }),
            peer("tower-resilience layers", move |n| {
                calls!(rt, n, |i| async {
                    theirs.ready().await.unwrap().call(i).await
                })
            }),
        ],
    );
}

/// Issue 11: fallback and hedge on the success path cost at most 5 ns over the same
/// pipeline without them (here the "peer" is that pipeline; "added ns" is the target).
fn degrade(h: &mut Harness, rt: &Runtime) {
    const ROW: &str = "fallback / hedge, success path (vs the same Pipeline without)";
    if !h.wants(ROW) {
        return;
    }
    let base = || Pipeline::builder().retry(resilient_retry());
    let plain = base().build().unwrap();
    check(rt, plain.execute(|| op(7)));
    let fallback = || {
        Fallback::<u64, Fail>::builder()
            .or_value(0)
            .build()
            .unwrap()
    };
    let with_fallback = base().fallback(fallback()).build().unwrap();
    check(rt, with_fallback.execute(|| op(7)));
    let hedge = || Hedge::delayed(Duration::from_millis(50)).build().unwrap();
    let hedged = base().hedge(hedge()).idempotent(true).build().unwrap();
    check(rt, hedged.execute(|| op(7)));
    let both = base()
        .hedge(hedge())
        .idempotent(true)
        .fallback(fallback())
        .build()
        .unwrap();
    check(rt, both.execute(|| op(7)));
    h.measure(
        ROW,
        vec![
            peer("resilient Pipeline, retry only (reference)", |n| {
                calls!(rt, n, |i| plain.execute(|| op(i)))
            }),
            ours("+ fallback", |n| {
                calls!(rt, n, |i| with_fallback.execute(|| op(i)))
            }),
            ours("+ hedge", |n| calls!(rt, n, |i| hedged.execute(|| op(i)))),
            ours("+ hedge + fallback", |n| {
                calls!(rt, n, |i| both.execute(|| op(i)))
            }),
        ],
    );
}

fn main() {
    let mut h = Harness {
        cfg: Config::from_env_and_args(),
        results: Vec::new(),
    };
    let rt = runtime();
    let rt = &rt;
    retry_ok(&mut h, rt);
    retry_one_failure(&mut h, rt);
    circuit_blocking(&mut h, rt);
    circuit_pipeline_closed(&mut h, rt);
    circuit_open(&mut h, rt);
    ratelimit_direct(&mut h, rt);
    ratelimit_keyed::<1_000>(&mut h, "rate limiter, keyed, 1,000 keys");
    ratelimit_keyed::<100_000>(&mut h, "rate limiter, keyed, 100,000 keys");
    bulkhead(&mut h, rt);
    timeout(&mut h, rt);
    stack(&mut h, rt);
    degrade(&mut h, rt);
    h.report();
}
