//! Rewriting the annotated function: collect every strategy attribute on it, build one
//! pipeline from them, and run the body through it.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{
    Attribute, FnArg, GenericArgument, ItemFn, Meta, Pat, PatIdent, PathArguments, ReturnType,
    Type, parse_quote,
};

use crate::args;
use crate::strategy::{self, Kind, Stage};

/// The arguments an outer attribute leaves on the attributes it took over. They stay on
/// the item (rather than being removed) so that they still expand, as no-ops, and an
/// imported `use resilient::timeout;` counts as used.
const MERGED: &str = "__resilient_merged_into_outer_attribute";

/// Expands `#[resilient::<kind>(attr)]` on `item`.
pub(crate) fn expand(kind: &'static str, attr: TokenStream, item: TokenStream) -> TokenStream {
    if is_merged(&attr) {
        return item;
    }
    let mut func: ItemFn = match syn::parse2(item.clone()) {
        Ok(f) => f,
        Err(_) => {
            let e = syn::Error::new(
                Span::call_site(),
                format!(
                    "`#[resilient::{kind}]` applies to functions and methods with a body \
                     that return a `Result`"
                ),
            )
            .into_compile_error();
            return quote!(#e #item);
        }
    };
    let own = strategy::find(kind).expect("every entry point has a row in KINDS");
    let mut errors: Option<syn::Error> = None;
    let mut add = |e: syn::Error| match &mut errors {
        Some(all) => all.combine(e),
        None => errors = Some(e),
    };

    // This attribute, then the other strategy attributes still on the item (the ones
    // written below it), which it takes over so that all of them become one pipeline.
    let mut found: Vec<(&'static Kind, Span, syn::Result<Vec<args::Arg>>)> =
        vec![(own, Span::call_site(), args::parse(attr))];
    for a in &mut func.attrs {
        if let Some(k) = ours(a)
            && !matches!(&a.meta, Meta::List(l) if is_merged(&l.tokens))
        {
            let name = &a.path().segments.last().expect("checked by `ours`").ident;
            found.push((k, name.span(), attr_args(a)));
            let path = a.path().clone();
            let merged = format_ident!("{}", MERGED);
            *a = parse_quote!(#[#path(#merged)]);
        }
    }

    let mut stages: Vec<Stage> = Vec::new();
    let mut seen: Vec<&'static str> = Vec::new();
    for (k, span, parsed) in found {
        if seen.contains(&k.name) {
            add(syn::Error::new(
                span,
                format!(
                    "`{0}` is given twice; a function has one pipeline with one `{0}`",
                    k.name
                ),
            ));
            continue;
        }
        seen.push(k.name);
        match parsed.and_then(|a| (k.parse)(span, a)) {
            Ok(stage) => stages.push(stage),
            Err(e) => add(e),
        }
    }
    let rewritten = rewrite(&func, &stages);
    match (errors, rewritten) {
        (None, Ok(tokens)) => tokens,
        (errors, rewritten) => {
            let mut all = errors;
            if let Err(e) = rewritten {
                match &mut all {
                    Some(a) => a.combine(e),
                    None => all = Some(e),
                }
            }
            // Emit the function unchanged (our attributes neutralised) so the only errors
            // the user sees are ours.
            let e = all.map(|e| e.into_compile_error());
            quote!(#e #func)
        }
    }
}

fn is_merged(args: &TokenStream) -> bool {
    matches!(args.clone().into_iter().next(), Some(proc_macro2::TokenTree::Ident(i)) if i == MERGED)
}

/// Whether `attr` is one of ours: `#[resilient::NAME(..)]`, `#[::resilient::NAME(..)]` or
/// an imported `#[NAME(..)]` with NAME a known strategy.
fn ours(attr: &Attribute) -> Option<&'static Kind> {
    let segs = &attr.path().segments;
    let name = match segs.len() {
        1 if attr.path().leading_colon.is_none() => &segs[0].ident,
        2 if segs[0].ident == "resilient" => &segs[1].ident,
        _ => return None,
    };
    strategy::find(&name.to_string())
}

fn attr_args(attr: &Attribute) -> syn::Result<Vec<args::Arg>> {
    match &attr.meta {
        Meta::Path(_) => Ok(Vec::new()),
        Meta::List(l) => args::parse(l.tokens.clone()),
        Meta::NameValue(nv) => Err(syn::Error::new_spanned(
            nv,
            "expected `#[resilient::name(key = value, ..)]`",
        )),
    }
}

/// The return type callers see: `Result<T, E>` becomes `Result<T, ::resilient::Error<E>>`;
/// any other spelling (an alias such as `io::Result<T>`) goes through a type-level mapping
/// that accepts only `Result`s.
fn resilient_return(ty: &Type) -> Type {
    if let Type::Path(p) = ty
        && p.qself.is_none()
        && let Some(last) = p.path.segments.last()
        && last.ident == "Result"
        && let PathArguments::AngleBracketed(a) = &last.arguments
        && a.args.len() == 2
        && a.args.iter().all(|g| matches!(g, GenericArgument::Type(_)))
    {
        let mut out = p.clone();
        let last = out.path.segments.last_mut().expect("checked above");
        if let PathArguments::AngleBracketed(a) = &mut last.arguments
            && let Some(GenericArgument::Type(e)) = a.args.iter_mut().nth(1)
        {
            *e = parse_quote!(::resilient::Error<#e>);
        }
        return Type::Path(out);
    }
    let tokens = quote_spanned!(ty.span()=> ::resilient::__private::Resilient<#ty>);
    syn::parse2(tokens).expect("a valid type")
}

/// The first `impl` keyword in `tokens`, looking inside groups.
fn find_impl(tokens: TokenStream) -> Option<proc_macro2::Ident> {
    tokens.into_iter().find_map(|t| match t {
        proc_macro2::TokenTree::Ident(i) if i == "impl" => Some(i),
        proc_macro2::TokenTree::Group(g) => find_impl(g.stream()),
        _ => None,
    })
}

fn rewrite(func: &ItemFn, stages: &[Stage]) -> syn::Result<TokenStream> {
    let sig = &func.sig;
    if let Some(c) = &sig.constness {
        return Err(syn::Error::new_spanned(
            c,
            "resilience attributes cannot apply to a `const fn`",
        ));
    }
    if let Some(v) = &sig.variadic {
        return Err(syn::Error::new_spanned(
            v,
            "resilience attributes cannot apply to a variadic function",
        ));
    }
    let ReturnType::Type(arrow, ret) = &sig.output else {
        return Err(syn::Error::new_spanned(
            &sig.ident,
            "a function with resilience attributes must return a `Result<T, E>`; \
             callers then get `Result<T, resilient::Error<E>>`",
        ));
    };

    if let Some(i) = find_impl(quote!(#ret)) {
        return Err(syn::Error::new_spanned(
            i,
            "`impl Trait` in the return type is not supported with resilience attributes; \
             name the type (or box it)",
        ));
    }

    // Each attempt runs the body on fresh clones of the arguments.
    let mut new_sig = sig.clone();
    new_sig.output = ReturnType::Type(*arrow, Box::new(resilient_return(ret)));
    let mut rebind = TokenStream::new();
    for (i, input) in new_sig.inputs.iter_mut().enumerate() {
        match input {
            FnArg::Receiver(r) => {
                let shared_ref = matches!(&*r.ty, Type::Reference(t) if t.mutability.is_none());
                if !shared_ref {
                    return Err(syn::Error::new_spanned(
                        &*r,
                        "resilience attributes re-run the body once per attempt, so methods \
                         must take `&self`; `self`, `mut self` and `&mut self` are not \
                         supported (use interior mutability, or clone into a free function)",
                    ));
                }
            }
            FnArg::Typed(t) => match &mut *t.pat {
                Pat::Wild(_) => {}
                Pat::Ident(PatIdent {
                    by_ref: Some(r), ..
                }) => {
                    return Err(syn::Error::new_spanned(
                        *r,
                        "`ref` bindings are not supported in arguments of a function with \
                         resilience attributes",
                    ));
                }
                Pat::Ident(
                    p @ PatIdent {
                        subpat: None,
                        by_ref: None,
                        ..
                    },
                ) => {
                    let name = &p.ident;
                    let mutability = p.mutability.take();
                    rebind.extend(quote! {
                        let #mutability #name = ::core::clone::Clone::clone(&#name);
                    });
                }
                pat => {
                    // Destructuring patterns: take the argument whole, destructure a clone.
                    let name = format_ident!("__resilient_arg{}", i);
                    let original = std::mem::replace(pat, parse_quote!(#name));
                    rebind.extend(quote! {
                        let #original = ::core::clone::Clone::clone(&#name);
                    });
                }
            },
        }
    }

    let mut ordered: Vec<&Stage> = stages.iter().collect();
    ordered.sort_by_key(|s| s.phase);
    let calls = ordered.iter().map(|s| &s.calls);
    let name = sig.ident.to_string();
    let body = &func.block;
    let attempt = quote! {
        #[allow(unreachable_code, clippy::let_and_return)]
        let __resilient_ret: #ret = #body;
        #[allow(unreachable_code, clippy::needless_return)]
        return __resilient_ret;
    };
    let run = if sig.asyncness.is_some() {
        quote! {
            ::resilient::Pipeline::execute(&*__RESILIENT_PIPELINE, move || {
                #rebind
                async move { #attempt }
            })
            .await
        }
    } else {
        quote! {
            ::resilient::Pipeline::execute_blocking(&*__RESILIENT_PIPELINE, move || {
                #rebind
                #attempt
            })
        }
    };
    let attrs = &func.attrs;
    let vis = &func.vis;
    Ok(quote! {
        #(#attrs)*
        #vis #new_sig {
            static __RESILIENT_PIPELINE: ::std::sync::LazyLock<::resilient::Pipeline> =
                ::std::sync::LazyLock::new(|| {
                    const NAME: &str = ::core::concat!(::core::module_path!(), "::", #name);
                    let build = || -> ::core::result::Result<
                        ::resilient::Pipeline,
                        ::resilient::ConfigError,
                    > {
                        ::resilient::PipelineBuilder::build(
                            ::resilient::Pipeline::builder().name(NAME) #(#calls)*,
                        )
                    };
                    match build() {
                        ::core::result::Result::Ok(pipeline) => pipeline,
                        ::core::result::Result::Err(e) => ::core::panic!(
                            "invalid resilience configuration on `{}`: {}", NAME, e
                        ),
                    }
                });
            #run
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_of(kind: &'static str, attr: TokenStream, item: TokenStream) -> String {
        let out = expand(kind, attr, item).to_string();
        assert!(
            out.contains("compile_error"),
            "expected an error, got {out}"
        );
        out
    }

    fn ok(kind: &'static str, attr: TokenStream, item: TokenStream) -> String {
        let out = expand(kind, attr, item).to_string();
        assert!(!out.contains("compile_error"), "unexpected error: {out}");
        out
    }

    fn plain() -> TokenStream {
        quote!(
            fn f() -> Result<(), ()> {
                Ok(())
            }
        )
    }

    #[test]
    fn argument_errors() {
        let cases: &[(&str, TokenStream, &str)] = &[
            ("retry", quote!(attempts = 2, attempts = 3), "given twice"),
            ("retry", quote!(attempts = -1), "expected an integer"),
            ("retry", quote!(attempts = "3"), "expected an integer"),
            (
                "retry",
                quote!(backoff = fibonacci("1s")),
                "unknown backoff",
            ),
            (
                "retry",
                quote!(backoff = constant("1s", "2s")),
                "takes 1 argument",
            ),
            ("retry", quote!(backoff = linear("1s")), "takes 2 argument"),
            ("retry", quote!(backoff = "1s"), "expected a name or a call"),
            (
                "retry",
                quote!(backoff = constant(100)),
                "expected a duration",
            ),
            ("retry", quote!(factor = 0.5), "finite number >= 1"),
            (
                "retry",
                quote!(backoff = constant("1s"), factor = 2.0),
                "only applies",
            ),
            ("retry", quote!(jitter = proportional(1.5)), "within 0..=1"),
            ("retry", quote!(jitter = full(1)), "takes no arguments"),
            ("retry", quote!(jitter = random), "unknown jitter"),
            ("retry", quote!(max_elapsed = "0s"), "greater than zero"),
            (
                "retry",
                quote!(max_delay = "10 fortnights"),
                "invalid duration",
            ),
            ("retry", quote!(attempts), "expected `=`"),
            ("timeout", quote!(), "at least one"),
            ("timeout", quote!(request = "0ms"), "greater than zero"),
            (
                "timeout",
                quote!(request = "10s", circuit = "5s"),
                "circuit timeout",
            ),
            (
                "timeout",
                quote!(operation = "10s", circuit = "5s"),
                "circuit timeout",
            ),
            ("timeout", quote!(deadline = "5s"), "unknown key `deadline`"),
            ("bulkhead", quote!(queue = 3), "needs `max_concurrent"),
            ("bulkhead", quote!(max_concurrent = 0), "at least 1"),
            ("circuit", quote!(window = 20), "needs `failure_rate"),
            ("circuit", quote!(failure_rate = 1.5), "fraction in (0, 1]"),
            (
                "circuit",
                quote!(failure_rate = 0.5, consecutive_failures = 3),
                "choose one",
            ),
            ("circuit", quote!(consecutive_failures = 0), "at least 1"),
            (
                "circuit",
                quote!(failure_rate = 0.5, window = "soon"),
                "number of calls",
            ),
            (
                "circuit",
                quote!(failure_rate = 0.5, per = request),
                "`per` is",
            ),
            (
                "circuit",
                quote!(failure_rate = 0.5, slow_rate = 0.5),
                "needs `slow_call",
            ),
            ("rate_limit", quote!(per = "1s"), "needs `rate"),
            ("rate_limit", quote!(rate = 0), "`rate` must be at least 1"),
            ("rate_limit", quote!(rate = "10"), "expected an integer"),
            (
                "rate_limit",
                quote!(rate = 10, per = "0s"),
                "greater than zero",
            ),
            (
                "rate_limit",
                quote!(rate = 10, per = "1 sec"),
                "invalid duration",
            ),
            (
                "rate_limit",
                quote!(rate = 10, burst = 0),
                "`burst` must be at least 1",
            ),
            (
                "rate_limit",
                quote!(rate = 10, algorithm = leaky_bucket),
                "unknown algorithm `leaky_bucket`",
            ),
            (
                "rate_limit",
                quote!(rate = 10, algorithm = gcra(1)),
                "takes a bare name",
            ),
            (
                "rate_limit",
                quote!(rate = 10, algorithm = fixed_window, burst = 5),
                "only applies to `gcra` and `token_bucket`",
            ),
            (
                "rate_limit",
                quote!(rate = 10, max_wait = 5),
                "expected a duration",
            ),
            (
                "rate_limit",
                quote!(rate = 10, scope = request),
                "`scope` is",
            ),
            (
                "rate_limit",
                quote!(rate = 10, limit = 3),
                "unknown key `limit`",
            ),
        ];
        for (kind, attr, message) in cases {
            let out = error_of(kind, attr.clone(), plain());
            assert!(out.contains(message), "{kind}({attr}): {out}");
        }
    }

    #[test]
    fn function_errors() {
        let cases: &[(TokenStream, &str)] = &[
            (
                quote!(
                    const fn f() -> Result<(), ()> {
                        Ok(())
                    }
                ),
                "const fn",
            ),
            (
                quote!(
                    fn f() {}
                ),
                "must return a `Result",
            ),
            (
                quote!(
                    fn f(self) -> Result<(), ()> {
                        Ok(())
                    }
                ),
                "must take `&self`",
            ),
            (
                quote!(
                    fn f(mut self) -> Result<(), ()> {
                        Ok(())
                    }
                ),
                "must take `&self`",
            ),
            (
                quote!(
                    fn f(self: Box<Self>) -> Result<(), ()> {
                        Ok(())
                    }
                ),
                "must take `&self`",
            ),
            (
                quote!(
                    fn f(ref x: u8) -> Result<(), ()> {
                        Ok(())
                    }
                ),
                "`ref` bindings",
            ),
            (
                quote!(
                    struct S;
                ),
                "applies to functions",
            ),
        ];
        for (item, message) in cases {
            let out = error_of("retry", quote!(), item.clone());
            assert!(out.contains(message), "{item}: {out}");
        }
    }

    #[test]
    fn stacked_attributes_merge_and_stay_as_no_ops() {
        let item = quote!(
            #[doc = "kept"]
            #[resilient::timeout(request = "1s")]
            #[bulkhead(max_concurrent = 2)]
            async fn f(x: u8) -> Result<u8, ()> {
                Ok(x)
            }
        );
        let out = ok("retry", quote!(attempts = 2), item);
        // one pipeline: timeout, then the per-call bulkhead, then retry
        let t = out.find(". timeout (").expect("timeout");
        let b = out.find(". guard (").expect("bulkhead");
        let r = out.find(". retry (").expect("retry");
        assert!(t < b && b < r, "{out}");
        assert_eq!(out.matches("LazyLock :: new").count(), 1);
        assert_eq!(out.matches(MERGED).count(), 2);
        assert!(out.contains("\"kept\""));
        // the merged attributes expand to the item unchanged
        let merged = format_ident!("{}", MERGED);
        assert_eq!(
            expand("timeout", quote!(#merged), plain()).to_string(),
            plain().to_string()
        );
    }

    #[test]
    fn return_types() {
        let rewritten = |ret: TokenStream| {
            let ty: Type = syn::parse2(ret).unwrap();
            let out = resilient_return(&ty);
            quote!(#out).to_string().replace(' ', "")
        };
        assert_eq!(
            rewritten(quote!(std::result::Result<u8, MyError>)),
            "std::result::Result<u8,::resilient::Error<MyError>>"
        );
        assert_eq!(
            rewritten(quote!(io::Result<u8>)),
            "::resilient::__private::Resilient<io::Result<u8>>"
        );
    }
}
