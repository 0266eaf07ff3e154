//! DNS-aware retries for reqwest (feature `reqwest`): a resolver wrapper that re-resolves a
//! name that failed (a bounded number of times, with a pause), remembers a failure only
//! for a short time (negative results are never cached for long), and classifies its
//! failures as [`ErrorClass::Dns`](super::ErrorClass::Dns) through [`DnsFailure`].
//!
//! Connect failures are handled below it: reqwest's connector tries each address a
//! resolver returns, in order, before it reports a connect error, so a name with one dead
//! address and one live one connects to the live one on the first attempt; and every
//! retried request resolves its name again (no positive result is cached here either), so
//! a retry after a connect error sees a fresh answer.
//!
//! ```
//! use std::sync::Arc;
//! use resilient::http::dns::RetryingResolver;
//! let resolver = RetryingResolver::system().attempts(3);
//! let client = reqwest::Client::builder().dns_resolver(Arc::new(resolver)).build().unwrap();
//! # let _ = client;
//! ```

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use tokio::time::Instant;

use super::DnsFailure;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The operating system's resolver (`getaddrinfo`, through [`tokio::net::lookup_host`]),
/// for [`RetryingResolver::system`].
///
/// ```
/// use reqwest::dns::Resolve;
/// let _ = resilient::http::dns::SystemResolver;
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found = tokio::net::lookup_host((host.as_str(), 0))
                .await
                .map(|addrs| addrs.collect::<Vec<SocketAddr>>());
            let addrs = match found {
                Ok(addrs) => addrs,
                Err(e) => {
                    let e = std::io::Error::new(e.kind(), DnsFailure { host });
                    return Err(Box::new(e) as BoxError);
                }
            };
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// A resolver that asks `R` again when a lookup fails (see [the module
/// documentation](self)): up to [`attempts`](Self::attempts) lookups a pause apart, then a
/// [`DnsFailure`] remembered for [`negative_ttl`](Self::negative_ttl) (lookups of that name
/// fail at once until then, and `R` is asked again after).
///
/// ```
/// use resilient::http::dns::{RetryingResolver, SystemResolver};
/// use std::time::Duration;
/// let r = RetryingResolver::new(SystemResolver)
///     .attempts(2)
///     .pause(Duration::from_millis(50))
///     .negative_ttl(Duration::from_secs(1));
/// # let _ = r;
/// ```
#[derive(Debug)]
pub struct RetryingResolver<R> {
    inner: Arc<R>,
    attempts: u32,
    pause: Duration,
    negative_ttl: Duration,
    failed: Arc<Mutex<HashMap<String, Instant>>>,
}

impl RetryingResolver<SystemResolver> {
    /// The operating system's resolver with re-resolution.
    ///
    /// ```
    /// let _ = resilient::http::dns::RetryingResolver::system();
    /// ```
    pub fn system() -> Self {
        Self::new(SystemResolver)
    }
}

impl<R> RetryingResolver<R> {
    /// `inner` with 2 lookups 100 ms apart and failures remembered for 1 s.
    ///
    /// ```
    /// let _ = resilient::http::dns::RetryingResolver::new(resilient::http::dns::SystemResolver);
    /// ```
    pub fn new(inner: R) -> Self {
        Self {
            inner: Arc::new(inner),
            attempts: 2,
            pause: Duration::from_millis(100),
            negative_ttl: Duration::from_secs(1),
            failed: Arc::default(),
        }
    }

    /// Lookups per resolution (at least 1).
    ///
    /// ```
    /// let _ = resilient::http::dns::RetryingResolver::system().attempts(3);
    /// ```
    pub fn attempts(mut self, n: u32) -> Self {
        self.attempts = n.max(1);
        self
    }

    /// The pause between two lookups.
    ///
    /// ```
    /// let _ = resilient::http::dns::RetryingResolver::system().pause(std::time::Duration::ZERO);
    /// ```
    pub fn pause(mut self, pause: Duration) -> Self {
        self.pause = pause;
        self
    }

    /// How long a failed resolution is remembered (zero: not at all).
    ///
    /// ```
    /// let _ = resilient::http::dns::RetryingResolver::system().negative_ttl(std::time::Duration::ZERO);
    /// ```
    pub fn negative_ttl(mut self, ttl: Duration) -> Self {
        self.negative_ttl = ttl;
        self
    }
}

impl<R: Resolve + 'static> Resolve for RetryingResolver<R> {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        let (inner, failed) = (self.inner.clone(), self.failed.clone());
        let (attempts, pause, ttl) = (self.attempts, self.pause, self.negative_ttl);
        Box::pin(async move {
            let now = Instant::now();
            {
                let mut failed = failed.lock().unwrap_or_else(|e| e.into_inner());
                failed.retain(|_, until| *until > now);
                if failed.contains_key(&host) {
                    return Err(Box::new(DnsFailure { host }) as _);
                }
            }
            for attempt in 1..=attempts {
                let name: Name = host
                    .parse()
                    .map_err(|_| DnsFailure { host: host.clone() })?;
                if let Ok(addrs) = inner.resolve(name).await {
                    let addrs: Vec<SocketAddr> = addrs.collect();
                    if !addrs.is_empty() {
                        return Ok(Box::new(addrs.into_iter()) as Addrs);
                    }
                }
                if attempt < attempts {
                    tokio::time::sleep(pause).await;
                }
            }
            if !ttl.is_zero() {
                failed
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(host.clone(), Instant::now() + ttl);
            }
            Err(Box::new(DnsFailure { host }) as _)
        })
    }
}
