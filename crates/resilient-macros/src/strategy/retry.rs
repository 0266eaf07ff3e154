//! `#[resilient::retry(attempts = 3, backoff = exponential("100ms"), jitter = full, ..)]`

use proc_macro2::{Literal, Span, TokenStream};
use quote::quote;

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
];
const BACKOFFS: &str =
    "exponential(\"100ms\"), constant(\"1s\"), linear(\"100ms\", \"50ms\") or immediate";
const JITTERS: &str = "none, full, equal, decorrelated or proportional(0.2)";

pub(super) fn parse(_attr: Span, list: Vec<Arg>) -> syn::Result<Stage> {
    let mut backoff = quote!(::resilient::Retry::exponential(
        ::core::time::Duration::from_millis(100)
    ));
    let mut exponential = true;
    let mut settings = TokenStream::new();
    let mut factor = None;
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
                settings.extend(quote!(.attempts(#n)));
            }
            "backoff" => {
                let (word, a) = args::call(value)?;
                exponential = false;
                backoff = match word.to_string().as_str() {
                    "exponential" => {
                        exponential = true;
                        let a = args::arity(&word, &a, 1, "exponential(\"100ms\")")?;
                        let initial = dur(args::duration(&a[0])?);
                        quote!(::resilient::Retry::exponential(#initial))
                    }
                    "constant" => {
                        let a = args::arity(&word, &a, 1, "constant(\"1s\")")?;
                        let d = dur(args::duration(&a[0])?);
                        quote!(::resilient::Retry::constant(#d))
                    }
                    "linear" => {
                        let a = args::arity(
                            &word,
                            &a,
                            2,
                            "linear(\"100ms\", \"50ms\") (initial, step)",
                        )?;
                        let initial = dur(args::duration(&a[0])?);
                        let step = dur(args::duration(&a[1])?);
                        quote!(::resilient::Retry::linear(#initial, #step))
                    }
                    "immediate" => {
                        args::arity(&word, &a, 0, "immediate")?;
                        quote!(::resilient::Retry::immediate())
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
                let j = match word.to_string().as_str() {
                    "none" => quote!(None),
                    "full" => quote!(Full),
                    "equal" => quote!(Equal),
                    "decorrelated" => quote!(Decorrelated),
                    "proportional" => {
                        let a = args::arity(&word, &a, 1, "proportional(0.2)")?;
                        let p = args::float(&a[0])?;
                        if !(0.0..=1.0).contains(&p) {
                            return Err(syn::Error::new_spanned(
                                &a[0],
                                "proportional jitter must be within 0..=1",
                            ));
                        }
                        let p = Literal::f64_suffixed(p);
                        quote!(Proportional(#p))
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
                settings.extend(quote!(.jitter(::resilient::Jitter::#j)));
            }
            "max_delay" => {
                let d = dur(args::duration(value)?);
                settings.extend(quote!(.max_delay(#d)));
            }
            "max_elapsed" => {
                let d = args::duration(value)?;
                if d.is_zero() {
                    return Err(syn::Error::new_spanned(
                        value,
                        "`max_elapsed` must be greater than zero",
                    ));
                }
                let d = dur(d);
                settings.extend(quote!(.max_elapsed(#d)));
            }
            _ => return Err(args::unknown("retry", key, KEYS)),
        }
    }
    if let Some((key, f)) = factor {
        if !exponential {
            return Err(syn::Error::new_spanned(
                key,
                "`factor` only applies to `backoff = exponential(..)`",
            ));
        }
        let f = Literal::f64_suffixed(f);
        settings.extend(quote!(.factor(#f)));
    }
    Ok(Stage {
        phase: Phase::Retry,
        calls: quote!(.retry(#backoff #settings)),
    })
}
