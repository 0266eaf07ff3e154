//! The client: providers tried in order, each behind its own resilient pipeline.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use resilient::{
    Classify, ConfigError, Error, FailedAttempt, Jitter, Outcome, Pipeline, Retry, RetryAfter,
    RetryEvent, Timeout,
};
use serde::de::DeserializeOwned;
use tokio::time::Instant;

use crate::error::{ApiError, LlmError};
use crate::headers::{parse_duration, retry_delay};
use crate::limits::Limits;
use crate::stream::ChatStream;
use crate::types::{ChatRequest, ChatResponse, estimate_tokens};

/// One endpoint and key: an OpenAI-compatible API (`{base_url}/chat/completions`) called
/// with one API key. Several keys of one provider are several `Provider`s.
///
/// ```
/// use resilient_llm::{Limits, Provider};
/// let primary = Provider::openai("sk-primary").limits(Limits::new().tokens_per_minute(30_000));
/// let backup = Provider::new("local", "http://127.0.0.1:8080/v1", "none").model("llama-3.1-8b");
/// assert_eq!(primary.name(), "openai");
/// assert_eq!(backup.name(), "local");
/// ```
#[derive(Clone)]
pub struct Provider {
    name: String,
    base_url: String,
    api_key: String,
    model: Option<String>,
    limits: Option<Limits>,
}

/// Shows everything but the API key.
///
/// ```
/// let p = resilient_llm::Provider::openai("sk-secret");
/// assert!(!format!("{p:?}").contains("sk-secret"));
/// ```
impl fmt::Debug for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Provider")
            .field("name", &self.name)
            .field("base_url", &self.base_url)
            .field("api_key", &"<redacted>")
            .field("model", &self.model)
            .field("limits", &self.limits)
            .finish()
    }
}

impl Provider {
    /// A provider named `name` at `base_url` (up to, not including, `/chat/completions`)
    /// with `api_key`, sent as `Authorization: Bearer`.
    ///
    /// ```
    /// let p = resilient_llm::Provider::new("groq", "https://api.groq.com/openai/v1", "gsk-...");
    /// assert_eq!(p.name(), "groq");
    /// ```
    pub fn new(
        name: impl Into<String>,
        base_url: impl Into<String>,
        api_key: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            base_url: base_url.into(),
            api_key: api_key.into(),
            model: None,
            limits: None,
        }
    }

    /// OpenAI's API (`https://api.openai.com/v1`) with `api_key`, named `openai`.
    ///
    /// ```
    /// assert_eq!(resilient_llm::Provider::openai("sk-...").name(), "openai");
    /// ```
    pub fn openai(api_key: impl Into<String>) -> Self {
        Self::new("openai", "https://api.openai.com/v1", api_key)
    }

    /// Renames it (names tell providers apart in events and errors).
    ///
    /// ```
    /// assert_eq!(resilient_llm::Provider::openai("k").name_as("openai-2").name(), "openai-2");
    /// ```
    pub fn name_as(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The model this provider is asked for, replacing the request's (providers name
    /// their models differently).
    ///
    /// ```
    /// let _ = resilient_llm::Provider::openai("k").model("gpt-4o-mini");
    /// ```
    pub fn model(mut self, model: impl Into<String>) -> Self {
        self.model = Some(model.into());
        self
    }

    /// Client-side request and token limits for this provider (see [`Limits`]).
    ///
    /// ```
    /// use resilient_llm::{Limits, Provider};
    /// let _ = Provider::openai("k").limits(Limits::new().requests_per_minute(500));
    /// ```
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = Some(limits);
        self
    }

    /// Its name.
    ///
    /// ```
    /// assert_eq!(resilient_llm::Provider::new("a", "http://x", "k").name(), "a");
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// What the client did, for logs and metrics (see [`ClientBuilder::on_event`]).
///
/// ```
/// use resilient_llm::Event;
/// let describe = |e: &Event<'_>| match e {
///     Event::Retry { provider, delay, .. } => format!("{provider}: retry in {delay:?}"),
///     Event::Rotate { from, to, .. } => format!("{from} -> {to}"),
///     Event::Reask { reask, .. } => format!("re-ask {reask}"),
///     _ => String::new(),
/// };
/// # let _ = describe;
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum Event<'a> {
    /// An attempt failed and the same provider is asked again after `delay` (the
    /// provider's `Retry-After` / `x-ratelimit-reset-*` when it sent one, else the backoff).
    Retry {
        /// The provider.
        provider: &'a str,
        /// The attempt that failed (1-based).
        attempt: u32,
        /// The wait before the next attempt.
        delay: Duration,
        /// The attempt's error (`None` for a timeout or a rejection).
        error: Option<&'a LlmError>,
    },
    /// A provider failed in a way another may not (quota, limits, outage) and the call
    /// moves on.
    Rotate {
        /// The provider that failed.
        from: &'a str,
        /// The next one.
        to: &'a str,
        /// Why.
        error: &'a Error<LlmError>,
    },
    /// Structured output did not parse even after repair; the model is asked again.
    Reask {
        /// Which re-ask this is (1 for the first).
        reask: u32,
        /// Why the answer did not parse.
        reason: &'a str,
    },
}

type Hook = Arc<dyn Fn(&Event<'_>) + Send + Sync>;
type RotateIf = Arc<dyn Fn(&Error<LlmError>) -> bool + Send + Sync>;

/// The classifier of every provider's pipeline, for pipelines of your own around
/// [`LlmError`]s: every error is a failure, only [retryable](LlmError::is_retryable) ones
/// are retried, after the wait the provider asked for ([`ApiError::retry_after`]).
///
/// ```
/// use resilient::{Error, Pipeline, Retry};
/// use resilient_llm::{ApiError, LlmError, LlmPolicy};
/// use std::time::Duration;
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// let p = Pipeline::builder()
///     .retry(Retry::constant(Duration::from_secs(30)).attempts(3))
///     .classify(LlmPolicy::new())
///     .build()
///     .unwrap();
/// let start = tokio::time::Instant::now();
/// let mut calls = 0;
/// let r: Result<&str, Error<LlmError>> = p
///     .execute(|| {
///         calls += 1;
///         let first = calls == 1;
///         async move {
///             if first {
///                 // a 429 asking for 2 s: waited instead of the 30 s backoff
///                 Err(LlmError::Api(ApiError::from_response(429, b"", Some(Duration::from_secs(2)))))
///             } else {
///                 Ok("done")
///             }
///         }
///     })
///     .await;
/// assert_eq!(r.unwrap(), "done");
/// assert_eq!(start.elapsed(), Duration::from_secs(2));
/// // a 400 is not retried
/// let r: Result<(), _> = p
///     .execute(|| async { Err(LlmError::Api(ApiError::from_response(400, b"", None))) })
///     .await;
/// assert!(matches!(r, Err(Error::Inner(_))));
/// # }
/// ```
#[derive(Clone, Default)]
pub struct LlmPolicy {
    hook: Option<Hook>,
}

impl LlmPolicy {
    /// The policy, with no event hook.
    ///
    /// ```
    /// let _ = resilient_llm::LlmPolicy::new();
    /// ```
    pub fn new() -> Self {
        Self::default()
    }
}

impl fmt::Debug for LlmPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LlmPolicy")
            .field("hook", &self.hook.is_some())
            .finish()
    }
}

impl<T: 'static> Classify<T, LlmError> for LlmPolicy {
    fn classify(&self, result: &Result<T, LlmError>) -> Outcome {
        match result {
            Ok(_) => Outcome::Success,
            Err(_) => Outcome::Failure,
        }
    }

    fn should_retry(&self, result: &Result<T, LlmError>, _outcome: Outcome) -> bool {
        result.as_ref().err().is_some_and(LlmError::is_retryable)
    }

    fn retry_after(&self, _attempt: u32, result: &Result<T, LlmError>) -> Option<Duration> {
        result.as_ref().err()?.retry_after()
    }

    fn on_retry(&self, event: &RetryEvent<'_>, failed: FailedAttempt<'_, T, LlmError>) {
        if let Some(hook) = &self.hook {
            hook(&Event::Retry {
                provider: event.operation.unwrap_or(""),
                attempt: event.attempt,
                delay: event.delay,
                error: failed.error(),
            });
        }
    }
}

struct ProviderState {
    provider: Provider,
    url: String,
    pipeline: Pipeline<LlmPolicy>,
    /// Set when the provider said its quota is used up: skipped until then.
    parked_until: Mutex<Option<Instant>>,
}

impl ProviderState {
    fn body(&self, request: &ChatRequest, stream: bool) -> Result<Bytes, LlmError> {
        let mut value =
            serde_json::to_value(request).map_err(|e| LlmError::Decode(format!("request: {e}")))?;
        if let Some(model) = &self.provider.model {
            value["model"] = model.clone().into();
        }
        if stream {
            value["stream"] = true.into();
        }
        Ok(Bytes::from(value.to_string()))
    }

    fn is_parked(&self, now: Instant) -> bool {
        let parked = self.parked_until.lock().unwrap_or_else(|e| e.into_inner());
        parked.is_some_and(|until| until > now)
    }

    fn park(&self, until: Instant) {
        *self.parked_until.lock().unwrap_or_else(|e| e.into_inner()) = Some(until);
    }
}

struct Inner {
    http: reqwest::Client,
    providers: Vec<ProviderState>,
    first_token_timeout: Duration,
    idle_timeout: Duration,
    max_reasks: u32,
    quota_cooldown: Duration,
    hook: Option<Hook>,
    rotate_if: RotateIf,
}

/// A chat-completions client over one or more providers, each behind its own
/// [`resilient::Pipeline`]: transient failures are retried on the same provider (after
/// the wait it asks for), and a provider that cannot answer (quota used up, limits
/// reached, down) hands the call to the next, as a fallback chain. A cheap handle:
/// clones share providers, limits and connections.
///
/// ```no_run
/// use resilient_llm::{ChatRequest, Client, Provider};
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let client = Client::builder()
///     .provider(Provider::openai(std::env::var("OPENAI_API_KEY")?))
///     .provider(Provider::openai(std::env::var("OPENAI_API_KEY_2")?).name_as("openai-2"))
///     .build()?;
/// let answer = client.chat(&ChatRequest::new("gpt-4o-mini").user("Say hi")).await?;
/// println!("{} (from {})", answer.content(), answer.provider);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self
            .inner
            .providers
            .iter()
            .map(|p| p.provider.name())
            .collect();
        f.debug_struct("Client")
            .field("providers", &names)
            .field("first_token_timeout", &self.inner.first_token_timeout)
            .field("idle_timeout", &self.inner.idle_timeout)
            .field("max_reasks", &self.inner.max_reasks)
            .finish_non_exhaustive()
    }
}

/// Configures a [`Client`].
///
/// ```
/// use resilient::Retry;
/// use resilient_llm::{Client, Provider};
/// use std::time::Duration;
/// let client = Client::builder()
///     .provider(Provider::new("local", "http://127.0.0.1:8080/v1", "k"))
///     .retry(Retry::exponential(Duration::from_millis(200)).attempts(4))
///     .request_timeout(Duration::from_secs(60))
///     .first_token_timeout(Duration::from_secs(10))
///     .idle_timeout(Duration::from_secs(20))
///     .max_reasks(2)
///     .build()
///     .unwrap();
/// # let _ = client;
/// ```
pub struct ClientBuilder {
    providers: Vec<Provider>,
    retry: Retry,
    request_timeout: Duration,
    first_token_timeout: Duration,
    idle_timeout: Duration,
    max_reasks: u32,
    quota_cooldown: Duration,
    hook: Option<Hook>,
    rotate_if: RotateIf,
    http: Option<reqwest::Client>,
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("providers", &self.providers)
            .field("retry", &self.retry)
            .field("request_timeout", &self.request_timeout)
            .field("first_token_timeout", &self.first_token_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("max_reasks", &self.max_reasks)
            .finish_non_exhaustive()
    }
}

/// The default rotation rule (see [`ClientBuilder::rotate_if`]): a used-up quota, a key
/// refused (401/403), local limits reached, a timeout, an open breaker, or transient
/// failures that outlasted the retries. Never a bad request (400, 404, ..), which any
/// provider would refuse too, nor a cancelled call.
///
/// ```
/// use resilient::Error;
/// use resilient_llm::{ApiError, LlmError, should_rotate};
/// let quota = br#"{"error": {"type": "insufficient_quota"}}"#;
/// assert!(should_rotate(&Error::Inner(LlmError::Api(ApiError::from_response(429, quota, None)))));
/// assert!(!should_rotate(&Error::Inner(LlmError::Api(ApiError::from_response(400, b"", None)))));
/// ```
pub fn should_rotate(error: &Error<LlmError>) -> bool {
    match error {
        Error::Inner(e) | Error::RetriesExhausted { last: e, .. } => {
            e.is_retryable()
                || e.is_quota_exhausted()
                || e.api()
                    .is_some_and(|a| a.kind == crate::error::ApiErrorKind::Unauthorized)
        }
        Error::Cancelled | Error::Fallback { .. } => false,
        _ => true,
    }
}

impl ClientBuilder {
    /// Adds a provider; providers are tried in the order added.
    ///
    /// ```
    /// use resilient_llm::{Client, Provider};
    /// let b = Client::builder().provider(Provider::openai("k1")).provider(Provider::openai("k2").name_as("k2"));
    /// assert!(b.build().is_ok());
    /// ```
    pub fn provider(mut self, provider: Provider) -> Self {
        self.providers.push(provider);
        self
    }

    /// The retry of every provider's pipeline (default: 3 attempts, exponential backoff
    /// from 500 ms with full jitter, waits the provider asks for up to 60 s). Only
    /// transient errors are retried ([`LlmError::is_retryable`]); a provider asking for a
    /// longer wait than the retry's
    /// [`max_server_delay`](resilient::Retry::max_server_delay) is given up on at once.
    ///
    /// ```
    /// use resilient::Retry;
    /// let _ = resilient_llm::Client::builder().retry(Retry::immediate().attempts(2));
    /// ```
    pub fn retry(mut self, retry: Retry) -> Self {
        self.retry = retry;
        self
    }

    /// The limit for one attempt of a request that is not streamed, and for a streamed
    /// one's response headers (default 120 s).
    ///
    /// ```
    /// use std::time::Duration;
    /// let _ = resilient_llm::Client::builder().request_timeout(Duration::from_secs(30));
    /// ```
    pub fn request_timeout(mut self, limit: Duration) -> Self {
        self.request_timeout = limit;
        self
    }

    /// Time to first token: a streamed attempt that sends no token within this time of
    /// the request fails with [`LlmError::FirstTokenTimeout`] and is retried like any
    /// transient failure (default 30 s).
    ///
    /// ```
    /// use std::time::Duration;
    /// let _ = resilient_llm::Client::builder().first_token_timeout(Duration::from_secs(5));
    /// ```
    pub fn first_token_timeout(mut self, limit: Duration) -> Self {
        self.first_token_timeout = limit;
        self
    }

    /// The longest gap between two chunks of a stream once it has started; a longer one
    /// ends it with [`LlmError::IdleTimeout`] (default 30 s). Not retried: part of the
    /// answer was already handed out.
    ///
    /// ```
    /// use std::time::Duration;
    /// let _ = resilient_llm::Client::builder().idle_timeout(Duration::from_secs(10));
    /// ```
    pub fn idle_timeout(mut self, limit: Duration) -> Self {
        self.idle_timeout = limit;
        self
    }

    /// How many times [`Client::parse`] asks the model again when its answer cannot be
    /// repaired into the requested type (default 1; 0 never re-asks).
    ///
    /// ```
    /// let _ = resilient_llm::Client::builder().max_reasks(3);
    /// ```
    pub fn max_reasks(mut self, n: u32) -> Self {
        self.max_reasks = n;
        self
    }

    /// How long a provider whose quota is used up (429 `insufficient_quota`) is skipped
    /// (default 60 s). While every provider is skipped, all are tried again.
    ///
    /// ```
    /// use std::time::Duration;
    /// let _ = resilient_llm::Client::builder().quota_cooldown(Duration::from_secs(600));
    /// ```
    pub fn quota_cooldown(mut self, cooldown: Duration) -> Self {
        self.quota_cooldown = cooldown;
        self
    }

    /// Which failures of a provider move the call to the next one (default
    /// [`should_rotate`]).
    ///
    /// ```
    /// use resilient::Error;
    /// use resilient_llm::LlmError;
    /// // rotate on used-up quotas only
    /// let _ = resilient_llm::Client::builder()
    ///     .rotate_if(|e: &Error<LlmError>| e.inner().is_some_and(LlmError::is_quota_exhausted));
    /// ```
    pub fn rotate_if(
        mut self,
        rotate: impl Fn(&Error<LlmError>) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.rotate_if = Arc::new(rotate);
        self
    }

    /// Calls `hook` for every retry, rotation and re-ask.
    ///
    /// ```
    /// use resilient_llm::Event;
    /// let _ = resilient_llm::Client::builder().on_event(|e: &Event<'_>| eprintln!("{e:?}"));
    /// ```
    pub fn on_event(mut self, hook: impl Fn(&Event<'_>) + Send + Sync + 'static) -> Self {
        self.hook = Some(Arc::new(hook));
        self
    }

    /// The HTTP client to use (proxies, headers, TLS settings of your own). By default a
    /// `reqwest::Client` with rustls and the webpki roots.
    ///
    /// ```
    /// let http = reqwest::Client::builder().user_agent("my-agent/1.0").build().unwrap();
    /// let _ = resilient_llm::Client::builder().http_client(http);
    /// ```
    pub fn http_client(mut self, http: reqwest::Client) -> Self {
        self.http = Some(http);
        self
    }

    /// Validates the configuration (at least one provider, valid retry and limits) and
    /// builds the client.
    ///
    /// ```
    /// let err = resilient_llm::Client::builder().build().unwrap_err();
    /// assert_eq!(err.field(), "providers");
    /// ```
    pub fn build(self) -> Result<Client, ConfigError> {
        if self.providers.is_empty() {
            return Err(ConfigError::new(
                "providers",
                "at least one provider is needed",
            ));
        }
        let http = match self.http {
            Some(http) => http,
            None => reqwest::Client::builder()
                .build()
                .map_err(|e| ConfigError::new("http_client", e.to_string()))?,
        };
        let policy = LlmPolicy {
            hook: self.hook.clone(),
        };
        let mut providers = Vec::with_capacity(self.providers.len());
        for provider in self.providers {
            let mut builder = Pipeline::builder()
                .name(provider.name.clone())
                .retry(self.retry.clone());
            if let Some(limits) = &provider.limits {
                builder = builder.guard_arc(limits.guard()?);
            }
            let pipeline = builder
                .timeout(Timeout::operation(self.request_timeout))
                .classify(policy.clone())
                .build()?;
            providers.push(ProviderState {
                url: format!(
                    "{}/chat/completions",
                    provider.base_url.trim_end_matches('/')
                ),
                provider,
                pipeline,
                parked_until: Mutex::new(None),
            });
        }
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                providers,
                first_token_timeout: self.first_token_timeout,
                idle_timeout: self.idle_timeout,
                max_reasks: self.max_reasks,
                quota_cooldown: self.quota_cooldown,
                hook: self.hook,
                rotate_if: self.rotate_if,
            }),
        })
    }
}

impl Client {
    /// A builder with no provider yet.
    ///
    /// ```
    /// let client = resilient_llm::Client::builder()
    ///     .provider(resilient_llm::Provider::openai("sk-..."))
    ///     .build()
    ///     .unwrap();
    /// # let _ = client;
    /// ```
    pub fn builder() -> ClientBuilder {
        ClientBuilder {
            providers: Vec::new(),
            retry: Retry::exponential(Duration::from_millis(500))
                .attempts(3)
                .jitter(Jitter::Full)
                .max_server_delay(Duration::from_secs(60)),
            request_timeout: Duration::from_secs(120),
            first_token_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(30),
            max_reasks: 1,
            quota_cooldown: Duration::from_secs(60),
            hook: None,
            rotate_if: Arc::new(should_rotate),
            http: None,
        }
    }

    fn emit(&self, event: &Event<'_>) {
        if let Some(hook) = &self.inner.hook {
            hook(event);
        }
    }

    /// Sends `request` and returns the completion.
    ///
    /// Each provider, in order, gets the call through its pipeline (its limits, retries of
    /// transient errors after the wait it asks for, the request timeout); when one fails
    /// in a way [`ClientBuilder::rotate_if`] accepts, the next is asked. The error is the
    /// last provider's, or [`Error::Fallback`] with every provider's failure in order.
    ///
    /// ```no_run
    /// # async fn demo(client: resilient_llm::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// use resilient_llm::ChatRequest;
    /// let answer = client.chat(&ChatRequest::new("gpt-4o-mini").user("What is 2 + 2?")).await?;
    /// println!("{}", answer.content());
    /// # Ok(()) }
    /// ```
    pub async fn chat(&self, request: &ChatRequest) -> Result<ChatResponse, Error<LlmError>> {
        let cost = estimate_tokens(request);
        self.across_providers(|p| async move {
            let body = p.body(request, false).map_err(Error::Inner)?;
            p.pipeline
                .call()
                .cost(cost)
                .execute(|| self.chat_once(p, body.clone()))
                .await
        })
        .await
    }

    /// Sends `request` as a stream (`"stream": true`) and returns it once its first token
    /// arrived.
    ///
    /// Opening the stream is one attempt: the request, the response headers, then the
    /// first token within [`first_token_timeout`](ClientBuilder::first_token_timeout)
    /// (else [`LlmError::FirstTokenTimeout`]), retried and rotated like [`Client::chat`].
    /// After that the stream is the caller's: a gap longer than
    /// [`idle_timeout`](ClientBuilder::idle_timeout) ends it with
    /// [`LlmError::IdleTimeout`].
    ///
    /// ```no_run
    /// # async fn demo(client: resilient_llm::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// use resilient_llm::ChatRequest;
    /// let mut stream = client.chat_stream(&ChatRequest::new("gpt-4o-mini").user("Tell a story")).await?;
    /// while let Some(chunk) = stream.next().await {
    ///     print!("{}", chunk?.content);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn chat_stream(&self, request: &ChatRequest) -> Result<ChatStream, Error<LlmError>> {
        let cost = estimate_tokens(request);
        self.across_providers(|p| async move {
            let body = p.body(request, true).map_err(Error::Inner)?;
            p.pipeline
                .call()
                .cost(cost)
                .execute(|| self.stream_once(p, body.clone()))
                .await
        })
        .await
    }

    /// Sends `request` and parses the answer into `T`, repairing malformed JSON (code
    /// fences, single quotes, trailing commas, a cut-off end: see `resilient_json`). An
    /// answer that still does not fit `T` is shown to the model with the parse error and
    /// a request for corrected JSON, up to [`max_reasks`](ClientBuilder::max_reasks)
    /// times; then the call fails with [`LlmError::InvalidOutput`].
    ///
    /// ```no_run
    /// # async fn demo(client: resilient_llm::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// use resilient_llm::ChatRequest;
    /// #[derive(serde::Deserialize)]
    /// struct City { name: String, population: u64 }
    /// let city: City = client
    ///     .parse(&ChatRequest::new("gpt-4o-mini").json_mode().user("The largest city in Japan, as JSON {name, population}"))
    ///     .await?;
    /// println!("{} has {} people", city.name, city.population);
    /// # Ok(()) }
    /// ```
    pub async fn parse<T: DeserializeOwned>(
        &self,
        request: &ChatRequest,
    ) -> Result<T, Error<LlmError>> {
        let mut request = request.clone();
        let mut reasks = 0;
        loop {
            let answer = self.chat(&request).await?;
            let content = answer.content();
            let reason = match resilient::json::parse::<T>(content) {
                Ok(value) => return Ok(value),
                Err(e) => e.to_string(),
            };
            if reasks >= self.inner.max_reasks {
                return Err(Error::Inner(LlmError::InvalidOutput {
                    reason,
                    content: content.to_owned(),
                    reasks,
                }));
            }
            reasks += 1;
            self.emit(&Event::Reask {
                reask: reasks,
                reason: &reason,
            });
            request = request.assistant(content).user(format!(
                "Your previous reply could not be parsed as the requested JSON ({reason}). \
                 Reply again with only the corrected JSON: no prose, no code fences."
            ));
        }
    }

    /// Runs `call` on each provider in order until one succeeds or fails in a way that
    /// does not rotate.
    async fn across_providers<'a, T, F, Fut>(&'a self, call: F) -> Result<T, Error<LlmError>>
    where
        F: Fn(&'a ProviderState) -> Fut,
        Fut: Future<Output = Result<T, Error<LlmError>>>,
    {
        let now = Instant::now();
        let providers = &self.inner.providers;
        let mut order: Vec<&ProviderState> =
            providers.iter().filter(|p| !p.is_parked(now)).collect();
        if order.is_empty() {
            order = providers.iter().collect();
        }
        let mut failures = Vec::new();
        for (i, p) in order.iter().enumerate() {
            let error = match call(p).await {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            if error.inner().is_some_and(LlmError::is_quota_exhausted) {
                p.park(Instant::now() + self.inner.quota_cooldown);
            }
            let next = order.get(i + 1);
            match next {
                Some(next) if (self.inner.rotate_if)(&error) => {
                    self.emit(&Event::Rotate {
                        from: p.provider.name(),
                        to: next.provider.name(),
                        error: &error,
                    });
                    failures.push(error);
                }
                _ if failures.is_empty() => return Err(error),
                _ => {
                    failures.push(error);
                    return Err(Error::Fallback { failures });
                }
            }
        }
        unreachable!("the last provider's failure returns")
    }

    /// Sends one request and checks its status.
    async fn send(&self, p: &ProviderState, body: Bytes) -> Result<reqwest::Response, LlmError> {
        let response = self
            .inner
            .http
            .post(&p.url)
            .bearer_auth(&p.provider.api_key)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(LlmError::Transport)?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let headers = response.headers();
        let mut delay = retry_delay(headers);
        if status == http::StatusCode::TOO_MANY_REQUESTS && delay.is_none() {
            // throttled with limits left by the counts: the longer reset is the safe wait
            delay = ["x-ratelimit-reset-requests", "x-ratelimit-reset-tokens"]
                .iter()
                .filter_map(|h| headers.get(*h)?.to_str().ok().and_then(parse_duration))
                .max();
        }
        let body = response.bytes().await.unwrap_or_default();
        Err(LlmError::Api(ApiError::from_response(
            status.as_u16(),
            &body,
            delay,
        )))
    }

    async fn chat_once(&self, p: &ProviderState, body: Bytes) -> Result<ChatResponse, LlmError> {
        let response = self.send(p, body).await?;
        let bytes = response.bytes().await.map_err(LlmError::Transport)?;
        let mut answer: ChatResponse = serde_json::from_slice(&bytes)
            .map_err(|e| LlmError::Decode(format!("chat completion: {e}")))?;
        answer.provider = p.provider.name.clone();
        Ok(answer)
    }

    async fn stream_once(&self, p: &ProviderState, body: Bytes) -> Result<ChatStream, LlmError> {
        let limit = self.inner.first_token_timeout;
        let deadline = Instant::now() + limit;
        let response = match tokio::time::timeout_at(deadline, self.send(p, body)).await {
            Ok(r) => r?,
            Err(_) => return Err(LlmError::FirstTokenTimeout { after: limit }),
        };
        let mut stream =
            ChatStream::new(response, self.inner.idle_timeout, p.provider.name.clone());
        stream.first_token(deadline, limit).await?;
        Ok(stream)
    }
}
