//! Fallback chains: when a call ends in a handled failure, try the next alternative in
//! order (another service, a cache, a constant), each receiving the failure that led to it.
//!
//! A [`Fallback`] runs outside everything else: around a whole pipeline call (its request
//! timeout included), so that a call the pipeline gave up on still gets an answer. If
//! every alternative fails too, the error is [`Error::Fallback`] with each failure in
//! order, the primary's first, so nobody loses sight of the degradation. Every use of an
//! alternative is reported to the [`FallbackBuilder::on_fallback`] observer.
//!
//! ```
//! use resilient::fallback::Fallback;
//! use resilient::{Error, Pipeline, Retry};
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! let pipeline = Pipeline::builder().retry(Retry::immediate().attempts(2)).build().unwrap();
//! let fallback = Fallback::builder()
//!     // a secondary service, then a constant
//!     .or_else(|_failure: Error<&str>| async { Err(Error::Inner("secondary down")) })
//!     .or_value("cached answer".to_string())
//!     .build()
//!     .unwrap();
//! let answer = pipeline
//!     .execute_with_fallback(&fallback, || async { Err::<String, _>("primary down") })
//!     .await;
//! assert_eq!(answer.unwrap(), "cached answer");
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::engine::error::{ConfigError, Error, HANDED_ON};

#[cfg(feature = "tower")]
mod layer;
mod stale;

#[cfg(feature = "tower")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
pub use self::layer::{FallbackLayer, FallbackService, ResponseFuture};
pub use self::stale::{Answer, StaleCache, StaleCacheBuilder, StaleEvent};

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, Error<E>>> + Send>>;
type Alternative<T, E> = Arc<dyn Fn(Error<E>) -> BoxFuture<T, E> + Send + Sync>;
type Handles<E> = Arc<dyn Fn(&Error<E>) -> bool + Send + Sync>;
type Observer<E> = Arc<dyn Fn(&FallbackEvent<'_, E>) + Send + Sync>;

/// One step of a chain.
enum Step<T, E> {
    /// A clone of this value.
    Value(T),
    /// A call given the failure that led to it.
    Call(Alternative<T, E>),
}

impl<T: Clone, E> Clone for Step<T, E> {
    fn clone(&self) -> Self {
        match self {
            Step::Value(v) => Step::Value(v.clone()),
            Step::Call(f) => Step::Call(f.clone()),
        }
    }
}

/// Tells a pipeline's observer that chain `name` used alternative `n` (from 1).
pub(crate) type FallbackReport = Arc<dyn Fn(&'static str, usize) + Send + Sync>;

/// An alternative was used: which one (1 for the first) and the failure that led to it.
#[derive(Debug)]
#[non_exhaustive]
pub struct FallbackEvent<'a, E> {
    /// The chain's name (see [`FallbackBuilder::name`]).
    pub name: &'static str,
    /// Which alternative runs now, counting from 1.
    pub alternative: usize,
    /// The failure of the step before it.
    pub failure: &'a Error<E>,
}

/// An ordered chain of alternatives for a failed call. A cheap handle: clones share the
/// chain. Built by [`Fallback::builder`].
pub struct Fallback<T, E> {
    name: &'static str,
    steps: Arc<[Step<T, E>]>,
    handles: Handles<E>,
    observer: Option<Observer<E>>,
}

impl<T, E> Clone for Fallback<T, E> {
    fn clone(&self) -> Self {
        Self {
            name: self.name,
            steps: self.steps.clone(),
            handles: self.handles.clone(),
            observer: self.observer.clone(),
        }
    }
}

impl<T, E> fmt::Debug for Fallback<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fallback")
            .field("name", &self.name)
            .field("alternatives", &self.steps.len())
            .finish_non_exhaustive()
    }
}

/// Configures a [`Fallback`].
pub struct FallbackBuilder<T, E> {
    name: &'static str,
    steps: Vec<Step<T, E>>,
    handles: Option<Handles<E>>,
    observer: Option<Observer<E>>,
}

impl<T, E> fmt::Debug for FallbackBuilder<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FallbackBuilder")
            .field("name", &self.name)
            .field("alternatives", &self.steps.len())
            .finish_non_exhaustive()
    }
}

impl<T, E> Fallback<T, E>
where
    T: Clone + Send + 'static,
    E: Send + 'static,
{
    /// A chain with no alternatives yet; add them in order with
    /// [`or_else`](FallbackBuilder::or_else) and [`or_value`](FallbackBuilder::or_value).
    ///
    /// ```
    /// use resilient::Error;
    /// use resilient::fallback::Fallback;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let fallback = Fallback::builder().or_value(0u32).build().unwrap();
    /// let r = fallback.call(|| async { Err::<u32, &str>("down") }).await;
    /// assert_eq!(r.unwrap(), 0);
    /// # }
    /// ```
    pub fn builder() -> FallbackBuilder<T, E> {
        FallbackBuilder {
            name: "fallback",
            steps: Vec::new(),
            handles: None,
            observer: None,
        }
    }

    /// Runs `primary` (already a resilient call, e.g. a pipeline's `execute`), and on a
    /// handled failure the alternatives in order, until one succeeds or ends in a failure
    /// the chain does not handle. When all fail: [`Error::Fallback`] with every failure.
    ///
    /// ```
    /// use resilient::Error;
    /// use resilient::fallback::Fallback;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let fallback = Fallback::builder()
    ///     .or_else(|_: Error<&str>| async { Err(Error::Inner("secondary down")) })
    ///     .build()
    ///     .unwrap();
    /// let r: Result<u8, _> = fallback.run(async { Err(Error::Inner("primary down")) }).await;
    /// match r {
    ///     Err(Error::Fallback { failures }) => assert_eq!(failures.len(), 2),
    ///     other => panic!("{other:?}"),
    /// }
    /// # }
    /// ```
    pub async fn run<Fut>(&self, primary: Fut) -> Result<T, Error<E>>
    where
        Fut: Future<Output = Result<T, Error<E>>>,
    {
        self.run_reporting(primary, None).await
    }

    /// [`run`](Self::run), also telling `report` (a pipeline's observer) of each
    /// alternative used, after this chain's own observer.
    pub(crate) async fn run_reporting<Fut>(
        &self,
        primary: Fut,
        report: Option<FallbackReport>,
    ) -> Result<T, Error<E>>
    where
        Fut: Future<Output = Result<T, Error<E>>>,
    {
        let first = match primary.await {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        if !(self.handles)(&first) {
            return Err(first);
        }
        self.after(first, report).await
    }

    /// The alternatives in order after the primary's handled failure `first`.
    pub(crate) async fn after(
        &self,
        first: Error<E>,
        report: Option<FallbackReport>,
    ) -> Result<T, Error<E>> {
        let mut failures = Vec::with_capacity(self.steps.len() + 1);
        let mut failure = first;
        for (i, step) in self.steps.iter().enumerate() {
            if let Some(observer) = &self.observer {
                observer(&FallbackEvent {
                    name: self.name,
                    alternative: i + 1,
                    failure: &failure,
                });
            }
            if let Some(report) = &report {
                report(self.name, i + 1);
            }
            let next = match step {
                Step::Value(v) => return Ok(v.clone()),
                Step::Call(f) => {
                    let (given, kept) = split(failure);
                    failures.push(kept);
                    match f(given).await {
                        Ok(v) => return Ok(v),
                        Err(e) => e,
                    }
                }
            };
            if !(self.handles)(&next) {
                return Err(next);
            }
            failure = next;
        }
        failures.push(failure);
        Err(Error::Fallback { failures })
    }

    /// Runs a plain operation with this chain (standalone, without a pipeline): its error
    /// is the caller's own ([`Error::Inner`]).
    ///
    /// ```
    /// use resilient::fallback::Fallback;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let fallback = Fallback::builder().or_value("default").build().unwrap();
    /// assert_eq!(fallback.call(|| async { Ok::<_, ()>("live") }).await.unwrap(), "live");
    /// assert_eq!(fallback.call(|| async { Err::<&str, ()>(()) }).await.unwrap(), "default");
    /// # }
    /// ```
    pub async fn call<F, Fut>(&self, op: F) -> Result<T, Error<E>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.run(async move { op().await.map_err(Error::Inner) })
            .await
    }

    /// The chain's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Whether the chain answers `failure` (its [`handle`](FallbackBuilder::handle)
    /// predicate).
    pub(crate) fn handles(&self, failure: &Error<E>) -> bool {
        (self.handles)(failure)
    }
}

/// The failure handed to the next alternative, and the record kept for the final error:
/// a strategy's verdict is copied; the caller's own error goes to the alternative and is
/// recorded as a `Rejected` marker in its place (the chain does not require `E: Clone`).
fn split<E>(failure: Error<E>) -> (Error<E>, Error<E>) {
    let kept = failure.verdict().unwrap_or(Error::Rejected {
        guard: HANDED_ON,
        retry_after: None,
    });
    (failure, kept)
}

impl<T, E> FallbackBuilder<T, E>
where
    T: Clone + Send + 'static,
    E: Send + 'static,
{
    /// The name events report (default `"fallback"`).
    pub fn name(mut self, name: &'static str) -> Self {
        self.name = name;
        self
    }

    /// Adds an alternative: an async closure given the failure before it (another
    /// service, another pipeline's call, a cache lookup).
    pub fn or_else<F, Fut>(mut self, alternative: F) -> Self
    where
        F: Fn(Error<E>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, Error<E>>> + Send + 'static,
    {
        self.steps.push(Step::Call(Arc::new(move |failure| {
            Box::pin(alternative(failure))
        })));
        self
    }

    /// Adds a constant answer (cloned for each use). It never fails, so nothing after it
    /// runs.
    pub fn or_value(mut self, value: T) -> Self {
        self.steps.push(Step::Value(value));
        self
    }

    /// Which failures the chain handles (default: every failure except the caller's own
    /// cancellation, which means nobody waits for an answer). A failure not handled is
    /// returned as it is, by the primary or by an alternative.
    ///
    /// ```
    /// use resilient::Error;
    /// use resilient::fallback::Fallback;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// // only when the dependency is unavailable, not for the caller's own errors
    /// let fallback = Fallback::builder()
    ///     .handle(|e: &Error<&str>| e.is_transient())
    ///     .or_value(0)
    ///     .build()
    ///     .unwrap();
    /// assert!(fallback.call(|| async { Err::<i32, _>("bad request") }).await.is_err());
    /// let open = fallback.run(async { Err(Error::CircuitOpen { retry_after: None }) });
    /// assert_eq!(open.await.unwrap(), 0);
    /// # }
    /// ```
    pub fn handle(mut self, predicate: impl Fn(&Error<E>) -> bool + Send + Sync + 'static) -> Self {
        self.handles = Some(Arc::new(predicate));
        self
    }

    /// Called each time an alternative is used, with the failure that led to it (count
    /// degraded answers: a fallback that hides every failure hides the outage too).
    pub fn on_fallback(
        mut self,
        observer: impl Fn(&FallbackEvent<'_, E>) + Send + Sync + 'static,
    ) -> Self {
        self.observer = Some(Arc::new(observer));
        self
    }

    /// Validates and builds: a chain needs at least one alternative, and nothing after a
    /// constant (it would never run).
    ///
    /// ```
    /// use resilient::fallback::Fallback;
    /// let empty = Fallback::<u8, ()>::builder().build().unwrap_err();
    /// assert_eq!(empty.field(), "fallback.alternatives");
    /// let dead = Fallback::<u8, ()>::builder().or_value(1).or_value(2).build().unwrap_err();
    /// assert_eq!(dead.field(), "fallback.alternatives");
    /// ```
    pub fn build(self) -> Result<Fallback<T, E>, ConfigError> {
        if self.steps.is_empty() {
            return Err(ConfigError::new(
                "fallback.alternatives",
                "a fallback chain needs at least one alternative (`or_else` or `or_value`)",
            ));
        }
        if let Some(i) = self.steps.iter().position(|s| matches!(s, Step::Value(_)))
            && i + 1 < self.steps.len()
        {
            return Err(ConfigError::new(
                "fallback.alternatives",
                format!(
                    "alternative {} is a constant, which never fails: the {} after it would \
                     never run",
                    i + 1,
                    self.steps.len() - i - 1
                ),
            ));
        }
        Ok(Fallback {
            name: self.name,
            steps: self.steps.into(),
            handles: self
                .handles
                .unwrap_or_else(|| Arc::new(|e: &Error<E>| !matches!(e, Error::Cancelled))),
            observer: self.observer,
        })
    }
}
