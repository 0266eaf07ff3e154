//! The `key = value, ...` arguments every attribute takes, and typed readers for values.

use std::time::Duration;

use proc_macro2::TokenStream;
use syn::parse::{Parse, ParseStream, Parser};
use syn::punctuated::Punctuated;
use syn::{Expr, ExprLit, Ident, Lit, Token};

/// One `key = value`.
pub(crate) struct Arg {
    pub(crate) key: Ident,
    pub(crate) value: Expr,
}

impl Parse for Arg {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let key: Ident = input.parse()?;
        input.parse::<Token![=]>()?;
        let value: Expr = input.parse()?;
        Ok(Self { key, value })
    }
}

/// Parses an attribute's arguments; a key given twice is an error.
pub(crate) fn parse(tokens: TokenStream) -> syn::Result<Vec<Arg>> {
    let args: Vec<Arg> = Punctuated::<Arg, Token![,]>::parse_terminated
        .parse2(tokens)?
        .into_iter()
        .collect();
    for (i, arg) in args.iter().enumerate() {
        if args[..i].iter().any(|a| a.key == arg.key) {
            return Err(syn::Error::new_spanned(
                &arg.key,
                format!("`{}` is given twice", arg.key),
            ));
        }
    }
    Ok(args)
}

/// The error for a key the strategy does not know.
pub(crate) fn unknown(kind: &str, key: &Ident, known: &[&str]) -> syn::Error {
    syn::Error::new_spanned(
        key,
        format!(
            "unknown key `{key}` for `{kind}`; expected one of: {}",
            known.join(", ")
        ),
    )
}

fn lit(e: &Expr) -> Option<&Lit> {
    match e {
        Expr::Lit(ExprLit { lit, .. }) => Some(lit),
        Expr::Group(g) => lit(&g.expr),
        Expr::Paren(p) => lit(&p.expr),
        _ => None,
    }
}

/// A duration string literal such as `"100ms"`.
pub(crate) fn duration(e: &Expr) -> syn::Result<Duration> {
    match lit(e) {
        Some(Lit::Str(s)) => crate::duration::parse(&s.value()).map_err(|why| {
            syn::Error::new_spanned(
                s,
                format!(
                    "invalid duration {:?}: {why}; write a number and a unit, like \"250us\", \
                     \"100ms\", \"5s\", \"2m\" or \"1h\"",
                    s.value()
                ),
            )
        }),
        _ => Err(syn::Error::new_spanned(
            e,
            "expected a duration string such as \"100ms\", \"5s\" or \"2m\"",
        )),
    }
}

/// A non-negative integer literal.
pub(crate) fn int<N>(e: &Expr) -> syn::Result<N>
where
    N: std::str::FromStr,
    N::Err: std::fmt::Display,
{
    match lit(e) {
        Some(Lit::Int(i)) => i.base10_parse(),
        _ => Err(syn::Error::new_spanned(e, "expected an integer literal")),
    }
}

/// A number literal (integer or float).
pub(crate) fn float(e: &Expr) -> syn::Result<f64> {
    match lit(e) {
        Some(Lit::Float(f)) => f.base10_parse(),
        Some(Lit::Int(i)) => i.base10_parse(),
        _ => Err(syn::Error::new_spanned(e, "expected a number literal")),
    }
}

/// A bare word (`full`) or a call of one (`exponential("100ms")`): the word and the call's
/// arguments.
pub(crate) fn call(e: &Expr) -> syn::Result<(Ident, Vec<Expr>)> {
    let word = |e: &Expr| match e {
        Expr::Path(p) if p.qself.is_none() => p.path.get_ident().cloned(),
        _ => None,
    };
    match e {
        Expr::Call(c) => match word(&c.func) {
            Some(w) => Ok((w, c.args.iter().cloned().collect())),
            None => Err(syn::Error::new_spanned(&c.func, "expected a name")),
        },
        _ => match word(e) {
            Some(w) => Ok((w, Vec::new())),
            None => Err(syn::Error::new_spanned(e, "expected a name or a call")),
        },
    }
}

/// Checks a call got exactly `n` arguments.
pub(crate) fn arity<'a>(
    word: &Ident,
    args: &'a [Expr],
    n: usize,
    usage: &str,
) -> syn::Result<&'a [Expr]> {
    if args.len() == n {
        Ok(args)
    } else {
        Err(syn::Error::new_spanned(
            word,
            format!("`{word}` takes {n} argument(s): {usage}"),
        ))
    }
}

/// A `true` or `false` literal.
pub(crate) fn boolean(e: &Expr) -> syn::Result<bool> {
    match lit(e) {
        Some(Lit::Bool(b)) => Ok(b.value),
        _ => Err(syn::Error::new_spanned(e, "expected `true` or `false`")),
    }
}
