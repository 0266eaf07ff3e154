//! `#[resilient::timeout(operation = "5s", request = "30s", circuit = "300s")]`

use std::time::Duration;

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote};
use syn::Expr;
use syn::spanned::Spanned;

use super::{Phase, Stage};
use crate::args::{self, Arg};
use crate::duration::tokens as dur;

const KEYS: &[&str] = &["operation", "request", "circuit"];

pub(super) fn parse(attr: Span, list: Vec<Arg>) -> syn::Result<Stage> {
    let mut levels: [Option<(Duration, &Expr)>; 3] = [None; 3];
    let mut calls = TokenStream::new();
    for Arg { key, value } in &list {
        let Some(i) = KEYS.iter().position(|k| key == k) else {
            return Err(args::unknown("timeout", key, KEYS));
        };
        let d = args::duration(value)?;
        if d.is_zero() {
            return Err(syn::Error::new_spanned(
                value,
                format!("the `{key}` timeout must be greater than zero"),
            ));
        }
        levels[i] = Some((d, value));
        let ctor = format_ident!("{}", KEYS[i]);
        let d = dur(d);
        calls.extend(quote!(.timeout(::resilient::Timeout::#ctor(#d))));
    }
    let [operation, request, circuit] = levels;
    if list.is_empty() {
        return Err(syn::Error::new(
            attr,
            "`timeout` needs at least one of: operation = \"5s\" (per attempt), \
             request = \"30s\" (whole call), circuit = \"300s\"",
        ));
    }
    if let (Some((op, e)), Some((req, _))) = (operation, request)
        && op > req
    {
        return Err(syn::Error::new_spanned(
            e,
            format!("the operation timeout ({op:?}) must not exceed the request timeout ({req:?})"),
        ));
    }
    if let (Some((inner, _)), Some((c, e))) = (request.or(operation), circuit)
        && inner > c
    {
        return Err(syn::Error::new_spanned(
            e,
            format!("the circuit timeout ({c:?}) must be at least the request timeout ({inner:?})"),
        ));
    }
    let mut stage = Stage::new(Phase::Timeouts, calls);
    let at = |level: Option<(Duration, &Expr)>| level.map(|(d, e)| (d, e.span()));
    stage.facts.operation = at(operation);
    stage.facts.request = at(request);
    stage.facts.circuit_timeout = at(circuit);
    Ok(stage)
}
