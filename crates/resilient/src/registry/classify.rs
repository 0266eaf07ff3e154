//! The registry's classifier: one type for every named pipeline, judging results of any
//! type at run time (by downcasting), so a pipeline looked up by name serves functions
//! with different `Result` types.

use std::any::Any;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::engine::outcome::{Classify, Outcome};

/// An attempt's result seen without its types: `Ok(&value)` or `Err(&error)`, each a
/// `&dyn Any` to downcast.
///
/// ```
/// use resilient::registry::AnyResult;
/// let e = std::io::Error::from(std::io::ErrorKind::TimedOut);
/// let r: AnyResult<'_> = Err(&e);
/// let io = r.err().and_then(|e| e.downcast_ref::<std::io::Error>()).unwrap();
/// assert_eq!(io.kind(), std::io::ErrorKind::TimedOut);
/// ```
pub type AnyResult<'a> = Result<&'a dyn Any, &'a dyn Any>;

/// How a [`Classifier`] judges results of any type: implement it for a pattern that
/// classifies by the type of the error (or of the value).
///
/// ```
/// use resilient::Outcome;
/// use resilient::registry::{AnyResult, Judge};
///
/// /// `io::ErrorKind::NotFound` is an answer, not a failure.
/// struct NotFoundIsFine;
///
/// impl Judge for NotFoundIsFine {
///     fn classify(&self, result: AnyResult<'_>) -> Outcome {
///         match result {
///             Ok(_) => Outcome::Success,
///             Err(e) => match e.downcast_ref::<std::io::Error>() {
///                 Some(io) if io.kind() == std::io::ErrorKind::NotFound => Outcome::Ignored,
///                 _ => Outcome::Failure,
///             },
///         }
///     }
/// }
/// let c = resilient::registry::Classifier::new(NotFoundIsFine);
/// # let _ = c;
/// ```
pub trait Judge: Send + Sync + 'static {
    /// The verdict on one attempt (see [`Classify::classify`]).
    fn classify(&self, result: AnyResult<'_>) -> Outcome;

    /// Whether the result is worth another attempt (see [`Classify::should_retry`]): by
    /// default every failure.
    fn should_retry(&self, result: AnyResult<'_>, outcome: Outcome) -> bool {
        let _ = result;
        outcome == Outcome::Failure
    }

    /// A wait the result asks for (see [`Classify::retry_after`]): by default none.
    fn retry_after(&self, attempt: u32, result: AnyResult<'_>) -> Option<Duration> {
        let _ = (attempt, result);
        None
    }
}

/// The classifier of the registry's pipelines ([`NamedPipeline`](super::NamedPipeline)):
/// it implements [`Classify<T, E>`] for every `T` and `E` (both `'static`), judging through
/// a [`Judge`] that downcasts. [`Classifier::default`] counts every `Err` as a failure,
/// like [`AllErrors`](crate::AllErrors).
///
/// ```
/// use resilient::{Classify, Outcome};
/// use resilient::registry::Classifier;
/// let c = Classifier::default();
/// assert_eq!(Classify::<u8, &str>::classify(&c, &Err("x")), Outcome::Failure);
/// assert_eq!(Classify::<u8, &str>::classify(&c, &Ok(1)), Outcome::Success);
/// ```
#[derive(Clone, Default)]
pub struct Classifier {
    judge: Option<Arc<dyn Judge>>,
}

impl fmt::Debug for Classifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.judge.is_some() {
            "Classifier(custom)"
        } else {
            "Classifier(all errors)"
        })
    }
}

impl Classifier {
    /// A classifier judging through `judge`.
    ///
    /// ```
    /// use resilient::Outcome;
    /// use resilient::registry::{AnyResult, Classifier};
    /// struct Never;
    /// impl resilient::registry::Judge for Never {
    ///     fn classify(&self, _: AnyResult<'_>) -> Outcome { Outcome::Success }
    /// }
    /// let _ = Classifier::new(Never);
    /// ```
    pub fn new(judge: impl Judge) -> Self {
        Self {
            judge: Some(Arc::new(judge)),
        }
    }
}

impl<T: 'static, E: 'static> Classify<T, E> for Classifier {
    #[inline]
    fn classify(&self, result: &Result<T, E>) -> Outcome {
        match &self.judge {
            None => match result {
                Ok(_) => Outcome::Success,
                Err(_) => Outcome::Failure,
            },
            Some(j) => j.classify(erase(result)),
        }
    }

    #[inline]
    fn should_retry(&self, result: &Result<T, E>, outcome: Outcome) -> bool {
        match &self.judge {
            None => outcome == Outcome::Failure,
            Some(j) => j.should_retry(erase(result), outcome),
        }
    }

    fn retry_after(&self, attempt: u32, result: &Result<T, E>) -> Option<Duration> {
        self.judge
            .as_ref()
            .and_then(|j| j.retry_after(attempt, erase(result)))
    }
}

fn erase<T: 'static, E: 'static>(r: &Result<T, E>) -> AnyResult<'_> {
    match r {
        Ok(v) => Ok(v as &dyn Any),
        Err(e) => Err(e as &dyn Any),
    }
}
