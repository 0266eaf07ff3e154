//! `#[resilient::rate_limit(algorithm = gcra, rate = 100, per = "1s", burst = 20, ..)]`

use proc_macro2::Span;
use quote::quote;
use syn::Expr;

use super::{Phase, Stage};
use crate::args::{self, Arg};
use crate::duration::tokens as dur;

const KEYS: &[&str] = &[
    "algorithm",
    "rate",
    "per",
    "burst",
    "cost",
    "max_wait",
    "scope",
    "key",
    "max_keys",
    "limiter",
];

const ALGORITHMS: &str =
    "`gcra`, `token_bucket`, `fixed_window`, `sliding_log` or `sliding_window`";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Algorithm {
    Gcra,
    TokenBucket,
    FixedWindow,
    SlidingLog,
    SlidingWindow,
}

fn positive(value: &Expr, key: &str) -> syn::Result<u64> {
    let n: u64 = args::int(value)?;
    if n == 0 {
        return Err(syn::Error::new_spanned(
            value,
            format!("`{key}` must be at least 1"),
        ));
    }
    Ok(n)
}

pub(super) fn parse(attr: Span, list: Vec<Arg>) -> syn::Result<Stage> {
    if let Some(named) = list.iter().find(|a| a.key == "limiter") {
        // `limiter = "api"`: a limiter from the registry (or a `static` of the user's);
        // only `scope` goes with it.
        let mut phase = Phase::PerAttempt;
        for Arg { key, value } in &list {
            match key.to_string().as_str() {
                "limiter" => {}
                "scope" => phase = super::scope(key, value, "is limited")?,
                _ => {
                    return Err(syn::Error::new_spanned(
                        key,
                        format!(
                            "`{key}` configures a limiter the attribute builds, but \
                             `limiter = ..` brings one already built: configure that one \
                             instead (only `scope` goes with `limiter`)"
                        ),
                    ));
                }
            }
        }
        let calls = super::pattern::named("limiter", "rate_limit", &named.value)?;
        return Ok(Stage::new(phase, calls));
    }
    let mut algorithm = Algorithm::Gcra;
    let mut rate = None;
    let mut per = std::time::Duration::from_secs(1);
    let mut burst: Option<(u64, &Expr)> = None;
    let mut max_wait = None;
    let mut cost: Option<(u64, &Expr)> = None;
    let mut phase = Phase::PerAttempt;
    let mut call_key: Option<&Expr> = None;
    let mut max_keys: Option<(usize, &Expr)> = None;
    for Arg { key, value } in &list {
        match key.to_string().as_str() {
            "algorithm" => {
                let (word, rest) = args::call(value)?;
                if !rest.is_empty() {
                    return Err(syn::Error::new_spanned(
                        value,
                        format!("`algorithm` takes a bare name: {ALGORITHMS}"),
                    ));
                }
                algorithm = match word.to_string().as_str() {
                    "gcra" => Algorithm::Gcra,
                    "token_bucket" => Algorithm::TokenBucket,
                    "fixed_window" => Algorithm::FixedWindow,
                    "sliding_log" => Algorithm::SlidingLog,
                    "sliding_window" => Algorithm::SlidingWindow,
                    other => {
                        return Err(syn::Error::new_spanned(
                            value,
                            format!("unknown algorithm `{other}`; expected {ALGORITHMS}"),
                        ));
                    }
                };
            }
            "rate" => rate = Some(positive(value, "rate")?),
            "per" => {
                per = args::duration(value)?;
                if per.is_zero() {
                    return Err(syn::Error::new_spanned(
                        value,
                        "`per` must be greater than zero",
                    ));
                }
            }
            "burst" => burst = Some((positive(value, "burst")?, value)),
            "cost" => cost = Some((positive(value, "cost")?, value)),
            "max_wait" => max_wait = Some((args::duration(value)?, key)),
            "scope" => phase = super::scope(key, value, "is limited")?,
            "key" => call_key = Some(value),
            "max_keys" => {
                let n: usize = args::int(value)?;
                if n == 0 {
                    return Err(syn::Error::new_spanned(
                        value,
                        "`max_keys` must be at least 1",
                    ));
                }
                max_keys = Some((n, value));
            }
            _ => return Err(args::unknown("rate_limit", key, KEYS)),
        }
    }
    let Some(rate) = rate else {
        return Err(syn::Error::new(
            attr,
            "`rate_limit` needs `rate = N` (units per `per`, default \"1s\"), or \
             `limiter = \"name\"` for a limiter in the registry",
        ));
    };
    if let Some((_, e)) = burst
        && !matches!(algorithm, Algorithm::Gcra | Algorithm::TokenBucket)
    {
        return Err(syn::Error::new_spanned(
            e,
            "`burst` only applies to `gcra` and `token_bucket`; a window algorithm's burst \
             is its `rate`",
        ));
    }
    let burst = burst.map_or(rate, |(b, _)| b);
    if let Some((c, e)) = cost
        && c > burst
    {
        return Err(syn::Error::new_spanned(
            e,
            format!(
                "`cost` ({c}) must not exceed the limiter's capacity ({burst}, its {}): such a \
                 call could never be admitted",
                if matches!(algorithm, Algorithm::Gcra | Algorithm::TokenBucket) {
                    "`burst`"
                } else {
                    "`rate` per window"
                }
            ),
        ));
    }
    let per_tokens = dur(per);
    let rate_expr = quote!(::resilient::ratelimit::Rate::new(#rate, #per_tokens));
    let limit = match algorithm {
        Algorithm::Gcra => {
            quote!(::resilient::ratelimit::Gcra::limiter_with_burst(#rate_expr, #burst)?)
        }
        Algorithm::TokenBucket => {
            quote!(::resilient::ratelimit::TokenBucket::limiter(#burst, #rate_expr)?)
        }
        Algorithm::FixedWindow => {
            quote!(::resilient::ratelimit::FixedWindow::limiter(#rate, #per_tokens)?)
        }
        Algorithm::SlidingLog => {
            quote!(::resilient::ratelimit::SlidingWindowLog::new(#rate, #per_tokens)?)
        }
        Algorithm::SlidingWindow => {
            quote!(::resilient::ratelimit::SlidingWindowCounter::limiter(#rate, #per_tokens)?)
        }
    };
    if let Some(key) = call_key {
        return keyed(
            algorithm, rate, per, burst, cost, max_wait, max_keys, key, phase,
        );
    }
    if let Some((_, e)) = max_keys {
        return Err(syn::Error::new_spanned(
            e,
            "`max_keys` caps the keys of a keyed limiter: it goes with `key = ..`",
        ));
    }
    let mode = max_wait.map(|(d, _)| {
        let d = dur(d);
        quote!(.max_wait(#d))
    });
    let cost = cost.map(|(c, _)| quote!(.cost(#c)));
    let mut stage = Stage::new(
        phase,
        quote!(.guard(
            ::resilient::RateLimiter::builder().limit(#limit) #cost #mode .build()?
        )),
    );
    blocking_never_waits(&mut stage, max_wait);
    Ok(stage)
}

fn blocking_never_waits(stage: &mut Stage, max_wait: Option<(std::time::Duration, &syn::Ident)>) {
    if let Some((_, key)) = max_wait {
        stage.async_only.push(syn::Error::new_spanned(
            key,
            "`max_wait` does nothing here: plain (blocking) functions never wait for rate \
             capacity, they are rejected with `Error::RateLimited` when they would have to; \
             remove it, or make the function `async`",
        ));
    }
}

/// `key = ..`: one keyed limiter for the function (in its pipeline), each call limited
/// under its key's hash and charged `cost` through `Call::cost`.
#[allow(clippy::too_many_arguments)]
fn keyed(
    algorithm: Algorithm,
    rate: u64,
    per: std::time::Duration,
    burst: u64,
    cost: Option<(u64, &Expr)>,
    max_wait: Option<(std::time::Duration, &syn::Ident)>,
    max_keys: Option<(usize, &Expr)>,
    key: &Expr,
    phase: Phase,
) -> syn::Result<Stage> {
    let per = dur(per);
    let rate_expr = quote!(::resilient::ratelimit::Rate::new(#rate, #per));
    let alg = match algorithm {
        Algorithm::Gcra => quote!(::resilient::ratelimit::Gcra::with_burst(#rate_expr, #burst)?),
        Algorithm::TokenBucket => {
            quote!(::resilient::ratelimit::TokenBucket::new(#burst, #rate_expr)?)
        }
        Algorithm::FixedWindow => quote!(::resilient::ratelimit::FixedWindow::new(#rate, #per)?),
        Algorithm::SlidingWindow => {
            quote!(::resilient::ratelimit::SlidingWindowCounter::new(#rate, #per)?)
        }
        Algorithm::SlidingLog => {
            return Err(syn::Error::new_spanned(
                key,
                "a keyed limiter keeps one packed state per key, which `sliding_log` (a log \
                 of admissions) has not: use `sliding_window` (its approximation), \
                 `fixed_window`, `gcra` or `token_bucket` with `key`",
            ));
        }
    };
    let mode = max_wait.map(|(d, _)| {
        let d = dur(d);
        quote!(.max_wait(#d))
    });
    let max_keys = max_keys.map(|(n, _)| quote!(.max_keys(#n)));
    let mut stage = Stage::new(
        phase,
        quote!(.rate_limit(
            ::resilient::ratelimit::KeyedLimiter::builder(#alg) #mode #max_keys .build::<u64>()?
        )),
    );
    stage.key = Some(key.clone());
    stage.call_cost = cost.map(|(c, _)| c);
    blocking_never_waits(&mut stage, max_wait);
    Ok(stage)
}
