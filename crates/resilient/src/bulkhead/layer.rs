//! The bulkhead as a tower `Layer` of its own: no pipeline, and through a free slot no
//! allocation and no clock read (an adaptive bulkhead reads the clock only when its
//! algorithm uses latencies).
//!
//! A call takes a slot in `call` (a compare-and-swap on the bulkhead's state word) and its
//! future holds it as an RAII guard: the slot goes back when the response is ready, when
//! the future is dropped, and during the unwind if the inner service panics. With no free
//! slot the call is rejected at once, or waits in the bulkhead's queue (a boxed wait, only
//! then).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::{Admit, Bulkhead, WAITER};

use crate::engine::error::Error;
use crate::engine::guard::{Guard, Rejection, unrecorded_outcome};
use crate::engine::outcome::Outcome;

use super::sync::Ordering;

/// A tower `Layer` that runs each request in a slot of a [`Bulkhead`]. Made by
/// [`Bulkhead::layer`]; every service it makes shares the bulkhead's slots and queue.
#[derive(Debug, Clone)]
pub struct BulkheadLayer {
    bulkhead: Bulkhead,
}

/// The `Service` made by [`BulkheadLayer`]: calls beyond the bulkhead's slots (and queue)
/// fail with [`Error::BulkheadFull`], the service's own errors come back as
/// [`Error::Inner`].
///
/// Readiness is the inner service's: `poll_ready` passes through, and a call that has to
/// queue keeps the ready service it was called on until its slot comes (the service is
/// cloned to take its place).
#[derive(Debug, Clone)]
pub struct BulkheadService<S> {
    inner: S,
    bulkhead: Bulkhead,
}

impl Bulkhead {
    /// This bulkhead as a tower `Layer`: every service made by the layer shares its slots.
    /// A failed response (`Err`) is a failure for an adaptive limit; a dropped response
    /// future is no sample.
    ///
    /// ```
    /// use resilient::{Bulkhead, Error};
    /// use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let bulkhead = Bulkhead::builder(1).build().unwrap();
    /// let mut svc = ServiceBuilder::new()
    ///     .layer(bulkhead.layer())
    ///     .service(service_fn(|x: u32| async move { Ok::<_, std::io::Error>(x) }));
    /// let first = svc.ready().await.unwrap().call(7);
    /// // the first call holds the only slot until its response is ready
    /// assert!(matches!(svc.ready().await.unwrap().call(8).await, Err(Error::BulkheadFull)));
    /// assert_eq!(first.await.unwrap(), 7);
    /// assert_eq!(svc.ready().await.unwrap().call(9).await.unwrap(), 9);
    /// # }
    /// ```
    pub fn layer(&self) -> BulkheadLayer {
        BulkheadLayer {
            bulkhead: self.clone(),
        }
    }
}

impl<S> Layer<S> for BulkheadLayer {
    type Service = BulkheadService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        BulkheadService {
            inner,
            bulkhead: self.bulkhead.clone(),
        }
    }
}

impl<S, Req> Service<Req> for BulkheadService<S>
where
    S: Service<Req> + Clone,
{
    type Response = S::Response;
    type Error = Error<S::Error>;
    type Future = ResponseFuture<S, Req>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Error::Inner)
    }

    // Inline, as `ResponseFuture::poll` is (the queued case is out of line).
    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        let state = match self.bulkhead.inner.admit() {
            Admit::Slot => {
                let slot = Slot::new(&self.bulkhead);
                State::Running {
                    fut: self.inner.call(req),
                    slot,
                }
            }
            Admit::Full => State::Rejected,
            Admit::Queued(queued) => {
                // the place in the queue passes to an owned guard (same release on drop)
                std::mem::forget(queued);
                queued_state(&self.bulkhead, &mut self.inner, req)
            }
        };
        ResponseFuture { state }
    }
}

/// The state of a call that waits in `bulkhead`'s queue (its place is taken), with the
/// ready service `inner` (a clone takes its place).
#[inline(never)]
fn queued_state<S, Req>(bulkhead: &Bulkhead, inner: &mut S, req: Req) -> State<S, Req>
where
    S: Service<Req> + Clone,
{
    let place = Place(bulkhead.clone());
    let clone = inner.clone();
    let ready = std::mem::replace(inner, clone);
    State::Waiting {
        wait: Box::pin(async move {
            let b = &place.0;
            b.inner.wait_handed().await.then(|| b.clone())
        }),
        call: Some(Box::new((ready, req))),
    }
}

/// A place in the bulkhead's queue, owned by a waiting call: leaves the queue when dropped.
struct Place(Bulkhead);

impl Drop for Place {
    fn drop(&mut self) {
        self.0.inner.state.fetch_sub(WAITER, Ordering::AcqRel);
    }
}

/// A slot held by a call; given back when dropped (as a cancellation, or as a failure
/// while panicking) unless [`record`](Slot::record)ed first.
struct Slot {
    bulkhead: Option<Bulkhead>,
    /// When the call started, if the bulkhead times its calls.
    started: Option<Duration>,
}

impl Slot {
    #[inline]
    fn new(bulkhead: &Bulkhead) -> Self {
        Self {
            started: bulkhead.inner.call_clock().map(|c| c.now()),
            bulkhead: Some(bulkhead.clone()),
        }
    }

    /// Gives the slot back with the call's outcome.
    #[inline]
    fn record(&mut self, outcome: Outcome) {
        if let Some(b) = self.bulkhead.take() {
            if b.inner.adaptive.is_none() {
                b.inner.give_back();
                return;
            }
            let took = match (self.started, b.inner.call_clock()) {
                (Some(s), Some(c)) => c.now().saturating_sub(s),
                _ => Duration::ZERO,
            };
            b.inner.release_with(Some((outcome, took)));
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(b) = self.bulkhead.take() {
            b.on_release(0, unrecorded_outcome());
        }
    }
}

impl fmt::Debug for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Slot")
            .field("held", &self.bulkhead.is_some())
            .finish()
    }
}

pin_project! {
    /// The future of a [`BulkheadService`] call: the inner service's future in its slot,
    /// or the wait for one.
    pub struct ResponseFuture<S, Req>
    where
        S: Service<Req>,
    {
        #[pin]
        state: State<S, Req>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, Req>
    where
        S: Service<Req>,
    {
        Running {
            #[pin]
            fut: S::Future,
            slot: Slot,
        },
        Waiting {
            wait: Pin<Box<dyn Future<Output = Option<Bulkhead>> + Send>>,
            call: Option<Box<(S, Req)>>,
        },
        Rejected,
        Done,
    }
}

impl<S: Service<Req>, Req> fmt::Debug for ResponseFuture<S, Req> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Running { .. } => "running",
            State::Waiting { .. } => "waiting",
            State::Rejected => "rejected",
            State::Done => "done",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

impl<S, Req> Future for ResponseFuture<S, Req>
where
    S: Service<Req>,
{
    type Output = Result<S::Response, Error<S::Error>>;

    // Inline, with every answer built here (the states before a slot is held are stepped
    // out of line, and report back in a byte): an out-of-line poll returns its 32-byte
    // answer through memory, which the awaiting code copies at once with loads wider than
    // the stores that wrote it (a store-forwarding stall on every call).
    #[inline(always)]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            match state.as_mut().project() {
                StateProj::Running { fut, slot } => {
                    let out = ready!(fut.poll(cx));
                    slot.record(if out.is_ok() {
                        Outcome::Success
                    } else {
                        Outcome::Failure
                    });
                    state.set(State::Done);
                    return Poll::Ready(out.map_err(Error::Inner));
                }
                _ => match step(state.as_mut(), cx) {
                    Step::Pending => return Poll::Pending,
                    Step::Running => {}
                    Step::Rejected => return Poll::Ready(Err(Rejection::BulkheadFull.into())),
                },
            }
        }
    }
}

/// Where [`step`] left a call that was not running in its slot.
enum Step {
    /// Still waiting for a slot.
    Pending,
    /// Running in its slot now.
    Running,
    /// Rejected: the bulkhead is full (it is `Done` now).
    Rejected,
}

/// Steps a call that is not running in its slot: waiting for one, or rejected.
#[inline(never)]
fn step<S, Req>(mut state: Pin<&mut State<S, Req>>, cx: &mut Context<'_>) -> Step
where
    S: Service<Req>,
{
    match state.as_mut().project() {
        StateProj::Running { .. } => Step::Running,
        StateProj::Waiting { wait, call } => {
            let Poll::Ready(handed) = wait.as_mut().poll(cx) else {
                return Step::Pending;
            };
            let Some(bulkhead) = handed else {
                state.set(State::Done);
                return Step::Rejected;
            };
            let (mut svc, req) = *call.take().expect("a waiting call holds its request");
            // the slot is this call's from here: held before the service runs
            let slot = Slot::new(&bulkhead);
            let fut = svc.call(req);
            state.set(State::Running { fut, slot });
            Step::Running
        }
        StateProj::Rejected => {
            state.set(State::Done);
            Step::Rejected
        }
        StateProj::Done => panic!("ResponseFuture polled after completion"),
    }
}
