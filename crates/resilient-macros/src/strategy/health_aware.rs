//! `#[resilient::health_aware(check_interval = "30s", probe = health_probe)]`

use proc_macro2::Span;
use quote::{quote, quote_spanned};
use syn::Expr;
use syn::spanned::Spanned;

use super::{Phase, Stage};
use crate::args::{self, Arg};
use crate::duration::tokens as dur;

const KEYS: &[&str] = &[
    "check_interval",
    "probe",
    "timeout",
    "unhealthy_after",
    "healthy_after",
    "reject_when_degraded",
];

pub(super) fn parse(attr: Span, list: Vec<Arg>) -> syn::Result<Stage> {
    let mut interval = None;
    let mut probe = None;
    let mut settings = quote!();
    for Arg { key, value } in &list {
        match key.to_string().as_str() {
            "check_interval" | "timeout" => {
                let d = args::duration(value)?;
                if d.is_zero() {
                    return Err(syn::Error::new_spanned(
                        value,
                        format!("`{key}` must be greater than zero"),
                    ));
                }
                let d = dur(d);
                if key == "timeout" {
                    settings.extend(quote!(.timeout(#d)));
                } else {
                    interval = Some(d);
                }
            }
            "probe" => match value {
                Expr::Path(_) | Expr::Closure(_) => {
                    probe = Some(quote_spanned!(value.span()=> #value));
                }
                _ => {
                    return Err(syn::Error::new_spanned(
                        value,
                        "`probe` names an async function (or is a closure returning a \
                         future) whose output is `bool` (`true` = healthy) or a `Result` \
                         (`Ok` = healthy)",
                    ));
                }
            },
            "unhealthy_after" | "healthy_after" => {
                let n: u32 = args::int(value)?;
                if n == 0 {
                    return Err(syn::Error::new_spanned(
                        value,
                        format!("`{key}` must be at least 1"),
                    ));
                }
                let method = syn::Ident::new(&key.to_string(), key.span());
                settings.extend(quote!(.#method(#n)));
            }
            "reject_when_degraded" => {
                let yes = args::boolean(value)?;
                settings.extend(quote!(.reject_when_degraded(#yes)));
            }
            _ => return Err(args::unknown("health_aware", key, KEYS)),
        }
    }
    let (Some(interval), Some(probe)) = (interval, probe) else {
        return Err(syn::Error::new(
            attr,
            "`health_aware` needs `check_interval = \"30s\"` and `probe = async_fn` (the \
             health check run in the background)",
        ));
    };
    let mut stage = Stage::new(
        Phase::PerCall,
        quote!(.health_aware(
            ::resilient::health::HealthAware::builder(#interval, #probe)
                .name(__RESILIENT_NAME)
                #settings
                .build()?
        )),
    );
    stage.builds_on_runtime = true;
    stage.async_only.push(syn::Error::new(
        attr,
        "`health_aware` is for `async` functions (its check runs on the tokio runtime)",
    ));
    Ok(stage)
}
