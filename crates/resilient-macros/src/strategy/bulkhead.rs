//! `#[resilient::bulkhead(max_concurrent = 10, queue = 100, max_wait = "1s")]`

use proc_macro2::Span;
use quote::quote;

use super::{Phase, Stage};
use crate::args::{self, Arg};
use crate::duration::tokens as dur;

const KEYS: &[&str] = &["max_concurrent", "queue", "max_wait"];

pub(super) fn parse(attr: Span, list: Vec<Arg>) -> syn::Result<Stage> {
    let mut max_concurrent = None;
    let mut settings = quote!();
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
                settings.extend(quote!(.queue(#n)));
            }
            "max_wait" => {
                let d = dur(args::duration(value)?);
                settings.extend(quote!(.max_wait(#d)));
            }
            _ => return Err(args::unknown("bulkhead", key, KEYS)),
        }
    }
    let Some(n) = max_concurrent else {
        return Err(syn::Error::new(
            attr,
            "`bulkhead` needs `max_concurrent = N`",
        ));
    };
    Ok(Stage {
        phase: Phase::PerCall,
        calls: quote!(.guard(::resilient::Bulkhead::new(#n) #settings .build()?)),
    })
}
