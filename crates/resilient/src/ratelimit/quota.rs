//! The all-or-nothing rule of quotas, shared by [`RateLimiter`](super::RateLimiter) (limits
//! behind `dyn Limiter`) and [`KeyedLimiter`](super::KeyedLimiter) (several packed states
//! per key): a request is admitted only if every limit admits it; when one refuses, the
//! units already taken from the others are given back (each limit's `undo`, which gives
//! back only what no later admission depends on).

use std::time::Duration;

use smallvec::SmallVec;

use super::decision::{CostError, Decision};
use super::guard::Verdict;
use crate::engine::guard::Rejection;

/// Decides a request over `n` limits: `acquire(i)` takes from limit `i` (with the ticket
/// that undoes it), `peek(i)` says what it would decide (for the limits after a refusal),
/// `undo(i, ticket)` gives back what `acquire(i)` took.
pub(crate) fn all_or_none<T>(
    n: usize,
    mut acquire: impl FnMut(usize) -> Result<(Decision, T), CostError>,
    mut peek: impl FnMut(usize) -> Decision,
    mut undo: impl FnMut(usize, T),
) -> Result<Verdict, CostError> {
    let mut decisions = SmallVec::new();
    let mut tickets: SmallVec<[T; 2]> = SmallVec::new();
    let mut allowed = true;
    for i in 0..n {
        if !allowed {
            decisions.push(peek(i));
            continue;
        }
        let (d, t) = match acquire(i) {
            Ok(d) => d,
            Err(e) => {
                rollback(tickets, &mut undo);
                return Err(e);
            }
        };
        if d.allowed {
            tickets.push(t);
        } else {
            allowed = false;
            rollback(std::mem::take(&mut tickets), &mut undo);
        }
        decisions.push(d);
    }
    Ok(Verdict { allowed, decisions })
}

/// Gives back what the limits `0..tickets.len()` took, the last taken first.
fn rollback<T>(tickets: SmallVec<[T; 2]>, undo: &mut impl FnMut(usize, T)) {
    for (i, t) in tickets.into_iter().enumerate().rev() {
        undo(i, t);
    }
}

/// Reserves a request on `n` limits within a maximum wait: `reserve(i)` reserves on limit
/// `i` (`None` if it cannot reserve future capacity). Returns the longest wait with the
/// tickets of every limit (to undo them if the waiter is cancelled), the rejection, or
/// `None` if some limit cannot reserve; on any refusal, what was reserved is given back
/// through `undo(i, ticket)`.
#[allow(clippy::type_complexity)]
pub(crate) fn reserve_all<T>(
    n: usize,
    mut reserve: impl FnMut(usize) -> Option<Result<(Decision, T), CostError>>,
    mut undo: impl FnMut(usize, T),
) -> Option<Result<(Duration, SmallVec<[T; 2]>), Rejection>> {
    let mut wait = Duration::ZERO;
    let mut tickets: SmallVec<[T; 2]> = SmallVec::new();
    for i in 0..n {
        let refused = match reserve(i) {
            Some(Ok((d, t))) if d.allowed => {
                wait = wait.max(d.retry_after);
                tickets.push(t);
                None
            }
            Some(Ok((d, _))) => Some(Some(d.rejection())),
            Some(Err(_)) => Some(Some(Rejection::RateLimited {
                retry_after: None,
                info: None,
            })),
            None => Some(None),
        };
        if let Some(refusal) = refused {
            rollback(tickets, &mut undo);
            return refusal.map(Err);
        }
    }
    Some(Ok((wait, tickets)))
}
