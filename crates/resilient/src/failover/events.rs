//! Failover events, delivered the way a breaker's are: to observers called with the
//! failover's name and the event, their panics contained.

use std::fmt;
use std::sync::Arc;

use super::SwitchReason;

/// Something that happened in a [`Failover`](super::Failover).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailoverEvent<'a> {
    /// Traffic moved from one region to another.
    Switched {
        /// The region it left.
        from: &'a str,
        /// The region it moved to.
        to: &'a str,
        /// Why.
        reason: SwitchReason,
    },
    /// A region's health, as sampled at a call (its breaker ready and its health gate
    /// healthy), changed.
    HealthChanged {
        /// The region.
        region: &'a str,
        /// Whether it looks healthy now.
        healthy: bool,
    },
    /// A hedged call ([`FailoverBuilder::hedge_after`](super::FailoverBuilder::hedge_after))
    /// started a region while the attempts before it were still in flight.
    HedgeStarted {
        /// The region started.
        region: &'a str,
    },
}

/// Receives every [`FailoverEvent`] of the failovers it is attached to (with
/// [`FailoverBuilder::observer`](super::FailoverBuilder::observer)). Closures
/// `Fn(&str, &FailoverEvent<'_>)` are observers.
///
/// ```
/// use resilient::failover::{Failover, FailoverEvent, Region};
/// use std::sync::{Arc, Mutex};
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let seen = Arc::new(Mutex::new(Vec::new()));
/// let log = seen.clone();
/// let f = Failover::builder()
///     .name("users")
///     .region(Region::new("a", false))
///     .region(Region::new("b", true))
///     .observer(move |name: &str, e: &FailoverEvent<'_>| {
///         log.lock().unwrap().push(format!("{name}: {e:?}"))
///     })
///     .build()
///     .unwrap();
/// let r = f.call(|up: &bool| { let up = *up; async move { if up { Ok(()) } else { Err(()) } } }).await;
/// assert!(r.is_ok());
/// assert!(seen.lock().unwrap()[0].starts_with("users: Switched"));
/// # }
/// ```
pub trait FailoverObserver: Send + Sync + 'static {
    /// One event of the failover named `failover`.
    fn on_event(&self, failover: &str, event: &FailoverEvent<'_>);
}

impl<F> FailoverObserver for F
where
    F: Fn(&str, &FailoverEvent<'_>) + Send + Sync + 'static,
{
    fn on_event(&self, failover: &str, event: &FailoverEvent<'_>) {
        self(failover, event)
    }
}

pub(crate) struct Observers(pub(crate) Box<[Arc<dyn FailoverObserver>]>);

impl Observers {
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn emit(&self, name: &str, event: &FailoverEvent<'_>) {
        for o in self.0.iter() {
            // An observer must not be able to break calls: its panic is contained.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                o.on_event(name, event);
            }));
        }
    }
}

impl fmt::Debug for Observers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} observer(s)", self.0.len())
    }
}
