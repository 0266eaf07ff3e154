//! A pipeline service whose pipeline's only strategy is one bulkhead or one breaker runs a
//! call in place (the guard's admission, the attempt, the guard's record), without the
//! engine's state: it must answer exactly as the engine does. Each script of readiness
//! and answer runs, for each state of the guard (free, full, queued, open, half-open,
//! timing slow calls), through three services: the one that runs in place, one whose
//! pipeline takes the engine's lean path (the same guard and a retry of one attempt), and
//! one whose calls take its phased path (a request cost). All three must agree on the
//! result, the time it took, and everything the guard and the service saw, when.
#![cfg(feature = "tower")]

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use resilient::{Error, Pipeline, Retry};
use tokio::time::Instant;
use tower::{Service, ServiceBuilder, ServiceExt};

#[path = "support/one_guard.rs"]
mod guards;
use guards::{Guard, Log, Probe, SETUPS, Setup, guard, ms_since};

/// What the service does with a request.
#[derive(Debug, Clone, Copy)]
struct Script {
    /// Not ready for this long first (each clone waits on its own).
    not_ready: Option<u64>,
    /// Readiness fails.
    ready_fails: bool,
    /// Answers after this long (0: at its first poll).
    delay: u64,
    /// Answers with its error.
    fails: bool,
    /// Panics as it answers.
    panics: bool,
}

struct Scripted {
    script: Script,
    start: Instant,
    log: Log,
    probe: Probe,
    wait: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Clone for Scripted {
    /// A fresh clone, not yet waiting to be ready.
    fn clone(&self) -> Self {
        Self {
            script: self.script,
            start: self.start,
            log: self.log.clone(),
            probe: self.probe.clone(),
            wait: None,
        }
    }
}

/// Logs the guard's state when the service's future is dropped.
struct Dropped(Log, Probe, Instant);

impl Drop for Dropped {
    fn drop(&mut self) {
        let line = format!(
            "{} service future dropped, {}",
            ms_since(self.2),
            (self.1)()
        );
        self.0.lock().unwrap().push(line);
    }
}

/// The service's future: it logs when it is dropped (not when it answers).
struct Answer {
    answer: Pin<Box<dyn Future<Output = Result<u64, u64>> + Send>>,
    _dropped: Dropped,
}

impl Future for Answer {
    type Output = Result<u64, u64>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.answer.as_mut().poll(cx)
    }
}

impl Service<u64> for Scripted {
    type Response = u64;
    type Error = u64;
    type Future = Answer;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), u64>> {
        if let Some(ms) = self.script.not_ready {
            let wait = self
                .wait
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(Duration::from_millis(ms))));
            std::task::ready!(wait.as_mut().poll(cx));
        }
        if self.script.ready_fails {
            return Poll::Ready(Err(1));
        }
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: u64) -> Self::Future {
        let Script {
            delay,
            fails,
            panics,
            ..
        } = self.script;
        let (start, log, probe) = (self.start, self.log.clone(), self.probe.clone());
        let line = format!("{} service called, {}", ms_since(start), probe());
        log.lock().unwrap().push(line);
        Answer {
            answer: Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(delay)).await;
                assert!(!panics, "the service panics");
                if fails { Err(req) } else { Ok(req) }
            }),
            _dropped: Dropped(log, probe, start),
        }
    }
}

impl Guard {
    /// The pipeline of `path` with this guard: the guard alone (its calls run in place, or,
    /// with a cost, on the phased path), or the guard and a retry of one attempt (the
    /// engine's lean path).
    fn pipeline(&self, path: Path) -> Pipeline {
        match path {
            Path::Lean => self
                .add(Pipeline::builder())
                .retry(Retry::immediate().attempts(1))
                .build(),
            Path::InPlace | Path::Phased => self.add(Pipeline::builder()).build(),
        }
        .unwrap()
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Path {
    InPlace,
    Lean,
    Phased,
}

/// One call of `script` through the path's service, with a fresh guard in `setup`'s
/// state: the result, and the log from the call's start to a second after it (what the
/// guard's holders and timers do later too).
async fn call(setup: Setup, path: Path, script: Script) -> (String, Vec<String>) {
    let log: Log = Arc::default();
    let start = Arc::new(Mutex::new(Instant::now()));
    let guard = guard(setup, &log, start.clone());
    guard.prepare(setup).await;
    let probe = guard.probe();
    let p = guard.pipeline(path);
    let now = Instant::now();
    *start.lock().unwrap() = now;
    log.lock().unwrap().clear();
    let service = Scripted {
        script,
        start: now,
        log: log.clone(),
        probe: probe.clone(),
        wait: None,
    };
    let r = if let Path::Phased = path {
        let mut svc = ServiceBuilder::new()
            .layer(p.layer().cost(|_: &u64| 1))
            .service(service);
        svc.ready().await.unwrap().call(7).await
    } else {
        let mut svc = ServiceBuilder::new().layer(p.layer()).service(service);
        svc.ready().await.unwrap().call(7).await
    };
    let line = format!("{} answered, {}", ms_since(now), probe());
    log.lock().unwrap().push(line);
    if let Some(allows) = guard.allows_another() {
        log.lock()
            .unwrap()
            .push(format!("allows another: {allows}"));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let line = format!("{} a second later, {}", ms_since(now), probe());
    log.lock().unwrap().push(line);
    let log = log.lock().unwrap().clone();
    (format!("{r:?}"), log)
}

fn scripts() -> Vec<Script> {
    let mut all = Vec::new();
    for not_ready in [None, Some(30)] {
        for ready_fails in [false, true] {
            for delay in [0, 40, 100] {
                for fails in [false, true] {
                    all.push(Script {
                        not_ready,
                        ready_fails,
                        delay,
                        fails,
                        panics: false,
                    });
                }
            }
        }
    }
    all
}

#[tokio::test(start_paused = true)]
async fn a_call_under_one_guard_run_in_place_answers_as_the_engine_does() {
    for setup in SETUPS {
        for script in scripts() {
            let ours = call(setup, Path::InPlace, script).await;
            let lean = call(setup, Path::Lean, script).await;
            let phased = call(setup, Path::Phased, script).await;
            assert_eq!(ours, lean, "{setup:?} {script:?}: in place / lean path");
            assert_eq!(ours, phased, "{setup:?} {script:?}: in place / phased path");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_call_under_one_guard_run_in_place_keeps_the_guards_rules() {
    // Pinned outcomes, beside the comparison above.
    let script = Script {
        not_ready: None,
        ready_fails: false,
        delay: 40,
        fails: false,
        panics: false,
    };
    // A free slot: held while the service's future lives, given back after it is dropped.
    let (r, log) = call(Setup::Free, Path::InPlace, script).await;
    assert_eq!(r, "Ok(7)");
    assert_eq!(
        log,
        [
            "0 service called, in flight 1, queued 0, limit 1",
            "40 service future dropped, in flight 1, queued 0, limit 1",
            "40 answered, in flight 0, queued 0, limit 1",
            "1040 a second later, in flight 0, queued 0, limit 1",
        ]
    );
    // No slot and no queue: rejected at once, the service never called.
    let (r, log) = call(Setup::Full, Path::InPlace, script).await;
    assert_eq!(
        r,
        format!("{:?}", Err::<u64, Error<u64>>(Error::BulkheadFull))
    );
    assert_eq!(log[0], "0 answered, in flight 1, queued 0, limit 1");
    // Queued until the holder's slot is handed over at 60 ms, then run.
    let (r, log) = call(Setup::Handed, Path::InPlace, script).await;
    assert_eq!(r, "Ok(7)");
    assert_eq!(log[0], "60 service called, in flight 1, queued 0, limit 1");
    assert_eq!(log[2], "100 answered, in flight 0, queued 0, limit 1");
    // Queued past its 200 ms of waiting: rejected then.
    let (r, log) = call(Setup::WaitEnds, Path::InPlace, script).await;
    assert_eq!(
        r,
        format!("{:?}", Err::<u64, Error<u64>>(Error::BulkheadFull))
    );
    assert_eq!(log[0], "200 answered, in flight 1, queued 0, limit 1");
    // A breaker records the call's outcome and its duration on the pipeline's clock.
    let (r, log) = call(
        Setup::Closed,
        Path::InPlace,
        Script {
            fails: true,
            ..script
        },
    )
    .await;
    assert_eq!(r, format!("{:?}", Err::<u64, Error<u64>>(Error::Inner(7))));
    assert!(
        log.iter()
            .any(|l| l.starts_with("40 breaker Failure { duration: 40ms")),
        "{log:?}"
    );
    assert!(
        log.iter().any(|l| l.starts_with("40 answered, Open")),
        "{log:?}"
    );
    // An open breaker rejects at once.
    let (r, log) = call(Setup::Open, Path::InPlace, script).await;
    assert!(r.starts_with("Err(CircuitOpen"), "{r}");
    assert!(log.iter().all(|l| !l.contains("service called")), "{log:?}");
    // A half-open breaker's probe closes it.
    let (r, log) = call(Setup::HalfOpen, Path::InPlace, script).await;
    assert_eq!(r, "Ok(7)");
    assert!(log[1].starts_with("0 service called, HalfOpen"), "{log:?}");
    assert!(
        log.iter().any(|l| l.starts_with("40 answered, Closed")),
        "{log:?}"
    );
    // A call of 50 ms or more is slow.
    let (_, log) = call(
        Setup::Slow,
        Path::InPlace,
        Script {
            delay: 100,
            ..script
        },
    )
    .await;
    assert!(
        log.iter().any(|l| l.contains("SlowCall { duration: 100ms")),
        "{log:?}"
    );
    // A limiter's call takes its last unit; with none left, it is rejected at once.
    let (r, log) = call(Setup::Limiter, Path::InPlace, script).await;
    assert_eq!(r, "Ok(7)");
    assert!(
        log.contains(&"allows another: false".to_string()),
        "{log:?}"
    );
    let (r, log) = call(Setup::Limited, Path::InPlace, script).await;
    assert!(r.starts_with("Err(RateLimited { retry_after: Some("), "{r}");
    assert_eq!(log[0], "0 answered, ");
    // A limiter that waits holds its call until its unit is due.
    let (r, log) = call(Setup::LimiterWaits, Path::InPlace, script).await;
    assert_eq!(r, "Ok(7)");
    assert_eq!(log[0], "100 service called, ");
}

/// Runs `script` through `path`'s service with a fresh breaker that opens at the first
/// failure (or a bulkhead of one slot), dropping the call's future after `cancel_after`
/// ms if it is still running, and catching its panic: the guard's state afterwards.
async fn interrupted(bulkhead: bool, path: Path, script: Script, cancel_after: u64) -> String {
    let log: Log = Arc::default();
    let start = Arc::new(Mutex::new(Instant::now()));
    let setup = if bulkhead { Setup::Free } else { Setup::Closed };
    let guard = guard(setup, &log, start);
    let probe = guard.probe();
    let p = guard.pipeline(path);
    let service = Scripted {
        script,
        start: Instant::now(),
        log: log.clone(),
        probe: probe.clone(),
        wait: None,
    };
    let task = tokio::spawn(async move {
        let mut svc = ServiceBuilder::new().layer(p.layer()).service(service);
        let call = svc.ready().await.unwrap().call(7);
        tokio::time::timeout(Duration::from_millis(cancel_after), call).await
    });
    let outcome = match task.await {
        Ok(Ok(r)) => format!("{r:?}"),
        Ok(Err(_)) => "cancelled".to_string(),
        Err(e) if e.is_panic() => "panicked".to_string(),
        Err(e) => panic!("{e}"),
    };
    let log = log.lock().unwrap().clone();
    format!("{outcome}: {log:?}; then {}", probe())
}

#[tokio::test(start_paused = true)]
async fn a_call_under_one_guard_run_in_place_gives_its_permit_back_when_dropped_or_panicking() {
    let script = Script {
        not_ready: None,
        ready_fails: false,
        delay: 100,
        fails: false,
        panics: false,
    };
    for bulkhead in [true, false] {
        for (script, cancel_after) in [
            (script, 50),
            (
                Script {
                    panics: true,
                    ..script
                },
                500,
            ),
        ] {
            let ours = interrupted(bulkhead, Path::InPlace, script, cancel_after).await;
            let lean = interrupted(bulkhead, Path::Lean, script, cancel_after).await;
            assert_eq!(ours, lean, "bulkhead {bulkhead}, {script:?}");
            // The slot is given back (or the breaker records nothing on a cancel, and the
            // panic as a failure).
            if bulkhead {
                assert!(ours.ends_with("in flight 0, queued 0, limit 1"), "{ours}");
            } else if script.panics {
                assert!(ours.starts_with("panicked"), "{ours}");
                assert!(ours.contains("breaker Failure { duration: 0ns }"), "{ours}");
                assert!(
                    ours.ends_with("then Open, 0 calls, 0 failed, 0 slow, 0 rejected, 0 probing"),
                    "{ours}"
                );
            } else {
                assert!(ours.starts_with("cancelled"), "{ours}");
                assert!(
                    ours.contains("50 breaker Cancelled { probe: false }"),
                    "{ours}"
                );
                assert!(
                    ours.ends_with("then Closed, 0 calls, 0 failed, 0 slow, 0 rejected, 0 probing"),
                    "{ours}"
                );
            }
        }
    }
}
