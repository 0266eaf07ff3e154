//! [`RedisLayer`]: a `Clone` tower `Layer` limiting each request under its key, the
//! distributed counterpart of [`resilient::ratelimit::KeyedLayer`].

use std::fmt::{self, Display};
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use resilient::Error;
use resilient::ratelimit::{Mode, RequestCost, UnitCost};
use tower_layer::Layer;
use tower_service::Service;

use crate::guard::rejection;
use crate::limiter::RedisLimiter;

/// A tower `Layer` that rate-limits each request under the key `key(&request)` returns,
/// through Redis. Made by [`RedisLimiter::layer`]; the same shape as
/// [`KeyedLimiter::layer`](resilient::ratelimit::KeyedLimiter::layer), so moving a
/// service from one process to a fleet changes only how the limiter is built.
///
/// Each request costs one unit, or what [`RedisLayer::cost`]'s extractor says. A request
/// over its key's limit fails with [`Error::RateLimited`] (its `retry_after` and
/// [`resilient::RateLimitInfo`]), in wait mode once its wait is up; the inner service's errors come back as
/// [`Error::Inner`]. The inner service must be `Clone`: it is driven to readiness after
/// admission.
///
/// ```no_run
/// use resilient::Error;
/// use resilient_redis::RedisLimiter;
/// use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
///
/// struct Request { user: u64 }
///
/// # async fn demo(limiter: RedisLimiter) {
/// let mut svc = ServiceBuilder::new()
///     .layer(limiter.layer(|r: &Request| r.user))
///     .service(service_fn(|_r: Request| async { Ok::<_, std::io::Error>("ok") }));
/// match svc.ready().await.unwrap().call(Request { user: 7 }).await {
///     Ok(body) => println!("{body}"),
///     Err(Error::RateLimited { retry_after, .. }) => println!("429, retry in {retry_after:?}"),
///     Err(e) => println!("{e}"),
/// }
/// # }
/// ```
pub struct RedisLayer<F, C = UnitCost> {
    limiter: RedisLimiter,
    key: F,
    cost: C,
}

impl<F: Clone, C: Clone> Clone for RedisLayer<F, C> {
    fn clone(&self) -> Self {
        Self {
            limiter: self.limiter.clone(),
            key: self.key.clone(),
            cost: self.cost.clone(),
        }
    }
}

impl<F, C> fmt::Debug for RedisLayer<F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisLayer")
            .field("limiter", &self.limiter)
            .finish_non_exhaustive()
    }
}

impl RedisLimiter {
    /// This limiter as a `Clone` tower `Layer`, limiting each request under the key
    /// `key(&request)` returns (see [`RedisLayer`]).
    ///
    /// ```no_run
    /// # use resilient_redis::RedisLimiter;
    /// # use std::net::IpAddr;
    /// struct Req { peer: IpAddr }
    /// # fn demo(limiter: RedisLimiter) {
    /// let per_ip = limiter.layer(|r: &Req| r.peer);
    /// # let _ = per_ip; }
    /// ```
    pub fn layer<F>(&self, key: F) -> RedisLayer<F> {
        RedisLayer {
            limiter: self.clone(),
            key,
            cost: UnitCost,
        }
    }
}

impl<F, C> RedisLayer<F, C> {
    /// Charges each request what `cost(&request)` returns instead of one unit.
    ///
    /// ```no_run
    /// # use resilient_redis::RedisLimiter;
    /// struct Req { user: u64, rows: u64 }
    /// # fn demo(limiter: RedisLimiter) {
    /// let layer = limiter.layer(|r: &Req| r.user).cost(|r: &Req| r.rows);
    /// # let _ = layer; }
    /// ```
    pub fn cost<C2>(self, cost: C2) -> RedisLayer<F, C2> {
        RedisLayer {
            limiter: self.limiter,
            key: self.key,
            cost,
        }
    }

    /// The limiter.
    ///
    /// ```no_run
    /// # use resilient_redis::RedisLimiter;
    /// # fn demo(limiter: RedisLimiter) {
    /// let layer = limiter.layer(|n: &u32| *n);
    /// assert_eq!(layer.limiter().max_cost(), limiter.max_cost());
    /// # }
    /// ```
    pub fn limiter(&self) -> &RedisLimiter {
        &self.limiter
    }
}

impl<Svc, F: Clone, C: Clone> Layer<Svc> for RedisLayer<F, C> {
    type Service = RedisService<Svc, F, C>;

    fn layer(&self, inner: Svc) -> Self::Service {
        RedisService {
            inner,
            limiter: self.limiter.clone(),
            key: self.key.clone(),
            cost: self.cost.clone(),
        }
    }
}

/// The `Service` made by [`RedisLayer`]: admits each request under its key (one round
/// trip), then drives a clone of the inner service to readiness and calls it.
///
/// ```no_run
/// # use resilient_redis::{RedisLimiter, RedisService};
/// # use tower::{Layer, service_fn};
/// # fn demo(limiter: RedisLimiter) {
/// let svc = limiter
///     .layer(|n: &u32| *n)
///     .layer(service_fn(|n: u32| async move { Ok::<_, std::io::Error>(n) }));
/// let _shares_the_limiter = svc.clone();
/// # }
/// ```
pub struct RedisService<Svc, F, C = UnitCost> {
    inner: Svc,
    limiter: RedisLimiter,
    key: F,
    cost: C,
}

impl<Svc: Clone, F: Clone, C: Clone> Clone for RedisService<Svc, F, C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            limiter: self.limiter.clone(),
            key: self.key.clone(),
            cost: self.cost.clone(),
        }
    }
}

impl<Svc: fmt::Debug, F, C> fmt::Debug for RedisService<Svc, F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisService")
            .field("inner", &self.inner)
            .field("limiter", &self.limiter)
            .finish_non_exhaustive()
    }
}

impl<Svc, Req, F, K, C> Service<Req> for RedisService<Svc, F, C>
where
    C: RequestCost<Req>,
    Svc: Service<Req> + Clone + Send + 'static,
    Svc::Future: Send,
    Svc::Response: Send,
    Svc::Error: Send,
    Req: Send + 'static,
    F: Fn(&Req) -> K,
    K: Display,
{
    type Response = Svc::Response;
    type Error = Error<Svc::Error>;
    type Future = Pin<Box<dyn Future<Output = Result<Svc::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        // The inner service is driven to readiness after admission (on a clone).
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let base = self.limiter.key_for(&(self.key)(&req));
        let cost = self.cost.cost(&req);
        let limiter = self.limiter.clone();
        let mut svc = self.inner.clone();
        Box::pin(async move {
            if limiter.cost_check(cost).is_err() {
                return Err(Error::RateLimited {
                    retry_after: None,
                    info: None,
                });
            }
            let v = match limiter.mode() {
                Mode::Reject => limiter.decide(base, cost).await,
                // Inside a pipeline call, never wait past the call's deadline.
                Mode::Wait(w) => {
                    let w = resilient::inherited_deadline().map_or(w, |d| {
                        w.min(d.saturating_duration_since(tokio::time::Instant::now()))
                    });
                    limiter.decide_waiting(base, cost, w).await
                }
            };
            if !v.allowed {
                return Err(rejection(&limiter, &v).into());
            }
            poll_fn(|cx| svc.poll_ready(cx))
                .await
                .map_err(Error::Inner)?;
            svc.call(req).await.map_err(Error::Inner)
        })
    }
}
