//! A [`reqwest_middleware`] middleware that runs each request through a [`Pipeline`]
//! (feature `reqwest-middleware`).
//!
//! [`RetryMiddleware::standard`] is the standard client policy ([`ReqwestPolicy`]: connect
//! errors, timeouts, 408, 429, 502, 503 and 504 are retried, `Retry-After` and the
//! rate-limit headers replace the backoff up to a cap). On top of the pipeline it:
//!
//! - retries only idempotent methods, unless the request carries an `Idempotency-Key`
//!   header or [`RetryMiddleware::retry_unsafe_methods`] says so;
//! - refuses to retry a request whose body cannot be replayed (a stream:
//!   `reqwest::Request::try_clone` returns `None`) and answers with a typed
//!   [`NotReplayable`] error instead of the failure, so the caller knows why it was not
//!   retried;
//! - calls [`before`](RetryMiddleware::before_attempt) hooks on each attempt's request
//!   (headers such as the attempt number and the remaining deadline, see
//!   [`RetryMiddleware::attempt_header`] and [`RetryMiddleware::deadline_header`]) and
//!   [`after`](RetryMiddleware::after_attempt) hooks on each attempt's result.
//!
//! ```no_run
//! use resilient::http::middleware::RetryMiddleware;
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
//!     .with(RetryMiddleware::standard().attempt_header("x-attempt"))
//!     .build();
//! let body = client.get("http://127.0.0.1:8080/").send().await?.text().await?;
//! # let _ = body; Ok(()) }
//! ```

use std::error::Error as StdError;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use ::http::{Extensions, HeaderName, HeaderValue};
use reqwest_middleware::{Middleware, Next};

use super::{ErrorClass, NotReplayable, classify_error, is_idempotent, server_delay, status_class};
use crate::engine::context::Context;
use crate::engine::outcome::{Classify, Outcome};
use crate::pipeline::{Pipeline, PipelineBuilder, Seed};

type MwResult = Result<reqwest::Response, reqwest_middleware::Error>;

/// The attempt a hook is called for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Attempt {
    /// The attempt's number, 1-based.
    pub number: u32,
    /// Time left before the request's deadline (the pipeline's total or per-attempt
    /// timeout, whichever is sooner), if it has one.
    pub remaining: Option<Duration>,
}

type BeforeHook = Arc<dyn Fn(&mut reqwest::Request, &Attempt) + Send + Sync>;
type AfterHook = Arc<dyn Fn(&MwResult, &Attempt) + Send + Sync>;

/// The class of a middleware result: a response's status, or the error's type.
///
/// ```
/// use resilient::http::ErrorClass;
/// use resilient::http::middleware::result_class;
/// let e = reqwest_middleware::Error::middleware(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
/// assert_eq!(result_class(&Err(e)), Some(ErrorClass::Connect));
/// ```
pub fn result_class(result: &MwResult) -> Option<ErrorClass> {
    match result {
        Ok(response) => status_class(response.status()),
        Err(reqwest_middleware::Error::Reqwest(e)) => Some(classify_error(e)),
        Err(reqwest_middleware::Error::Middleware(e)) => {
            let e: &(dyn StdError + Send + Sync + 'static) = e.as_ref();
            Some(classify_error(e))
        }
    }
}

/// The standard HTTP client policy ([`HttpPolicy`](super::HttpPolicy)) for
/// `reqwest_middleware` results: a response whose status has a class, or any error, is a
/// failure, retried when its class is retryable; a response's `Retry-After` or rate-limit
/// headers replace the backoff. Whether the method may be retried is the middleware's
/// decision, not the classifier's.
///
/// ```
/// use resilient::{Classify, Outcome};
/// use resilient::http::middleware::ReqwestPolicy;
/// let e = reqwest_middleware::Error::middleware(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
/// let r = Err(e);
/// assert_eq!(ReqwestPolicy.classify(&r), Outcome::Failure);
/// assert!(ReqwestPolicy.should_retry(&r, Outcome::Failure));
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct ReqwestPolicy;

impl Classify<reqwest::Response, reqwest_middleware::Error> for ReqwestPolicy {
    fn classify(&self, result: &MwResult) -> Outcome {
        match result_class(result) {
            Some(_) => Outcome::Failure,
            None => Outcome::Success,
        }
    }

    fn should_retry(&self, result: &MwResult, _outcome: Outcome) -> bool {
        result_class(result).is_some_and(ErrorClass::is_retryable)
    }

    fn retry_after(&self, _attempt: u32, result: &MwResult) -> Option<Duration> {
        server_delay(result.as_ref().ok()?.headers(), SystemTime::now())
    }
}

/// A `reqwest_middleware` middleware running each request through a pipeline (see [the
/// module documentation](self)).
pub struct RetryMiddleware<C = ReqwestPolicy> {
    pipeline: Pipeline<C>,
    retry_unsafe: bool,
    before: Vec<BeforeHook>,
    after: Vec<AfterHook>,
}

impl<C> std::fmt::Debug for RetryMiddleware<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RetryMiddleware")
            .field("retry_unsafe", &self.retry_unsafe)
            .field("before", &self.before.len())
            .field("after", &self.after.len())
            .finish_non_exhaustive()
    }
}

/// The standard client pipeline for the middleware, to extend before building: as
/// [`client`](super::client) (3 attempts, exponential backoff from 100 ms with full
/// jitter, server delays up to 60 s, 10 s per attempt, 30 s in all, a retry budget) with
/// [`ReqwestPolicy`].
///
/// ```
/// use resilient::http::middleware::{RetryMiddleware, preset};
/// let mw = RetryMiddleware::new(preset().build().unwrap());
/// # let _ = mw;
/// ```
pub fn preset() -> PipelineBuilder<ReqwestPolicy> {
    super::standard("http", ReqwestPolicy, 3)
}

impl RetryMiddleware<ReqwestPolicy> {
    /// The middleware with the standard pipeline ([`preset`]).
    ///
    /// ```
    /// let mw = resilient::http::middleware::RetryMiddleware::standard();
    /// # let _ = mw;
    /// ```
    pub fn standard() -> Self {
        Self::new(
            preset()
                .build()
                .expect("the standard HTTP pipeline is valid"),
        )
    }
}

impl<C> RetryMiddleware<C> {
    /// The middleware running requests through `pipeline`.
    ///
    /// ```
    /// use resilient::{Pipeline, Retry};
    /// use resilient::http::middleware::{ReqwestPolicy, RetryMiddleware};
    /// let p = Pipeline::builder().classify(ReqwestPolicy).retry(Retry::immediate().attempts(2)).build().unwrap();
    /// let mw = RetryMiddleware::new(p);
    /// # let _ = mw;
    /// ```
    pub fn new(pipeline: Pipeline<C>) -> Self {
        Self {
            pipeline,
            retry_unsafe: false,
            before: Vec::new(),
            after: Vec::new(),
        }
    }

    /// Retries requests whatever their method (by default POST, PATCH and other unsafe
    /// methods are retried only with an `Idempotency-Key` header).
    ///
    /// ```
    /// let mw = resilient::http::middleware::RetryMiddleware::standard().retry_unsafe_methods(true);
    /// # let _ = mw;
    /// ```
    pub fn retry_unsafe_methods(mut self, yes: bool) -> Self {
        self.retry_unsafe = yes;
        self
    }

    /// Calls `hook` on each attempt's request before it is sent: it may rewrite it (add
    /// headers, sign it again). Hooks run in the order they were added.
    ///
    /// ```
    /// let mw = resilient::http::middleware::RetryMiddleware::standard()
    ///     .before_attempt(|req, attempt| {
    ///         req.headers_mut().insert("x-try", attempt.number.into());
    ///     });
    /// # let _ = mw;
    /// ```
    pub fn before_attempt(
        mut self,
        hook: impl Fn(&mut reqwest::Request, &Attempt) + Send + Sync + 'static,
    ) -> Self {
        self.before.push(Arc::new(hook));
        self
    }

    /// Calls `hook` on each attempt's result (a response or an error) before the pipeline
    /// judges it.
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// let seen = Arc::new(Mutex::new(Vec::new()));
    /// let log = seen.clone();
    /// let mw = resilient::http::middleware::RetryMiddleware::standard()
    ///     .after_attempt(move |r, _| log.lock().unwrap().push(r.as_ref().map(|r| r.status()).ok()));
    /// # let _ = mw;
    /// ```
    pub fn after_attempt(
        mut self,
        hook: impl Fn(&MwResult, &Attempt) + Send + Sync + 'static,
    ) -> Self {
        self.after.push(Arc::new(hook));
        self
    }

    /// Sends the attempt's number (1-based) in header `name`.
    ///
    /// ```
    /// let mw = resilient::http::middleware::RetryMiddleware::standard().attempt_header("x-attempt");
    /// # let _ = mw;
    /// ```
    pub fn attempt_header(self, name: &'static str) -> Self {
        let name = HeaderName::from_static(name);
        self.before_attempt(move |req, attempt| {
            req.headers_mut()
                .insert(name.clone(), HeaderValue::from(attempt.number));
        })
    }

    /// Propagates the deadline to the server: sends the milliseconds left before the
    /// request's deadline in header `name` (`x-request-deadline-ms`, say), when there is
    /// one. For gRPC's `grpc-timeout`, use [`before_attempt`](Self::before_attempt) with
    /// [`grpc_timeout`].
    ///
    /// ```
    /// let mw = resilient::http::middleware::RetryMiddleware::standard().deadline_header("x-request-deadline-ms");
    /// # let _ = mw;
    /// ```
    pub fn deadline_header(self, name: &'static str) -> Self {
        let name = HeaderName::from_static(name);
        self.before_attempt(move |req, attempt| {
            if let Some(left) = attempt.remaining {
                let ms = u64::try_from(left.as_millis()).unwrap_or(u64::MAX);
                req.headers_mut()
                    .insert(name.clone(), HeaderValue::from(ms));
            }
        })
    }

    fn may_retry(&self, req: &reqwest::Request) -> bool {
        self.retry_unsafe
            || is_idempotent(req.method())
            || req.headers().contains_key("idempotency-key")
    }
}

/// A duration as a `grpc-timeout` header value (at most 8 digits and a unit).
///
/// ```
/// use resilient::http::middleware::grpc_timeout;
/// use std::time::Duration;
/// assert_eq!(grpc_timeout(Duration::from_millis(1500)), "1500m");
/// assert_eq!(grpc_timeout(Duration::from_secs(200_000_000)), "55555H");
/// ```
pub fn grpc_timeout(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 100_000_000 {
        return format!("{ms}m");
    }
    let s = d.as_secs();
    if s < 100_000_000 {
        format!("{s}S")
    } else {
        format!("{}H", (s / 3600).min(99_999_999))
    }
}

#[async_trait::async_trait]
impl<C> Middleware for RetryMiddleware<C>
where
    C: Classify<reqwest::Response, reqwest_middleware::Error> + Send + Sync + 'static,
{
    async fn handle(
        &self,
        req: reqwest::Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> MwResult {
        let allowed = self.may_retry(&req);
        let last = if allowed {
            self.pipeline.max_attempts()
        } else {
            1
        };
        // hedged attempts run side by side: each is sent a copy while one can be made
        let hedging = allowed && self.pipeline.hedges();
        let spent = AtomicBool::new(false);
        // set when an attempt had to send the original because no copy could be made
        let unreplayable = AtomicBool::new(false);
        let attempts = Mutex::new(0u32);
        let mut original = Some(req);
        let extensions = &*extensions;
        let next = &next;
        let (spent, unreplayable, attempts) = (&spent, &unreplayable, &attempts);
        let result = self
            .pipeline
            .run(
                Seed {
                    no_hedge: !allowed,
                    ..Seed::default()
                },
                |ctx: &Context| {
                    let copy = match &original {
                        Some(r) if hedging || ctx.attempt() < last => {
                            let copy = r.try_clone();
                            if copy.is_none() {
                                unreplayable.store(true, Ordering::Relaxed);
                            }
                            copy
                        }
                        _ => None,
                    };
                    let mut req = copy.unwrap_or_else(|| {
                        spent.store(true, Ordering::Relaxed);
                        original
                            .take()
                            .expect("no attempt follows the one sent the original")
                    });
                    let attempt = Attempt {
                        number: ctx.attempt(),
                        remaining: ctx.remaining(),
                    };
                    *attempts.lock().unwrap_or_else(|e| e.into_inner()) = attempt.number;
                    for hook in &self.before {
                        hook(&mut req, &attempt);
                    }
                    let mut ext = extensions.clone();
                    let next = next.clone();
                    let after = &self.after;
                    async move {
                        let result = next.run(req, &mut ext).await;
                        for hook in after {
                            hook(&result, &attempt);
                        }
                        result
                    }
                },
                || allowed && !spent.load(Ordering::Relaxed),
            )
            .await;
        let made = *attempts.lock().unwrap_or_else(|e| e.into_inner());
        let refused = allowed && unreplayable.load(Ordering::Relaxed) && made < last;
        let result = match result {
            Ok(response) => Ok(response),
            Err(e) if e.inner().is_some() => Err(e.into_inner().expect("checked")),
            Err(verdict) => Err(reqwest_middleware::Error::middleware(verdict)),
        };
        if refused {
            let class = result_class(&result).filter(|c| c.is_retryable());
            if let Some(class) = class {
                return Err(reqwest_middleware::Error::middleware(match result {
                    Ok(response) => NotReplayable::new(class, Some(response.status()), None),
                    Err(e) => NotReplayable::new(class, None, Some(Box::new(e))),
                }));
            }
        }
        result
    }
}
