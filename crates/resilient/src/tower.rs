//! tower adapter: any [`Pipeline`] as a `Layer` around a `Service`.
//!
//! The wrapped service must be `Clone` (each attempt drives its own clone to readiness).
//!
//! # Requests and retries
//!
//! A service consumes its request, so an attempt that may be retried is sent a copy and
//! the pipeline keeps the original (tower's `retry::Policy::clone_request` works the same
//! way). By default the copy is a `Clone` of the request ([`ByClone`]); give
//! [`PipelineLayer::clone_request`] a hook `Fn(&Req) -> Option<Req>` for requests that are
//! not `Clone` (a streaming body) or only sometimes retryable. A copy is made only before
//! an attempt that could be followed by another: never without a retry, and not before
//! the last attempt the retry allows, which gets the original. (The first attempt of a
//! retrying pipeline is sent a copy even if it then succeeds: the copy has to exist
//! before the service takes the request.) A hook that returns `None` sends the original
//! instead, and the pipeline then stops retrying after that attempt: the call ends with
//! its result, as if it were the last attempt.
//!
//! # Per-request settings
//!
//! [`PipelineLayer::cost`] and [`PipelineLayer::key`] read a request's cost and key for
//! the pipeline's rate limiters, as [`Call::cost`](crate::Call::cost) and
//! [`Call::key`](crate::Call::key) give them to a call: one pipeline charges requests of
//! different weights, and a keyed limiter in it limits each user on its own.
//!
//! # Readiness
//!
//! A pipeline service is always ready: `poll_ready` returns `Ready(Ok(()))` at once, and
//! each attempt drives a fresh clone of the inner service to readiness before calling it.
//! Readiness then comes *after* the pipeline's guards and waits (a retried attempt gets a
//! ready service too), and the time the inner service takes to become ready counts
//! towards the attempt's and the request's timeouts. The flip side: layers above this one
//! see no backpressure from the inner service, so put load shedding below the pipeline, or
//! use the pipeline's own bulkhead and rate limiter.
//!
//! # Allocation
//!
//! A service's future is a [`ResponseFuture`]. A call of a pipeline that has nothing to do
//! but the call's one attempt (no strategy, or an operation timeout alone: no retry, guard,
//! hedge, request timeout, observer, fallback or classifier of its own), made with no cost
//! or key and outside any other pipeline's call, runs in place: its future is a few words,
//! holds no reference to the pipeline, and allocates nothing when the service answers at
//! its first poll (one that is pending under an operation timeout allocates its timer,
//! about 100 bytes). It answers as the engine would: the same result, timeout and deadline
//! scope.
//!
//! So does a call of a pipeline whose only strategy is one bulkhead, one circuit breaker or
//! one rate limiter that rejects rather than waits (the default), added with
//! [`bulkhead`](crate::PipelineBuilder::bulkhead),
//! [`circuit_breaker`](crate::PipelineBuilder::circuit_breaker) or
//! [`rate_limit`](crate::PipelineBuilder::rate_limit) (not a guard of one's own through
//! [`guard`](crate::PipelineBuilder::guard)), as [`RateLimiter::layer`] builds one: its
//! future holds the pipeline (one reference count) and the guard's permit, and allocates
//! nothing. The guard admits or rejects the call at its first poll, and records the call's
//! outcome (and its duration, for a breaker that times calls) as the attempt ends, as the
//! engine's call does. A bulkhead that queues the call (its slots taken, room in its
//! queue): the call goes on in the engine, which boxes its call and queues it again.
//!
//! Any other call boxes the engine's call (its type holds closures that cannot be named):
//! one allocation per request. Most calls take the engine's lean path, and their box holds
//! the lean call alone, well under a kilobyte, a size the allocator serves from its fast
//! per-thread cache. A call that takes the engine's phased path (one with a cost or a key,
//! under an inherited deadline, or of a pipeline with an observer) allocates its phased
//! engine's future on its own as it starts: a second allocation.
//!
//! A call made inside another pipeline's call (by that call's operation) inherits its
//! deadline and cancellation, as any nested call does; it takes the engine's path. (A call
//! of a pipeline of one bare attempt is told apart when it is made: its future made outside
//! any call, and only polled inside one, inherits nothing.)
//!
//! # Errors
//!
//! The service's error is [`Error<S::Error>`](Error). In stacks that pass
//! [`BoxError`]s around (tower's own middleware expects `S::Error: Into<BoxError>`),
//! use [`PipelineLayer::boxed_errors`]: the inner service's errors come out as themselves
//! and the strategies' verdicts as `Error<BoxedError>` (see [`Error::into_boxed`]).

use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context as TaskContext, Poll, ready};

use tower_layer::Layer;
use tower_service::Service;

use crate::engine::context::{Context, hash_key};
use crate::engine::error::{BoxError, Error};
use crate::engine::outcome::{AllErrors, Classify};
use crate::pipeline::{Guarded, InPlaceCall, Once, Pipeline, Seed};
use crate::ratelimit::RateLimiter;

/// How a pipeline service gets a request for an attempt that may be retried (see [the
/// module documentation](self#requests-and-retries)): [`ByClone`] (the default) or any
/// `Fn(&Req) -> Option<Req>` given to [`PipelineLayer::clone_request`].
pub trait CloneRequest<Req> {
    /// A copy of `req` to send, keeping `req` for a retry; `None` if it cannot be copied
    /// (the original is then sent, and not retried).
    fn clone_request(&self, req: &Req) -> Option<Req>;
}

/// Copies requests with `Clone` (the default of a [`PipelineLayer`]).
///
/// ```
/// use resilient::tower::{ByClone, CloneRequest};
/// assert_eq!(ByClone.clone_request(&7u32), Some(7));
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct ByClone;

impl<Req: Clone> CloneRequest<Req> for ByClone {
    #[inline]
    fn clone_request(&self, req: &Req) -> Option<Req> {
        Some(req.clone())
    }
}

impl<Req, F: Fn(&Req) -> Option<Req>> CloneRequest<Req> for F {
    #[inline]
    fn clone_request(&self, req: &Req) -> Option<Req> {
        self(req)
    }
}

/// What a pipeline service reads from each request for the call's settings (see
/// [`Call`](crate::Call)): nothing by default (`()`), or its cost and key, added with
/// [`PipelineLayer::cost`] and [`PipelineLayer::key`].
pub trait RequestSettings<Req> {
    /// The units `req` costs the pipeline's rate limiters ([`Call::cost`](crate::Call::cost)),
    /// if it says.
    fn cost(&self, req: &Req) -> Option<u64>;
    /// `req`'s key for the pipeline's keyed limiters, hashed as
    /// [`Context::key`] describes ([`Call::key`](crate::Call::key)), if it has one.
    fn key(&self, req: &Req) -> Option<u64>;
}

impl<Req> RequestSettings<Req> for () {
    #[inline]
    fn cost(&self, _req: &Req) -> Option<u64> {
        None
    }
    #[inline]
    fn key(&self, _req: &Req) -> Option<u64> {
        None
    }
}

/// A request's cost read by a function (see [`PipelineLayer::cost`]).
#[derive(Debug, Clone, Copy)]
pub struct WithCost<P, F> {
    settings: P,
    cost: F,
}

impl<Req, P: RequestSettings<Req>, F: Fn(&Req) -> u64> RequestSettings<Req> for WithCost<P, F> {
    #[inline]
    fn cost(&self, req: &Req) -> Option<u64> {
        Some((self.cost)(req))
    }
    #[inline]
    fn key(&self, req: &Req) -> Option<u64> {
        self.settings.key(req)
    }
}

/// A request's key read by a function (see [`PipelineLayer::key`]).
#[derive(Debug, Clone, Copy)]
pub struct WithKey<P, F> {
    settings: P,
    key: F,
}

impl<Req, K, P, F> RequestSettings<Req> for WithKey<P, F>
where
    K: Hash,
    P: RequestSettings<Req>,
    F: Fn(&Req) -> K,
{
    #[inline]
    fn cost(&self, req: &Req) -> Option<u64> {
        self.settings.cost(req)
    }
    #[inline]
    fn key(&self, req: &Req) -> Option<u64> {
        Some(hash_key(&(self.key)(req)))
    }
}

/// A `Layer` that runs requests through a pipeline. Made by [`Pipeline::layer`]; `R` says
/// how requests are copied for retries ([`PipelineLayer::clone_request`]), `P` what is
/// read from each request ([`PipelineLayer::cost`], [`PipelineLayer::key`]).
#[derive(Debug)]
pub struct PipelineLayer<C, R = ByClone, P = ()> {
    pipeline: Pipeline<C>,
    clone: R,
    settings: P,
}

impl<C, R: Clone, P: Clone> Clone for PipelineLayer<C, R, P> {
    fn clone(&self) -> Self {
        Self {
            pipeline: self.pipeline.clone(),
            clone: self.clone.clone(),
            settings: self.settings.clone(),
        }
    }
}

/// The `Service` made by [`PipelineLayer`].
#[derive(Debug)]
pub struct PipelineService<S, C, R = ByClone, P = ()> {
    inner: S,
    pipeline: Pipeline<C>,
    clone: R,
    settings: P,
}

impl<S: Clone, C, R: Clone, P: Clone> Clone for PipelineService<S, C, R, P> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            pipeline: self.pipeline.clone(),
            clone: self.clone.clone(),
            settings: self.settings.clone(),
        }
    }
}

/// A `Layer` like [`PipelineLayer`] whose services return [`BoxError`]s. Made by
/// [`PipelineLayer::boxed_errors`].
#[derive(Debug)]
pub struct BoxedPipelineLayer<C, R = ByClone, P = ()> {
    pipeline: Pipeline<C>,
    clone: R,
    settings: P,
}

impl<C, R: Clone, P: Clone> Clone for BoxedPipelineLayer<C, R, P> {
    fn clone(&self) -> Self {
        Self {
            pipeline: self.pipeline.clone(),
            clone: self.clone.clone(),
            settings: self.settings.clone(),
        }
    }
}

/// The `Service` made by [`BoxedPipelineLayer`]: a [`PipelineService`] whose errors are
/// converted with [`Error::into_boxed`].
#[derive(Debug)]
pub struct BoxedPipelineService<S, C, R = ByClone, P = ()> {
    inner: S,
    pipeline: Pipeline<C>,
    clone: R,
    settings: P,
}

impl<S: Clone, C, R: Clone, P: Clone> Clone for BoxedPipelineService<S, C, R, P> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            pipeline: self.pipeline.clone(),
            clone: self.clone.clone(),
            settings: self.settings.clone(),
        }
    }
}

impl<C: Send + Sync + 'static> Pipeline<C> {
    /// This pipeline as a tower `Layer`. Clones share the pipeline's state.
    ///
    /// ```
    /// use resilient::{Pipeline, Retry};
    /// use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let pipeline = Pipeline::builder().retry(Retry::immediate().attempts(2)).build().unwrap();
    /// let mut svc = ServiceBuilder::new()
    ///     .layer(pipeline.layer())
    ///     .service(service_fn(|x: u32| async move { Ok::<_, std::io::Error>(x * 2) }));
    /// let out = svc.ready().await.unwrap().call(21).await.unwrap();
    /// assert_eq!(out, 42);
    /// # }
    /// ```
    pub fn layer(&self) -> PipelineLayer<C> {
        PipelineLayer {
            pipeline: self.clone(),
            clone: ByClone,
            settings: (),
        }
    }
}

impl<C, R, P> PipelineLayer<C, R, P> {
    /// The same layer with [`BoxError`] as its services' error, for stacks whose other
    /// layers expect `S::Error: Into<BoxError>`, including inner services whose error is
    /// already a `BoxError` (`Error<BoxError>` is no `std::error::Error`).
    ///
    /// ```
    /// use resilient::{BoxError, BoxedError, Error, Pipeline, Retry};
    /// use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let pipeline = Pipeline::builder().retry(Retry::immediate().attempts(2)).build().unwrap();
    /// let mut svc = ServiceBuilder::new()
    ///     .layer(pipeline.layer().boxed_errors())
    ///     .service(service_fn(|_: u32| async { Err::<u32, BoxError>("down".into()) }));
    /// let err: BoxError = svc.ready().await.unwrap().call(1).await.unwrap_err();
    /// let verdict = err.downcast_ref::<Error<BoxedError>>().unwrap();
    /// assert!(matches!(verdict, Error::RetriesExhausted { attempts: 2, .. }));
    /// # }
    /// ```
    pub fn boxed_errors(self) -> BoxedPipelineLayer<C, R, P> {
        BoxedPipelineLayer {
            pipeline: self.pipeline,
            clone: self.clone,
            settings: self.settings,
        }
    }

    /// Copies requests for retries with `hook` instead of `Clone` (see [the module
    /// documentation](self#requests-and-retries)): `hook(&req)` returns a copy to send
    /// while the pipeline keeps `req` for another attempt, or `None` when the request
    /// cannot be copied (then it is sent itself, and that attempt is the last). Requests
    /// need not be `Clone`: without a retry in the pipeline, the hook is never called.
    ///
    /// ```
    /// use resilient::{Error, Pipeline, Retry};
    /// use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
    ///
    /// /// Not `Clone`: its body may be a stream, read once.
    /// struct Request { id: u32, body: Option<Vec<u8>> }
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let pipeline = Pipeline::builder().retry(Retry::immediate().attempts(3)).build().unwrap();
    /// let mut svc = ServiceBuilder::new()
    ///     .layer(pipeline.layer().clone_request(|r: &Request| {
    ///         // only requests with a buffered body can be sent again
    ///         Some(Request { id: r.id, body: Some(r.body.clone()?) })
    ///     }))
    ///     .service(service_fn(|r: Request| async move { Err::<u32, _>(r.id) }));
    /// let buffered = Request { id: 1, body: Some(b"hi".to_vec()) };
    /// let r = svc.ready().await.unwrap().call(buffered).await;
    /// assert!(matches!(r, Err(Error::RetriesExhausted { attempts: 3, last: 1 })));
    /// // a request that cannot be copied is sent once
    /// let streamed = Request { id: 2, body: None };
    /// let r = svc.ready().await.unwrap().call(streamed).await;
    /// assert!(matches!(r, Err(Error::Inner(2))));
    /// # }
    /// ```
    pub fn clone_request<R2>(self, hook: R2) -> PipelineLayer<C, R2, P> {
        PipelineLayer {
            pipeline: self.pipeline,
            clone: hook,
            settings: self.settings,
        }
    }

    /// Charges each request what `cost(&request)` returns in the pipeline's rate limiters
    /// (see [`Call::cost`](crate::Call::cost)): its rows, bytes or tokens.
    ///
    /// ```
    /// use resilient::{Error, Pipeline};
    /// use resilient::ratelimit::{Rate, RateLimiter};
    /// use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let pipeline = Pipeline::builder()
    ///     .rate_limit(RateLimiter::gcra(Rate::per_second(10)))
    ///     .build()
    ///     .unwrap();
    /// let mut svc = ServiceBuilder::new()
    ///     .layer(pipeline.layer().cost(|rows: &u64| *rows))
    ///     .service(service_fn(|rows: u64| async move { Ok::<_, std::io::Error>(rows) }));
    /// assert_eq!(svc.ready().await.unwrap().call(7).await.unwrap(), 7);
    /// let over = svc.ready().await.unwrap().call(5).await;
    /// assert!(matches!(over, Err(Error::RateLimited { .. })));
    /// assert_eq!(svc.ready().await.unwrap().call(3).await.unwrap(), 3);
    /// # }
    /// ```
    pub fn cost<F>(self, cost: F) -> PipelineLayer<C, R, WithCost<P, F>> {
        PipelineLayer {
            pipeline: self.pipeline,
            clone: self.clone,
            settings: WithCost {
                settings: self.settings,
                cost,
            },
        }
    }

    /// Limits each request under the key `key(&request)` returns in the pipeline's keyed
    /// limiters (see [`Call::key`](crate::Call::key)): its user, tenant or client address.
    ///
    /// ```
    /// use resilient::{Error, Pipeline};
    /// use resilient::ratelimit::{Gcra, KeyedLimiter, Rate};
    /// use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
    ///
    /// struct Request { user: String }
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let per_user = KeyedLimiter::builder(Gcra::new(Rate::per_minute(1)).unwrap())
    ///     .build::<u64>()
    ///     .unwrap();
    /// let pipeline = Pipeline::builder().rate_limit(per_user).build().unwrap();
    /// let mut svc = ServiceBuilder::new()
    ///     .layer(pipeline.layer().clone_request(|_: &Request| None).key(|r: &Request| r.user.clone()))
    ///     .service(service_fn(|r: Request| async move { Ok::<_, std::io::Error>(r.user) }));
    /// let ada = || Request { user: "ada".into() };
    /// assert_eq!(svc.ready().await.unwrap().call(ada()).await.unwrap(), "ada");
    /// assert!(matches!(svc.ready().await.unwrap().call(ada()).await, Err(Error::RateLimited { .. })));
    /// assert!(svc.ready().await.unwrap().call(Request { user: "bob".into() }).await.is_ok());
    /// # }
    /// ```
    pub fn key<F>(self, key: F) -> PipelineLayer<C, R, WithKey<P, F>> {
        PipelineLayer {
            pipeline: self.pipeline,
            clone: self.clone,
            settings: WithKey {
                settings: self.settings,
                key,
            },
        }
    }
}

impl<S, C, R: Clone, P: Clone> Layer<S> for PipelineLayer<C, R, P> {
    type Service = PipelineService<S, C, R, P>;

    fn layer(&self, inner: S) -> Self::Service {
        PipelineService {
            inner,
            pipeline: Pipeline::clone(&self.pipeline),
            clone: self.clone.clone(),
            settings: self.settings.clone(),
        }
    }
}

impl<S, C, R: Clone, P: Clone> Layer<S> for BoxedPipelineLayer<C, R, P> {
    type Service = BoxedPipelineService<S, C, R, P>;

    fn layer(&self, inner: S) -> Self::Service {
        BoxedPipelineService {
            inner,
            pipeline: Pipeline::clone(&self.pipeline),
            clone: self.clone.clone(),
            settings: self.settings.clone(),
        }
    }
}

/// What a pipeline service asks of the service it wraps (the bounds of its `Service`
/// implementations, in one place for the functions that run its calls).
trait Inner<Req>:
    Service<Req, Future: Send, Response: Send, Error: Send> + Clone + Send + 'static
{
}

impl<S, Req> Inner<Req> for S
where
    S: Service<Req> + Clone + Send + 'static,
    S::Future: Send,
    S::Response: Send,
    S::Error: Send,
{
}

/// Runs `req` through `pipeline`, each attempt on its own ready clone of `svc`. An attempt
/// that may be retried is sent a copy made by `clone`; the last possible one, or one whose
/// copy `clone` refused, the original (after which the pipeline stops retrying).
async fn run<S, C, Req, R>(
    pipeline: Pipeline<C>,
    svc: S,
    req: Req,
    clone: R,
    seed: Seed,
) -> Result<S::Response, Error<S::Error>>
where
    S: Inner<Req>,
    Req: Send,
    R: CloneRequest<Req> + Sync,
    C: Classify<S::Response, S::Error> + Send + Sync + 'static,
{
    let last = pipeline.max_attempts();
    // Hedged attempts run side by side: each is sent a copy while one can be made.
    let hedging = pipeline.hedges();
    let spent = AtomicBool::new(false);
    let mut original = Some(req);
    let clone = &clone;
    let spent = &spent;
    pipeline
        .run_phased_boxed(
            seed,
            move |ctx: &Context| {
                // (The choice of request out of line, this closure small: inlined where the
                // engine starts an attempt, it builds the attempt's future in place.)
                let req = request(&mut original, clone, hedging || ctx.attempt() < last, spent);
                Attempt::Ready {
                    svc: svc.clone(),
                    req: Some(req),
                }
            },
            || !spent.load(Ordering::Relaxed),
        )
        .await
}

/// The request for an attempt: a copy of `original` made by `clone` while another attempt
/// may follow (`copy`), else (or when `clone` refuses) the original itself, which marks the
/// call `spent` (the pipeline then stops retrying).
#[inline(never)]
fn request<Req, R: CloneRequest<Req>>(
    original: &mut Option<Req>,
    clone: &R,
    copy: bool,
    spent: &AtomicBool,
) -> Req {
    let copied = match original {
        Some(r) if copy => clone.clone_request(r),
        _ => None,
    };
    copied.unwrap_or_else(|| {
        spent.store(true, Ordering::Relaxed);
        original
            .take()
            .expect("the pipeline makes no attempt after the one sent the original")
    })
}

impl<S, C, R, P, Req> Service<Req> for PipelineService<S, C, R, P>
where
    P: RequestSettings<Req>,
    S: Service<Req> + Clone + Send + 'static,
    S::Future: Send,
    S::Response: Send,
    S::Error: Send,
    Req: Send + 'static,
    R: CloneRequest<Req> + Clone + Send + Sync + 'static,
    C: Classify<S::Response, S::Error>,
{
    type Response = S::Response;
    type Error = Error<S::Error>;
    type Future = ResponseFuture<S, Req>;

    /// Always ready: see [the module documentation](self#readiness).
    fn poll_ready(&mut self, _cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    // Always inline: the future is built where the caller keeps it. (Returned from a call
    // out of line, it is written with narrow stores that the caller's wider loads of it,
    // as it moves it into place, would stall on.)
    #[inline(always)]
    fn call(&mut self, req: Req) -> Self::Future {
        respond(
            &self.pipeline,
            &self.inner,
            &self.clone,
            &self.settings,
            req,
        )
    }
}

impl<S, C, R, P, Req> Service<Req> for BoxedPipelineService<S, C, R, P>
where
    P: RequestSettings<Req>,
    S: Service<Req> + Clone + Send + 'static,
    S::Future: Send,
    S::Response: Send,
    S::Error: Into<BoxError> + Send,
    Req: Send + 'static,
    R: CloneRequest<Req> + Clone + Send + Sync + 'static,
    C: Classify<S::Response, S::Error>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = BoxedResponseFuture<S, Req>;

    /// Always ready: see [the module documentation](self#readiness).
    fn poll_ready(&mut self, _cx: &mut TaskContext<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    // Always inline: the future is built where the caller keeps it. (Returned from a call
    // out of line, it is written with narrow stores that the caller's wider loads of it,
    // as it moves it into place, would stall on.)
    #[inline(always)]
    fn call(&mut self, req: Req) -> Self::Future {
        BoxedResponseFuture {
            inner: respond(
                &self.pipeline,
                &self.inner,
                &self.clone,
                &self.settings,
                req,
            ),
        }
    }
}

/// A pipeline service's call of `req`: in place on a clone of `svc` when the pipeline and
/// the call allow it (one bare attempt, or one attempt under the pipeline's one guard: see
/// [`Pipeline::in_place`]), else [`run`], boxed.
#[inline(always)]
fn respond<S, C, R, P, Req>(
    pipeline: &Pipeline<C>,
    svc: &S,
    clone: &R,
    settings: &P,
    req: Req,
) -> ResponseFuture<S, Req>
where
    P: RequestSettings<Req>,
    S: Inner<Req>,
    Req: Send + 'static,
    R: CloneRequest<Req> + Clone + Send + Sync + 'static,
    C: Classify<S::Response, S::Error>,
{
    let (cost, key) = (settings.cost(&req), settings.key(&req));
    let kind = match pipeline.in_place(cost.is_none() && key.is_none()) {
        // No engine state, no box, no reference to the pipeline.
        Some(InPlaceCall::Once(single)) => Kind::Once {
            once: single.run(Attempt::Ready {
                svc: svc.clone(),
                req: Some(req),
            }),
        },
        // No engine state, no box: the pipeline's one guard around the attempt.
        Some(InPlaceCall::Guarded(one)) => Kind::Guarded {
            call: one.run(Attempt::Ready {
                svc: svc.clone(),
                req: Some(req),
            }),
            divert: divert::<S, Req> as Divert<S, Req>,
        },
        None => Kind::Boxed {
            fut: boxed(pipeline, svc, clone, req, cost, key),
        },
    };
    ResponseFuture { kind }
}

/// A pipeline service's call of `req` as the engine runs it ([`run`]), boxed, with the
/// request's `cost` and `key`. Out of line (returning the box in registers): the call
/// that runs in place stays small enough to be inlined where it is made, and builds its
/// future there. (The settings come in registers, not as a seed in memory: read back at
/// once with loads wider than the stores that wrote them, they stalled every call.)
#[inline(never)]
fn boxed<S, C, R, Req>(
    pipeline: &Pipeline<C>,
    svc: &S,
    clone: &R,
    req: Req,
    cost: Option<u64>,
    key: Option<u64>,
) -> BoxedCall<S::Response, S::Error>
where
    S: Inner<Req>,
    Req: Send + 'static,
    R: CloneRequest<Req> + Clone + Send + Sync + 'static,
    C: Classify<S::Response, S::Error>,
{
    let seed = Seed {
        cancel: None,
        // The service never sees the context (only the engine reads its attempt).
        bare: true,
        cost,
        key,
        no_hedge: false,
    };
    boxed_in_place(|| run(pipeline.clone(), svc.clone(), req, clone.clone(), seed))
}

/// The engine's call of a pipeline service, boxed.
type BoxedCall<T, E> = Pin<Box<dyn Future<Output = Result<T, Error<E>>> + Send>>;

/// The engine's call of a request whose [`Guarded`] call its guard queued (see
/// [`divert`]).
type Divert<S, Req> = fn(
    &Pipeline<AllErrors>,
    &S,
    Req,
) -> BoxedCall<<S as Service<Req>>::Response, <S as Service<Req>>::Error>;

/// A request whose [`Guarded`] call its guard queued, on the engine: its call joins the
/// queue again and goes on from there. (A function pointer, made where the service's
/// bounds hold, so that the future's own impl needs none.)
#[inline(never)]
fn divert<S, Req>(
    pipeline: &Pipeline<AllErrors>,
    svc: &S,
    req: Req,
) -> BoxedCall<S::Response, S::Error>
where
    S: Inner<Req>,
    Req: Send + 'static,
{
    // (A pipeline of one guard and no retry never copies a request.)
    boxed(pipeline, svc, &NoCopy, req, None, None)
}

/// Copies no request (for [`divert`]'s pipelines, which have no retry or hedge).
#[derive(Clone, Copy)]
struct NoCopy;

impl<Req> CloneRequest<Req> for NoCopy {
    fn clone_request(&self, _req: &Req) -> Option<Req> {
        None
    }
}

pin_project_lite::pin_project! {
    /// The future of a [`PipelineService`]'s call (see [the module
    /// documentation](self#allocation)): the call as one bare attempt, in place, when the
    /// pipeline has nothing to do but that attempt (at most an operation timeout around it),
    /// or as one attempt under the pipeline's one bulkhead, breaker or rejecting limiter,
    /// in place; otherwise the engine's call, boxed. `Send` and `'static`, and `Unpin` when
    /// the inner service's future is.
    ///
    /// ```
    /// use resilient::{Error, Pipeline, Timeout, TimeoutScope};
    /// use resilient::tower::ResponseFuture;
    /// use std::time::Duration;
    /// use tower::{Service, ServiceBuilder, service_fn};
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// let pipeline = Pipeline::builder()
    ///     .timeout(Timeout::operation(Duration::from_millis(100)))
    ///     .build()
    ///     .unwrap();
    /// let mut svc = ServiceBuilder::new()
    ///     .layer(pipeline.layer())
    ///     .service(service_fn(|ms: u64| async move {
    ///         tokio::time::sleep(Duration::from_millis(ms)).await;
    ///         Ok::<_, std::io::Error>(ms)
    ///     }));
    /// // A future type that can be named: stored, passed on, no box.
    /// let fast: ResponseFuture<_, u64> = svc.call(10);
    /// assert_eq!(fast.await.unwrap(), 10);
    /// let slow = svc.call(500).await;
    /// assert!(matches!(slow, Err(Error::Timeout { scope: TimeoutScope::Operation, .. })));
    /// # }
    /// ```
    pub struct ResponseFuture<S, Req>
    where
        S: Service<Req>,
    {
        #[pin]
        kind: Kind<S, Req, S::Future, BoxedCall<S::Response, S::Error>, Divert<S, Req>>,
    }
}

pin_project_lite::pin_project! {
    /// How a [`ResponseFuture`] runs its call.
    #[project = KindProj]
    enum Kind<S, Req, Fut, B, D> {
        /// One bare attempt, run in place.
        Once {
            #[pin]
            once: Once<Attempt<S, Req, Fut>>,
        },
        /// One attempt under the pipeline's one guard, run in place; `divert` makes the
        /// engine's call when the guard queues it.
        Guarded {
            #[pin]
            call: Guarded<Attempt<S, Req, Fut>>,
            divert: D,
        },
        /// The engine's call.
        Boxed { fut: B },
    }
}

impl<S: Service<Req>, Req> Future for ResponseFuture<S, Req> {
    type Output = Result<S::Response, Error<S::Error>>;

    // Always inline, as the bare attempt's poll (see `Once`).
    #[inline(always)]
    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let mut kind = self.project().kind;
        match kind.as_mut().project() {
            KindProj::Once { once } => once.poll(cx),
            KindProj::Guarded { call, .. } => match call.poll_call(cx) {
                Poll::Ready(Some(answer)) => Poll::Ready(answer),
                Poll::Pending => Poll::Pending,
                Poll::Ready(None) => on_engine(kind, cx),
            },
            KindProj::Boxed { fut } => fut.as_mut().poll(cx),
        }
    }
}

/// A [`Guarded`] call that its guard queued goes on in the engine (see [`divert`]).
#[inline(never)]
#[allow(clippy::type_complexity)] // the service future's kinds
fn on_engine<S: Service<Req>, Req>(
    mut kind: Pin<&mut Kind<S, Req, S::Future, BoxedCall<S::Response, S::Error>, Divert<S, Req>>>,
    cx: &mut TaskContext<'_>,
) -> Poll<Result<S::Response, Error<S::Error>>> {
    let KindProj::Guarded { call, divert } = kind.as_mut().project() else {
        unreachable!("only a guarded call goes on in the engine")
    };
    let divert = *divert;
    let pipeline = call.pipeline().clone();
    let Some(AttemptProj::Ready { svc, req }) = call.attempt().as_pin_mut().map(Attempt::project)
    else {
        unreachable!("a queued call's attempt has not started")
    };
    let Some(req) = req.take() else {
        unreachable!("a queued call's request is unsent")
    };
    let mut fut = divert(&pipeline, svc, req);
    let polled = fut.as_mut().poll(cx);
    kind.set(Kind::Boxed { fut });
    polled
}

impl<S: Service<Req>, Req> fmt::Debug for ResponseFuture<S, Req> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            Kind::Once { .. } => "one bare attempt",
            Kind::Guarded { .. } => "one attempt under one guard",
            Kind::Boxed { .. } => "boxed",
        };
        f.debug_struct("ResponseFuture")
            .field("kind", &kind)
            .finish()
    }
}

pin_project_lite::pin_project! {
    /// The future of a [`BoxedPipelineService`]'s call: a [`ResponseFuture`] whose error is
    /// converted with [`Error::into_boxed`].
    ///
    /// ```
    /// use resilient::{BoxError, Pipeline};
    /// use resilient::tower::BoxedResponseFuture;
    /// use tower::{Service, ServiceBuilder, service_fn};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let pipeline = Pipeline::builder().build().unwrap();
    /// let mut svc = ServiceBuilder::new()
    ///     .layer(pipeline.layer().boxed_errors())
    ///     .service(service_fn(|x: u32| async move {
    ///         Err::<u32, BoxError>(x.to_string().into())
    ///     }));
    /// let call: BoxedResponseFuture<_, u32> = svc.call(7);
    /// assert_eq!(call.await.unwrap_err().to_string(), "7");
    /// # }
    /// ```
    pub struct BoxedResponseFuture<S, Req>
    where
        S: Service<Req>,
    {
        #[pin]
        inner: ResponseFuture<S, Req>,
    }
}

impl<S: Service<Req>, Req> Future for BoxedResponseFuture<S, Req>
where
    S::Error: Into<BoxError>,
{
    type Output = Result<S::Response, BoxError>;

    #[inline(always)]
    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        self.project().inner.poll(cx).map_err(Error::into_boxed)
    }
}

impl<S: Service<Req>, Req> fmt::Debug for BoxedResponseFuture<S, Req> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoxedResponseFuture")
            .field("inner", &self.inner)
            .finish()
    }
}

pin_project_lite::pin_project! {
    /// An attempt of a pipeline service's call (in place or in the engine): its clone of the
    /// inner service driven to readiness, then called.
    #[project = AttemptProj]
    enum Attempt<S, Req, Fut> {
        Ready { svc: S, req: Option<Req> },
        Called {
            #[pin]
            fut: Fut,
        },
    }
}

impl<S: Service<Req>, Req> Future for Attempt<S, Req, S::Future> {
    type Output = Result<S::Response, S::Error>;

    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        loop {
            let fut = match self.as_mut().project() {
                AttemptProj::Called { fut } => return fut.poll(cx),
                AttemptProj::Ready { svc, req } => {
                    ready!(svc.poll_ready(cx))?;
                    let Some(req) = req.take() else {
                        unreachable!("an attempt's request is sent once")
                    };
                    svc.call(req)
                }
            };
            self.set(Attempt::Called { fut });
        }
    }
}

/// A call's future, boxed: `make` builds it in its allocation rather than on the stack to
/// be copied there (it is as large as the engine's call future, some kilobytes).
#[inline]
fn boxed_in_place<F: Future>(make: impl FnOnce() -> F) -> Pin<Box<F>> {
    Box::into_pin(Box::write(Box::new_uninit(), make()))
}

impl RateLimiter {
    /// This limiter as a `Clone` tower `Layer` (a one-guard [`crate::Pipeline`]). A limiter
    /// that rejects rather than waits (the default [`Mode`](crate::ratelimit::Mode)) answers
    /// a request in place, with no allocation (see [the module documentation](self#allocation)).
    ///
    /// ```
    /// use resilient::ratelimit::{Rate, RateLimiter};
    /// use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let layer = RateLimiter::gcra(Rate::per_second(1)).build().unwrap().layer();
    /// let mut svc = ServiceBuilder::new()
    ///     .layer(layer.clone())
    ///     .service(service_fn(|x: u32| async move { Ok::<_, std::io::Error>(x) }));
    /// assert_eq!(svc.ready().await.unwrap().call(7).await.unwrap(), 7);
    /// assert!(svc.ready().await.unwrap().call(8).await.unwrap_err().retry_after().is_some());
    /// # }
    /// ```
    pub fn layer(&self) -> PipelineLayer<AllErrors> {
        Pipeline::builder()
            .rate_limit(self)
            .build()
            .expect("a pipeline of one guard is always valid")
            .layer()
    }
}
