//! `#[resilient::circuit(failure_rate = 0.5, window = 20, open_for = "30s", ..)]`

use proc_macro2::{Span, TokenStream};
use quote::quote;

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
    "half_open_probes",
    "slow_call",
    "slow_rate",
    "per",
];

fn rate(value: &syn::Expr, key: &str) -> syn::Result<f64> {
    let r = args::float(value)?;
    if !(r > 0.0 && r <= 1.0) {
        return Err(syn::Error::new_spanned(
            value,
            format!("`{key}` is a fraction in (0, 1], like 0.5"),
        ));
    }
    Ok(r)
}

pub(super) fn parse(attr: Span, list: Vec<Arg>) -> syn::Result<Stage> {
    let mut mode = None;
    let mut settings = TokenStream::new();
    let mut phase = Phase::PerCall;
    let mut slow_call = None;
    let mut slow_rate = None;
    let mut max_open = None;
    for Arg { key, value } in &list {
        match key.to_string().as_str() {
            "failure_rate" | "consecutive_failures" if mode.is_some() => {
                return Err(syn::Error::new_spanned(
                    key,
                    "choose one of `failure_rate` and `consecutive_failures`",
                ));
            }
            "failure_rate" => {
                let r = rate(value, "failure_rate")?;
                mode = Some(quote!(::resilient::CircuitBreaker::failure_rate(#r)));
            }
            "consecutive_failures" => {
                let n: u32 = args::int(value)?;
                if n == 0 {
                    return Err(syn::Error::new_spanned(
                        value,
                        "`consecutive_failures` must be at least 1",
                    ));
                }
                mode = Some(quote!(::resilient::CircuitBreaker::consecutive_failures(#n)));
            }
            "window" => {
                // an integer counts calls; a duration string spans time
                let window = match args::int::<u32>(value) {
                    Ok(0) => {
                        return Err(syn::Error::new_spanned(
                            value,
                            "`window` must hold at least 1 call",
                        ));
                    }
                    Ok(n) => quote!(::resilient::circuit::Window::count(#n)),
                    Err(_) => {
                        let d = dur(args::duration(value).map_err(|_| {
                            syn::Error::new_spanned(
                                value,
                                "`window` is a number of calls (20) or a time span (\"60s\")",
                            )
                        })?);
                        quote!(::resilient::circuit::Window::time(#d))
                    }
                };
                settings.extend(quote!(.window(#window)));
            }
            "minimum_calls" => {
                let n: u32 = args::int(value)?;
                settings.extend(quote!(.minimum_calls(#n)));
            }
            "open_for" => {
                let d = dur(args::duration(value)?);
                settings.extend(quote!(.open_for(#d)));
            }
            "max_open_for" => max_open = Some(args::duration(value)?),
            "half_open_probes" => {
                let n: u32 = args::int(value)?;
                if n == 0 {
                    return Err(syn::Error::new_spanned(
                        value,
                        "`half_open_probes` must be at least 1",
                    ));
                }
                settings.extend(quote!(.half_open_probes(#n)));
            }
            "slow_call" => slow_call = Some(args::duration(value)?),
            "slow_rate" => slow_rate = Some(rate(value, "slow_rate")?),
            "per" => {
                let (word, _) = args::call(value)?;
                phase = match word.to_string().as_str() {
                    "call" => Phase::PerCall,
                    "attempt" => Phase::PerAttempt,
                    _ => {
                        return Err(syn::Error::new_spanned(
                            value,
                            "`per` is `call` (a logical call counts once) or `attempt`",
                        ));
                    }
                };
            }
            _ => return Err(args::unknown("circuit", key, KEYS)),
        }
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
    if let Some(max) = max_open {
        let max = dur(max);
        settings.extend(quote!(.break_backoff(2.0, #max)));
    }
    let Some(mode) = mode else {
        return Err(syn::Error::new(
            attr,
            "`circuit` needs `failure_rate = 0.5` or `consecutive_failures = 5`",
        ));
    };
    Ok(Stage {
        phase,
        calls: quote!(.guard(#mode #settings .build()?)),
    })
}
