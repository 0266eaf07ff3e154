//! One call's settings for its guards: [`Call`], made by [`Pipeline::call`].

use std::fmt;
use std::future::Future;
use std::hash::Hash;

use crate::engine::context::{Context, hash_key};
use crate::engine::error::Error;
use crate::engine::outcome::Classify;
use crate::pipeline::{Pipeline, Seed, always};

/// One call through a [`Pipeline`] with settings of its own, for the guards that read
/// them: what it costs a rate limiter ([`Call::cost`]) and the key a keyed limiter limits
/// it under ([`Call::key`]). Made by [`Pipeline::call`]; nothing is allocated, and the call
/// runs when one of the `execute` methods is called.
///
/// ```
/// use resilient::{Error, Pipeline};
/// use resilient::ratelimit::{Rate, RateLimiter};
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// // 10 units per second, shared by calls of different weights.
/// let p = Pipeline::builder()
///     .rate_limit(RateLimiter::gcra(Rate::per_second(10)))
///     .build()
///     .unwrap();
/// let heavy: Result<(), Error<()>> = p.call().cost(7).execute(|| async { Ok(()) }).await;
/// assert!(heavy.is_ok());
/// let too_heavy: Result<(), Error<()>> = p.call().cost(5).execute(|| async { Ok(()) }).await;
/// assert!(matches!(too_heavy, Err(Error::RateLimited { .. })));
/// let light: Result<(), Error<()>> = p.call().cost(3).execute(|| async { Ok(()) }).await;
/// assert!(light.is_ok());
/// # }
/// ```
#[must_use = "a call does nothing until one of its `execute` methods runs it"]
pub struct Call<'p, C> {
    pipeline: &'p Pipeline<C>,
    cost: Option<u64>,
    key: Option<u64>,
    no_hedge: bool,
}

impl<C> fmt::Debug for Call<'_, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Call")
            .field("pipeline", &self.pipeline)
            .field("cost", &self.cost)
            .field("key", &self.key)
            .finish()
    }
}

impl<C> Pipeline<C> {
    /// A call with settings of its own (see [`Call`]); `pipeline.call().execute(op)` is
    /// `pipeline.execute(op)`.
    ///
    /// ```
    /// use resilient::Pipeline;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let p = Pipeline::builder().build().unwrap();
    /// let r = p
    ///     .call()
    ///     .cost(3)
    ///     .key("tenant-7")
    ///     .execute_with(|ctx| async move { Ok::<_, ()>(ctx.cost()) })
    ///     .await;
    /// assert_eq!(r.unwrap(), Some(3));
    /// # }
    /// ```
    pub fn call(&self) -> Call<'_, C> {
        Call {
            pipeline: self,
            cost: None,
            key: None,
            no_hedge: false,
        }
    }
}

impl<'p, C: Send + Sync + 'static> Call<'p, C> {
    /// Charges this call `cost` units in the pipeline's rate limiters instead of their
    /// configured cost (a [`RateLimiter`](crate::RateLimiter)'s `cost`, 1 for a keyed
    /// limiter): a request's weight, its bytes or the tokens an API call consumes. A
    /// per-call limiter (before `.retry(..)`) charges it once, a per-attempt limiter at
    /// every attempt. A cost above a limiter's capacity can never pass: the call is
    /// rejected with [`Error::RateLimited`] and no `retry_after`. Other guards ignore it.
    /// The operation and guards see it as [`Context::cost`].
    ///
    /// ```
    /// use resilient::{Error, Pipeline};
    /// use resilient::ratelimit::{Rate, RateLimiter};
    /// use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// // In wait mode a heavy call waits for its units.
    /// let p = Pipeline::builder()
    ///     .rate_limit(RateLimiter::gcra(Rate::per_second(10)).max_wait(Duration::from_secs(1)))
    ///     .build()
    ///     .unwrap();
    /// let start = tokio::time::Instant::now();
    /// let _: Result<(), Error<()>> = p.call().cost(10).execute(|| async { Ok(()) }).await;
    /// let r: Result<(), Error<()>> = p.call().cost(5).execute(|| async { Ok(()) }).await;
    /// assert!(r.is_ok());
    /// assert_eq!(start.elapsed(), Duration::from_millis(500));
    /// # }
    /// ```
    pub fn cost(mut self, cost: u64) -> Self {
        self.cost = Some(cost);
        self
    }

    /// Limits this call under `key` in the pipeline's keyed limiters (a
    /// [`KeyedLimiter`](crate::ratelimit::KeyedLimiter) over `u64` keys added with
    /// `.rate_limit(..)`): a user id, an API key, a client's IP address, any `Hash` value,
    /// hashed to 64 bits as [`Context::key`] describes. Keys of different types that hash
    /// alike (`"ada"` and `String::from("ada")`) are the same key.
    ///
    /// ```
    /// use resilient::{Error, Pipeline};
    /// use resilient::ratelimit::{Gcra, KeyedLimiter, Rate};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let p = Pipeline::builder()
    ///     .rate_limit(KeyedLimiter::builder(Gcra::new(Rate::per_minute(1)).unwrap()).build::<u64>().unwrap())
    ///     .build()
    ///     .unwrap();
    /// let call = |user: &str| p.call().key(user).execute(|| async { Ok::<_, ()>(()) });
    /// assert!(call("ada").await.is_ok());
    /// assert!(matches!(call("ada").await, Err(Error::RateLimited { .. })));
    /// assert!(call("bob").await.is_ok());
    /// # }
    /// ```
    pub fn key<K: Hash + ?Sized>(mut self, key: &K) -> Self {
        self.key = Some(hash_key(key));
        self
    }

    /// Whether this call may be hedged (default `true` on a pipeline marked
    /// [`idempotent`](crate::PipelineBuilder::idempotent)): `false` runs it without hedges,
    /// for a call through a hedging pipeline that must not reach the dependency twice at
    /// once (a `POST`). Retries still apply.
    ///
    /// ```
    /// use resilient::hedge::Hedge;
    /// use resilient::{Error, Pipeline};
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// let p = Pipeline::builder()
    ///     .hedge(Hedge::parallel().max_hedges(2).build().unwrap())
    ///     .idempotent(true)
    ///     .build()
    ///     .unwrap();
    /// let mut runs = 0;
    /// let r: Result<(), Error<()>> = p
    ///     .call()
    ///     .idempotent(false)
    ///     .execute(|| { runs += 1; async { Ok(()) } })
    ///     .await;
    /// assert!(r.is_ok());
    /// assert_eq!(runs, 1);
    /// # }
    /// ```
    pub fn idempotent(mut self, yes: bool) -> Self {
        self.no_hedge = !yes;
        self
    }

    fn seed(&self) -> Seed {
        Seed {
            cancel: None,
            bare: false,
            cost: self.cost,
            key: self.key,
            no_hedge: self.no_hedge,
        }
    }

    /// Runs `op` through the pipeline, as [`Pipeline::execute`] does, with this call's
    /// settings.
    pub fn execute<T, E, F, Fut>(self, mut op: F) -> impl Future<Output = Result<T, Error<E>>> + 'p
    where
        C: Classify<T, E>,
        F: FnMut() -> Fut + 'p,
        Fut: Future<Output = Result<T, E>> + 'p,
        T: 'p,
        E: 'p,
    {
        let seed = Seed {
            bare: true,
            ..self.seed()
        };
        self.pipeline.run(seed, move |_| op(), always)
    }

    /// Runs `op` through the pipeline, handing it the [`Context`] of each attempt, as
    /// [`Pipeline::execute_with`] does, with this call's settings.
    pub fn execute_with<T, E, F, Fut>(
        self,
        mut op: F,
    ) -> impl Future<Output = Result<T, Error<E>>> + 'p
    where
        C: Classify<T, E>,
        F: FnMut(Context) -> Fut + 'p,
        Fut: Future<Output = Result<T, E>> + 'p,
        T: 'p,
        E: 'p,
    {
        let seed = self.seed();
        self.pipeline.run(seed, move |ctx| op(ctx.clone()), always)
    }

    /// Runs a blocking `op` through the pipeline, as [`Pipeline::execute_blocking`] does,
    /// with this call's settings.
    ///
    /// ```
    /// use resilient::{Error, Pipeline};
    /// use resilient::ratelimit::{Rate, RateLimiter};
    /// let p = Pipeline::builder().rate_limit(RateLimiter::gcra(Rate::per_second(10))).build().unwrap();
    /// assert!(p.call().cost(10).execute_blocking(|| Ok::<_, ()>(())).is_ok());
    /// let r = p.call().cost(1).execute_blocking(|| Ok::<_, ()>(()));
    /// assert!(matches!(r, Err(Error::RateLimited { .. })));
    /// ```
    pub fn execute_blocking<T, E, F>(self, mut op: F) -> Result<T, Error<E>>
    where
        C: Classify<T, E>,
        F: FnMut() -> Result<T, E>,
    {
        let seed = Seed {
            bare: true,
            ..self.seed()
        };
        self.pipeline.run_blocking(seed, move |_| op())
    }
}
