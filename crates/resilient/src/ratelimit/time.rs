//! The time source of a limiter: the default [`FastClock`](super::FastClock), read inline
//! (without a virtual call or a `Duration` round trip), or any shared [`crate::Clock`].

use std::time::Duration;

use super::decision::nanos;
use crate::engine::clock::SharedClock;

#[derive(Debug, Clone)]
pub(crate) enum Time {
    Shared(SharedClock),
    Fast(super::FastClock),
}

/// A shared clock's reading in nanoseconds (out of line: the default clock's read stays
/// small enough to inline).
#[inline(never)]
fn shared_nanos(c: &SharedClock) -> u64 {
    nanos(c.now())
}

impl Time {
    #[inline]
    pub(crate) fn nanos(&self) -> u64 {
        match self {
            Time::Shared(c) => shared_nanos(c),
            Time::Fast(c) => c.now_nanos(),
        }
    }

    #[inline]
    pub(crate) fn now(&self) -> Duration {
        match self {
            Time::Shared(c) => c.now(),
            Time::Fast(c) => Duration::from_nanos(c.now_nanos()),
        }
    }
}
