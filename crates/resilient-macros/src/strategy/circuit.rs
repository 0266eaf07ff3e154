//! `#[resilient::circuit(failure_rate = 0.5, window = 20, open_for = "30s", ..)]`

use std::time::Duration;

use proc_macro2::{Span, TokenStream};
use quote::quote;
use syn::Expr;
use syn::spanned::Spanned;

use super::{Phase, Stage};
use crate::args::{self, Arg};
use crate::duration::tokens as dur;

const KEYS: &[&str] = &[
    "failure_rate",
    "consecutive_failures",
    "window",
    "minimum_calls",
    "open_for",
    "max_open_for",
    "break_jitter",
    "half_open_probes",
    "required_successes",
    "max_half_open_wait",
    "slow_call",
    "slow_rate",
    "scope",
    "breaker",
];

/// The defaults of `resilient::CircuitBreaker`'s builder (pinned by a test below).
const DEFAULT_OPEN_FOR: Duration = Duration::from_secs(30);
const DEFAULT_WINDOW_CALLS: u32 = 100;
const DEFAULT_PROBES: u32 = 1;
/// `circuit::Window::MAX_COUNT`, the most half-open probes, and `Window::time`'s buckets.
const MAX_WINDOW_CALLS: u32 = (1 << 20) - 1;
const MAX_PROBES: u32 = (1 << 15) - 1;
const TIME_WINDOW_BUCKETS: u32 = 10;

/// What the check against the `circuit` timeout needs to know about a breaker the
/// attribute builds.
#[derive(Clone, Copy)]
pub(crate) struct Facts {
    /// The break, and where it was given (`None`: the default).
    open_for: (Duration, Option<Span>),
    time_window: Option<(Duration, Span)>,
}

impl Facts {
    /// The pipeline rejects a break or a time window longer than its `circuit` timeout.
    pub(crate) fn check_circuit_timeout(self, circuit: Duration, at: Span) -> syn::Result<()> {
        if let Some((w, span)) = self.time_window
            && w > circuit
        {
            let mut e = syn::Error::new(
                span,
                format!("the breaker's time window ({w:?}) must not exceed the circuit timeout"),
            );
            e.combine(syn::Error::new(
                at,
                format!("the circuit timeout ({circuit:?}) is shorter than the breaker's window"),
            ));
            return Err(e);
        }
        let (open_for, span) = self.open_for;
        if open_for > circuit {
            let mut e = syn::Error::new(
                at,
                format!(
                    "the circuit timeout ({circuit:?}) is shorter than the breaker's `open_for` \
                     ({open_for:?}{}); the breaks are capped by the circuit timeout, so \
                     `open_for` must not exceed it",
                    if span.is_none() { ", its default" } else { "" }
                ),
            );
            if let Some(span) = span {
                e.combine(syn::Error::new(
                    span,
                    format!("`open_for` must not exceed the circuit timeout ({circuit:?})"),
                ));
            }
            return Err(e);
        }
        Ok(())
    }
}

fn rate(value: &Expr, key: &str) -> syn::Result<f64> {
    let r = args::float(value)?;
    if !(r > 0.0 && r <= 1.0) {
        return Err(syn::Error::new_spanned(
            value,
            format!("`{key}` is a fraction in (0, 1], like 0.5"),
        ));
    }
    Ok(r)
}

fn at_least_1(value: &Expr, key: &str) -> syn::Result<u32> {
    let n: u32 = args::int(value)?;
    if n == 0 {
        return Err(syn::Error::new_spanned(
            value,
            format!("`{key}` must be at least 1"),
        ));
    }
    Ok(n)
}

fn positive(value: &Expr, key: &str) -> syn::Result<Duration> {
    let d = args::duration(value)?;
    if d.is_zero() {
        return Err(syn::Error::new_spanned(
            value,
            format!("`{key}` must be greater than zero"),
        ));
    }
    Ok(d)
}

pub(super) fn parse(attr: Span, list: Vec<Arg>) -> syn::Result<Stage> {
    let mut failure_rate = None;
    let mut consecutive = None;
    let mut settings = TokenStream::new();
    let mut phase = None;
    let mut slow_call = None;
    let mut slow_rate = None;
    let mut max_open = None;
    let mut window_calls: Option<u32> = None;
    let mut minimum_calls: Option<(u32, &Expr)> = None;
    let mut probes: Option<u32> = None;
    let mut required: Option<(u32, &Expr)> = None;
    let mut breaker: Option<&Expr> = None;
    // Keys that configure the breaker the attribute builds (so not `breaker = PATH`).
    let mut building: Option<&syn::Ident> = None;
    let mut facts = Facts {
        open_for: (DEFAULT_OPEN_FOR, None),
        time_window: None,
    };
    for Arg { key, value } in &list {
        let name = key.to_string();
        if !matches!(name.as_str(), "scope" | "per" | "breaker") {
            building.get_or_insert(key);
        }
        match name.as_str() {
            "failure_rate" => failure_rate = Some(rate(value, "failure_rate")?),
            "consecutive_failures" => {
                consecutive = Some(at_least_1(value, "consecutive_failures")?);
            }
            "window" => {
                // an integer counts calls; a duration string spans time
                let window = match args::int::<u32>(value) {
                    Ok(n) if n == 0 || n > MAX_WINDOW_CALLS => {
                        return Err(syn::Error::new_spanned(
                            value,
                            format!("`window` holds between 1 and {MAX_WINDOW_CALLS} calls"),
                        ));
                    }
                    Ok(n) => {
                        window_calls = Some(n);
                        quote!(::resilient::circuit::Window::count(#n))
                    }
                    Err(_) => {
                        let d = args::duration(value).map_err(|_| {
                            syn::Error::new_spanned(
                                value,
                                "`window` is a number of calls (20) or a time span (\"60s\")",
                            )
                        })?;
                        if d < Duration::from_micros(TIME_WINDOW_BUCKETS.into()) {
                            return Err(syn::Error::new_spanned(
                                value,
                                format!(
                                    "a time `window` spans at least {}µs (1µs for each of its \
                                     {TIME_WINDOW_BUCKETS} buckets)",
                                    TIME_WINDOW_BUCKETS
                                ),
                            ));
                        }
                        facts.time_window = Some((d, value.span()));
                        let d = dur(d);
                        quote!(::resilient::circuit::Window::time(#d))
                    }
                };
                settings.extend(quote!(.window(#window)));
            }
            "minimum_calls" => {
                let n = at_least_1(value, "minimum_calls")?;
                minimum_calls = Some((n, value));
                settings.extend(quote!(.minimum_calls(#n)));
            }
            "open_for" => {
                let d = positive(value, "open_for")?;
                facts.open_for = (d, Some(value.span()));
                let d = dur(d);
                settings.extend(quote!(.open_for(#d)));
            }
            "max_open_for" => max_open = Some((args::duration(value)?, value)),
            "break_jitter" => {
                let j = args::float(value)?;
                if !(0.0..=1.0).contains(&j) {
                    return Err(syn::Error::new_spanned(
                        value,
                        "`break_jitter` is a fraction in [0, 1], like 0.2",
                    ));
                }
                settings.extend(quote!(.break_jitter(#j)));
            }
            "half_open_probes" => {
                let n = at_least_1(value, "half_open_probes")?;
                if n > MAX_PROBES {
                    return Err(syn::Error::new_spanned(
                        value,
                        format!("`half_open_probes` must be at most {MAX_PROBES}"),
                    ));
                }
                probes = Some(n);
                settings.extend(quote!(.half_open_probes(#n)));
            }
            "required_successes" => {
                let n = at_least_1(value, "required_successes")?;
                required = Some((n, value));
                settings.extend(quote!(.required_successes(#n)));
            }
            "max_half_open_wait" => {
                let d = dur(positive(value, "max_half_open_wait")?);
                settings.extend(quote!(.max_half_open_wait(#d)));
            }
            "slow_call" => slow_call = Some(positive(value, "slow_call")?),
            "slow_rate" => slow_rate = Some(rate(value, "slow_rate")?),
            "scope" | "per" => {
                if phase.is_some() {
                    return Err(syn::Error::new_spanned(
                        key,
                        "`scope` is given twice (`per` is its old name)",
                    ));
                }
                phase = Some(super::scope(key, value, "counts")?);
            }
            "breaker" => match value {
                Expr::Path(p) if p.qself.is_none() => breaker = Some(value),
                Expr::Lit(syn::ExprLit {
                    lit: syn::Lit::Str(_),
                    ..
                }) => breaker = Some(value),
                _ => {
                    return Err(syn::Error::new_spanned(
                        value,
                        "`breaker` names a breaker in the registry (`breaker = \"payments\"`), \
                         a name declared with `resilient::names!`, or a `static` holding a \
                         `CircuitBreaker`, like `breaker = PAYMENTS` with \
                         `static PAYMENTS: LazyLock<CircuitBreaker> = ..`",
                    ));
                }
            },
            _ => return Err(args::unknown("circuit", key, KEYS)),
        }
    }
    let phase = phase.unwrap_or(Phase::PerCall);
    if let Some(path) = breaker {
        if let Some(key) = building {
            return Err(syn::Error::new_spanned(
                key,
                format!(
                    "`{key}` configures a breaker the attribute builds, but `breaker = ..` \
                     brings one already built: configure that one instead (only `scope` \
                     goes with `breaker`)"
                ),
            ));
        }
        // A registry name (`"payments"`, a `Name` constant) or a `static` holding a
        // `CircuitBreaker` (or anything that derefs to one).
        return Ok(Stage::new(
            phase,
            super::pattern::named("breaker", "circuit_breaker", path)?,
        ));
    }
    match (slow_call, slow_rate) {
        (Some(d), r) => {
            let d = dur(d);
            let r = r.unwrap_or(1.0);
            settings.extend(quote!(.slow_calls(#d, #r)));
        }
        (None, Some(_)) => {
            return Err(syn::Error::new(
                attr,
                "`slow_rate` needs `slow_call = \"2s\"`",
            ));
        }
        (None, None) => {}
    }
    let rated = failure_rate.is_some() || slow_call.is_some();
    let window =
        window_calls.or((rated && facts.time_window.is_none()).then_some(DEFAULT_WINDOW_CALLS));
    if let (Some((n, e)), Some(size)) = (minimum_calls, window)
        && n > size
    {
        return Err(syn::Error::new_spanned(
            e,
            format!(
                "`minimum_calls` ({n}) must not exceed the count window ({size} calls{})",
                if window_calls.is_none() {
                    ", the default"
                } else {
                    ""
                }
            ),
        ));
    }
    let probes = probes.unwrap_or(DEFAULT_PROBES);
    if let Some((n, e)) = required
        && n > probes
    {
        return Err(syn::Error::new_spanned(
            e,
            format!(
                "`required_successes` ({n}) must not exceed `half_open_probes` ({probes}{})",
                if probes == DEFAULT_PROBES {
                    ", the default"
                } else {
                    ""
                }
            ),
        ));
    }
    if let Some((max, e)) = max_open {
        let open_for = facts.open_for.0;
        if max < open_for {
            return Err(syn::Error::new_spanned(
                e,
                format!("`max_open_for` ({max:?}) must be at least `open_for` ({open_for:?})"),
            ));
        }
        let max = dur(max);
        settings.extend(quote!(.break_backoff(2.0, #max)));
    }
    let mode = match (failure_rate, consecutive) {
        (Some(r), Some(n)) => quote!(
            ::resilient::CircuitBreaker::failure_rate(#r).consecutive_failures(#n)
        ),
        (Some(r), None) => quote!(::resilient::CircuitBreaker::failure_rate(#r)),
        (None, Some(n)) => quote!(::resilient::CircuitBreaker::consecutive_failures(#n)),
        (None, None) => {
            return Err(syn::Error::new(
                attr,
                "`circuit` needs `failure_rate = 0.5` or `consecutive_failures = 5` (or both; \
                 `slow_call` adds to them), or `breaker = PATH` to a breaker of yours",
            ));
        }
    };
    let mut stage = Stage::new(
        phase,
        quote!(.guard(#mode.name(__RESILIENT_NAME) #settings .build()?)),
    );
    stage.facts.breaker = Some(facts);
    Ok(stage)
}

#[cfg(test)]
mod tests {
    use super::*;
    use resilient::circuit::Window;
    use resilient::{CircuitBreaker, Pipeline, Timeout};

    const NS: Duration = Duration::from_nanos(1);

    #[test]
    fn the_defaults_and_limits_are_those_of_resilient() {
        let with_circuit_timeout = |t: Duration| {
            Pipeline::builder()
                .timeout(Timeout::circuit(t))
                .circuit_breaker(CircuitBreaker::failure_rate(0.5))
                .build()
        };
        assert!(with_circuit_timeout(DEFAULT_OPEN_FOR).is_ok());
        assert!(with_circuit_timeout(DEFAULT_OPEN_FOR - NS).is_err());
        let min = |n: u32| CircuitBreaker::failure_rate(0.5).minimum_calls(n).build();
        assert!(min(DEFAULT_WINDOW_CALLS).is_ok());
        assert!(min(DEFAULT_WINDOW_CALLS + 1).is_err());
        let required = |n: u32| {
            CircuitBreaker::failure_rate(0.5)
                .required_successes(n)
                .build()
        };
        assert!(required(DEFAULT_PROBES).is_ok());
        assert!(required(DEFAULT_PROBES + 1).is_err());
        let probes = |n: u32| {
            CircuitBreaker::failure_rate(0.5)
                .half_open_probes(n)
                .build()
        };
        assert!(probes(MAX_PROBES).is_ok());
        assert!(probes(MAX_PROBES + 1).is_err());
        assert_eq!(Window::MAX_COUNT, MAX_WINDOW_CALLS);
        let time = |d: Duration| {
            CircuitBreaker::failure_rate(0.5)
                .window(Window::time(d))
                .build()
        };
        let shortest = Duration::from_micros(TIME_WINDOW_BUCKETS.into());
        assert!(time(shortest).is_ok());
        assert!(time(shortest - NS).is_err());
        let max_open = |d: Duration| {
            CircuitBreaker::failure_rate(0.5)
                .break_backoff(2.0, d)
                .build()
        };
        assert!(max_open(DEFAULT_OPEN_FOR).is_ok());
        assert!(max_open(DEFAULT_OPEN_FOR - NS).is_err());
    }
}
