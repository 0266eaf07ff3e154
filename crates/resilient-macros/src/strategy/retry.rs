//! `#[resilient::retry(attempts = 3, backoff = exponential("100ms"), jitter = full, ..)]`

use std::time::Duration;

use proc_macro2::{Literal, Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::Expr;
use syn::spanned::Spanned;

use super::{Phase, Stage};
use crate::args::{self, Arg};
use crate::duration::tokens as dur;

const KEYS: &[&str] = &[
    "attempts",
    "backoff",
    "factor",
    "jitter",
    "max_delay",
    "max_elapsed",
    "max_server_delay",
    "retry_on_timeout",
    "retry_rejected",
    "honor_retry_after",
    "classify",
    "retry_if",
    "delay_from",
    "on_retry",
];
const BACKOFFS: &str =
    "exponential(\"100ms\"), constant(\"1s\"), linear(\"100ms\", \"50ms\") or immediate";
const JITTERS: &str = "none, full, equal, decorrelated or proportional(0.2)";

/// The defaults of `resilient::Retry` (pinned by a test below).
const DEFAULT_ATTEMPTS: u32 = 3;
const DEFAULT_INITIAL: Duration = Duration::from_millis(100);
const DEFAULT_FACTOR: f64 = 2.0;
const DEFAULT_MAX_DELAY: Duration = Duration::from_secs(60);

#[derive(Clone, Copy)]
enum Backoff {
    Constant(Duration),
    Linear(Duration, Duration),
    Exponential(Duration, f64),
}

#[derive(Clone, Copy)]
enum Jitter {
    None,
    Full,
    Equal,
    Decorrelated,
    Proportional(f64),
}

/// The literal retry plan, for the check against the request timeout.
#[derive(Clone)]
pub(crate) struct Plan {
    attempts: u32,
    backoff: Backoff,
    max_delay: Duration,
    jitter: Jitter,
    /// Where `retry_on_timeout` / `retry_rejected` were given.
    pub(crate) retry_on_timeout: Option<Span>,
    pub(crate) retry_rejected: Option<Span>,
}

/// `d * m`, saturating (the same arithmetic as `resilient::retry`).
fn mul_f64_saturating(d: Duration, m: f64) -> Duration {
    let secs = d.as_secs_f64() * m;
    if secs.is_nan() || secs <= 0.0 {
        Duration::ZERO
    } else {
        Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX)
    }
}

impl Backoff {
    fn delay(self, n: u32) -> Duration {
        let n = n.max(1);
        match self {
            Backoff::Constant(d) => d,
            Backoff::Linear(initial, step) => initial.saturating_add(step.saturating_mul(n - 1)),
            Backoff::Exponential(initial, factor) => {
                let exp = i32::try_from(n - 1).unwrap_or(i32::MAX);
                mul_f64_saturating(initial, factor.powi(exp))
            }
        }
    }
}

impl Jitter {
    fn min_of(self, base: Duration, initial: Duration) -> Duration {
        match self {
            Jitter::None => base,
            Jitter::Full => Duration::ZERO,
            Jitter::Equal => base / 2,
            Jitter::Decorrelated => initial,
            Jitter::Proportional(p) => mul_f64_saturating(base, 1.0 - p.clamp(0.0, 1.0)),
        }
    }
}

impl Plan {
    /// The least total of the waits, as `Retry::min_total_delay` computes it (the same
    /// steps, so the compile-time check agrees with `PipelineBuilder::build`).
    fn min_total_delay(&self, limit: Duration) -> Duration {
        const MAX_STEPS: u32 = 1_000_000;
        let retries = self.attempts.saturating_sub(1);
        let initial = self.backoff.delay(1).min(self.max_delay);
        let least = |n: u32| {
            let base = self.backoff.delay(n).min(self.max_delay);
            self.jitter.min_of(base, initial)
        };
        let most = self.jitter.min_of(self.max_delay, initial);
        let mut total = Duration::ZERO;
        for n in 1..=retries {
            let wait = least(n);
            total = total.saturating_add(wait);
            let left = retries - n;
            let low = total.saturating_add(wait.saturating_mul(left));
            if low >= limit || wait >= most || n >= MAX_STEPS {
                return low;
            }
            if total.saturating_add(most.saturating_mul(left)) < limit {
                return low;
            }
        }
        total
    }

    /// `PipelineBuilder::build` rejects a plan whose least total wait reaches the request
    /// timeout: so does the macro, pointing at the request timeout.
    pub(crate) fn check_request_timeout(&self, request: Duration, at: Span) -> syn::Result<()> {
        let min = self.min_total_delay(request);
        if min >= request {
            return Err(syn::Error::new(
                at,
                format!(
                    "the retry plan waits at least {min:?} over {} retries, which already \
                     exceeds the request timeout ({request:?}); shorten the backoff, lower \
                     `attempts` or raise the request timeout",
                    self.attempts - 1
                ),
            ));
        }
        Ok(())
    }
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

pub(super) fn parse(_attr: Span, list: Vec<Arg>) -> syn::Result<Stage> {
    let mut backoff = quote!(::resilient::Retry::exponential(
        ::core::time::Duration::from_millis(100)
    ));
    let mut plan = Plan {
        attempts: DEFAULT_ATTEMPTS,
        backoff: Backoff::Exponential(DEFAULT_INITIAL, DEFAULT_FACTOR),
        max_delay: DEFAULT_MAX_DELAY,
        jitter: Jitter::None,
        retry_on_timeout: None,
        retry_rejected: None,
    };
    let mut settings = TokenStream::new();
    let mut factor = None;
    let mut honor: Option<&Expr> = None;
    let mut classify: Option<&Expr> = None;
    let mut retry_if: Option<&Expr> = None;
    let mut delay_from: Option<&Expr> = None;
    for Arg { key, value } in &list {
        match key.to_string().as_str() {
            "attempts" => {
                let n: u32 = args::int(value)?;
                if n == 0 {
                    return Err(syn::Error::new_spanned(
                        value,
                        "`attempts` counts the first call too and must be at least 1",
                    ));
                }
                plan.attempts = n;
                settings.extend(quote!(.attempts(#n)));
            }
            "backoff" => {
                let (word, a) = args::call(value)?;
                (backoff, plan.backoff) = match word.to_string().as_str() {
                    "exponential" => {
                        let a = args::arity(&word, &a, 1, "exponential(\"100ms\")")?;
                        let initial = args::duration(&a[0])?;
                        let d = dur(initial);
                        (
                            quote!(::resilient::Retry::exponential(#d)),
                            Backoff::Exponential(initial, DEFAULT_FACTOR),
                        )
                    }
                    "constant" => {
                        let a = args::arity(&word, &a, 1, "constant(\"1s\")")?;
                        let delay = args::duration(&a[0])?;
                        let d = dur(delay);
                        (
                            quote!(::resilient::Retry::constant(#d)),
                            Backoff::Constant(delay),
                        )
                    }
                    "linear" => {
                        let a = args::arity(
                            &word,
                            &a,
                            2,
                            "linear(\"100ms\", \"50ms\") (initial, step)",
                        )?;
                        let (initial, step) = (args::duration(&a[0])?, args::duration(&a[1])?);
                        let (i, s) = (dur(initial), dur(step));
                        (
                            quote!(::resilient::Retry::linear(#i, #s)),
                            Backoff::Linear(initial, step),
                        )
                    }
                    "immediate" => {
                        args::arity(&word, &a, 0, "immediate")?;
                        (
                            quote!(::resilient::Retry::immediate()),
                            Backoff::Constant(Duration::ZERO),
                        )
                    }
                    _ => {
                        return Err(syn::Error::new_spanned(
                            &word,
                            format!("unknown backoff `{word}`; expected {BACKOFFS}"),
                        ));
                    }
                };
            }
            "factor" => {
                let f = args::float(value)?;
                if !(f >= 1.0 && f.is_finite()) {
                    return Err(syn::Error::new_spanned(
                        value,
                        "`factor` must be a finite number >= 1",
                    ));
                }
                factor = Some((key, f));
            }
            "jitter" => {
                let (word, a) = args::call(value)?;
                let (j, jitter) = match word.to_string().as_str() {
                    "none" => (quote!(None), Jitter::None),
                    "full" => (quote!(Full), Jitter::Full),
                    "equal" => (quote!(Equal), Jitter::Equal),
                    "decorrelated" => (quote!(Decorrelated), Jitter::Decorrelated),
                    "proportional" => {
                        let a = args::arity(&word, &a, 1, "proportional(0.2)")?;
                        let p = args::float(&a[0])?;
                        if !(0.0..=1.0).contains(&p) {
                            return Err(syn::Error::new_spanned(
                                &a[0],
                                "proportional jitter must be within 0..=1",
                            ));
                        }
                        let lit = Literal::f64_suffixed(p);
                        (quote!(Proportional(#lit)), Jitter::Proportional(p))
                    }
                    _ => {
                        return Err(syn::Error::new_spanned(
                            &word,
                            format!("unknown jitter `{word}`; expected {JITTERS}"),
                        ));
                    }
                };
                if word != "proportional" && !a.is_empty() {
                    return Err(syn::Error::new_spanned(
                        value,
                        format!("`{word}` takes no arguments"),
                    ));
                }
                plan.jitter = jitter;
                settings.extend(quote!(.jitter(::resilient::Jitter::#j)));
            }
            "max_delay" => {
                plan.max_delay = args::duration(value)?;
                let d = dur(plan.max_delay);
                settings.extend(quote!(.max_delay(#d)));
            }
            "max_elapsed" => {
                let d = dur(positive(value, "max_elapsed")?);
                settings.extend(quote!(.max_elapsed(#d)));
            }
            "max_server_delay" => {
                let d = dur(args::duration(value)?);
                settings.extend(quote!(.max_server_delay(#d)));
            }
            "on_retry" => match value {
                Expr::Path(_) | Expr::Closure(_) => {
                    let span = value.span();
                    settings.extend(quote_spanned!(span=> .on_retry(#value)));
                }
                _ => {
                    return Err(syn::Error::new_spanned(
                        value,
                        "`on_retry` names a function `fn(&resilient::RetryEvent<'_>)` \
                         (`on_retry = log_retry`) or is a closure (`on_retry = |ev| ...`)",
                    ));
                }
            },
            "retry_on_timeout" => {
                let yes = args::boolean(value)?;
                plan.retry_on_timeout = Some(key.span());
                settings.extend(quote!(.retry_on_timeout(#yes)));
            }
            "retry_rejected" => {
                let yes = args::boolean(value)?;
                plan.retry_rejected = Some(key.span());
                settings.extend(quote!(.retry_rejected(#yes)));
            }
            "honor_retry_after" | "honour_retry_after" => {
                if honor.is_some() {
                    return Err(syn::Error::new_spanned(
                        key,
                        "`honor_retry_after` is given twice (`honour_retry_after` is the same key)",
                    ));
                }
                honor = Some(value);
            }
            "classify" => match value {
                Expr::Path(p) if p.qself.is_none() => classify = Some(value),
                Expr::Closure(c) if c.capture.is_none() => classify = Some(value),
                _ => {
                    return Err(syn::Error::new_spanned(
                        value,
                        "`classify` names a type implementing `resilient::Classify` and \
                         `Default` (`classify = my::Transient`), a function \
                         `fn(&Result<T, E>) -> resilient::Outcome` (`classify = by_status`) \
                         or is a closure that captures nothing (`classify = |r| ...`)",
                    ));
                }
            },
            "retry_if" => match value {
                Expr::Path(p) if p.qself.is_none() => retry_if = Some(value),
                Expr::Closure(c) if c.capture.is_none() => retry_if = Some(value),
                _ => {
                    return Err(syn::Error::new_spanned(
                        value,
                        "`retry_if` names a function `fn(&Result<T, E>) -> bool` \
                         (`retry_if = is_retryable`) or is a closure that captures nothing \
                         (`retry_if = |r| ...`)",
                    ));
                }
            },
            "delay_from" => match value {
                Expr::Path(p) if p.qself.is_none() => delay_from = Some(value),
                Expr::Closure(c) if c.capture.is_none() => delay_from = Some(value),
                _ => {
                    return Err(syn::Error::new_spanned(
                        value,
                        "`delay_from` names a function \
                         `fn(&Result<T, E>) -> Option<std::time::Duration>` \
                         (`delay_from = retry_after_header`) or is a closure that captures \
                         nothing (`delay_from = |r| ...`)",
                    ));
                }
            },
            _ => return Err(args::unknown("retry", key, KEYS)),
        }
    }
    if let Some((key, f)) = factor {
        let Backoff::Exponential(initial, _) = plan.backoff else {
            return Err(syn::Error::new_spanned(
                key,
                "`factor` only applies to `backoff = exponential(..)`",
            ));
        };
        plan.backoff = Backoff::Exponential(initial, f);
        let f = Literal::f64_suffixed(f);
        settings.extend(quote!(.factor(#f)));
    }
    let mut stage = Stage::new(Phase::Retry, quote!(.retry(#backoff #settings)));
    let honor = match honor {
        Some(v) => Some((v, args::boolean(v)?)),
        None => None,
    };
    stage.classify = wrap(classifier(classify, honor), retry_if, delay_from);
    stage.facts.retry = Some(plan);
    Ok(stage)
}

/// Whether `classify = expr` is a function (a closure, or a path whose last segment starts
/// with a lowercase letter, as functions are named) rather than a type.
fn is_function(expr: &Expr) -> bool {
    match expr {
        Expr::Closure(_) => true,
        Expr::Path(p) => p.path.segments.last().is_some_and(|s| {
            s.ident
                .to_string()
                .trim_start_matches("r#")
                .starts_with(|c: char| c.is_lowercase() || c == '_')
        }),
        _ => false,
    }
}

/// The pipeline's classifier `(type, value)`: `classify = Path` (built with `Default`),
/// `classify = function_path` or a closure (as a `fn` pointer),
/// wrapped in `HonorRetryAfter` with `honor_retry_after = true`.
fn classifier(
    classify: Option<&Expr>,
    honor: Option<(&Expr, bool)>,
) -> Option<(TokenStream, TokenStream)> {
    let inner = classify.map(|expr| {
        let span = expr.span();
        if is_function(expr) {
            // A function or a closure: a `fn` pointer to the classifier's signature, whose
            // type the expansion declares (`__ResilientClassifyFn`, from the function's
            // return type).
            (
                quote_spanned!(span=> __ResilientClassifyFn),
                quote_spanned!(span=> {
                    let classify: __ResilientClassifyFn = #expr;
                    classify
                }),
            )
        } else {
            (
                quote_spanned!(span=> #expr),
                quote_spanned!(span=> <#expr as ::core::default::Default>::default()),
            )
        }
    });
    match honor {
        Some((v, true)) => {
            let (ty, value) = inner.unwrap_or((
                quote!(::resilient::AllErrors),
                quote!(::resilient::AllErrors),
            ));
            let span = v.span();
            Some((
                quote_spanned!(span=> ::resilient::HonorRetryAfter<#ty>),
                quote_spanned!(span=> ::resilient::HonorRetryAfter(#value)),
            ))
        }
        _ => inner,
    }
}

/// Wraps the classifier in `RetryIf` (`retry_if = ..`) and then `DelayFrom`
/// (`delay_from = ..`), each function or closure as a `fn` pointer whose type the
/// expansion declares from the function's return type (`__ResilientRetryIfFn`,
/// `__ResilientDelayFromFn`, with `__ResilientOk`/`__ResilientErr` its `T` and `E`).
fn wrap(
    inner: Option<(TokenStream, TokenStream)>,
    retry_if: Option<&Expr>,
    delay_from: Option<&Expr>,
) -> Option<(TokenStream, TokenStream)> {
    if retry_if.is_none() && delay_from.is_none() {
        return inner;
    }
    let (mut ty, mut value) = inner.unwrap_or((
        quote!(::resilient::AllErrors),
        quote!(::resilient::AllErrors),
    ));
    if let Some(expr) = retry_if {
        let span = expr.span();
        ty = quote_spanned!(span=> ::resilient::RetryIf<
            #ty, __ResilientRetryIfFn, __ResilientOk, __ResilientErr
        >);
        value = quote_spanned!(span=> ::resilient::RetryIf::new(#value, {
            let retry_if: __ResilientRetryIfFn = #expr;
            retry_if
        }));
    }
    if let Some(expr) = delay_from {
        let span = expr.span();
        ty = quote_spanned!(span=> ::resilient::DelayFrom<
            #ty, __ResilientDelayFromFn, __ResilientOk, __ResilientErr
        >);
        value = quote_spanned!(span=> ::resilient::DelayFrom::new(#value, {
            let delay_from: __ResilientDelayFromFn = #expr;
            delay_from
        }));
    }
    Some((ty, value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use resilient::{Pipeline, Retry, Timeout};

    #[test]
    fn the_defaults_are_those_of_resilient() {
        let retry = format!("{:?}", Retry::exponential(DEFAULT_INITIAL));
        assert!(
            retry.contains(&format!("max_attempts: {DEFAULT_ATTEMPTS},")),
            "{retry}"
        );
        assert!(
            retry.contains(&format!("factor: {DEFAULT_FACTOR:?}")),
            "{retry}"
        );
        assert!(
            retry.contains(&format!("max_delay: {DEFAULT_MAX_DELAY:?},")),
            "{retry}"
        );
        assert!(retry.contains("jitter: None,"), "{retry}");
    }

    /// The compile-time check rejects exactly the plans `PipelineBuilder::build` rejects.
    #[test]
    fn the_request_timeout_check_agrees_with_the_pipeline() {
        let ms = Duration::from_millis;
        let backoffs = [
            Backoff::Constant(ms(100)),
            Backoff::Constant(Duration::ZERO),
            Backoff::Linear(ms(100), ms(50)),
            Backoff::Exponential(ms(100), 1.0),
            Backoff::Exponential(ms(100), 1.5),
            Backoff::Exponential(ms(100), 2.0),
            Backoff::Exponential(Duration::from_nanos(3), 3.0),
        ];
        let jitters = [
            Jitter::None,
            Jitter::Full,
            Jitter::Equal,
            Jitter::Decorrelated,
            Jitter::Proportional(0.2),
            Jitter::Proportional(1.0),
        ];
        let mut rejected = 0;
        let mut checked = 0;
        for attempts in [1, 2, 3, 5, 10, 100, 100_000] {
            for backoff in backoffs {
                for max_delay in [ms(100), ms(150), Duration::from_secs(1), DEFAULT_MAX_DELAY] {
                    for jitter in jitters {
                        for request in [ms(150), ms(200), ms(300), ms(350), ms(1000), ms(2500)] {
                            let plan = Plan {
                                attempts,
                                backoff,
                                max_delay,
                                jitter,
                                retry_on_timeout: None,
                                retry_rejected: None,
                            };
                            let mut retry = match backoff {
                                Backoff::Constant(d) => Retry::constant(d),
                                Backoff::Linear(i, s) => Retry::linear(i, s),
                                Backoff::Exponential(i, f) => Retry::exponential(i).factor(f),
                            };
                            retry = retry.attempts(attempts).max_delay(max_delay).jitter(
                                match jitter {
                                    Jitter::None => resilient::Jitter::None,
                                    Jitter::Full => resilient::Jitter::Full,
                                    Jitter::Equal => resilient::Jitter::Equal,
                                    Jitter::Decorrelated => resilient::Jitter::Decorrelated,
                                    Jitter::Proportional(p) => resilient::Jitter::Proportional(p),
                                },
                            );
                            let runtime = Pipeline::builder()
                                .timeout(Timeout::request(request))
                                .retry(retry)
                                .build()
                                .is_err();
                            let compile = plan
                                .check_request_timeout(request, Span::call_site())
                                .is_err();
                            assert_eq!(
                                compile,
                                runtime,
                                "attempts {attempts}, {:?}, max_delay {max_delay:?}, jitter {:?}, \
                                 request {request:?}",
                                plan.min_total_delay(request),
                                std::mem::discriminant(&jitter),
                            );
                            checked += 1;
                            rejected += usize::from(runtime);
                        }
                    }
                }
            }
        }
        // both verdicts are well represented
        assert!(
            rejected > checked / 5 && rejected < checked * 4 / 5,
            "{rejected}/{checked}"
        );
    }
}
