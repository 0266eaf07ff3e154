//! The all-or-nothing rule of quotas, shared by [`RateLimiter`](super::RateLimiter) (limits
//! behind `dyn Limiter`) and [`KeyedLimiter`](super::KeyedLimiter) (several packed states
//! per key): a request is admitted only if every limit admits it; when one refuses, the
//! units already taken from the others are given back.

use std::time::Duration;

use smallvec::SmallVec;

use super::decision::{CostError, Decision};
use super::guard::Verdict;
use crate::Rejection;

/// Decides a request over `n` limits: `acquire(i)` takes from limit `i`, `peek(i)` says
/// what it would decide (for the limits after a refusal), `refund(i)` gives back what
/// `acquire(i)` took.
pub(crate) fn all_or_none(
    n: usize,
    mut acquire: impl FnMut(usize) -> Result<Decision, CostError>,
    mut peek: impl FnMut(usize) -> Decision,
    mut refund: impl FnMut(usize),
) -> Result<Verdict, CostError> {
    let mut decisions = SmallVec::new();
    let mut allowed = true;
    for i in 0..n {
        if !allowed {
            decisions.push(peek(i));
            continue;
        }
        let d = match acquire(i) {
            Ok(d) => d,
            Err(e) => {
                (0..i).for_each(&mut refund);
                return Err(e);
            }
        };
        if !d.allowed {
            allowed = false;
            (0..i).for_each(&mut refund);
        }
        decisions.push(d);
    }
    Ok(Verdict { allowed, decisions })
}

/// Reserves a request on `n` limits within a maximum wait: `reserve(i)` reserves on limit
/// `i` (`None` if it cannot reserve future capacity). Returns the longest wait, the
/// rejection, or `None` if some limit cannot reserve; on any refusal, what was reserved is
/// given back through `refund(i)`.
pub(crate) fn reserve_all(
    n: usize,
    mut reserve: impl FnMut(usize) -> Option<Result<Decision, CostError>>,
    mut refund: impl FnMut(usize),
) -> Option<Result<Duration, Rejection>> {
    let mut wait = Duration::ZERO;
    for i in 0..n {
        let refused = match reserve(i) {
            Some(Ok(d)) if d.allowed => {
                wait = wait.max(d.retry_after);
                None
            }
            Some(Ok(d)) => Some(Some(d.rejection())),
            Some(Err(_)) => Some(Some(Rejection::RateLimited { retry_after: None })),
            None => Some(None),
        };
        if let Some(refusal) = refused {
            (0..i).for_each(&mut refund);
            return refusal.map(Err);
        }
    }
    Some(Ok(wait))
}
