//! The breaker's state and its packed, atomically updated representation.
//!
//! Everything that must change together — the state, the half-open probe accounting and a
//! transition counter (the *epoch*) — lives in one 64-bit [`StateWord`], so every
//! transition is a single compare-and-swap. A permit remembers the epoch it was issued in;
//! a result that arrives after the breaker moved on is discarded instead of polluting the
//! new state.

use std::fmt;
use std::time::Duration;

/// The state of a circuit breaker.
///
/// ```
/// use resilient::CircuitState;
/// assert!(CircuitState::Closed.admits_calls());
/// assert!(!CircuitState::Isolated.admits_calls());
/// assert_eq!(CircuitState::HalfOpen.to_string(), "half-open");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CircuitState {
    /// Calls flow; outcomes are recorded and judged.
    Closed,
    /// Calls are rejected until the break duration has elapsed.
    Open,
    /// A limited number of probe calls test whether the dependency recovered.
    HalfOpen,
    /// Forced open by hand: every call is rejected until released.
    Isolated,
    /// Forced closed: every call passes, nothing is recorded.
    Disabled,
    /// Calls pass and are recorded (rates, events) but never rejected: for shadow roll-outs.
    MetricsOnly,
}

impl CircuitState {
    /// Whether calls are (normally) let through in this state.
    pub fn admits_calls(self) -> bool {
        !matches!(self, CircuitState::Open | CircuitState::Isolated)
    }

    /// The `state` label value telemetry uses (`closed`, `open`, `half_open`, `isolated`,
    /// `disabled`, `metrics_only`).
    ///
    /// ```
    /// assert_eq!(resilient::CircuitState::HalfOpen.label(), "half_open");
    /// ```
    pub fn label(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::Open => "open",
            CircuitState::HalfOpen => "half_open",
            CircuitState::Isolated => "isolated",
            CircuitState::Disabled => "disabled",
            CircuitState::MetricsOnly => "metrics_only",
        }
    }

    pub(crate) fn code(self) -> u64 {
        match self {
            CircuitState::Closed => 0,
            CircuitState::Open => 1,
            CircuitState::HalfOpen => 2,
            CircuitState::Isolated => 3,
            CircuitState::Disabled => 4,
            CircuitState::MetricsOnly => 5,
        }
    }

    pub(crate) fn from_code(code: u64) -> Self {
        match code & KIND_MASK {
            0 => CircuitState::Closed,
            1 => CircuitState::Open,
            2 => CircuitState::HalfOpen,
            3 => CircuitState::Isolated,
            4 => CircuitState::Disabled,
            _ => CircuitState::MetricsOnly,
        }
    }
}

impl fmt::Display for CircuitState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CircuitState::Closed => "closed",
            CircuitState::Open => "open",
            CircuitState::HalfOpen => "half-open",
            CircuitState::Isolated => "isolated",
            CircuitState::Disabled => "disabled",
            CircuitState::MetricsOnly => "metrics-only",
        })
    }
}

const KIND_BITS: u32 = 3;
const KIND_MASK: u64 = (1 << KIND_BITS) - 1;
const PROBE_BITS: u32 = 15;
const PROBE_MASK: u64 = (1 << PROBE_BITS) - 1;
const ISSUED_SHIFT: u32 = KIND_BITS;
const SUCCESS_SHIFT: u32 = KIND_BITS + PROBE_BITS;
const EPOCH_SHIFT: u32 = KIND_BITS + 2 * PROBE_BITS;

/// The largest number of half-open probes a word can account for.
pub(crate) const MAX_PROBES: u32 = PROBE_MASK as u32;

/// The packed breaker state: state, epoch and half-open probe counters in one `u64`.
///
/// Layout (low to high bits): state (3), probes issued (15), probe successes (15), epoch
/// (31). Exposed so that a [`crate::circuit::StateStore`] can keep it elsewhere; treat
/// it as opaque apart from the accessors.
///
/// ```
/// use resilient::circuit::StateWord;
/// use resilient::CircuitState;
/// let w = StateWord::new(CircuitState::HalfOpen, 7);
/// assert_eq!(w.state(), CircuitState::HalfOpen);
/// assert_eq!(w.epoch(), 7);
/// assert_eq!(w.probes_issued(), 0);
/// assert_eq!(StateWord::from_raw(w.raw()), w);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct StateWord(u64);

impl StateWord {
    /// A word in `state` at `epoch` with no probes issued.
    pub fn new(state: CircuitState, epoch: u32) -> Self {
        Self(state.code() | (u64::from(epoch) << EPOCH_SHIFT))
    }

    /// The word from its raw bits.
    pub fn from_raw(raw: u64) -> Self {
        Self(raw)
    }

    /// The raw bits.
    pub fn raw(self) -> u64 {
        self.0
    }

    /// The state.
    #[inline]
    pub fn state(self) -> CircuitState {
        CircuitState::from_code(self.0)
    }

    /// The transition counter (wraps after 2^31 transitions).
    #[inline]
    pub fn epoch(self) -> u32 {
        (self.0 >> EPOCH_SHIFT) as u32
    }

    /// Half-open probes currently held or already succeeded in this epoch.
    #[inline]
    pub fn probes_issued(self) -> u32 {
        ((self.0 >> ISSUED_SHIFT) & PROBE_MASK) as u32
    }

    /// Half-open probes that succeeded in this epoch.
    #[inline]
    pub fn probe_successes(self) -> u32 {
        ((self.0 >> SUCCESS_SHIFT) & PROBE_MASK) as u32
    }

    /// The word for the next state (epoch + 1, counters cleared).
    pub(crate) fn next(self, state: CircuitState) -> Self {
        Self::new(state, next_epoch(self.epoch()))
    }

    pub(crate) fn with_issued(self, issued: u32) -> Self {
        Self(
            (self.0 & !(PROBE_MASK << ISSUED_SHIFT))
                | ((u64::from(issued) & PROBE_MASK) << ISSUED_SHIFT),
        )
    }

    pub(crate) fn with_successes(self, n: u32) -> Self {
        Self(
            (self.0 & !(PROBE_MASK << SUCCESS_SHIFT))
                | ((u64::from(n) & PROBE_MASK) << SUCCESS_SHIFT),
        )
    }

    /// The permit token for a call admitted in this word's epoch and state.
    #[inline]
    pub(crate) fn token(self) -> u64 {
        (u64::from(self.epoch()) << KIND_BITS) | (self.0 & KIND_MASK)
    }
}

pub(crate) fn next_epoch(e: u32) -> u32 {
    e.wrapping_add(1) & (u32::MAX >> 1)
}

/// Splits a permit token into epoch and state.
#[inline]
pub(crate) fn split_token(token: u64) -> (u32, CircuitState) {
    ((token >> KIND_BITS) as u32, CircuitState::from_code(token))
}

impl fmt::Debug for StateWord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StateWord")
            .field("state", &self.state())
            .field("epoch", &self.epoch())
            .field("probes_issued", &self.probes_issued())
            .field("probe_successes", &self.probe_successes())
            .finish()
    }
}

const TAG_BITS: u32 = 12;
const MICROS_BITS: u32 = 64 - TAG_BITS;
const MICROS_MASK: u64 = (1 << MICROS_BITS) - 1;

/// The end of the current phase (open until / half-open give-up time), tagged with the
/// epoch it belongs to so that a reader never acts on a previous phase's deadline.
///
/// Microsecond resolution (rounded down, so a phase never lasts longer than configured),
/// kept modulo 2^52 µs (about 142 years of clock time): [`PhaseDeadline::at`] returns the
/// stored reading, and a breaker interprets it relative to its clock's current time (a
/// deadline lies at most its longest phase ahead; see the circuit module docs), so clocks
/// that read beyond 142 years, or step back, keep working. Opaque apart from the
/// accessors.
///
/// ```
/// use resilient::circuit::PhaseDeadline;
/// use std::time::Duration;
/// let d = PhaseDeadline::new(3, Duration::from_nanos(1_500_700));
/// assert_eq!(d.at(3), Some(Duration::from_micros(1500)));
/// assert_eq!(d.at(4), None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct PhaseDeadline(u64);

impl PhaseDeadline {
    /// The deadline `at` (clock time) for epoch `epoch`.
    pub fn new(epoch: u32, at: Duration) -> Self {
        let micros = (at.as_micros() & u128::from(MICROS_MASK)) as u64;
        Self((u64::from(epoch & ((1 << TAG_BITS) - 1)) << MICROS_BITS) | micros)
    }

    /// The deadline from its raw bits.
    pub fn from_raw(raw: u64) -> Self {
        Self(raw)
    }

    /// The raw bits.
    pub fn raw(self) -> u64 {
        self.0
    }

    /// The deadline if it belongs to `epoch`, as stored (modulo 2^52 µs).
    #[inline]
    pub fn at(self, epoch: u32) -> Option<Duration> {
        self.micros(epoch).map(Duration::from_micros)
    }

    /// [`PhaseDeadline::at`] in microseconds.
    #[inline]
    fn micros(self, epoch: u32) -> Option<u64> {
        let tag = (self.0 >> MICROS_BITS) as u32;
        (tag == epoch & ((1 << TAG_BITS) - 1)).then_some(self.0 & MICROS_MASK)
    }
}

/// The longest a deadline can lie ahead of the clock: 2^50 µs (about 35.7 years). Phases
/// configured longer are cut to this.
pub(crate) const MAX_AHEAD: Duration = Duration::from_micros(1 << 50);

/// A stored deadline read relative to the current time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Resolved {
    /// The deadline, at most the phase's longest length ahead (or already past).
    At(Duration),
    /// The deadline was further ahead than the phase can last (the clock stepped back):
    /// cut to now plus the longest length; the stored deadline should be replaced.
    Clamped(Duration),
}

impl PhaseDeadline {
    /// Reads the deadline of `epoch` relative to `now`, given that the phase lasts at most
    /// `longest` (itself at most [`MAX_AHEAD`]). Unambiguous while the clock moves less
    /// than about 71 years between the deadline's writing and its reading.
    pub(crate) fn resolve(self, epoch: u32, now: Duration, longest: Duration) -> Option<Resolved> {
        let stored = self.micros(epoch)?;
        // In u64 arithmetic (no u128 `as_micros`): `now` in whole microseconds, modulo 2^64
        // for the difference and saturated for the floor.
        let (secs, sub) = (now.as_secs(), u64::from(now.subsec_micros()));
        let (now_micros, floor) = match secs.checked_mul(1_000_000).and_then(|m| m.checked_add(sub))
        {
            Some(m) => (m, Duration::new(secs, (sub * 1_000) as u32)),
            None => (
                secs.wrapping_mul(1_000_000).wrapping_add(sub),
                Duration::from_micros(u64::MAX),
            ),
        };
        let ahead = stored.wrapping_sub(now_micros) & MICROS_MASK;
        let longest = longest.min(MAX_AHEAD);
        // At most 2^50 µs: no overflow.
        let longest_micros = longest.as_secs() * 1_000_000 + u64::from(longest.subsec_micros());
        Some(if ahead <= longest_micros {
            Resolved::At(floor.saturating_add(Duration::from_micros(ahead)))
        } else if ahead < 1 << (MICROS_BITS - 1) {
            Resolved::Clamped(now.saturating_add(longest))
        } else {
            // in the past
            Resolved::At(floor.saturating_sub(Duration::from_micros((MICROS_MASK + 1) - ahead)))
        })
    }
}

/// `longest` capped at [`MAX_AHEAD`], in whole microseconds (at most 2^50: no overflow
/// in [`PhaseDeadline::remaining`]'s arithmetic).
pub(crate) fn longest_micros(longest: Duration) -> u64 {
    let longest = longest.min(MAX_AHEAD);
    longest.as_secs() * 1_000_000 + u64::from(longest.subsec_micros())
}

impl PhaseDeadline {
    /// How long the phase of `epoch` still lasts at `now_nanos` (the clock's reading in
    /// nanoseconds), in u64 arithmetic: `Some` exactly when [`PhaseDeadline::resolve`]
    /// reads the deadline as [`Resolved::At`] a time after now, with the time left. `None`
    /// in every other case (no deadline for `epoch`, one past, or one further ahead than
    /// the longest phase, given as [`longest_micros`] of it), which `resolve` must decide.
    #[inline]
    pub(crate) fn remaining(
        self,
        epoch: u32,
        now_nanos: u64,
        longest_micros: u64,
    ) -> Option<Duration> {
        let stored = self.micros(epoch)?;
        let ahead = stored.wrapping_sub(now_nanos / 1_000) & MICROS_MASK;
        // The deadline is `ahead` µs past now rounded down to the microsecond: later than
        // now unless `ahead` is 0.
        (ahead != 0 && ahead <= longest_micros)
            .then(|| Duration::from_nanos(ahead * 1_000 - now_nanos % 1_000))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_fields_round_trip() {
        let w = StateWord::new(CircuitState::HalfOpen, 42)
            .with_issued(3)
            .with_successes(2);
        assert_eq!(w.state(), CircuitState::HalfOpen);
        assert_eq!(
            (w.epoch(), w.probes_issued(), w.probe_successes()),
            (42, 3, 2)
        );
        let n = w.next(CircuitState::Closed);
        assert_eq!(
            (n.state(), n.epoch(), n.probes_issued()),
            (CircuitState::Closed, 43, 0)
        );
        assert_eq!(split_token(w.token()), (42, CircuitState::HalfOpen));
        let top = StateWord::new(CircuitState::Open, u32::MAX >> 1);
        assert_eq!(top.next(CircuitState::HalfOpen).epoch(), 0);
    }

    #[test]
    fn deadline_is_tagged_and_rounded_down() {
        let d = PhaseDeadline::new(9, Duration::from_nanos(1999));
        assert_eq!(d.at(9), Some(Duration::from_micros(1)));
        assert_eq!(d.at(10), None);
        assert_eq!(d.at(9 + 4096), d.at(9), "the tag keeps the low 12 bits");
        assert_eq!(PhaseDeadline::default().at(0), Some(Duration::ZERO));
    }

    #[test]
    fn deadlines_resolve_relative_to_now() {
        let year = Duration::from_secs(365 * 86_400);
        let sec = Duration::from_secs(1);
        let top = Duration::from_micros(u64::MAX / 1000) - 60 * sec; // near ManualClock's end
        for base in [Duration::ZERO, 200 * year, top] {
            let now = base + 10 * sec;
            let d = PhaseDeadline::new(1, base + 30 * sec);
            assert_eq!(
                d.resolve(1, now, 30 * sec),
                Some(Resolved::At(base + 30 * sec))
            );
            assert_eq!(d.resolve(2, now, 30 * sec), None);
            let past = PhaseDeadline::new(1, base);
            assert_eq!(past.resolve(1, now, 30 * sec), Some(Resolved::At(base)));
            // a clock that stepped back: never more than the longest phase ahead
            assert_eq!(
                d.resolve(1, base, 10 * sec),
                Some(Resolved::Clamped(base + 10 * sec))
            );
        }
    }

    /// `resolve` as first written, in u128 microseconds: the reference its u64 arithmetic
    /// must agree with.
    fn resolve_u128(
        d: PhaseDeadline,
        epoch: u32,
        now: Duration,
        longest: Duration,
    ) -> Option<Resolved> {
        let stored = d.at(epoch)?.as_micros() as u64;
        let now_micros = now.as_micros();
        let floor = Duration::from_micros(u64::try_from(now_micros).unwrap_or(u64::MAX));
        let ahead = stored.wrapping_sub(now_micros as u64) & MICROS_MASK;
        let longest_micros = u64::try_from(longest.min(MAX_AHEAD).as_micros()).unwrap_or(0);
        Some(if ahead <= longest_micros {
            Resolved::At(floor.saturating_add(Duration::from_micros(ahead)))
        } else if ahead < 1 << (MICROS_BITS - 1) {
            Resolved::Clamped(now.saturating_add(longest.min(MAX_AHEAD)))
        } else {
            Resolved::At(floor.saturating_sub(Duration::from_micros((MICROS_MASK + 1) - ahead)))
        })
    }

    fn any_duration() -> impl proptest::strategy::Strategy<Value = Duration> {
        use proptest::prelude::*;
        prop_oneof![
            (any::<u64>(), 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s, n)),
            (0u64..1 << 40, 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s, n)),
            (0u64..1 << 20).prop_map(Duration::from_micros),
            (
                18_446_744_073_700u64..=18_446_744_073_710,
                0u32..1_000_000_000
            )
                .prop_map(|(s, n)| Duration::new(s, n)),
        ]
    }

    proptest::proptest! {
        #[test]
        fn resolving_in_u64_agrees_with_u128_microseconds(
            epoch in 0u32..8,
            at in any_duration(),
            now in any_duration(),
            longest in any_duration(),
            near in proptest::bool::ANY,
        ) {
            // Half of the cases put the deadline within a few hours of `now`.
            let at = if near { now.saturating_add(at.min(Duration::from_secs(10_000))) } else { at };
            let d = PhaseDeadline::new(epoch & 3, at);
            proptest::prop_assert_eq!(d.resolve(epoch, now, longest), resolve_u128(d, epoch, now, longest));
        }

        #[test]
        fn the_time_left_in_u64_is_what_resolving_says(
            epoch in 0u32..8,
            at in any_duration(),
            now_nanos in proptest::prop_oneof![
                proptest::prelude::any::<u64>(),
                0u64..1 << 40,
                u64::MAX - (1 << 20)..u64::MAX,
            ],
            ahead_nanos in proptest::prop_oneof![0u64..1 << 44, 0u64..3_000],
            longest in any_duration(),
            near in proptest::bool::ANY,
        ) {
            // Half of the cases put the deadline within hours of `now`, before or after.
            let now = Duration::from_nanos(now_nanos);
            let at = if near {
                if ahead_nanos % 2 == 0 {
                    now.saturating_add(Duration::from_nanos(ahead_nanos))
                } else {
                    now.saturating_sub(Duration::from_nanos(ahead_nanos))
                }
            } else {
                at
            };
            let d = PhaseDeadline::new(epoch & 3, at);
            let expected = match d.resolve(epoch, now, longest) {
                Some(Resolved::At(until)) if until > now => Some(until - now),
                _ => None,
            };
            proptest::prop_assert_eq!(
                d.remaining(epoch, now_nanos, longest_micros(longest)),
                expected
            );
        }
    }
}
