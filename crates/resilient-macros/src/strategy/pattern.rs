//! `#[resilient::pattern("payments")]`: the function runs through the registry's pipeline
//! of that name, and references by name inside the other attributes
//! (`breaker = "payments"`, `limiter = "api"`, `bulkhead = "db"`).

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Expr, ExprLit, Lit};

use super::{Phase, Stage};
use crate::args::{self, Arg};

const KEYS: &[&str] = &["name", "classify", "registry"];

/// The key a positional first argument (`pattern("payments")`) is given.
pub(crate) const POSITIONAL: &str = "name";

/// Parses `pattern`'s arguments: a first argument without a key is its name.
pub(crate) fn parse_args(tokens: TokenStream) -> syn::Result<Vec<Arg>> {
    let mut iter = tokens.clone().into_iter();
    let keyed = matches!(
        (iter.next(), iter.next()),
        (Some(proc_macro2::TokenTree::Ident(_)), Some(proc_macro2::TokenTree::Punct(p)))
            if p.as_char() == '='
    );
    if keyed || tokens.is_empty() {
        return args::parse(tokens);
    }
    let key = syn::Ident::new(POSITIONAL, tokens.span());
    args::parse(quote!(#key = #tokens))
}

/// A name reference: a string literal (`"payments"`) or a path to a
/// `resilient::registry::Name` constant (`names::PAYMENTS`, declared with
/// `resilient::names!`: a misspelt path is a compile error).
pub(crate) enum NameRef<'a> {
    Literal(String, &'a Expr),
    Path(&'a Expr),
}

impl NameRef<'_> {
    /// The name as a `&str` expression.
    pub(crate) fn tokens(&self) -> TokenStream {
        match self {
            NameRef::Literal(s, e) => {
                let span = e.span();
                quote_spanned!(span=> #s)
            }
            NameRef::Path(p) => {
                let span = p.span();
                quote_spanned!(span=> ::resilient::registry::Name::as_str(#p))
            }
        }
    }
}

/// A string literal, or a path (a `Name` constant or, where the attribute takes one, a
/// `static` holding the strategy).
pub(crate) fn name_ref<'a>(value: &'a Expr, what: &str) -> syn::Result<NameRef<'a>> {
    match value {
        Expr::Lit(ExprLit {
            lit: Lit::Str(s), ..
        }) => {
            let name = s.value();
            if name.trim().is_empty() {
                return Err(syn::Error::new_spanned(value, "the name is empty"));
            }
            Ok(NameRef::Literal(name, value))
        }
        Expr::Path(p) if p.qself.is_none() => Ok(NameRef::Path(value)),
        _ => Err(syn::Error::new_spanned(
            value,
            format!(
                "`{what}` is a name in the registry (`\"payments\"`) or a path to a name \
                 declared with `resilient::names!`"
            ),
        )),
    }
}

/// The registry an attribute looks names up in: `registry = PATH` (a `static` holding a
/// `resilient::registry::Registry`), else the program's.
fn registry(path: Option<&Expr>) -> TokenStream {
    match path {
        Some(p) => quote_spanned!(p.span()=> (&*#p)),
        None => quote!(::resilient::registry()),
    }
}

pub(super) fn parse(attr: Span, list: Vec<Arg>) -> syn::Result<Stage> {
    let mut name = None;
    let mut classify: Option<&Expr> = None;
    let mut reg: Option<&Expr> = None;
    for Arg { key, value } in &list {
        match key.to_string().as_str() {
            "name" => name = Some(name_ref(value, "pattern")?),
            "classify" => match value {
                Expr::Path(p) if p.qself.is_none() => classify = Some(value),
                _ => {
                    return Err(syn::Error::new_spanned(
                        value,
                        "`classify` is the classifier type of the registry's pipeline, for \
                         one not built with `resilient::registry::builder()` (like \
                         `resilient::http::HttpPolicy`)",
                    ));
                }
            },
            "registry" => match value {
                Expr::Path(p) if p.qself.is_none() => reg = Some(value),
                _ => {
                    return Err(syn::Error::new_spanned(
                        value,
                        "`registry` names a `static` holding a `resilient::registry::Registry`",
                    ));
                }
            },
            _ => return Err(args::unknown("pattern", key, KEYS)),
        }
    }
    let Some(name) = name else {
        return Err(syn::Error::new(
            attr,
            "`pattern` needs the pipeline's name: `#[resilient::pattern(\"payments\")]`",
        ));
    };
    let name = name.tokens();
    let registry = registry(reg);
    let ty = match classify {
        Some(c) => quote!(#c),
        None => quote!(::resilient::registry::Classifier),
    };
    let mut stage = Stage::new(Phase::Timeouts, TokenStream::new());
    stage.pipeline = Some((
        ty.clone(),
        quote!(::core::result::Result::map_err(
            ::resilient::registry::Registry::pipeline_as::<#ty>(#registry, #name),
            ::resilient::ConfigError::from,
        )),
    ));
    Ok(stage)
}

/// The builder call adding the named strategy `kind` (`breaker`, `limiter`, `bulkhead`)
/// looked up in the program's registry, or a `static` of the user's (a path that is not a
/// `Name`). `method` is the builder's (`circuit_breaker`, `rate_limit`, `bulkhead`).
pub(crate) fn named(kind: &str, method: &str, value: &Expr) -> syn::Result<TokenStream> {
    let method = syn::Ident::new(method, value.span());
    let resolve = syn::Ident::new(&format!("resolve_{kind}"), value.span());
    let trait_name = match kind {
        "breaker" => "ResolveBreaker",
        "limiter" => "ResolveLimiter",
        _ => "ResolveBulkhead",
    };
    let resolver = syn::Ident::new(trait_name, value.span());
    Ok(match name_ref(value, kind)? {
        NameRef::Literal(s, e) => {
            let getter = syn::Ident::new(kind, e.span());
            quote_spanned!(e.span()=>
                .#method(&::resilient::registry::Registry::#getter(::resilient::registry(), #s)?)
            )
        }
        // a `Name` (looked up) or a `static` holding the strategy (used as it is)
        NameRef::Path(p) => quote_spanned!(p.span()=>
            .#method(&{
                use ::resilient::__private::#resolver as _;
                (&#p).#resolve()?
            })
        ),
    })
}

/// `pattern` brings the whole pipeline: only a `fallback` (which runs around it) may go
/// with it.
pub(crate) fn check_alone(stages: &[Stage]) -> syn::Result<()> {
    if stages.iter().any(|s| s.pipeline.is_some())
        && stages
            .iter()
            .any(|s| s.pipeline.is_none() && s.fallback.is_none())
    {
        return Err(syn::Error::new(
            Span::call_site(),
            "`#[resilient::pattern(..)]` runs the function through the registry's pipeline, \
             which brings its own timeouts, retry and guards: configure them in the registry \
             (or a configuration file), not with other attributes on the function (only \
             `#[resilient::fallback(..)]` goes with it)",
        ));
    }
    Ok(())
}
