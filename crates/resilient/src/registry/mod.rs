//! Named pipelines, breakers, rate limiters and bulkheads, built once per name and shared;
//! patterns (parameterised pipeline factories) that any crate registers at link time.
//!
//! ```
//! use resilient::registry::Registry;
//! use resilient::{CircuitBreaker, CircuitState, Error};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let registry = Registry::new();
//! registry.define_breaker("payments", || CircuitBreaker::consecutive_failures(2).build()).unwrap();
//! registry.define_pipeline("payments", |r| {
//!     Ok(resilient::registry::builder().circuit_breaker(&r.breaker("payments")?).build()?)
//! }).unwrap();
//!
//! // One breaker per name: two users of "payments" see the same state.
//! let pipeline = registry.pipeline("payments").unwrap();
//! for _ in 0..2 {
//!     let _ = pipeline.execute(|| async { Err::<(), _>("down") }).await;
//! }
//! assert_eq!(registry.breaker("payments").unwrap().state(), CircuitState::Open);
//! let r: Result<(), Error<&str>> = registry.pipeline("payments").unwrap().execute(|| async { Ok(()) }).await;
//! assert!(matches!(r, Err(Error::CircuitOpen { .. })));
//!
//! // Unknown names list the known ones.
//! let err = registry.breaker("paymnets").unwrap_err();
//! assert!(err.to_string().contains("payments"));
//! # }
//! ```
//!
//! # Patterns and auto-discovery
//!
//! A *pattern* is a pipeline factory under a name, taking parameters:
//! `registry().pipeline("network(attempts = 5)")` builds the built-in `network` pattern
//! with five attempts, once, and hands the same pipeline to every later lookup of that
//! spelling. Built in (see [`builtin`]): `network`, `http` (feature `http`) and `parsing`
//! (feature `json`).
//!
//! Any crate adds patterns with [`register_pattern!`](crate::register_pattern): the
//! registration is collected at link time (through the `inventory` crate), so an
//! application that merely depends on an extension crate finds its patterns by name, with
//! no registration call. Two crates registering one name is an error naming both
//! ([`RegistryError::Collision`]), reported when a registry is made or the name looked
//! up. An extension crate needs only:
//!
//! ```
//! use resilient::registry::{AnyPipeline, Params};
//! use resilient::{ConfigError, Retry};
//! use std::time::Duration;
//!
//! fn llm(params: &Params) -> Result<AnyPipeline, ConfigError> {
//!     let attempts = params.u32("attempts", 4)?;
//!     let base = params.duration("base", Duration::from_millis(500))?;
//!     Ok(resilient::registry::builder()
//!         .retry(Retry::exponential(base).attempts(attempts))
//!         .build()?
//!         .into())
//! }
//!
//! resilient::register_pattern! {
//!     name: "doc-llm",
//!     description: "an LLM provider call",
//!     params: [attempts = "4": "total attempts", base = "\"500ms\"": "first backoff"],
//!     factory: llm,
//! }
//! # assert!(resilient::registry().pipeline("doc-llm(attempts = 2)").is_ok());
//! ```
//!
//! # Typed lookup
//!
//! The registry's own pipelines are [`NamedPipeline`]s (`Pipeline<Classifier>`, whose
//! [`Classifier`] judges results of any type at run time), so one named pipeline serves
//! functions of any `Result` type. A pipeline with another classifier (the `http`
//! pattern's is [`HttpPolicy`](crate::http::HttpPolicy)) is looked up with
//! [`Registry::pipeline_as`].
//!
//! # Layering
//!
//! The registry sits above the pipeline and the strategies: it builds them, none of them
//! knows it.

pub mod builtin;
mod classify;
#[cfg(feature = "config")]
#[cfg_attr(docsrs, doc(cfg(feature = "config")))]
pub mod config;
mod names;
mod params;
mod pattern;
#[cfg(feature = "reload")]
#[cfg_attr(docsrs, doc(cfg(feature = "reload")))]
pub mod reload;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};

use crate::bulkhead::Bulkhead;
use crate::chaos::Chaos;
use crate::circuit::CircuitBreaker;
use crate::engine::error::ConfigError;
use crate::pipeline::{Pipeline, PipelineBuilder};
use crate::ratelimit::RateLimiter;

pub use classify::{AnyResult, Classifier, Judge};
pub use names::Name;
pub use params::{Params, Value, parse_duration};
pub use pattern::{AnyPipeline, Factory, Param, PatternRegistration, patterns};

#[doc(hidden)]
pub use inventory as __inventory;

/// The type of the registry's own pipelines: one pipeline serves functions of any
/// `Result<T, E>` type (`T` and `E` `'static`), judged by its [`Classifier`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let p: resilient::registry::NamedPipeline = resilient::registry().pipeline("network").unwrap();
/// let a: Result<u8, resilient::Error<std::io::Error>> = p.execute(|| async { Ok(1) }).await;
/// let b: Result<&str, resilient::Error<String>> = p.execute(|| async { Ok("x") }).await;
/// assert_eq!((a.unwrap(), b.unwrap()), (1, "x"));
/// # }
/// ```
pub type NamedPipeline = Pipeline<Classifier>;

/// A pipeline builder for the registry: `Pipeline::builder()` with the registry's
/// [`Classifier`] (every error a failure), so what it builds is a [`NamedPipeline`].
///
/// ```
/// let p: resilient::registry::NamedPipeline = resilient::registry::builder().build().unwrap();
/// # let _ = p;
/// ```
pub fn builder() -> PipelineBuilder<Classifier> {
    Pipeline::builder().classify(Classifier::default())
}

/// What [`Registry::get`] looks up: breakers, limiters, bulkheads and pipelines.
///
/// ```
/// use resilient::registry::{Named, Registry};
/// use resilient::Bulkhead;
/// let r = Registry::new();
/// r.insert_bulkhead("db", Bulkhead::builder(3).build().unwrap()).unwrap();
/// assert_eq!(Bulkhead::lookup(&r, "db").unwrap().limit(), 3);
/// ```
pub trait Named: Sized {
    /// The one named `name` in `registry`.
    fn lookup(registry: &Registry, name: &str) -> Result<Self, RegistryError>;
}

impl Named for CircuitBreaker {
    fn lookup(registry: &Registry, name: &str) -> Result<Self, RegistryError> {
        registry.breaker(name)
    }
}

impl Named for RateLimiter {
    fn lookup(registry: &Registry, name: &str) -> Result<Self, RegistryError> {
        registry.limiter(name)
    }
}

impl Named for Bulkhead {
    fn lookup(registry: &Registry, name: &str) -> Result<Self, RegistryError> {
        registry.bulkhead(name)
    }
}

impl<C: Send + Sync + 'static> Named for Pipeline<C> {
    fn lookup(registry: &Registry, name: &str) -> Result<Self, RegistryError> {
        registry.pipeline_as(name)
    }
}

/// Why a lookup or a definition failed.
///
/// ```
/// use resilient::registry::{Registry, RegistryError};
/// let err = Registry::new().limiter("nope").unwrap_err();
/// assert!(matches!(err, RegistryError::Unknown { .. }));
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum RegistryError {
    /// No such name; `known` lists the names of that kind there are.
    Unknown {
        /// `"pipeline"`, `"breaker"`, `"limiter"` or `"bulkhead"`.
        kind: &'static str,
        /// The name looked up.
        name: String,
        /// The known names of that kind.
        known: Vec<String>,
    },
    /// The name's definition (or pattern) did not build.
    Invalid {
        /// The name.
        name: String,
        /// What was wrong.
        error: ConfigError,
    },
    /// Two crates registered a pattern under one name.
    Collision {
        /// The name.
        name: String,
        /// One crate registering it.
        first: &'static str,
        /// The other.
        second: &'static str,
    },
    /// The pipeline exists with another classifier than the one asked for.
    WrongType {
        /// The name.
        name: String,
        /// The classifier asked for.
        expected: &'static str,
        /// The pipeline's classifier.
        actual: &'static str,
    },
    /// The name is already defined.
    Duplicate {
        /// `"pipeline"`, `"breaker"`, `"limiter"` or `"bulkhead"`.
        kind: &'static str,
        /// The name.
        name: String,
    },
}

impl fmt::Display for RegistryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegistryError::Unknown { kind, name, known } => {
                write!(f, "no {kind} named `{name}`; ")?;
                if known.is_empty() {
                    write!(f, "no {kind} is defined")
                } else {
                    write!(f, "known: {}", known.join(", "))
                }
            }
            RegistryError::Invalid { name, error } => write!(f, "`{name}`: {error}"),
            RegistryError::Collision {
                name,
                first,
                second,
            } => write!(
                f,
                "pattern `{name}` is registered by two crates, `{first}` and `{second}`"
            ),
            RegistryError::WrongType {
                name,
                expected,
                actual,
            } => write!(
                f,
                "pipeline `{name}` classifies with `{actual}`, not `{expected}`; look it up \
                 with `pipeline_as::<{actual}>`"
            ),
            RegistryError::Duplicate { kind, name } => {
                write!(f, "{kind} `{name}` is already defined")
            }
        }
    }
}

impl std::error::Error for RegistryError {}

impl From<ConfigError> for RegistryError {
    fn from(error: ConfigError) -> Self {
        RegistryError::Invalid {
            name: error.field().to_owned(),
            error,
        }
    }
}

impl From<RegistryError> for ConfigError {
    fn from(e: RegistryError) -> Self {
        match e {
            RegistryError::Invalid { error, .. } => error,
            other => ConfigError::new("registry", other.to_string()),
        }
    }
}

type Build<T> = Box<dyn Fn(&Registry) -> Result<T, RegistryError> + Send + Sync>;

/// A definition and, once its first lookup built it, the value. The value's lock is held
/// while building, so racing first lookups build once.
struct Slot<T> {
    build: Build<T>,
    value: Mutex<Option<T>>,
}

type Define<T> = Arc<Slot<T>>;

fn slot<T>(build: Build<T>) -> Define<T> {
    Arc::new(Slot {
        build,
        value: Mutex::new(None),
    })
}

/// One kind's names: what is defined (built on first lookup) and what was inserted built.
struct Kind<T> {
    defined: BTreeMap<String, Define<T>>,
    built: BTreeMap<String, T>,
}

impl<T> Default for Kind<T> {
    fn default() -> Self {
        Self {
            defined: BTreeMap::new(),
            built: BTreeMap::new(),
        }
    }
}

impl<T> Kind<T> {
    fn names(&self) -> Vec<String> {
        let mut all: Vec<String> = self
            .defined
            .keys()
            .chain(self.built.keys())
            .cloned()
            .collect();
        all.sort();
        all.dedup();
        all
    }

    fn has(&self, name: &str) -> bool {
        self.defined.contains_key(name) || self.built.contains_key(name)
    }
}

#[derive(Default)]
struct State {
    pipelines: Kind<AnyPipeline>,
    breakers: Kind<CircuitBreaker>,
    limiters: Kind<RateLimiter>,
    bulkheads: Kind<Bulkhead>,
    chaos: Kind<Chaos>,
    /// Patterns added to this registry (besides the ones registered at link time).
    patterns: Vec<PatternRegistration>,
    /// Pattern pipelines built, by canonical spelling.
    from_patterns: BTreeMap<String, AnyPipeline>,
}

/// Named pipelines, breakers, rate limiters and bulkheads: each built once per name (on
/// first lookup) and shared by every user of the name, so a breaker opened through one
/// user is open for all. [`registry()`] is the program's; owned ones serve tests and
/// programs that want several.
///
/// ```
/// use resilient::registry::Registry;
/// use resilient::Bulkhead;
/// let r = Registry::new();
/// r.insert_bulkhead("db", Bulkhead::builder(4).build().unwrap()).unwrap();
/// assert_eq!(r.bulkhead("db").unwrap().limit(), 4);
/// ```
pub struct Registry {
    state: Mutex<State>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.lock();
        f.debug_struct("Registry")
            .field("pipelines", &s.pipelines.names())
            .field("breakers", &s.breakers.names())
            .field("limiters", &s.limiters.names())
            .field("bulkheads", &s.bulkheads.names())
            .finish()
    }
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

/// The program's registry, made on first use: the patterns every linked crate registered,
/// and whatever the program defines or loads into it.
///
/// ```
/// let network = resilient::registry().pipeline("network").unwrap();
/// // one pipeline per spelling, shared
/// let again = resilient::registry().pipeline("network").unwrap();
/// assert_eq!(network.stages(), again.stages());
/// ```
pub fn registry() -> &'static Registry {
    static GLOBAL: LazyLock<Registry> = LazyLock::new(Registry::new);
    &GLOBAL
}

macro_rules! kind_api {
    ($field:ident, $ty:ty, $kind:literal, $get:ident, $define:ident, $insert:ident, $names:ident,
     $example:literal) => {
        #[doc = concat!("The ", $kind, " named `name`, built on first lookup from its definition and shared afterwards.")]
        ///
        #[doc = concat!("```\n", $example, "\n```")]
        pub fn $get(&self, name: impl AsRef<str>) -> Result<$ty, RegistryError> {
            self.lookup(|s| &mut s.$field, $kind, name.as_ref())
        }

        #[doc = concat!("Defines the ", $kind, " `name`: `build` runs on the first lookup, once (racing first lookups wait for it); an error if the name is taken.")]
        ///
        #[doc = concat!("```\n", $example, "\n```")]
        pub fn $define<F, T>(&self, name: impl Into<String>, build: F) -> Result<(), RegistryError>
        where
            F: Fn() -> Result<T, ConfigError> + Send + Sync + 'static,
            T: Into<$ty>,
        {
            let name = name.into();
            let mut s = self.lock();
            if s.$field.has(&name) {
                return Err(RegistryError::Duplicate { kind: $kind, name });
            }
            let f: Build<$ty> = Box::new(move |_| Ok(build()?.into()));
            s.$field.defined.insert(name, slot(f));
            Ok(())
        }

        #[doc = concat!("Adds a built ", $kind, " under `name`; an error if the name is taken.")]
        ///
        #[doc = concat!("```\n", $example, "\n```")]
        pub fn $insert(&self, name: impl Into<String>, value: $ty) -> Result<(), RegistryError> {
            let name = name.into();
            let mut s = self.lock();
            if s.$field.has(&name) {
                return Err(RegistryError::Duplicate { kind: $kind, name });
            }
            s.$field.built.insert(name, value);
            Ok(())
        }

        #[doc = concat!("The names of the ", $kind, "s defined or built, sorted.")]
        ///
        #[doc = concat!("```\n", $example, "\n```")]
        pub fn $names(&self) -> Vec<String> {
            self.lock().$field.names()
        }
    };
}

impl Registry {
    /// A registry with the patterns registered at link time and nothing else.
    ///
    /// ```
    /// let r = resilient::registry::Registry::new();
    /// assert!(r.pipeline_names().is_empty());
    /// assert!(r.pipeline("network").is_ok());
    /// ```
    pub fn new() -> Self {
        Self {
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lookup<T: Clone>(
        &self,
        field: impl Fn(&mut State) -> &mut Kind<T>,
        kind: &'static str,
        name: &str,
    ) -> Result<T, RegistryError> {
        let define = {
            let mut s = self.lock();
            let k = field(&mut s);
            if let Some(v) = k.built.get(name) {
                return Ok(v.clone());
            }
            match k.defined.get(name) {
                Some(d) => d.clone(),
                None => {
                    return Err(RegistryError::Unknown {
                        kind,
                        name: name.to_owned(),
                        known: k.names(),
                    });
                }
            }
        };
        // Built outside the registry's lock (a definition may look up other names), under
        // the slot's own: racing first lookups build once.
        let mut value = define.value.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(v) = &*value {
            return Ok(v.clone());
        }
        let built = (define.build)(self).map_err(|e| match e {
            RegistryError::Invalid { error, .. } => RegistryError::Invalid {
                name: name.to_owned(),
                error,
            },
            other => other,
        })?;
        *value = Some(built.clone());
        Ok(built)
    }

    kind_api!(
        breakers,
        CircuitBreaker,
        "breaker",
        breaker,
        define_breaker,
        insert_breaker,
        breaker_names,
        "use resilient::CircuitBreaker;
let r = resilient::registry::Registry::new();
r.define_breaker(\"payments\", || CircuitBreaker::consecutive_failures(5).build()).unwrap();
let a = r.breaker(\"payments\").unwrap();
a.isolate();
assert_eq!(r.breaker(\"payments\").unwrap().state(), a.state());
assert_eq!(r.breaker_names(), [\"payments\"]);
assert!(r.insert_breaker(\"payments\", a).is_err());
assert!(r.define_breaker(\"payments\", || CircuitBreaker::consecutive_failures(9).build()).is_err());"
    );

    kind_api!(
        limiters,
        RateLimiter,
        "limiter",
        limiter,
        define_limiter,
        insert_limiter,
        limiter_names,
        "use resilient::RateLimiter;
use resilient::ratelimit::Rate;
let r = resilient::registry::Registry::new();
r.define_limiter(\"api\", || RateLimiter::gcra(Rate::per_second(1)).build()).unwrap();
assert!(r.limiter(\"api\").unwrap().allow().is_ok());
assert!(r.limiter(\"api\").unwrap().allow().is_err()); // the same limiter
assert_eq!(r.limiter_names(), [\"api\"]);
assert!(r.insert_limiter(\"api\", r.limiter(\"api\").unwrap()).is_err());"
    );

    kind_api!(
        bulkheads,
        Bulkhead,
        "bulkhead",
        bulkhead,
        define_bulkhead,
        insert_bulkhead,
        bulkhead_names,
        "use resilient::Bulkhead;
let r = resilient::registry::Registry::new();
r.define_bulkhead(\"db\", || Bulkhead::builder(8).build()).unwrap();
assert_eq!(r.bulkhead(\"db\").unwrap().limit(), 8);
assert_eq!(r.bulkhead_names(), [\"db\"]);
assert!(r.insert_bulkhead(\"db\", r.bulkhead(\"db\").unwrap()).is_err());"
    );

    kind_api!(
        chaos,
        Chaos,
        "chaos",
        chaos,
        define_chaos,
        insert_chaos,
        chaos_names,
        "use resilient::chaos::Chaos;
let r = resilient::registry::Registry::new();
r.define_chaos(\"flaky\", || Chaos::builder().reject_rate(0.1).build());
// one chaos per name: switching it off here switches it off for every pipeline using it
r.chaos(\"flaky\").unwrap().set_enabled(false);
assert!(!r.chaos(\"flaky\").unwrap().is_enabled());
assert_eq!(r.chaos_names(), [\"flaky\"]);"
    );

    /// Defines the pipeline `name`: `build` runs on the first lookup, once, and may look up
    /// this registry's breakers, limiters and bulkheads by name (so pipelines share them).
    /// An error if the name is taken.
    /// Any classifier type works; [`Registry::pipeline`] finds it when it is a
    /// [`NamedPipeline`] (built from [`builder()`]), [`Registry::pipeline_as`] otherwise.
    ///
    /// ```
    /// use resilient::registry::Registry;
    /// use resilient::{Retry, Timeout};
    /// use std::time::Duration;
    /// let r = Registry::new();
    /// r.define_pipeline("search", |_| {
    ///     Ok(resilient::registry::builder()
    ///         .timeout(Timeout::operation(Duration::from_secs(2)))
    ///         .retry(Retry::exponential(Duration::from_millis(50)).attempts(3))
    ///         .build()?)
    /// }).unwrap();
    /// assert_eq!(r.pipeline("search").unwrap().stages(), ["Operation(2s)", "Retry"]);
    /// ```
    pub fn define_pipeline<F, C>(
        &self,
        name: impl Into<String>,
        build: F,
    ) -> Result<(), RegistryError>
    where
        F: Fn(&Registry) -> Result<Pipeline<C>, RegistryError> + Send + Sync + 'static,
        C: Send + Sync + 'static,
    {
        let name = name.into();
        let mut s = self.lock();
        if s.pipelines.has(&name) {
            return Err(RegistryError::Duplicate {
                kind: "pipeline",
                name,
            });
        }
        let f: Build<AnyPipeline> = Box::new(move |r| Ok(build(r)?.into()));
        s.pipelines.defined.insert(name, slot(f));
        Ok(())
    }

    /// Adds a built pipeline under `name`; an error if the name is taken.
    ///
    /// ```
    /// use resilient::registry::Registry;
    /// let r = Registry::new();
    /// r.insert_pipeline("plain", resilient::Pipeline::builder().build().unwrap()).unwrap();
    /// assert!(r.pipeline_as::<resilient::AllErrors>("plain").is_ok());
    /// ```
    pub fn insert_pipeline<C: Send + Sync + 'static>(
        &self,
        name: impl Into<String>,
        pipeline: Pipeline<C>,
    ) -> Result<(), RegistryError> {
        let name = name.into();
        let mut s = self.lock();
        if s.pipelines.has(&name) {
            return Err(RegistryError::Duplicate {
                kind: "pipeline",
                name,
            });
        }
        s.pipelines.built.insert(name, pipeline.into());
        Ok(())
    }

    /// The pipeline `name`: a defined one (built on first lookup), else a pattern's spelling
    /// (`"network"`, `"network(attempts = 5)"`), built once per canonical spelling and
    /// shared. An unknown name's error lists the defined pipelines and the patterns.
    ///
    /// ```
    /// let r = resilient::registry::Registry::new();
    /// let p = r.pipeline("network(attempts = 5)").unwrap();
    /// assert!(p.stages().iter().any(|s| s == "Retry"));
    /// let err = r.pipeline("netwrok").unwrap_err().to_string();
    /// assert!(err.contains("network"), "{err}");
    /// ```
    pub fn pipeline(&self, name: impl AsRef<str>) -> Result<NamedPipeline, RegistryError> {
        self.pipeline_as::<Classifier>(name)
    }

    /// The pipeline `name` with classifier `C` (typed lookup): an error naming the actual
    /// classifier if it has another.
    ///
    /// ```
    /// use resilient::registry::{Registry, RegistryError};
    /// let r = Registry::new();
    /// r.insert_pipeline("plain", resilient::Pipeline::builder().build().unwrap()).unwrap();
    /// assert!(matches!(r.pipeline("plain"), Err(RegistryError::WrongType { .. })));
    /// ```
    pub fn pipeline_as<C: Send + Sync + 'static>(
        &self,
        name: impl AsRef<str>,
    ) -> Result<Pipeline<C>, RegistryError> {
        let name = name.as_ref();
        let any = self.any_pipeline(name)?;
        any.downcast::<C>().ok_or_else(|| RegistryError::WrongType {
            name: name.to_owned(),
            expected: std::any::type_name::<C>(),
            actual: any.classifier(),
        })
    }

    /// The pipeline `name`, whatever its classifier (for listing its stages).
    ///
    /// ```
    /// let r = resilient::registry::Registry::new();
    /// assert!(!r.any_pipeline("network").unwrap().stages().is_empty());
    /// ```
    pub fn any_pipeline(&self, name: impl AsRef<str>) -> Result<AnyPipeline, RegistryError> {
        let name = name.as_ref();
        let defined = {
            let s = self.lock();
            s.pipelines.has(name)
        };
        if defined {
            return self.lookup(|s| &mut s.pipelines, "pipeline", name);
        }
        let (pattern, params) = match Params::parse(name) {
            Ok(parsed) => parsed,
            Err(_) => return Err(self.unknown_pipeline(name)),
        };
        let Some(found) = self.find_pattern(&pattern)? else {
            return Err(self.unknown_pipeline(name));
        };
        let key = params.spelling(&pattern);
        if let Some(p) = self.lock().from_patterns.get(&key) {
            return Ok(p.clone());
        }
        let built = pattern::build(&found, &params)?;
        let mut s = self.lock();
        Ok(s.from_patterns.entry(key).or_insert(built).clone())
    }

    fn unknown_pipeline(&self, name: &str) -> RegistryError {
        let mut known = self.lock().pipelines.names();
        known.extend(self.pattern_list().into_iter().map(|p| p.name.to_owned()));
        known.sort();
        known.dedup();
        RegistryError::Unknown {
            kind: "pipeline",
            name: name.to_owned(),
            known,
        }
    }

    fn find_pattern(&self, name: &str) -> Result<Option<PatternRegistration>, RegistryError> {
        let local = self
            .lock()
            .patterns
            .iter()
            .find(|p| p.name == name)
            .copied();
        let mut linked = inventory::iter::<PatternRegistration>
            .into_iter()
            .filter(|p| p.name == name);
        let first = linked.next().copied();
        if let (Some(a), Some(b)) = (first, linked.next()) {
            return Err(RegistryError::Collision {
                name: name.to_owned(),
                first: a.crate_name,
                second: b.crate_name,
            });
        }
        match (local, first) {
            (Some(a), Some(b)) => Err(RegistryError::Collision {
                name: name.to_owned(),
                first: b.crate_name,
                second: a.crate_name,
            }),
            (a, b) => Ok(a.or(b)),
        }
    }

    fn pattern_list(&self) -> Vec<PatternRegistration> {
        let mut all: Vec<PatternRegistration> = inventory::iter::<PatternRegistration>
            .into_iter()
            .copied()
            .collect();
        all.extend(self.lock().patterns.iter().copied());
        all.sort_by(|a, b| a.name.cmp(b.name));
        all
    }

    /// Adds a pattern to this registry only (the ones every crate registers with
    /// [`register_pattern!`](crate::register_pattern) are there already); a name taken by
    /// another pattern is a [`RegistryError::Collision`] naming both crates.
    ///
    /// ```
    /// use resilient::registry::{PatternRegistration, Registry, RegistryError};
    /// let r = Registry::new();
    /// let clash = PatternRegistration {
    ///     name: "network",
    ///     crate_name: "my-app",
    ///     params: &[],
    ///     description: "mine",
    ///     factory: |_| Ok(resilient::registry::builder().build()?.into()),
    /// };
    /// let err = r.add_pattern(clash).unwrap_err();
    /// assert!(matches!(err, RegistryError::Collision { first: "resilient", second: "my-app", .. }));
    /// ```
    pub fn add_pattern(&self, pattern: PatternRegistration) -> Result<(), RegistryError> {
        if let Some(existing) = self.find_pattern(pattern.name)? {
            return Err(RegistryError::Collision {
                name: pattern.name.to_owned(),
                first: existing.crate_name,
                second: pattern.crate_name,
            });
        }
        self.lock().patterns.push(pattern);
        Ok(())
    }

    /// The patterns this registry finds: every crate's, and its own
    /// ([`Registry::add_pattern`]), by name; an error if two crates registered one name.
    ///
    /// ```
    /// let names: Vec<_> = resilient::registry::Registry::new()
    ///     .patterns()
    ///     .unwrap()
    ///     .iter()
    ///     .map(|p| p.name)
    ///     .collect();
    /// assert!(names.contains(&"network"));
    /// ```
    pub fn patterns(&self) -> Result<Vec<PatternRegistration>, RegistryError> {
        let all = self.pattern_list();
        for w in all.windows(2) {
            if w[0].name == w[1].name {
                return Err(RegistryError::Collision {
                    name: w[0].name.to_owned(),
                    first: w[0].crate_name,
                    second: w[1].crate_name,
                });
            }
        }
        Ok(all)
    }

    /// Typed lookup: the breaker, limiter, bulkhead or pipeline (of any classifier) named
    /// `name`, by the type asked for.
    ///
    /// ```
    /// use resilient::registry::{NamedPipeline, Registry};
    /// use resilient::{Bulkhead, CircuitBreaker};
    /// let r = Registry::new();
    /// r.define_bulkhead("db", || Bulkhead::builder(2).build()).unwrap();
    /// let db: Bulkhead = r.get("db").unwrap();
    /// assert_eq!(db.limit(), 2);
    /// assert!(r.get::<CircuitBreaker>("db").is_err());
    /// let network: NamedPipeline = r.get("network").unwrap();
    /// # let _ = network;
    /// ```
    pub fn get<T: Named>(&self, name: impl AsRef<str>) -> Result<T, RegistryError> {
        T::lookup(self, name.as_ref())
    }

    /// The names of the pipelines defined or inserted (not the patterns' spellings
    /// looked up), sorted.
    ///
    /// ```
    /// let r = resilient::registry::Registry::new();
    /// r.define_pipeline("a", |_| Ok(resilient::registry::builder().build()?)).unwrap();
    /// assert_eq!(r.pipeline_names(), ["a"]);
    /// ```
    pub fn pipeline_names(&self) -> Vec<String> {
        self.lock().pipelines.names()
    }
}
