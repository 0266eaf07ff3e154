//! Per-call context: attempt number, operation name, deadline and tags, plus the ambient
//! deadline and cancellation that nested pipelines inherit.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// What an operation and the guards know about the call in progress.
///
/// ```
/// use resilient::Pipeline;
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let p = Pipeline::builder().name("users").build().unwrap();
/// let r = p
///     .execute_with(|ctx| {
///         assert_eq!(ctx.operation(), Some("users"));
///         async move { Ok::<_, ()>(ctx.attempt()) }
///     })
///     .await;
/// assert_eq!(r.unwrap(), 1);
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Context {
    pub(crate) attempt: u32,
    pub(crate) operation: Option<Arc<str>>,
    pub(crate) deadline: Option<Instant>,
    pub(crate) tags: Option<Arc<[(String, String)]>>,
}

impl Context {
    /// A context for a standalone guard call (attempt 1, no deadline).
    pub fn new() -> Self {
        Self {
            attempt: 1,
            operation: None,
            deadline: None,
            tags: None,
        }
    }

    /// The attempt in progress, 1-based.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The pipeline's operation name, if it has one.
    pub fn operation(&self) -> Option<&str> {
        self.operation.as_deref()
    }

    /// The effective deadline: the tighter of the pipeline's request timeout and any
    /// inherited one and, for the operation itself, of the attempt's operation timeout.
    /// Nested pipelines run by the operation inherit the same deadline.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Time left before the deadline, if there is one.
    pub fn remaining(&self) -> Option<Duration> {
        self.deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// The value of tag `key`, if set on the pipeline.
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags
            .as_deref()?
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

impl Default for Context {
    fn default() -> Self {
        Self::new()
    }
}

/// The furthest ahead the engine sets a deadline or a timer: about a hundred years.
///
/// A timeout longer than this never fires and counts as no timeout at all (no deadline in
/// the [`Context`], no timer); a wait longer than this is cut to it, which is as good as
/// forever. Deadline sums then never overflow `Instant`, nor tokio's timer (which adds a
/// little to the instants it is given).
pub(crate) const HORIZON: Duration = Duration::from_secs(100 * 365 * 86_400);

/// `from + after`, or `None` when `after` is beyond the [`HORIZON`] (or the sum cannot be
/// represented): a deadline that far ahead is no deadline.
pub(crate) fn deadline_after(from: Instant, after: Duration) -> Option<Instant> {
    if after > HORIZON {
        return None;
    }
    from.checked_add(after)
}

/// `d`, unless it is beyond the [`HORIZON`]: a timeout that never fires is none.
pub(crate) fn within_horizon(d: Option<Duration>) -> Option<Duration> {
    d.filter(|d| *d <= HORIZON)
}

/// Deadline and cancellation inherited by nested pipelines running inside a call.
#[derive(Debug, Clone, Default)]
pub(crate) struct Ambient {
    pub(crate) deadline: Option<Instant>,
    pub(crate) cancel: Option<CancellationToken>,
}

tokio::task_local! {
    pub(crate) static AMBIENT: Ambient;
}

impl Ambient {
    /// The ambient values of the enclosing call, if any.
    pub(crate) fn current() -> Option<Ambient> {
        AMBIENT.try_with(|a| a.clone()).ok()
    }
}

/// The deadline inherited from an enclosing pipeline call, if the current task runs inside
/// one.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// assert!(resilient::inherited_deadline().is_none());
/// # }
/// ```
pub fn inherited_deadline() -> Option<Instant> {
    AMBIENT.try_with(|a| a.deadline).ok().flatten()
}
