//! Patterns: named pipeline factories, registered at link time by any crate
//! ([`register_pattern!`](crate::register_pattern)) and found by name with no call from
//! the application.

use std::any::{Any, type_name};
use std::fmt;
use std::sync::Arc;

use crate::engine::error::ConfigError;
use crate::pipeline::Pipeline;
use crate::registry::params::Params;

/// A built pipeline of any classifier type, as a pattern factory returns it and the
/// registry keeps it. Made from a [`Pipeline`] with `From`/`into()`; looked up typed with
/// [`Registry::pipeline`](super::Registry::pipeline) (for
/// [`NamedPipeline`](super::NamedPipeline)s) or
/// [`Registry::pipeline_as`](super::Registry::pipeline_as).
///
/// ```
/// use resilient::Pipeline;
/// use resilient::registry::AnyPipeline;
/// let any: AnyPipeline = Pipeline::builder().build().unwrap().into();
/// assert!(any.downcast::<resilient::AllErrors>().is_some());
/// assert!(any.stages().is_empty());
/// ```
#[derive(Clone)]
pub struct AnyPipeline {
    pipeline: Arc<dyn Any + Send + Sync>,
    stages: Arc<[String]>,
    classifier: &'static str,
}

impl fmt::Debug for AnyPipeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AnyPipeline")
            .field("classifier", &self.classifier)
            .field("stages", &self.stages)
            .finish()
    }
}

impl<C: Send + Sync + 'static> From<Pipeline<C>> for AnyPipeline {
    fn from(p: Pipeline<C>) -> Self {
        Self {
            stages: p.stages().into(),
            classifier: type_name::<C>(),
            pipeline: Arc::new(p),
        }
    }
}

impl AnyPipeline {
    /// The pipeline, if its classifier is `C`.
    ///
    /// ```
    /// use resilient::registry::{AnyPipeline, Classifier};
    /// let any: AnyPipeline = resilient::registry::builder().build().unwrap().into();
    /// assert!(any.downcast::<Classifier>().is_some());
    /// assert!(any.downcast::<resilient::AllErrors>().is_none());
    /// ```
    pub fn downcast<C: Send + Sync + 'static>(&self) -> Option<Pipeline<C>> {
        self.pipeline.downcast_ref::<Pipeline<C>>().cloned()
    }

    /// The pipeline's stages ([`Pipeline::stages`]).
    ///
    /// ```
    /// use resilient::registry::AnyPipeline;
    /// let any: AnyPipeline = resilient::Pipeline::builder().build().unwrap().into();
    /// assert_eq!(any.stages().len(), 0);
    /// ```
    pub fn stages(&self) -> &[String] {
        &self.stages
    }

    /// The classifier's type name (for messages).
    ///
    /// ```
    /// use resilient::registry::AnyPipeline;
    /// let any: AnyPipeline = resilient::Pipeline::builder().build().unwrap().into();
    /// assert!(any.classifier().ends_with("AllErrors"));
    /// ```
    pub fn classifier(&self) -> &'static str {
        self.classifier
    }
}

/// A pattern's factory: builds the pipeline from the parameters it was given (already
/// checked against the pattern's declared [`Param`]s).
///
/// ```
/// use resilient::registry::{AnyPipeline, Factory, Params};
/// fn none(_: &Params) -> Result<AnyPipeline, resilient::ConfigError> {
///     Ok(resilient::registry::builder().build()?.into())
/// }
/// let f: Factory = none;
/// assert!(f(&Params::new()).is_ok());
/// ```
pub type Factory = fn(&Params) -> Result<AnyPipeline, ConfigError>;

/// A parameter a pattern takes: its name, its default (as written) and what it does.
///
/// ```
/// use resilient::registry::Param;
/// const ATTEMPTS: Param = Param { name: "attempts", default: "3", description: "total attempts" };
/// assert_eq!(ATTEMPTS.name, "attempts");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Param {
    /// The parameter's name (`attempts`).
    pub name: &'static str,
    /// Its default, as written (`"3"`, `"\"100ms\""`).
    pub default: &'static str,
    /// What it sets.
    pub description: &'static str,
}

/// A named pattern, registered at link time with
/// [`register_pattern!`](crate::register_pattern) and collected from every crate linked
/// into the program (through the `inventory` crate): an application finds an extension
/// crate's patterns by name with no registration call of its own.
///
/// ```
/// use resilient::registry::{AnyPipeline, Params, PatternRegistration};
/// use resilient::ConfigError;
/// fn build(_: &Params) -> Result<AnyPipeline, ConfigError> {
///     Ok(resilient::registry::builder().build()?.into())
/// }
/// // what `register_pattern!` submits
/// const P: PatternRegistration = PatternRegistration {
///     name: "noop",
///     crate_name: "my-crate",
///     params: &[],
///     description: "does nothing",
///     factory: build,
/// };
/// assert_eq!(P.name, "noop");
/// ```
#[derive(Debug, Clone, Copy)]
pub struct PatternRegistration {
    /// The name it is found under (`"network"`); unique across the program.
    pub name: &'static str,
    /// The crate registering it (the macro fills in `CARGO_PKG_NAME`).
    pub crate_name: &'static str,
    /// The parameters it takes; any other is an error naming these.
    pub params: &'static [Param],
    /// One line on what it does.
    pub description: &'static str,
    /// Builds the pipeline.
    pub factory: Factory,
}

inventory::collect!(PatternRegistration);

/// Registers a pattern at link time: any crate linked into the program may call it (at
/// module level), and `resilient::registry()` finds the pattern by name with no call from
/// the application. Two crates registering one name is an error naming both, at lookup.
///
/// `crate_name` is filled in with the calling crate's name.
///
/// ```
/// use resilient::registry::{AnyPipeline, Params};
/// use resilient::{ConfigError, Retry};
///
/// fn build(params: &Params) -> Result<AnyPipeline, ConfigError> {
///     let attempts = params.u32("attempts", 2)?;
///     Ok(resilient::registry::builder()
///         .retry(Retry::immediate().attempts(attempts))
///         .build()?
///         .into())
/// }
///
/// resilient::register_pattern! {
///     name: "doc-example-twice",
///     description: "retries at once",
///     params: [attempts = "2": "total attempts"],
///     factory: build,
/// }
///
/// let p = resilient::registry().pipeline("doc-example-twice(attempts = 4)").unwrap();
/// assert_eq!(p.stages(), ["Retry"]);
/// ```
#[macro_export]
macro_rules! register_pattern {
    (
        name: $name:expr,
        description: $description:expr,
        params: [$($param:ident = $default:literal : $pdesc:literal),* $(,)?],
        factory: $factory:expr $(,)?
    ) => {
        $crate::registry::__inventory::submit! {
            $crate::registry::PatternRegistration {
                name: $name,
                crate_name: ::core::env!("CARGO_PKG_NAME"),
                params: &[$($crate::registry::Param {
                    name: ::core::stringify!($param),
                    default: $default,
                    description: $pdesc,
                }),*],
                description: $description,
                factory: $factory,
            }
        }
    };
}

/// Every pattern registered in the program, by name; an error naming both crates if two
/// registered the same name.
///
/// ```
/// let all = resilient::registry::patterns().unwrap();
/// assert!(all.iter().any(|p| p.name == "network" && p.crate_name == "resilient"));
/// ```
pub fn patterns() -> Result<Vec<&'static PatternRegistration>, super::RegistryError> {
    let mut all: Vec<&'static PatternRegistration> =
        inventory::iter::<PatternRegistration>.into_iter().collect();
    all.sort_by(|a, b| a.name.cmp(b.name).then(a.crate_name.cmp(b.crate_name)));
    for w in all.windows(2) {
        if w[0].name == w[1].name {
            return Err(super::RegistryError::Collision {
                name: w[0].name.to_owned(),
                first: w[0].crate_name,
                second: w[1].crate_name,
            });
        }
    }
    Ok(all)
}

/// Checks `params` against the pattern's declared parameters and runs its factory.
pub(super) fn build(
    p: &PatternRegistration,
    params: &Params,
) -> Result<AnyPipeline, super::RegistryError> {
    for name in params.names() {
        if !p.params.iter().any(|d| d.name == name) {
            let known: Vec<&str> = p.params.iter().map(|d| d.name).collect();
            return Err(super::RegistryError::Invalid {
                name: p.name.to_owned(),
                error: ConfigError::new(
                    "pattern",
                    format!(
                        "`{}` takes no parameter `{name}`; its parameters: {}",
                        p.name,
                        if known.is_empty() {
                            "none".to_owned()
                        } else {
                            known.join(", ")
                        }
                    ),
                ),
            });
        }
    }
    (p.factory)(params).map_err(|error| super::RegistryError::Invalid {
        name: p.name.to_owned(),
        error,
    })
}
