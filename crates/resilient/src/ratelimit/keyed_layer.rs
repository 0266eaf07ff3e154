//! A `Clone` tower `Layer` over a [`KeyedLimiter`]: the key (user, API key, IP) is taken from
//! each request, so every key is limited on its own.

use std::fmt;
use std::future::{Future, poll_fn};
use std::hash::{BuildHasher, Hash};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use tower_layer::Layer;
use tower_service::Service;

use super::algorithm::Algorithm;
use super::guard::Mode;
use super::keyed::KeyedLimiter;
use crate::engine::error::Error;
use crate::engine::guard::Rejection;

/// A tower `Layer` that rate-limits each request under the key `key(&request)` returns.
/// Made by [`KeyedLimiter::layer`] or [`KeyedLayer::new`]. Clones (and every service they
/// make) share the limiter. Each request costs one unit, or what [`KeyedLayer::cost`]'s
/// extractor says (a request heavier than the key's capacity is rejected with no
/// `retry_after`: it can never pass).
///
/// A request over its key's limit fails with [`Error::RateLimited`] and its
/// `retry_after`; in wait mode ([`KeyedLimiterBuilder::max_wait`](super::KeyedLimiterBuilder::max_wait))
/// it waits for capacity up to the maximum first. A waiter whose response future is
/// dropped gives its reservation back. The inner service's errors come back as
/// [`Error::Inner`]. As with [`crate::tower::PipelineLayer`], the inner service must be
/// `Clone`: it is driven to readiness after admission, so a waiting request holds no
/// readiness of the inner service.
///
/// ```
/// use resilient::Error;
/// use resilient::ratelimit::{Gcra, KeyedLimiter, Rate};
/// use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
///
/// struct Request { user: u64, body: &'static str }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let per_user = KeyedLimiter::builder(Gcra::new(Rate::per_second(1)).unwrap())
///     .build::<u64>()
///     .unwrap()
///     .layer(|req: &Request| req.user);
/// let mut svc = ServiceBuilder::new()
///     .layer(per_user.clone())
///     .service(service_fn(|req: Request| async move { Ok::<_, std::io::Error>(req.body) }));
/// let ada = |body| Request { user: 1, body };
/// assert_eq!(svc.ready().await.unwrap().call(ada("hi")).await.unwrap(), "hi");
/// let over = svc.ready().await.unwrap().call(ada("again")).await.unwrap_err();
/// assert!(matches!(over, Error::RateLimited { retry_after: Some(_), .. }));
/// // Another user has their own limit.
/// let bob = Request { user: 2, body: "hello" };
/// assert_eq!(svc.ready().await.unwrap().call(bob).await.unwrap(), "hello");
/// # }
/// ```
pub struct KeyedLayer<
    K,
    A,
    F,
    S = std::collections::hash_map::RandomState,
    const N: usize = 1,
    C = UnitCost,
> {
    limiter: Arc<KeyedLimiter<K, A, S, N>>,
    key: F,
    cost: C,
}

/// What a request to a [`KeyedLayer`] costs: [`UnitCost`] (1, the default) or any
/// `Fn(&Req) -> u64` given to [`KeyedLayer::cost`].
pub trait RequestCost<Req> {
    /// The units `req` costs.
    fn cost(&self, req: &Req) -> u64;
}

/// Every request costs one unit (the default of a [`KeyedLayer`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct UnitCost;

impl<Req> RequestCost<Req> for UnitCost {
    #[inline]
    fn cost(&self, _req: &Req) -> u64 {
        1
    }
}

impl<Req, F: Fn(&Req) -> u64> RequestCost<Req> for F {
    #[inline]
    fn cost(&self, req: &Req) -> u64 {
        self(req)
    }
}

/// The `Service` made by [`KeyedLayer`]: admits each request under its key, then drives
/// (a clone of) the inner service to readiness and calls it.
///
/// ```
/// use resilient::ratelimit::{Gcra, KeyedLimiter, KeyedService, Rate};
/// use tower::{Layer, service_fn};
/// let layer = KeyedLimiter::builder(Gcra::new(Rate::per_second(5)).unwrap())
///     .build::<u32>()
///     .unwrap()
///     .layer(|n: &u32| *n);
/// let svc = layer.layer(service_fn(|n: u32| async move { Ok::<_, std::io::Error>(n) }));
/// let _also_shares_the_limiter = svc.clone();
/// # fn is_service<S: tower::Service<u32>>(_: &S) {}
/// # is_service(&svc);
/// # let _: &KeyedService<_, u32, Gcra, _> = &svc;
/// ```
pub struct KeyedService<
    Svc,
    K,
    A,
    F,
    S = std::collections::hash_map::RandomState,
    const N: usize = 1,
    C = UnitCost,
> {
    inner: Svc,
    limiter: Arc<KeyedLimiter<K, A, S, N>>,
    key: F,
    cost: C,
}

impl<K, A, F: Clone, S, const N: usize, C: Clone> Clone for KeyedLayer<K, A, F, S, N, C> {
    fn clone(&self) -> Self {
        Self {
            limiter: self.limiter.clone(),
            key: self.key.clone(),
            cost: self.cost.clone(),
        }
    }
}

impl<Svc: Clone, K, A, F: Clone, S, const N: usize, C: Clone> Clone
    for KeyedService<Svc, K, A, F, S, N, C>
{
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            limiter: self.limiter.clone(),
            key: self.key.clone(),
            cost: self.cost.clone(),
        }
    }
}

impl<K, A: fmt::Debug, F, S, const N: usize, C> fmt::Debug for KeyedLayer<K, A, F, S, N, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedLayer")
            .field("limiter", &self.limiter)
            .finish_non_exhaustive()
    }
}

impl<Svc: fmt::Debug, K, A: fmt::Debug, F, S, const N: usize, C> fmt::Debug
    for KeyedService<Svc, K, A, F, S, N, C>
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedService")
            .field("inner", &self.inner)
            .field("limiter", &self.limiter)
            .finish_non_exhaustive()
    }
}

impl<K, A, F, S, const N: usize> KeyedLayer<K, A, F, S, N> {
    /// A layer over a shared limiter (keep a clone of the `Arc` to inspect it, or to call
    /// [`KeyedLimiter::retain_recent`] from a background task).
    ///
    /// ```
    /// use resilient::ratelimit::{Gcra, KeyedLayer, KeyedLimiter, Rate};
    /// use std::sync::Arc;
    /// let limiter = Arc::new(
    ///     KeyedLimiter::builder(Gcra::new(Rate::per_second(10)).unwrap()).build::<String>().unwrap(),
    /// );
    /// let layer = KeyedLayer::new(limiter.clone(), |req: &(String, u32)| req.0.clone());
    /// assert!(Arc::ptr_eq(layer.limiter(), &limiter));
    /// ```
    pub fn new(limiter: Arc<KeyedLimiter<K, A, S, N>>, key: F) -> Self {
        Self {
            limiter,
            key,
            cost: UnitCost,
        }
    }
}

impl<K, A, F, S, const N: usize, C> KeyedLayer<K, A, F, S, N, C> {
    /// Charges each request what `cost(&request)` returns instead of one unit (say its
    /// bytes, or the tokens an API call consumes).
    ///
    /// ```
    /// use resilient::ratelimit::{Gcra, KeyedLimiter, Rate};
    /// struct Req { user: u64, rows: u64 }
    /// let layer = KeyedLimiter::builder(Gcra::new(Rate::per_second(1_000)).unwrap())
    ///     .build::<u64>()
    ///     .unwrap()
    ///     .layer(|r: &Req| r.user)
    ///     .cost(|r: &Req| r.rows);
    /// # let _ = layer;
    /// ```
    pub fn cost<C2>(self, cost: C2) -> KeyedLayer<K, A, F, S, N, C2> {
        KeyedLayer {
            limiter: self.limiter,
            key: self.key,
            cost,
        }
    }

    /// The shared limiter.
    ///
    /// ```
    /// use resilient::ratelimit::{Gcra, KeyedLimiter, Rate};
    /// let layer = KeyedLimiter::builder(Gcra::new(Rate::per_second(5)).unwrap())
    ///     .build::<u32>()
    ///     .unwrap()
    ///     .layer(|n: &u32| *n);
    /// assert!(layer.limiter().is_empty());
    /// ```
    pub fn limiter(&self) -> &Arc<KeyedLimiter<K, A, S, N>> {
        &self.limiter
    }
}

impl<K, A, S, const N: usize> KeyedLimiter<K, A, S, N> {
    /// This limiter as a `Clone` tower `Layer`, limiting each request under the key
    /// `key(&request)` returns (see [`KeyedLayer`]).
    ///
    /// ```
    /// use resilient::ratelimit::{Gcra, KeyedLimiter, Rate};
    /// use std::net::IpAddr;
    /// struct Req { peer: IpAddr }
    /// let per_ip = KeyedLimiter::builder(Gcra::new(Rate::per_minute(60)).unwrap())
    ///     .build::<IpAddr>()
    ///     .unwrap()
    ///     .layer(|r: &Req| r.peer);
    /// # let _ = per_ip;
    /// ```
    pub fn layer<F>(self, key: F) -> KeyedLayer<K, A, F, S, N> {
        KeyedLayer::new(Arc::new(self), key)
    }
}

impl<Svc, K, A, F: Clone, S, const N: usize, C: Clone> Layer<Svc> for KeyedLayer<K, A, F, S, N, C> {
    type Service = KeyedService<Svc, K, A, F, S, N, C>;

    fn layer(&self, inner: Svc) -> Self::Service {
        KeyedService {
            inner,
            limiter: self.limiter.clone(),
            key: self.key.clone(),
            cost: self.cost.clone(),
        }
    }
}

/// Admits a request of `cost` for `key`: at once in reject mode, waiting in wait mode.
async fn admit<K, A, S, const N: usize>(
    limiter: &KeyedLimiter<K, A, S, N>,
    key: &K,
    cost: u64,
) -> Result<(), Rejection>
where
    K: Hash + Eq + Clone,
    A: Algorithm,
    S: BuildHasher,
{
    let max_wait = match limiter.mode() {
        Mode::Reject => Duration::ZERO,
        // Inside a pipeline call (this layer under `pipeline.layer()`, or a service called
        // from an operation), never wait past the call's deadline: a wait that cannot end
        // in time is a rejection now, with its retry_after, like the pipeline guard's.
        Mode::Wait(w) => crate::engine::context::inherited_deadline().map_or(w, |d| {
            w.min(d.saturating_duration_since(tokio::time::Instant::now()))
        }),
    };
    limiter.admit(key, cost, max_wait).await
}

impl<Svc, Req, K, A, F, S, const N: usize, C> Service<Req> for KeyedService<Svc, K, A, F, S, N, C>
where
    C: RequestCost<Req>,
    Svc: Service<Req> + Clone + Send + 'static,
    Svc::Future: Send,
    Svc::Response: Send,
    Svc::Error: Send,
    Req: Send + 'static,
    F: Fn(&Req) -> K,
    K: Hash + Eq + Clone + Send + Sync + 'static,
    A: Algorithm,
    S: BuildHasher + Send + Sync + 'static,
{
    type Response = Svc::Response;
    type Error = Error<Svc::Error>;
    type Future = Pin<Box<dyn Future<Output = Result<Svc::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        // The inner service is driven to readiness after admission (on a clone), so that
        // a request waiting for its key's capacity holds none of the inner service's.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let key = (self.key)(&req);
        let cost = self.cost.cost(&req);
        let limiter = self.limiter.clone();
        // Reject mode answers at once, before the future is first polled.
        let early = match limiter.mode() {
            Mode::Reject => Some(
                limiter
                    .allow(&key, cost)
                    .map_err(|after| limiter.rejection_for(&key, cost, after)),
            ),
            Mode::Wait(_) => None,
        };
        let mut svc = self.inner.clone();
        Box::pin(async move {
            match early {
                Some(r) => r?,
                None => admit(&limiter, &key, cost).await?,
            }
            poll_fn(|cx| svc.poll_ready(cx))
                .await
                .map_err(Error::Inner)?;
            svc.call(req).await.map_err(Error::Inner)
        })
    }
}
