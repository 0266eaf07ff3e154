//! A pipeline service whose pipeline has nothing to do but a call's one attempt (no
//! strategy, or an operation timeout alone) runs the call in place, without the engine's
//! state: it must answer exactly as the engine does. Each script of readiness, answer and
//! delay runs through three services of the same pipeline: the one that runs in place, one
//! whose pipeline takes the engine's lean path (a retry of one attempt), and one whose calls
//! take its phased path (a request cost). All three must agree on the result, the time it
//! took, the deadline the service and a nested pipeline see, and when the service's future
//! is dropped.
#![cfg(feature = "tower")]

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use resilient::{Error, Pipeline, Retry, Timeout, TimeoutScope};
use tokio::time::Instant;
use tower::{Service, ServiceBuilder, ServiceExt};

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
    /// Answers through a nested pipeline (no strategy: it inherits the deadline).
    nested: bool,
}

/// What was seen, in milliseconds from the call's start.
#[derive(Debug, Default, Clone, PartialEq)]
struct Seen {
    /// The deadline the service's call saw, and the one its future saw at its first poll.
    deadlines: Vec<Option<u64>>,
    /// When the service's future was dropped.
    dropped: Option<u64>,
}

struct Scripted {
    script: Script,
    start: Instant,
    seen: Arc<Mutex<Seen>>,
    wait: Option<Pin<Box<tokio::time::Sleep>>>,
}

fn ms_since(start: Instant, at: Instant) -> u64 {
    u64::try_from(at.saturating_duration_since(start).as_millis()).unwrap()
}

impl Clone for Scripted {
    /// A fresh clone, not yet waiting to be ready.
    fn clone(&self) -> Self {
        Self {
            script: self.script,
            start: self.start,
            seen: self.seen.clone(),
            wait: None,
        }
    }
}

/// Records when it is dropped.
struct Dropped(Arc<Mutex<Seen>>, Instant);

impl Drop for Dropped {
    fn drop(&mut self) {
        self.0.lock().unwrap().dropped = Some(ms_since(self.1, Instant::now()));
    }
}

impl Service<u64> for Scripted {
    type Response = u64;
    type Error = Error<u64>;
    type Future = Pin<Box<dyn Future<Output = Result<u64, Error<u64>>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if let Some(ms) = self.script.not_ready {
            let wait = self
                .wait
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(Duration::from_millis(ms))));
            std::task::ready!(wait.as_mut().poll(cx));
        }
        if self.script.ready_fails {
            return Poll::Ready(Err(Error::Inner(1)));
        }
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: u64) -> Self::Future {
        let Script {
            delay,
            fails,
            nested,
            ..
        } = self.script;
        let (start, seen) = (self.start, self.seen.clone());
        let deadline = |start| resilient::inherited_deadline().map(|d| ms_since(start, d));
        seen.lock().unwrap().deadlines.push(deadline(start));
        Box::pin(async move {
            let _dropped = Dropped(seen.clone(), start);
            seen.lock().unwrap().deadlines.push(deadline(start));
            let answer = move || async move {
                tokio::time::sleep(Duration::from_millis(delay)).await;
                if fails { Err(req) } else { Ok(req) }
            };
            if nested {
                let inner = Pipeline::builder().build().unwrap();
                return inner.execute(answer).await;
            }
            answer().await.map_err(Error::Inner)
        })
    }
}

/// A result in a comparable form.
fn shape(r: &Result<u64, Error<Error<u64>>>) -> String {
    format!("{r:?}")
}

async fn call(
    layer: impl tower::Layer<
        Scripted,
        Service = impl Service<u64, Response = u64, Error = Error<Error<u64>>>,
    >,
    script: Script,
) -> (String, u64, Seen) {
    let start = Instant::now();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut svc = ServiceBuilder::new().layer(layer).service(Scripted {
        script,
        start,
        seen: seen.clone(),
        wait: None,
    });
    let r = svc.ready().await.unwrap().call(7).await;
    let took = ms_since(start, Instant::now());
    let seen = seen.lock().unwrap().clone();
    (shape(&r), took, seen)
}

fn scripts() -> Vec<Script> {
    let mut all = Vec::new();
    for not_ready in [None, Some(30), Some(150)] {
        for ready_fails in [false, true] {
            for delay in [0, 40, 100, 250] {
                for fails in [false, true] {
                    for nested in [false, true] {
                        all.push(Script {
                            not_ready,
                            ready_fails,
                            delay,
                            fails,
                            nested,
                        });
                    }
                }
            }
        }
    }
    all
}

#[tokio::test(start_paused = true)]
async fn a_call_run_in_place_answers_as_the_engine_does() {
    for timeout in [None, Some(Duration::from_millis(100))] {
        let builder = || match timeout {
            Some(t) => Pipeline::builder().timeout(Timeout::operation(t)),
            None => Pipeline::builder(),
        };
        let in_place = builder().build().unwrap();
        let lean = builder()
            .retry(Retry::immediate().attempts(1))
            .build()
            .unwrap();
        for script in scripts() {
            let ours = call(in_place.layer(), script).await;
            let engine = call(lean.layer(), script).await;
            let phased = call(in_place.layer().cost(|_: &u64| 1), script).await;
            assert_eq!(ours, engine, "{timeout:?} {script:?}: in place / lean path");
            assert_eq!(
                ours, phased,
                "{timeout:?} {script:?}: in place / phased path"
            );
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_call_run_in_place_keeps_its_deadline_and_its_timeout() {
    // Pinned outcomes, beside the comparison above: under a 100 ms operation timeout ...
    let p = Pipeline::builder()
        .timeout(Timeout::operation(Duration::from_millis(100)))
        .build()
        .unwrap();
    let script = Script {
        not_ready: Some(30),
        ready_fails: false,
        delay: 40,
        fails: false,
        nested: false,
    };
    // ... readiness and the answer within it: the answer, with the deadline seen
    let (r, took, seen) = call(p.layer(), script).await;
    assert_eq!(r, "Ok(7)");
    assert_eq!(took, 70);
    assert_eq!(seen.deadlines, [Some(100), Some(100)]);
    assert_eq!(seen.dropped, Some(70));
    // ... an answer after it: the timeout, and the service's future dropped as it fires
    let (r, took, seen) = call(
        p.layer(),
        Script {
            delay: 250,
            ..script
        },
    )
    .await;
    assert_eq!(
        r,
        format!(
            "{:?}",
            Err::<u64, Error<Error<u64>>>(Error::Timeout {
                scope: TimeoutScope::Operation,
                elapsed: Duration::from_millis(100),
            })
        )
    );
    assert_eq!(took, 100);
    assert_eq!(seen.dropped, Some(100));
    // ... a nested pipeline inherits the deadline and answers first, with its own timeout
    let (r, took, _) = call(
        p.layer(),
        Script {
            delay: 250,
            nested: true,
            ..script
        },
    )
    .await;
    assert!(r.contains("Inner(Timeout { scope: Inherited"), "{r}");
    assert_eq!(took, 100);
}

#[tokio::test(start_paused = true)]
async fn a_call_made_inside_another_call_inherits_its_deadline() {
    // The service's call is made (and polled) inside an outer call with a 50 ms request
    // timeout: it is the engine's, and its result is the inherited deadline's timeout.
    let p = Pipeline::builder()
        .timeout(Timeout::operation(Duration::from_millis(100)))
        .build()
        .unwrap();
    let outer = Pipeline::builder()
        .timeout(Timeout::request(Duration::from_millis(50)))
        .build()
        .unwrap();
    let start = Instant::now();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let svc = ServiceBuilder::new().layer(p.layer()).service(Scripted {
        script: Script {
            not_ready: None,
            ready_fails: false,
            delay: 250,
            fails: false,
            nested: false,
        },
        start,
        seen: seen.clone(),
        wait: None,
    });
    let r: Result<_, Error<()>> = outer
        .execute(|| {
            let mut svc = svc.clone();
            async move { Ok(svc.call(7).await) }
        })
        .await;
    let Ok(Err(Error::Timeout { scope, elapsed })) = r else {
        panic!("{r:?}")
    };
    assert_eq!(scope, TimeoutScope::Inherited);
    assert_eq!(elapsed, Duration::from_millis(50));
    assert_eq!(ms_since(start, Instant::now()), 50);
    assert_eq!(seen.lock().unwrap().deadlines, [Some(50), Some(50)]);
}

#[tokio::test(start_paused = true)]
async fn a_classifier_of_its_own_or_a_fallback_is_asked_as_the_engine_asks_it() {
    use resilient::Outcome;
    use resilient::fallback::Fallback;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tower::service_fn;
    // A classifier with an effect of its own sees every result, as the engine shows it one.
    let asked = Arc::new(AtomicUsize::new(0));
    let counted = asked.clone();
    let p = Pipeline::builder()
        .timeout(Timeout::operation(Duration::from_millis(100)))
        .classify(move |r: &Result<u64, u64>| {
            counted.fetch_add(1, Ordering::Relaxed);
            if r.is_ok() {
                Outcome::Success
            } else {
                Outcome::Failure
            }
        })
        .build()
        .unwrap();
    let mut svc = ServiceBuilder::new()
        .layer(p.layer())
        .service(service_fn(|x: u64| async move {
            if x == 0 { Err(x) } else { Ok(x) }
        }));
    assert_eq!(svc.ready().await.unwrap().call(3).await, Ok(3));
    assert_eq!(
        svc.ready().await.unwrap().call(0).await,
        Err(Error::Inner(0))
    );
    assert_eq!(asked.load(Ordering::Relaxed), 2);
    // A fallback answers a failure and a timeout.
    let p = Pipeline::builder()
        .timeout(Timeout::operation(Duration::from_millis(100)))
        .fallback(Fallback::builder().or_value(42u64).build().unwrap())
        .build()
        .unwrap();
    let mut svc =
        ServiceBuilder::new()
            .layer(p.layer())
            .service(service_fn(|ms: u64| async move {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                if ms == 0 { Err(ms) } else { Ok(ms) }
            }));
    assert_eq!(svc.ready().await.unwrap().call(0).await, Ok(42));
    assert_eq!(svc.ready().await.unwrap().call(500).await, Ok(42));
    assert_eq!(svc.ready().await.unwrap().call(50).await, Ok(50));
}
