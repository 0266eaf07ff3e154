//! `#[resilient::bulkhead(max_concurrent = 10, queue = 100, max_wait = "1s")]`

use proc_macro2::Span;
use quote::quote;

use super::{Phase, Stage};
use crate::args::{self, Arg};
use crate::duration::tokens as dur;

const KEYS: &[&str] = &[
    "max_concurrent",
    "queue",
    "max_wait",
    "adaptive",
    "bulkhead",
];
const ADAPTIVE: &str = "aimd(initial, min), gradient2(initial, min) or vegas(initial, min) \
                        (the limit moves between `min` and `max_concurrent`)";

pub(super) fn parse(attr: Span, list: Vec<Arg>) -> syn::Result<Stage> {
    if let Some(named) = list.iter().find(|a| a.key == "bulkhead") {
        // `bulkhead = "db"`: one from the registry (or a `static` of the user's), alone.
        if let Some(other) = list.iter().find(|a| a.key != "bulkhead") {
            return Err(syn::Error::new_spanned(
                &other.key,
                format!(
                    "`{}` configures a bulkhead the attribute builds, but `bulkhead = ..` \
                     brings one already built: configure that one instead",
                    other.key
                ),
            ));
        }
        let calls = super::pattern::named("bulkhead", "bulkhead", &named.value)?;
        return Ok(Stage::new(Phase::PerCall, calls));
    }
    let mut max_concurrent = None;
    let mut settings = quote!();
    let mut queue = None;
    let mut max_wait = None;
    let mut adaptive = None;
    for Arg { key, value } in &list {
        match key.to_string().as_str() {
            "max_concurrent" => {
                let n: usize = args::int(value)?;
                if n == 0 {
                    return Err(syn::Error::new_spanned(
                        value,
                        "`max_concurrent` must be at least 1",
                    ));
                }
                max_concurrent = Some(n);
            }
            "queue" => {
                let n: usize = args::int(value)?;
                queue = Some((n, key));
                settings.extend(quote!(.queue(#n)));
            }
            "max_wait" => {
                let d = dur(args::duration(value)?);
                max_wait = Some(key);
                settings.extend(quote!(.max_wait(#d)));
            }
            "adaptive" => {
                let (word, a) = args::call(value)?;
                let ty = match word.to_string().as_str() {
                    "aimd" => quote!(Aimd),
                    "gradient2" => quote!(Gradient2),
                    "vegas" => quote!(Vegas),
                    _ => {
                        return Err(syn::Error::new_spanned(
                            &word,
                            format!("unknown adaptive limit `{word}`; expected {ADAPTIVE}"),
                        ));
                    }
                };
                let a = args::arity(&word, &a, 2, ADAPTIVE)?;
                let initial: usize = args::int(&a[0])?;
                let min: usize = args::int(&a[1])?;
                if min == 0 || initial < min {
                    return Err(syn::Error::new_spanned(
                        value,
                        "an adaptive limit needs `1 <= min <= initial`",
                    ));
                }
                adaptive = Some((ty, initial, min, value));
            }
            _ => return Err(args::unknown("bulkhead", key, KEYS)),
        }
    }
    let Some(n) = max_concurrent else {
        return Err(syn::Error::new(
            attr,
            "`bulkhead` needs `max_concurrent = N`, or `bulkhead = \"name\"` for a bulkhead \
             in the registry",
        ));
    };
    if let Some((ty, initial, min, value)) = adaptive {
        if initial > n {
            return Err(syn::Error::new_spanned(
                value,
                format!("the initial limit ({initial}) is above `max_concurrent` ({n})"),
            ));
        }
        settings.extend(quote!(.adaptive(::resilient::bulkhead::#ty::new(#initial, #min, #n))));
    }
    if let Some(key) = max_wait
        && queue.is_none_or(|(n, _)| n == 0)
    {
        return Err(syn::Error::new_spanned(
            key,
            "`max_wait` bounds the wait of queued callers, and without `queue = N` (N >= 1) \
             no caller queues: a call that finds no free slot is rejected at once",
        ));
    }
    let mut stage = Stage::new(
        Phase::PerCall,
        quote!(.bulkhead(::resilient::Bulkhead::builder(#n) #settings .build()?)),
    );
    let never_waits = "plain (blocking) functions never wait for a bulkhead slot: they are \
                       rejected at once when none is free; remove it, or make the function \
                       `async`";
    if let Some((n, key)) = queue
        && n > 0
    {
        stage.async_only.push(syn::Error::new_spanned(
            key,
            format!("`queue` does nothing here: {never_waits}"),
        ));
    }
    if let Some(key) = max_wait {
        stage.async_only.push(syn::Error::new_spanned(
            key,
            format!("`max_wait` does nothing here: {never_waits}"),
        ));
    }
    Ok(stage)
}
