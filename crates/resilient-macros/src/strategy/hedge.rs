//! `#[resilient::hedge(delay = "50ms", max_hedges = 2, idempotent = true)]`, or with a
//! learned delay `#[resilient::hedge(percentile = 0.95, delay = "50ms", idempotent = true)]`

use proc_macro2::Span;
use quote::quote;

use super::{Phase, Stage};
use crate::args::{self, Arg};
use crate::duration::tokens as dur;

const KEYS: &[&str] = &["delay", "percentile", "mode", "max_hedges", "idempotent"];

pub(super) fn parse(attr: Span, list: Vec<Arg>) -> syn::Result<Stage> {
    let mut delay = None;
    let mut mode = None;
    let mut max_hedges = None;
    let mut idempotent = None;
    let mut percentile = None;
    for Arg { key, value } in &list {
        match key.to_string().as_str() {
            "delay" => {
                let d = args::duration(value)?;
                if d.is_zero() {
                    return Err(syn::Error::new_spanned(
                        value,
                        "`delay` must be greater than zero (for every attempt at once, use \
                         `mode = parallel`)",
                    ));
                }
                delay = Some((d, key));
            }
            "mode" => {
                let (word, rest) = args::call(value)?;
                match word.to_string().as_str() {
                    "delayed" | "parallel" | "fallback" if rest.is_empty() => {
                        mode = Some((word.to_string(), key));
                    }
                    _ => {
                        return Err(syn::Error::new_spanned(
                            value,
                            "`mode` is `delayed` (a hedge each `delay`, the default), \
                             `parallel` (every attempt at once) or `fallback` (the next \
                             attempt once the previous one failed)",
                        ));
                    }
                }
            }
            "percentile" => {
                let q = args::float(value)?;
                if !(q > 0.0 && q <= 1.0) {
                    return Err(syn::Error::new_spanned(
                        value,
                        "`percentile` is a quantile above 0 and at most 1 (0.95 for the 95th)",
                    ));
                }
                percentile = Some((q, key));
            }
            "max_hedges" => {
                let n: u32 = args::int(value)?;
                if n > 64 {
                    return Err(syn::Error::new_spanned(value, "`max_hedges` is at most 64"));
                }
                max_hedges = Some(n);
            }
            "idempotent" => idempotent = Some((args::boolean(value)?, value)),
            _ => return Err(args::unknown("hedge", key, KEYS)),
        }
    }
    match idempotent {
        Some((true, _)) => {}
        Some((false, value)) => {
            return Err(syn::Error::new_spanned(
                value,
                "hedging runs the function more than once at the same time: only for \
                 idempotent operations (remove the attribute)",
            ));
        }
        None => {
            return Err(syn::Error::new(
                attr,
                "hedging runs the function more than once at the same time: declare it \
                 idempotent with `idempotent = true`",
            ));
        }
    }
    let ctor = match (mode.as_ref().map(|(m, k)| (m.as_str(), *k)), delay) {
        (None | Some(("delayed", _)), Some((d, _))) => {
            let d = dur(d);
            match percentile {
                Some((q, _)) => quote!(percentile(#q, #d)),
                None => quote!(delayed(#d)),
            }
        }
        (None | Some(("delayed", _)), None) => {
            return Err(syn::Error::new(
                attr,
                "`hedge` needs `delay = \"50ms\"` (a hedge each time it passes), or \
                 `mode = parallel` or `mode = fallback`",
            ));
        }
        (Some((_, _)), Some((_, key))) => {
            return Err(syn::Error::new_spanned(
                key,
                "`delay` is for `mode = delayed` only",
            ));
        }
        (Some(_), None) if percentile.is_some() => {
            let (_, key) = percentile.expect("checked");
            return Err(syn::Error::new_spanned(
                key,
                "`percentile` is for `mode = delayed` only (with `delay` as the initial wait)",
            ));
        }
        (Some(("parallel", _)), None) => quote!(parallel()),
        (Some(_), None) => quote!(fallback()),
    };
    let max = max_hedges.map(|n| quote!(.max_hedges(#n)));
    let mut stage = Stage::new(
        Phase::Retry,
        quote!(
            .hedge(::resilient::hedge::Hedge::#ctor #max .build()?)
            .idempotent(true)
        ),
    );
    stage.async_only.push(syn::Error::new(
        attr,
        "`hedge` is for `async` functions (attempts run side by side)",
    ));
    Ok(stage)
}
