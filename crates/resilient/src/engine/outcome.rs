//! Outcome classification: which results count as failures.
//!
//! One classifier is evaluated once per attempt; its verdict feeds the retry decision and
//! every guard (breakers count failures, bulkheads and limiters ignore it).

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::time::Duration;

use crate::engine::attempt::{FailedAttempt, RetryEvent};
use crate::engine::error::{Error, RetryAfter};

/// A call's recovery after the pipeline gave up on it: the future of a fallback chain
/// (see [`Classify::recover`]). Boxed: it exists only on the failure path.
pub type Recovery<T, E> = Pin<Box<dyn Future<Output = Result<T, Error<E>>> + Send>>;

/// How one attempt's result is judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The call worked.
    Success,
    /// The call failed in a way strategies should react to (retry it, count it).
    Failure,
    /// The result is an error the strategies should neither retry nor count
    /// (e.g. a 404, or a validation error).
    Ignored,
}

/// Judges the result of one attempt.
///
/// Implemented for closures `Fn(&Result<T, E>) -> Outcome`; [`AllErrors`] (the default)
/// treats every `Err` as a failure.
///
/// ```
/// use resilient::{Classify, Outcome};
/// let only_5xx = |r: &Result<u16, u16>| match r {
///     Ok(_) => Outcome::Success,
///     Err(code) if *code >= 500 => Outcome::Failure,
///     Err(_) => Outcome::Ignored,
/// };
/// assert_eq!(only_5xx.classify(&Err(503)), Outcome::Failure);
/// assert_eq!(only_5xx.classify(&Err(404)), Outcome::Ignored);
/// ```
pub trait Classify<T, E>: Send + Sync + 'static {
    /// The verdict on one attempt.
    fn classify(&self, result: &Result<T, E>) -> Outcome;

    /// Whether this result is worth another attempt, given how it was judged. By default a
    /// failure is retried and nothing else is: override it (or use
    /// [`PipelineBuilder::retry_if`](crate::PipelineBuilder::retry_if)) to retry what is not
    /// a dependency failure (a 409 conflict) or not to retry a failure (a non-idempotent
    /// request that reached the server). Failure counting (breakers, metrics) follows
    /// [`Classify::classify`] either way.
    #[inline]
    fn should_retry(&self, result: &Result<T, E>, outcome: Outcome) -> bool {
        let _ = result;
        outcome == Outcome::Failure
    }

    /// A delay the result itself asks for before the next attempt (server-directed, like
    /// `Retry-After`). It replaces the computed backoff, bounded by the retry's
    /// `max_server_delay`. `attempt` is the attempt that produced `result` (1-based).
    fn retry_after(&self, attempt: u32, result: &Result<T, E>) -> Option<Duration> {
        let _ = (attempt, result);
        None
    }

    /// The cost of a retry after this result, charged to the retry's cost budget
    /// (`Retry::cost_budget`). `None` (the default) leaves it to the call's cost
    /// (`pipeline.call().cost(n)`) or the budget's default cost;
    /// [`PipelineBuilder::retry_cost`](crate::PipelineBuilder::retry_cost) sets it per
    /// result (per error kind).
    #[inline]
    fn retry_cost(&self, result: &Result<T, E>) -> Option<u64> {
        let _ = result;
        None
    }

    /// Called before each retry wait with the event and the failed attempt (its error,
    /// failed result or timeout). Does nothing by default; [`OnRetry`] (made by
    /// [`crate::PipelineBuilder::on_retry`]) adds a hook.
    #[inline]
    fn on_retry(&self, event: &RetryEvent<'_>, failed: FailedAttempt<'_, T, E>) {
        let _ = (event, failed);
    }

    /// The outermost phase: what answers a call the pipeline gave up on. `Err(failure)`
    /// (the default) returns the failure to the caller; `Ok(recovery)` answers with the
    /// recovery's result instead. A pipeline's
    /// [`fallback`](crate::PipelineBuilder::fallback) step wraps the classifier in one that
    /// runs its chain here; wrappers forward it to the classifier they wrap.
    ///
    /// ```
    /// use resilient::{AllErrors, Classify, Error};
    /// let none = <AllErrors as Classify<u8, ()>>::recover(&AllErrors, Error::BulkheadFull);
    /// assert!(matches!(none, Err(Error::BulkheadFull)));
    /// ```
    #[inline]
    fn recover(&self, failure: Error<E>) -> Result<Recovery<T, E>, Error<E>> {
        Err(failure)
    }
}

/// The default classifier: `Ok` is a success, every `Err` a failure.
#[derive(Debug, Default, Clone, Copy)]
pub struct AllErrors;

impl<T, E> Classify<T, E> for AllErrors {
    #[inline]
    fn classify(&self, result: &Result<T, E>) -> Outcome {
        match result {
            Ok(_) => Outcome::Success,
            Err(_) => Outcome::Failure,
        }
    }
}

impl<T, E, F> Classify<T, E> for F
where
    F: Fn(&Result<T, E>) -> Outcome + Send + Sync + 'static,
{
    #[inline]
    fn classify(&self, result: &Result<T, E>) -> Outcome {
        self(result)
    }
}

/// Wraps a classifier so that errors implementing [`RetryAfter`] direct the retry delay.
///
/// ```
/// use resilient::{AllErrors, Classify, HonorRetryAfter, RetryAfter};
/// use std::time::Duration;
/// struct Throttled(u64);
/// impl RetryAfter for Throttled {
///     fn retry_after(&self) -> Option<Duration> { Some(Duration::from_secs(self.0)) }
/// }
/// let c = HonorRetryAfter(AllErrors);
/// let r: Result<(), Throttled> = Err(Throttled(3));
/// assert_eq!(c.retry_after(1, &r), Some(Duration::from_secs(3)));
/// ```
#[derive(Debug, Default, Clone, Copy)]
pub struct HonorRetryAfter<C>(pub C);

impl<T, E: RetryAfter, C: Classify<T, E>> Classify<T, E> for HonorRetryAfter<C> {
    #[inline]
    fn classify(&self, result: &Result<T, E>) -> Outcome {
        self.0.classify(result)
    }

    #[inline]
    fn retry_cost(&self, result: &Result<T, E>) -> Option<u64> {
        self.0.retry_cost(result)
    }

    #[inline]
    fn should_retry(&self, result: &Result<T, E>, outcome: Outcome) -> bool {
        self.0.should_retry(result, outcome)
    }

    fn retry_after(&self, attempt: u32, result: &Result<T, E>) -> Option<Duration> {
        match result {
            Err(e) => e.retry_after(),
            Ok(_) => self.0.retry_after(attempt, result),
        }
    }

    #[inline]
    fn on_retry(&self, event: &RetryEvent<'_>, failed: FailedAttempt<'_, T, E>) {
        self.0.on_retry(event, failed);
    }
    #[inline]
    fn recover(&self, failure: Error<E>) -> Result<Recovery<T, E>, Error<E>> {
        self.0.recover(failure)
    }
}

/// A classifier with a custom, error-aware delay: `delay(attempt, &error)` returning
/// `Some(d)` waits `d` before the next attempt instead of the configured backoff.
///
/// ```
/// use resilient::{AllErrors, Classify, WithDelay};
/// use std::time::Duration;
/// let c = WithDelay::new(AllErrors, |attempt: u32, _e: &&str| {
///     Some(Duration::from_millis(10 * u64::from(attempt)))
/// });
/// assert_eq!(c.retry_after(3, &Err::<(), _>("x")), Some(Duration::from_millis(30)));
/// ```
pub struct WithDelay<C, F, E> {
    inner: C,
    delay: F,
    _e: PhantomData<fn(&E)>,
}

impl<C, F, E> WithDelay<C, F, E> {
    /// Wraps `inner` with the delay function.
    pub fn new(inner: C, delay: F) -> Self {
        Self {
            inner,
            delay,
            _e: PhantomData,
        }
    }
}

impl<C: Clone, F: Clone, E> Clone for WithDelay<C, F, E> {
    fn clone(&self) -> Self {
        Self::new(self.inner.clone(), self.delay.clone())
    }
}

impl<T, E: 'static, C, F> Classify<T, E> for WithDelay<C, F, E>
where
    C: Classify<T, E>,
    F: Fn(u32, &E) -> Option<Duration> + Send + Sync + 'static,
{
    #[inline]
    fn classify(&self, result: &Result<T, E>) -> Outcome {
        self.inner.classify(result)
    }

    #[inline]
    fn retry_cost(&self, result: &Result<T, E>) -> Option<u64> {
        self.inner.retry_cost(result)
    }

    #[inline]
    fn should_retry(&self, result: &Result<T, E>, outcome: Outcome) -> bool {
        self.inner.should_retry(result, outcome)
    }

    fn retry_after(&self, attempt: u32, result: &Result<T, E>) -> Option<Duration> {
        match result {
            Err(e) => (self.delay)(attempt, e),
            Ok(_) => self.inner.retry_after(attempt, result),
        }
    }

    #[inline]
    fn on_retry(&self, event: &RetryEvent<'_>, failed: FailedAttempt<'_, T, E>) {
        self.inner.on_retry(event, failed);
    }
    #[inline]
    fn recover(&self, failure: Error<E>) -> Result<Recovery<T, E>, Error<E>> {
        self.inner.recover(failure)
    }
}

/// A classifier with a typed retry hook: `hook(&event, failed)` runs before each retry wait
/// and sees the failed attempt's error (or failed result, or timeout). Made by
/// [`crate::PipelineBuilder::on_retry`]; judging and delays are left to the inner classifier.
pub struct OnRetry<C, F, T, E> {
    inner: C,
    hook: F,
    _te: PhantomData<fn(&T, &E)>,
}

impl<C, F, T, E> OnRetry<C, F, T, E> {
    /// Wraps `inner` with the hook.
    pub fn new(inner: C, hook: F) -> Self {
        Self {
            inner,
            hook,
            _te: PhantomData,
        }
    }
}

impl<C: Clone, F: Clone, T, E> Clone for OnRetry<C, F, T, E> {
    fn clone(&self) -> Self {
        Self::new(self.inner.clone(), self.hook.clone())
    }
}

impl<C: std::fmt::Debug, F, T, E> std::fmt::Debug for OnRetry<C, F, T, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnRetry")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<T: 'static, E: 'static, C, F> Classify<T, E> for OnRetry<C, F, T, E>
where
    C: Classify<T, E>,
    F: Fn(&RetryEvent<'_>, FailedAttempt<'_, T, E>) + Send + Sync + 'static,
{
    #[inline]
    fn classify(&self, result: &Result<T, E>) -> Outcome {
        self.inner.classify(result)
    }

    #[inline]
    fn retry_cost(&self, result: &Result<T, E>) -> Option<u64> {
        self.inner.retry_cost(result)
    }

    #[inline]
    fn should_retry(&self, result: &Result<T, E>, outcome: Outcome) -> bool {
        self.inner.should_retry(result, outcome)
    }

    #[inline]
    fn retry_after(&self, attempt: u32, result: &Result<T, E>) -> Option<Duration> {
        self.inner.retry_after(attempt, result)
    }

    fn on_retry(&self, event: &RetryEvent<'_>, failed: FailedAttempt<'_, T, E>) {
        self.inner.on_retry(event, failed);
        (self.hook)(event, failed);
    }
    #[inline]
    fn recover(&self, failure: Error<E>) -> Result<Recovery<T, E>, Error<E>> {
        self.inner.recover(failure)
    }
}

/// A classifier with its own retry predicate: `retry(&result)` decides whether an
/// attempt is retried, whatever it counts as for breakers and metrics (the inner
/// classifier's verdict). Made by
/// [`PipelineBuilder::retry_if`](crate::PipelineBuilder::retry_if).
pub struct RetryIf<C, F, T, E> {
    inner: C,
    retry: F,
    _te: PhantomData<fn(&T, &E)>,
}

impl<C, F, T, E> RetryIf<C, F, T, E> {
    /// Wraps `inner` with the predicate.
    pub fn new(inner: C, retry: F) -> Self {
        Self {
            inner,
            retry,
            _te: PhantomData,
        }
    }
}

impl<C: Clone, F: Clone, T, E> Clone for RetryIf<C, F, T, E> {
    fn clone(&self) -> Self {
        Self::new(self.inner.clone(), self.retry.clone())
    }
}

impl<C: std::fmt::Debug, F, T, E> std::fmt::Debug for RetryIf<C, F, T, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RetryIf")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<T: 'static, E: 'static, C, F> Classify<T, E> for RetryIf<C, F, T, E>
where
    C: Classify<T, E>,
    F: Fn(&Result<T, E>) -> bool + Send + Sync + 'static,
{
    #[inline]
    fn classify(&self, result: &Result<T, E>) -> Outcome {
        self.inner.classify(result)
    }

    #[inline]
    fn retry_cost(&self, result: &Result<T, E>) -> Option<u64> {
        self.inner.retry_cost(result)
    }

    #[inline]
    fn should_retry(&self, result: &Result<T, E>, _outcome: Outcome) -> bool {
        (self.retry)(result)
    }

    #[inline]
    fn retry_after(&self, attempt: u32, result: &Result<T, E>) -> Option<Duration> {
        self.inner.retry_after(attempt, result)
    }

    #[inline]
    fn on_retry(&self, event: &RetryEvent<'_>, failed: FailedAttempt<'_, T, E>) {
        self.inner.on_retry(event, failed);
    }
    #[inline]
    fn recover(&self, failure: Error<E>) -> Result<Recovery<T, E>, Error<E>> {
        self.inner.recover(failure)
    }
}

/// A classifier with a server-directed delay read from any result, `Ok` included (an
/// HTTP 429 or 503 returned as a response with `Retry-After`): `delay(&result)` returning
/// `Some(d)` waits `d` before the next attempt instead of the backoff (a request beyond
/// the retry's `max_server_delay` stops retrying); `None` falls back to the inner classifier's delay. Made by
/// [`PipelineBuilder::delay_from`](crate::PipelineBuilder::delay_from).
pub struct DelayFrom<C, F, T, E> {
    inner: C,
    delay: F,
    _te: PhantomData<fn(&T, &E)>,
}

impl<C, F, T, E> DelayFrom<C, F, T, E> {
    /// Wraps `inner` with the delay function.
    pub fn new(inner: C, delay: F) -> Self {
        Self {
            inner,
            delay,
            _te: PhantomData,
        }
    }
}

impl<C: Clone, F: Clone, T, E> Clone for DelayFrom<C, F, T, E> {
    fn clone(&self) -> Self {
        Self::new(self.inner.clone(), self.delay.clone())
    }
}

impl<C: std::fmt::Debug, F, T, E> std::fmt::Debug for DelayFrom<C, F, T, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DelayFrom")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<T: 'static, E: 'static, C, F> Classify<T, E> for DelayFrom<C, F, T, E>
where
    C: Classify<T, E>,
    F: Fn(&Result<T, E>) -> Option<Duration> + Send + Sync + 'static,
{
    #[inline]
    fn classify(&self, result: &Result<T, E>) -> Outcome {
        self.inner.classify(result)
    }

    #[inline]
    fn retry_cost(&self, result: &Result<T, E>) -> Option<u64> {
        self.inner.retry_cost(result)
    }

    #[inline]
    fn should_retry(&self, result: &Result<T, E>, outcome: Outcome) -> bool {
        self.inner.should_retry(result, outcome)
    }

    fn retry_after(&self, attempt: u32, result: &Result<T, E>) -> Option<Duration> {
        (self.delay)(result).or_else(|| self.inner.retry_after(attempt, result))
    }

    #[inline]
    fn on_retry(&self, event: &RetryEvent<'_>, failed: FailedAttempt<'_, T, E>) {
        self.inner.on_retry(event, failed);
    }
    #[inline]
    fn recover(&self, failure: Error<E>) -> Result<Recovery<T, E>, Error<E>> {
        self.inner.recover(failure)
    }
}

/// A classifier that prices retries: `cost(&result)` is what retrying after `result`
/// charges to the retry's cost budget. Made by
/// [`PipelineBuilder::retry_cost`](crate::PipelineBuilder::retry_cost); everything else
/// is left to the inner classifier.
pub struct RetryCost<C, F, T, E> {
    inner: C,
    cost: F,
    _te: PhantomData<fn(&T, &E)>,
}

impl<C, F, T, E> RetryCost<C, F, T, E> {
    /// Wraps `inner` with the pricing function.
    pub fn new(inner: C, cost: F) -> Self {
        Self {
            inner,
            cost,
            _te: PhantomData,
        }
    }
}

impl<C: Clone, F: Clone, T, E> Clone for RetryCost<C, F, T, E> {
    fn clone(&self) -> Self {
        Self::new(self.inner.clone(), self.cost.clone())
    }
}

impl<C: std::fmt::Debug, F, T, E> std::fmt::Debug for RetryCost<C, F, T, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RetryCost")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<T: 'static, E: 'static, C, F> Classify<T, E> for RetryCost<C, F, T, E>
where
    C: Classify<T, E>,
    F: Fn(&Result<T, E>) -> u64 + Send + Sync + 'static,
{
    #[inline]
    fn classify(&self, result: &Result<T, E>) -> Outcome {
        self.inner.classify(result)
    }

    #[inline]
    fn should_retry(&self, result: &Result<T, E>, outcome: Outcome) -> bool {
        self.inner.should_retry(result, outcome)
    }

    #[inline]
    fn retry_after(&self, attempt: u32, result: &Result<T, E>) -> Option<Duration> {
        self.inner.retry_after(attempt, result)
    }

    #[inline]
    fn retry_cost(&self, result: &Result<T, E>) -> Option<u64> {
        Some((self.cost)(result))
    }

    #[inline]
    fn on_retry(&self, event: &RetryEvent<'_>, failed: FailedAttempt<'_, T, E>) {
        self.inner.on_retry(event, failed);
    }
    #[inline]
    fn recover(&self, failure: Error<E>) -> Result<Recovery<T, E>, Error<E>> {
        self.inner.recover(failure)
    }
}
