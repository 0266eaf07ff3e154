//! `#[resilient::fallback(value = expr)]`, `#[resilient::fallback(with = alternative)]`

use proc_macro2::Span;
use quote::{quote, quote_spanned};
use syn::Expr;
use syn::spanned::Spanned;

use super::{Phase, Stage};
use crate::args::{self, Arg};

const KEYS: &[&str] = &["with", "value", "handle"];

pub(super) fn parse(attr: Span, list: Vec<Arg>) -> syn::Result<Stage> {
    let mut steps = quote!();
    let mut handle = quote!();
    let mut has_value = false;
    let mut count = 0;
    for Arg { key, value } in &list {
        match key.to_string().as_str() {
            "with" => {
                if has_value {
                    return Err(syn::Error::new_spanned(
                        key,
                        "`with` after `value` would never run: a constant never fails",
                    ));
                }
                // one alternative, or several in order: `with = [a, b]`
                let alternatives: Vec<&Expr> = match value {
                    Expr::Array(a) => a.elems.iter().collect(),
                    other => vec![other],
                };
                for alt in alternatives {
                    match alt {
                        Expr::Path(_) | Expr::Closure(_) => {
                            let span = alt.span();
                            steps.extend(quote_spanned!(span=> .or_else(#alt)));
                            count += 1;
                        }
                        _ => {
                            return Err(syn::Error::new_spanned(
                                alt,
                                "`with` names an async function \
                                 `async fn(resilient::Error<E>) -> Result<T, resilient::Error<E>>` \
                                 (or a closure returning such a future), or a list of them \
                                 tried in order (`with = [secondary, cache]`)",
                            ));
                        }
                    }
                }
            }
            "value" => {
                if has_value {
                    return Err(syn::Error::new_spanned(key, "`value` is given twice"));
                }
                has_value = true;
                steps.extend(quote_spanned!(value.span()=> .or_value(#value)));
                count += 1;
            }
            "handle" => match value {
                Expr::Path(_) | Expr::Closure(_) => {
                    handle = quote_spanned!(value.span()=> .handle(#value));
                }
                _ => {
                    return Err(syn::Error::new_spanned(
                        value,
                        "`handle` names a function `fn(&resilient::Error<E>) -> bool` or is a \
                         closure: which failures the fallback answers",
                    ));
                }
            },
            _ => return Err(args::unknown("fallback", key, KEYS)),
        }
    }
    if count == 0 {
        return Err(syn::Error::new(
            attr,
            "`fallback` needs `with = alternative` and/or `value = expr`",
        ));
    }
    let mut stage = Stage::new(Phase::Timeouts, quote!());
    stage.fallback = Some(quote!(#handle #steps));
    stage.async_only.push(syn::Error::new(
        attr,
        "`fallback` is for `async` functions (its alternatives are awaited)",
    ));
    Ok(stage)
}
