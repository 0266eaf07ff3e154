//! The time source of a limiter: any shared [`crate::Clock`], or (with the `quanta`
//! feature) a [`FastClock`](super::FastClock) read inline, without a virtual call or a
//! `Duration` round trip.

use std::time::Duration;

use super::decision::nanos;
use crate::engine::clock::SharedClock;

#[derive(Debug, Clone)]
pub(crate) enum Time {
    Shared(SharedClock),
    #[cfg(feature = "quanta")]
    Fast(super::FastClock),
}

impl Time {
    #[inline]
    pub(crate) fn nanos(&self) -> u64 {
        match self {
            Time::Shared(c) => nanos(c.now()),
            #[cfg(feature = "quanta")]
            Time::Fast(c) => c.now_nanos(),
        }
    }

    #[inline]
    pub(crate) fn now(&self) -> Duration {
        match self {
            Time::Shared(c) => c.now(),
            #[cfg(feature = "quanta")]
            Time::Fast(c) => Duration::from_nanos(c.now_nanos()),
        }
    }
}
