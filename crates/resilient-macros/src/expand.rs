//! Rewriting the annotated function: collect every strategy attribute on it, build one
//! pipeline from them, and run the body through it.

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, format_ident, quote, quote_spanned};
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

/// The name of the generated pipeline `static`. A rewritten function's body mentions it,
/// which is how an attribute of ours that expands after another one (because the outer one
/// did not recognise it) notices.
const PIPELINE: &str = "__RESILIENT_PIPELINE";

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
    if contains_ident(func.block.to_token_stream(), PIPELINE) {
        // Another of our attributes rewrote this function already: this one was written
        // below it under a name it could not recognise as ours.
        let e = syn::Error::new(
            Span::call_site(),
            format!(
                "this `{kind}` attribute is stacked below another resilience attribute, which \
                 only takes over attributes spelled `#[resilient::NAME(..)]` (a bare or \
                 renamed name could be another crate's attribute); write it as \
                 `#[resilient::{kind}(..)]` so that both become one pipeline"
            ),
        )
        .into_compile_error();
        return quote!(#e #func);
    }
    let mut errors: Option<syn::Error> = None;
    let mut add = |e: syn::Error| match &mut errors {
        Some(all) => all.combine(e),
        None => errors = Some(e),
    };

    // This attribute, then the other strategy attributes still on the item (the ones
    // written below it), which it takes over so that all of them become one pipeline.
    // Only `resilient::`-qualified ones: a bare `#[timeout]` may be another crate's.
    let mut found: Vec<(&'static Kind, Span, syn::Result<Vec<args::Arg>>)> =
        vec![(own, Span::call_site(), kind_args(own, attr))];
    for a in &mut func.attrs {
        if let Some(k) = ours(a)
            && !matches!(&a.meta, Meta::List(l) if is_merged(&l.tokens))
        {
            let name = &a.path().segments.last().expect("checked by `ours`").ident;
            found.push((k, name.span(), attr_args(k, a)));
            let path = a.path().clone();
            let merged = format_ident!("{}", MERGED);
            *a = parse_quote!(#[#path(#merged)]);
        }
    }

    let mut stages: Vec<Stage> = Vec::new();
    let mut seen: Vec<&'static str> = Vec::new();
    let mut failed = false;
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
            Ok(mut stage) => {
                stage.order = k.order;
                stages.push(stage);
            }
            Err(e) => {
                failed = true;
                add(e);
            }
        }
    }
    if !failed && let Err(e) = strategy::check(&stages) {
        add(e);
    }
    if func.sig.asyncness.is_none() {
        for s in &mut stages {
            for e in s.async_only.drain(..) {
                add(e);
            }
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

/// Whether `attr` is one of ours: `#[resilient::NAME(..)]` or `#[::resilient::NAME(..)]`
/// with NAME a known strategy. A bare `#[NAME(..)]` is not taken over: a macro cannot tell
/// an imported `resilient::NAME` from another crate's attribute of the same name (say
/// `ntest::timeout`). If it is ours, its own expansion reports it (see [`PIPELINE`]).
fn ours(attr: &Attribute) -> Option<&'static Kind> {
    let segs = &attr.path().segments;
    match segs.len() {
        2 if segs[0].ident == "resilient" && segs[0].arguments.is_none() => {
            strategy::find(&segs[1].ident.to_string())
        }
        _ => None,
    }
}

/// Whether `tokens` mention the identifier `name`, looking inside groups.
fn contains_ident(tokens: TokenStream, name: &str) -> bool {
    tokens.into_iter().any(|t| match t {
        proc_macro2::TokenTree::Ident(i) => i == name,
        proc_macro2::TokenTree::Group(g) => contains_ident(g.stream(), name),
        _ => false,
    })
}

/// An attribute's arguments: `key = value, ..`, and for `pattern` a first positional name.
fn kind_args(kind: &Kind, tokens: TokenStream) -> syn::Result<Vec<args::Arg>> {
    if kind.name == "pattern" {
        strategy::pattern::parse_args(tokens)
    } else {
        args::parse(tokens)
    }
}

fn attr_args(kind: &Kind, attr: &Attribute) -> syn::Result<Vec<args::Arg>> {
    match &attr.meta {
        Meta::Path(_) => Ok(Vec::new()),
        Meta::List(l) => kind_args(kind, l.tokens.clone()),
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
    let output = resilient_return(ret);
    new_sig.output = ReturnType::Type(*arrow, Box::new(output.clone()));
    let mut rebind = TokenStream::new();
    // Arguments a keyed limiter's `key = ..` reads are used by the call even when the body
    // ignores them: their per-attempt copies must not warn as unused.
    let mut key_idents = Vec::new();
    for stage in stages {
        if let Some(key) = &stage.key {
            idents_in(key.to_token_stream(), &mut key_idents);
        }
    }
    for (i, input) in new_sig.inputs.iter_mut().enumerate() {
        match input {
            FnArg::Receiver(r) => {
                let shared_ref = r.reference.is_some() && r.mutability.is_none();
                if !shared_ref {
                    return Err(syn::Error::new_spanned(
                        &*r,
                        "resilience attributes re-run the body once per attempt, so methods \
                         must take `&self`; `self`, `mut self`, `&mut self` and typed receivers \
                         such as `self: Arc<Self>` are not supported (use interior \
                         mutability, or clone into a free function)",
                    ));
                }
            }
            FnArg::Typed(t) => {
                if let Type::Reference(r) = &*t.ty
                    && r.mutability.is_some()
                {
                    return Err(syn::Error::new_spanned(
                        r,
                        "a `&mut` argument cannot be handed to every attempt: the body may \
                         run more than once, and each attempt gets its own copy of the \
                         arguments; take `&T` (with interior mutability) or an owned `Clone` \
                         value instead",
                    ));
                }
                // The clone is spanned on the argument's type, so a type that is not
                // `Clone` is reported there.
                let clone = |arg: &dyn ToTokens| {
                    quote_spanned!(t.ty.span()=>
                        ::resilient::__private::AttemptArg::attempt_clone(&#arg)
                    )
                };
                match &mut *t.pat {
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
                        let value = clone(name);
                        let allow = if key_idents.contains(name) {
                            quote!(#[allow(unused_variables)])
                        } else {
                            quote!()
                        };
                        rebind.extend(quote! {
                            #allow
                            let #mutability #name = #value;
                        });
                    }
                    pat => {
                        // Destructuring patterns: take the argument whole, destructure a clone.
                        let name = format_ident!("__resilient_arg{}", i);
                        let value = clone(&name);
                        let original = std::mem::replace(pat, parse_quote!(#name));
                        rebind.extend(quote! {
                            let #original = #value;
                        });
                    }
                }
            }
        }
    }

    // Phases in pipeline order; within a phase, the kinds' fixed order (see `KINDS`), so
    // the order the attributes are written in does not matter.
    let mut ordered: Vec<&Stage> = stages.iter().collect();
    ordered.sort_by_key(|s| (s.phase, s.order));
    let calls = ordered.iter().map(|s| &s.calls);
    let (classify_ty, classify) = match stages.iter().find_map(|s| s.classify.as_ref()) {
        Some((ty, value)) => (ty.clone(), quote!(.classify(#value))),
        None => (quote!(::resilient::AllErrors), quote!()),
    };
    // `#[resilient::pattern(..)]`: the registry's pipeline instead of a built one.
    let (classify_ty, init) = match stages.iter().find_map(|s| s.pipeline.as_ref()) {
        Some((ty, init)) => (ty.clone(), init.clone()),
        None => (
            classify_ty,
            quote!(::resilient::PipelineBuilder::build(
                ::resilient::Pipeline::builder().name(__RESILIENT_NAME) #classify #(#calls)*,
            )),
        ),
    };
    // A classifier given as a function or closure is a `fn` pointer of this type.
    let classify_text = classify_ty.to_string();
    let mut classify_fn = TokenStream::new();
    if classify_text.contains("__ResilientClassifyFn") {
        classify_fn.extend(quote!(type __ResilientClassifyFn = fn(&#ret) -> ::resilient::Outcome;));
    }
    if classify_text.contains("__ResilientRetryIfFn") {
        classify_fn.extend(quote!(type __ResilientRetryIfFn = fn(&#ret) -> bool;));
    }
    if classify_text.contains("__ResilientDelayFromFn") {
        classify_fn.extend(quote!(
            type __ResilientDelayFromFn =
                fn(&#ret) -> ::core::option::Option<::core::time::Duration>;
        ));
    }
    if classify_text.contains("__ResilientOk") {
        classify_fn.extend(quote!(
            type __ResilientOk = <#ret as ::resilient::__private::ResultParts>::Ok;
            type __ResilientErr = <#ret as ::resilient::__private::ResultParts>::Err;
        ));
    }
    let name = sig.ident.to_string();
    let body = &func.block;
    let attempt = quote! {
        #[allow(unreachable_code, clippy::let_and_return)]
        let __resilient_ret: #ret = #body;
        #[allow(unreachable_code, clippy::needless_return)]
        return __resilient_ret;
    };
    let pipeline = format_ident!("{}", PIPELINE);
    // A keyed limiter's call: `pipeline.call().key(&key).cost(n)`, run by `Call`.
    let (receiver, execute, execute_blocking) = match stages.iter().find(|s| s.key.is_some()) {
        Some(stage) => {
            let key = stage.key.as_ref().expect("found by its key");
            check_key(sig, key)?;
            let key = quote_spanned!(key.span()=> &(#key));
            let cost = stage.call_cost.map(
                |c| quote!(let __resilient_call = ::resilient::Call::cost(__resilient_call, #c);),
            );
            (
                quote!({
                    let __resilient_call = ::resilient::Call::key(
                        ::resilient::Pipeline::call(__resilient_pipeline),
                        #key,
                    );
                    #cost
                    __resilient_call
                }),
                quote!(::resilient::Call::execute),
                quote!(::resilient::Call::execute_blocking),
            )
        }
        None => (
            quote!(__resilient_pipeline),
            quote!(::resilient::Pipeline::execute),
            quote!(::resilient::Pipeline::execute_blocking),
        ),
    };
    // An `async fn` whose future can be the pipeline's own: no fallback around the call and
    // no key borrowed by it. It becomes a plain `fn` returning the call's future, so
    // awaiting it awaits the engine's future with no `async fn` state machine around it
    // (one more future to build and poll, whose result would be moved out once more). The
    // returned `impl Future` captures every lifetime of the signature, as the `async fn`'s
    // future did, whatever the edition of the crate it is written in: its tokens come from
    // this macro, and take this crate's edition (2024) and its capture rules (tested by the
    // edition-2021 crate `resilient-edition2021`).
    let direct = sig.asyncness.is_some()
        // (Nor a stage built on the tokio runtime, or a registry's pipeline, which may hold
        // one: an `async fn` only asks for the runtime once polled.)
        && stages.iter().all(|s| {
            s.fallback.is_none() && s.key.is_none() && s.pipeline.is_none() && !s.builds_on_runtime
        })
        // Other attributes left on it may be macros that treat an `async fn` apart (such
        // as `tracing::instrument`): only built-in ones that read no body go with the form.
        // (Ours, taken over by this one, stay as no-ops.)
        && func.attrs.iter().all(|a| {
            ours(a).is_some()
                || ["doc", "allow", "expect", "warn", "deny", "forbid", "must_use", "inline", "cfg"]
                    .iter()
                    .any(|name| a.path().is_ident(name))
        });
    if direct {
        new_sig.asyncness = None;
        new_sig.output = parse_quote!(-> impl ::core::future::Future<Output = #output>);
    }
    let run = if direct {
        quote! {
            #execute(#receiver, move || {
                #rebind
                async move { #attempt }
            })
        }
    } else if sig.asyncness.is_some() {
        quote! {
            #execute(#receiver, move || {
                #rebind
                async move { #attempt }
            })
            .await
        }
    } else {
        quote! {
            #execute_blocking(#receiver, move || {
                #rebind
                #attempt
            })
        }
    };
    // A fallback chain runs around the whole pipeline call (the outermost phase), built
    // once like the pipeline.
    let run = match stages.iter().find_map(|s| s.fallback.as_ref()) {
        Some(steps) if sig.asyncness.is_some() => quote! {
            type __ResilientFallbackOk = <#ret as ::resilient::__private::ResultParts>::Ok;
            type __ResilientFallbackErr = <#ret as ::resilient::__private::ResultParts>::Err;
            static __RESILIENT_FALLBACK: ::std::sync::LazyLock<
                ::core::result::Result<
                    ::resilient::fallback::Fallback<__ResilientFallbackOk, __ResilientFallbackErr>,
                    ::resilient::ConfigError,
                >,
            > = ::std::sync::LazyLock::new(|| {
                ::resilient::fallback::Fallback::builder().name(__RESILIENT_NAME) #steps .build()
            });
            let __resilient_fallback = match &*__RESILIENT_FALLBACK {
                ::core::result::Result::Ok(fallback) => fallback,
                ::core::result::Result::Err(e) => {
                    ::resilient::__private::invalid_configuration(__RESILIENT_NAME, e)
                }
            };
            __resilient_fallback.run(async move { #run }).await
        },
        _ => run,
    };
    let attrs = &func.attrs;
    let vis = &func.vis;
    // The build result is kept, not unwrapped in the initializer: an invalid configuration
    // then panics with its message on every call, rather than poisoning the `LazyLock`
    // (whose later callers would only learn that an earlier initialization panicked).
    Ok(quote! {
        #(#attrs)*
        #vis #new_sig {
            const __RESILIENT_NAME: &str = ::core::concat!(::core::module_path!(), "::", #name);
            #classify_fn
            static #pipeline: ::std::sync::LazyLock<
                ::core::result::Result<
                    ::resilient::Pipeline<#classify_ty>,
                    ::resilient::ConfigError,
                >,
            > = ::std::sync::LazyLock::new(|| #init);
            let __resilient_pipeline = match &*#pipeline {
                ::core::result::Result::Ok(pipeline) => pipeline,
                ::core::result::Result::Err(e) => {
                    ::resilient::__private::invalid_configuration(__RESILIENT_NAME, e)
                }
            };
            #run
        }
    })
}

/// Checks a keyed limiter's `key = ..`: a bare name must be one of the function's
/// arguments (a pattern argument or `self` is not a name it can take; an expression such
/// as `req.user` or `self.tenant()` can).
fn check_key(sig: &syn::Signature, key: &syn::Expr) -> syn::Result<()> {
    let syn::Expr::Path(p) = key else {
        return Ok(());
    };
    let Some(name) = p.path.get_ident() else {
        return Ok(());
    };
    let args: Vec<&syn::Ident> = sig
        .inputs
        .iter()
        .filter_map(|a| match a {
            FnArg::Typed(t) => match &*t.pat {
                Pat::Ident(i) => Some(&i.ident),
                _ => None,
            },
            FnArg::Receiver(_) => None,
        })
        .collect();
    if args.contains(&name) {
        return Ok(());
    }
    Err(syn::Error::new_spanned(
        name,
        if args.is_empty() {
            format!(
                "`key = {name}`: the function has no argument named `{name}` (a keyed limiter \
                 limits each call under a key taken from its arguments)"
            )
        } else {
            format!(
                "`key = {name}`: the function has no argument named `{name}`; its arguments \
                 are {}",
                args.iter()
                    .map(|a| format!("`{a}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        },
    ))
}

/// Every identifier in `tokens`, groups included.
fn idents_in(tokens: TokenStream, out: &mut Vec<syn::Ident>) {
    for tree in tokens {
        match tree {
            proc_macro2::TokenTree::Ident(i) => out.push(i),
            proc_macro2::TokenTree::Group(g) => idents_in(g.stream(), out),
            _ => {}
        }
    }
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

    fn asynchronous() -> TokenStream {
        quote!(
            async fn f() -> Result<(), ()> {
                Ok(())
            }
        )
    }

    /// The builder expression of the generated pipeline.
    fn builder_of(out: &str) -> &str {
        let start = out.find("LazyLock :: new").expect("a pipeline");
        let end = out.find("let __resilient_pipeline").expect("a pipeline");
        &out[start..end]
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
            (
                "retry",
                quote!(retry_on_timeout = 1),
                "expected `true` or `false`",
            ),
            (
                "retry",
                quote!(retry_rejected = "yes"),
                "expected `true` or `false`",
            ),
            ("retry", quote!(max_server_delay = 5), "expected a duration"),
            (
                "retry",
                quote!(honor_retry_after = true, honour_retry_after = true),
                "given twice",
            ),
            ("retry", quote!(classify = "x"), "names a type"),
            ("retry", quote!(classify = move |r| r), "captures nothing"),
            ("retry", quote!(on_retry = "x"), "names a function"),
            ("retry", quote!(retry_if = "x"), "names a function"),
            ("fallback", quote!(), "needs `with"),
            ("hedge", quote!(delay = "10ms"), "idempotent = true"),
            (
                "health_aware",
                quote!(check_interval = "30s"),
                "needs `check_interval",
            ),
            (
                "health_aware",
                quote!(check_interval = "30s", probe = "x"),
                "`probe` names",
            ),
            (
                "health_aware",
                quote!(check_interval = "30s", probe = p, healthy_after = 0),
                "at least 1",
            ),
            ("hedge", quote!(idempotent = true), "needs `delay"),
            (
                "hedge",
                quote!(idempotent = true, mode = parallel, delay = "1s"),
                "for `mode = delayed` only",
            ),
            (
                "hedge",
                quote!(idempotent = true, mode = sometimes),
                "`mode` is",
            ),
            (
                "hedge",
                quote!(idempotent = true, delay = "10ms", percentile = 1.5),
                "`percentile` is a quantile",
            ),
            (
                "hedge",
                quote!(idempotent = true, mode = fallback, percentile = 0.9),
                "for `mode = delayed` only",
            ),
            (
                "hedge",
                quote!(idempotent = false, mode = parallel),
                "only for idempotent",
            ),
            ("fallback", quote!(with = "x"), "names an async function"),
            ("fallback", quote!(value = 1, with = f), "would never run"),
            ("fallback", quote!(value = 1, value = 2), "given twice"),
            (
                "fallback",
                quote!(value = 1, handle = 3),
                "`handle` names a function",
            ),
            (
                "bulkhead",
                quote!(max_concurrent = 4, adaptive = fast(1, 1)),
                "unknown adaptive",
            ),
            (
                "bulkhead",
                quote!(max_concurrent = 4, adaptive = aimd(8, 1)),
                "above `max_concurrent`",
            ),
            (
                "bulkhead",
                quote!(max_concurrent = 4, adaptive = aimd(1, 2)),
                "min <= initial",
            ),
            (
                "bulkhead",
                quote!(max_concurrent = 4, adaptive = aimd(1)),
                "aimd(initial, min)",
            ),
            (
                "retry",
                quote!(retry_if = move |r| true),
                "captures nothing",
            ),
            ("retry", quote!(delay_from = 5), "names a function"),
            (
                "retry",
                quote!(delay_from = move |r| None),
                "captures nothing",
            ),
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
            (
                "bulkhead",
                quote!(max_concurrent = 1, max_wait = "1s"),
                "without `queue = N`",
            ),
            (
                "bulkhead",
                quote!(max_concurrent = 1, queue = 0, max_wait = "1s"),
                "without `queue = N`",
            ),
            ("circuit", quote!(window = 20), "needs `failure_rate"),
            ("circuit", quote!(slow_call = "1s"), "needs `failure_rate"),
            ("circuit", quote!(failure_rate = 1.5), "fraction in (0, 1]"),
            ("circuit", quote!(consecutive_failures = 0), "at least 1"),
            (
                "circuit",
                quote!(failure_rate = 0.5, window = "soon"),
                "number of calls",
            ),
            (
                "circuit",
                quote!(failure_rate = 0.5, window = 0),
                "between 1 and",
            ),
            (
                "circuit",
                quote!(failure_rate = 0.5, window = "5us"),
                "at least 10µs",
            ),
            (
                "circuit",
                quote!(failure_rate = 0.5, per = request),
                "`per` is `call`",
            ),
            (
                "circuit",
                quote!(failure_rate = 0.5, scope = request),
                "`scope` is `call`",
            ),
            (
                "circuit",
                quote!(failure_rate = 0.5, scope = call, per = attempt),
                "`per` is its old name",
            ),
            (
                "circuit",
                quote!(failure_rate = 0.5, slow_rate = 0.5),
                "needs `slow_call",
            ),
            (
                "circuit",
                quote!(failure_rate = 0.5, break_jitter = 1.5),
                "fraction in [0, 1]",
            ),
            (
                "circuit",
                quote!(failure_rate = 0.5, required_successes = 2),
                "must not exceed `half_open_probes` (1, the default)",
            ),
            (
                "circuit",
                quote!(
                    failure_rate = 0.5,
                    half_open_probes = 3,
                    required_successes = 4
                ),
                "must not exceed `half_open_probes` (3)",
            ),
            (
                "circuit",
                quote!(failure_rate = 0.5, half_open_probes = 40000),
                "at most 32767",
            ),
            (
                "circuit",
                quote!(failure_rate = 0.5, max_half_open_wait = "0s"),
                "greater than zero",
            ),
            (
                "circuit",
                quote!(failure_rate = 0.5, open_for = "0s"),
                "greater than zero",
            ),
            (
                "circuit",
                quote!(failure_rate = 0.5, window = 10, minimum_calls = 20),
                "must not exceed the count window (10 calls)",
            ),
            (
                "circuit",
                quote!(failure_rate = 0.5, minimum_calls = 101),
                "(100 calls, the default)",
            ),
            (
                "circuit",
                quote!(failure_rate = 0.5, max_open_for = "10s"),
                "must be at least `open_for` (30s)",
            ),
            (
                "circuit",
                quote!(breaker = SHARED, failure_rate = 0.5),
                "only `scope`",
            ),
            (
                "circuit",
                quote!(breaker = 5),
                "names a breaker in the registry",
            ),
            ("circuit", quote!(breaker = ""), "the name is empty"),
            (
                "rate_limit",
                quote!(limiter = "api", rate = 5),
                "only `scope`",
            ),
            (
                "rate_limit",
                quote!(limiter = 5),
                "`limiter` is a name in the registry",
            ),
            (
                "bulkhead",
                quote!(bulkhead = "db", queue = 1),
                "brings one already built",
            ),
            ("pattern", quote!(), "needs the pipeline's name"),
            ("pattern", quote!("p", colour = red), "unknown key `colour`"),
            ("pattern", quote!(5), "`pattern` is a name in the registry"),
            (
                "pattern",
                quote!("p", classify = 5),
                "`classify` is the classifier type",
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
            ("rate_limit", quote!(rate = 10, cost = 0), "at least 1"),
            (
                "rate_limit",
                quote!(rate = 10, cost = 11),
                "capacity (10, its `burst`)",
            ),
            (
                "rate_limit",
                quote!(rate = 10, algorithm = sliding_log, cost = 11),
                "capacity (10, its `rate` per window)",
            ),
        ];
        for (kind, attr, message) in cases {
            let out = error_of(kind, attr.clone(), asynchronous());
            assert!(out.contains(message), "{kind}({attr}): {out}");
        }
    }

    #[test]
    fn accepted_arguments() {
        let cases: &[(&str, TokenStream, &str)] = &[
            (
                "retry",
                quote!(max_server_delay = "5s"),
                ". max_server_delay (:: core :: time :: Duration :: new (5u64 , 0u32))",
            ),
            (
                "retry",
                quote!(honour_retry_after = true),
                ". classify (:: resilient :: HonorRetryAfter (:: resilient :: AllErrors))",
            ),
            (
                "retry",
                quote!(classify = my::Transient, honor_retry_after = true),
                "Pipeline < :: resilient :: HonorRetryAfter < my :: Transient > >",
            ),
            (
                "retry",
                quote!(classify = my::Transient, honor_retry_after = false),
                "Pipeline < my :: Transient >",
            ),
            (
                "circuit",
                quote!(failure_rate = 0.5, consecutive_failures = 3),
                "failure_rate (0.5f64) . consecutive_failures (3u32) . name (__RESILIENT_NAME)",
            ),
            (
                "circuit",
                quote!(
                    consecutive_failures = 3,
                    half_open_probes = 3,
                    required_successes = 2,
                    break_jitter = 0.25,
                    max_half_open_wait = "5s"
                ),
                ". half_open_probes (3u32) . required_successes (2u32) . break_jitter (0.25f64)",
            ),
            (
                "circuit",
                quote!(breaker = my::SHARED, per = attempt),
                "(& my :: SHARED) . resolve_breaker ()",
            ),
            (
                "circuit",
                quote!(failure_rate = 0.5, window = "60s", minimum_calls = 500),
                "",
            ),
            (
                "rate_limit",
                quote!(rate = 10, burst = 20, cost = 15),
                ". cost (15u64)",
            ),
            (
                "bulkhead",
                quote!(max_concurrent = 1, queue = 2, max_wait = "1s"),
                "",
            ),
        ];
        for (kind, attr, expected) in cases {
            let out = ok(kind, attr.clone(), asynchronous());
            assert!(out.contains(expected), "{kind}({attr}): {out}");
        }
    }

    #[test]
    fn settings_a_blocking_function_cannot_use_are_errors() {
        let cases: &[(&str, TokenStream, &[&str])] = &[
            (
                "bulkhead",
                quote!(max_concurrent = 1, queue = 2, max_wait = "1s"),
                &["`queue` does nothing here", "`max_wait` does nothing here"],
            ),
            (
                "rate_limit",
                quote!(rate = 5, max_wait = "1s"),
                &["`max_wait` does nothing here: plain (blocking) functions never wait"],
            ),
        ];
        for (kind, attr, messages) in cases {
            let out = error_of(kind, attr.clone(), plain());
            for m in *messages {
                assert!(out.contains(m), "{kind}({attr}): {out}");
            }
            ok(kind, attr.clone(), asynchronous());
        }
        // a queue of 0 is what a blocking function gets anyway
        ok("bulkhead", quote!(max_concurrent = 1, queue = 0), plain());
    }

    #[test]
    fn cross_attribute_errors() {
        let stacked = |below: TokenStream| {
            quote!(
                #below
                async fn f() -> Result<(), ()> {
                    Ok(())
                }
            )
        };
        let errors: &[(&str, TokenStream, TokenStream, &str)] = &[
            (
                "retry",
                quote!(attempts = 3, backoff = constant("1s")),
                quote!(#[resilient::timeout(request = "1500ms")]),
                "waits at least 2s over 2 retries, which already exceeds the request timeout (1.5s)",
            ),
            (
                "timeout",
                quote!(request = "2s"),
                quote!(#[resilient::retry(attempts = 3, backoff = constant("1s"))]),
                "waits at least 2s",
            ),
            (
                "retry",
                quote!(attempts = 4, backoff = exponential("100ms"), jitter = equal),
                quote!(#[resilient::timeout(request = "350ms")]),
                "waits at least 350ms",
            ),
            (
                "circuit",
                quote!(failure_rate = 0.5),
                quote!(#[resilient::timeout(circuit = "10s")]),
                "shorter than the breaker's `open_for` (30s, its default)",
            ),
            (
                "circuit",
                quote!(failure_rate = 0.5, open_for = "20s"),
                quote!(#[resilient::timeout(circuit = "10s")]),
                "`open_for` must not exceed the circuit timeout (10s)",
            ),
            (
                "circuit",
                quote!(failure_rate = 0.5, window = "60s", open_for = "1s"),
                quote!(#[resilient::timeout(circuit = "10s")]),
                "time window (60s) must not exceed the circuit timeout",
            ),
            (
                "retry",
                quote!(retry_on_timeout = false),
                quote!(#[resilient::timeout(request = "10s")]),
                "there is none",
            ),
            (
                "retry",
                quote!(retry_rejected = true),
                quote!(#[resilient::bulkhead(max_concurrent = 1)]),
                "per-attempt guard",
            ),
            (
                "retry",
                quote!(retry_rejected = true),
                quote!(#[resilient::rate_limit(rate = 1, scope = call)]),
                "per-attempt guard",
            ),
        ];
        for (kind, attr, below, message) in errors {
            let out = error_of(kind, attr.clone(), stacked(below.clone()));
            assert!(out.contains(message), "{kind}({attr}) {below}: {out}");
        }
        let fine: &[(&str, TokenStream, TokenStream)] = &[
            // just under the limit, or a jitter that may wait nothing
            (
                "retry",
                quote!(attempts = 3, backoff = constant("1s")),
                quote!(#[resilient::timeout(request = "2001ms")]),
            ),
            (
                "retry",
                quote!(attempts = 3, backoff = constant("1s"), jitter = full),
                quote!(#[resilient::timeout(request = "1s")]),
            ),
            (
                "circuit",
                quote!(failure_rate = 0.5, open_for = "10s", window = "10s"),
                quote!(#[resilient::timeout(circuit = "10s")]),
            ),
            // a breaker of the user's is checked when the pipeline is built
            (
                "circuit",
                quote!(breaker = SHARED),
                quote!(#[resilient::timeout(circuit = "1s")]),
            ),
            (
                "retry",
                quote!(retry_on_timeout = false),
                quote!(#[resilient::timeout(operation = "1s")]),
            ),
            (
                "retry",
                quote!(retry_rejected = true),
                quote!(#[resilient::circuit(failure_rate = 0.5, scope = attempt)]),
            ),
            (
                "retry",
                quote!(retry_rejected = true),
                quote!(#[resilient::rate_limit(rate = 1)]),
            ),
        ];
        for (kind, attr, below) in fine {
            ok(kind, attr.clone(), stacked(below.clone()));
        }
    }

    #[test]
    fn async_fns_return_the_engine_future_when_nothing_borrows() {
        let direct = ok(
            "retry",
            quote!(attempts = 2),
            quote!(
                async fn f(x: u8, name: String) -> Result<u8, ()> {
                    Ok(x)
                }
            ),
        );
        assert!(
            direct.contains(
                "fn f (x : u8 , name : String) -> impl :: core :: future :: Future < Output = Result < u8 , :: resilient :: Error < () > > >"
            ),
            "{direct}"
        );
        assert!(!direct.contains("async fn f"), "{direct}");
        assert!(!direct.contains(". await"), "{direct}");
        // Stacked attributes of ours, borrowed arguments, lifetimes and `&self` keep the
        // form; any other attribute, a fallback or a health check keeps the `async fn`.
        let stacked = ok(
            "retry",
            quote!(attempts = 2),
            quote!(
                #[resilient::timeout(operation = "1s")]
                async fn f(x: u8) -> Result<u8, ()> {
                    Ok(x)
                }
            ),
        );
        assert!(
            stacked.contains("-> impl :: core :: future :: Future"),
            "{stacked}"
        );
        for item in [
            quote!(
                async fn f(x: &str) -> Result<u8, ()> {
                    Ok(1)
                }
            ),
            quote!(
                async fn f<'a>(x: Cow<'a, str>) -> Result<u8, ()> {
                    Ok(1)
                }
            ),
            quote!(
                async fn f(&self, x: u8) -> Result<u8, ()> {
                    Ok(x)
                }
            ),
        ] {
            let out = ok("retry", quote!(attempts = 2), item);
            assert!(out.contains("-> impl :: core :: future :: Future"), "{out}");
        }
        let kept = [
            quote!(
                #[tracing::instrument]
                async fn f(x: u8) -> Result<u8, ()> {
                    Ok(x)
                }
            ),
            quote!(
                #[resilient::fallback(value = 0)]
                async fn f(x: u8) -> Result<u8, ()> {
                    Ok(x)
                }
            ),
            quote!(
                #[resilient::health_aware(probe = check, check_interval = "30s")]
                async fn f(x: u8) -> Result<u8, ()> {
                    Ok(x)
                }
            ),
        ];
        for item in kept {
            let out = ok("retry", quote!(attempts = 2), item);
            assert!(out.contains("async fn f"), "{out}");
            assert!(out.contains(". await"), "{out}");
        }
    }

    #[test]
    fn rate_limit_keys() {
        let item = quote!(
            async fn f(user: &str, req: Req) -> Result<(), ()> {
                Ok(())
            }
        );
        let out = ok(
            "rate_limit",
            quote!(rate = 5, key = user, cost = 2),
            item.clone(),
        );
        assert!(
            out.contains(
                "KeyedLimiter :: builder (:: resilient :: ratelimit :: Gcra :: with_burst"
            ),
            "{out}"
        );
        assert!(out.contains(". build :: < u64 > () ?"), "{out}");
        assert!(out.contains(":: resilient :: Call :: key (:: resilient :: Pipeline :: call (__resilient_pipeline) , & (user) ,)"), "{out}");
        assert!(
            out.contains(":: resilient :: Call :: cost (__resilient_call , 2u64)"),
            "{out}"
        );
        assert!(out.contains(":: resilient :: Call :: execute ("), "{out}");
        // an expression over the arguments
        let out = ok(
            "rate_limit",
            quote!(rate = 5, key = req.tenant, max_keys = 100),
            item.clone(),
        );
        assert!(out.contains("& (req . tenant)"), "{out}");
        assert!(out.contains(". max_keys (100usize)"), "{out}");
        // blocking functions run through `Call::execute_blocking`
        let blocking = quote!(
            fn f(user: u64) -> Result<(), ()> {
                Ok(())
            }
        );
        let out = ok("rate_limit", quote!(rate = 5, key = user), blocking);
        assert!(
            out.contains(":: resilient :: Call :: execute_blocking ("),
            "{out}"
        );
        let cases: &[(TokenStream, &str)] = &[
            (
                quote!(rate = 5, key = nobody),
                "no argument named `nobody`; its arguments are `user`, `req`",
            ),
            (
                quote!(rate = 5, key = user, algorithm = sliding_log),
                "use `sliding_window`",
            ),
            (quote!(rate = 5, max_keys = 10), "it goes with `key = ..`"),
            (quote!(rate = 5, key = user, max_keys = 0), "at least 1"),
        ];
        for (attr, message) in cases {
            let out = error_of("rate_limit", attr.clone(), item.clone());
            assert!(out.contains(message), "{attr}: {out}");
        }
        let out = error_of("rate_limit", quote!(rate = 5, key = user), plain());
        assert!(
            out.contains("the function has no argument named `user`"),
            "{out}"
        );
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
                    fn f(self: std::sync::Arc<Self>) -> Result<(), ()> {
                        Ok(())
                    }
                ),
                "`self: Arc<Self>` are not supported",
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
                    fn f(x: &mut Vec<u8>) -> Result<(), ()> {
                        Ok(())
                    }
                ),
                "a `&mut` argument cannot be handed to every attempt",
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
            #[::resilient::bulkhead(max_concurrent = 2)]
            async fn f(x: u8) -> Result<u8, ()> {
                Ok(x)
            }
        );
        let out = ok("retry", quote!(attempts = 2), item);
        // one pipeline: timeout, then the per-call bulkhead, then retry
        let t = out.find(". timeout (").expect("timeout");
        let b = out
            .find(". bulkhead (:: resilient :: Bulkhead")
            .expect("bulkhead");
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
    fn the_order_of_the_attributes_does_not_matter() {
        // Written in two different orders, per call and per attempt: the same pipeline,
        // with the guards of each phase in the fixed order circuit, rate limit, bulkhead.
        let one = ok(
            "bulkhead",
            quote!(max_concurrent = 4),
            quote!(
                #[resilient::rate_limit(rate = 10, scope = call)]
                #[resilient::retry(attempts = 2)]
                #[resilient::circuit(consecutive_failures = 3)]
                async fn f() -> Result<(), ()> {
                    Ok(())
                }
            ),
        );
        let two = ok(
            "circuit",
            quote!(consecutive_failures = 3),
            quote!(
                #[resilient::retry(attempts = 2)]
                #[resilient::bulkhead(max_concurrent = 4)]
                #[resilient::rate_limit(rate = 10, scope = call)]
                async fn f() -> Result<(), ()> {
                    Ok(())
                }
            ),
        );
        assert_eq!(builder_of(&one), builder_of(&two));
        let b = builder_of(&one);
        let c = b.find("CircuitBreaker").expect("circuit");
        let l = b.find("RateLimiter").expect("rate limiter");
        let h = b.find("Bulkhead").expect("bulkhead");
        let r = b.find(". retry (").expect("retry");
        assert!(c < l && l < h && h < r, "{b}");

        let per_attempt = |first: &'static str, attr: TokenStream, below: TokenStream| {
            let item = quote!(
                #below
                #[resilient::retry(attempts = 2)]
                async fn f() -> Result<(), ()> {
                    Ok(())
                }
            );
            ok(first, attr, item)
        };
        let one = per_attempt(
            "rate_limit",
            quote!(rate = 10),
            quote!(#[resilient::circuit(failure_rate = 0.5, scope = attempt)]),
        );
        let two = per_attempt(
            "circuit",
            quote!(failure_rate = 0.5, per = attempt),
            quote!(#[resilient::rate_limit(rate = 10, scope = attempt)]),
        );
        assert_eq!(builder_of(&one), builder_of(&two));
        let b = builder_of(&one);
        let r = b.find(". retry (").expect("retry");
        let c = b.find("CircuitBreaker").expect("circuit");
        let l = b.find("RateLimiter").expect("rate limiter");
        assert!(r < c && c < l, "{b}");
    }

    #[test]
    fn only_qualified_attributes_are_taken_over() {
        // A bare `#[timeout(..)]` may be another crate's (`ntest::timeout`): left alone.
        let item = quote!(
            #[timeout(1000)]
            #[other::retry(times = 3)]
            fn f() -> Result<(), ()> {
                Ok(())
            }
        );
        let out = ok("retry", quote!(attempts = 2), item);
        assert!(out.contains("# [timeout (1000)]"), "{out}");
        assert!(out.contains("# [other :: retry (times = 3)]"), "{out}");
        assert!(!out.contains(MERGED), "{out}");
        // If it was ours after all, its own expansion finds the function rewritten and
        // says how to write it.
        let rewritten: ItemFn =
            syn::parse_str(&ok("retry", quote!(attempts = 2), plain())).unwrap();
        let out = error_of("timeout", quote!(request = "1s"), quote!(#rewritten));
        assert!(
            out.contains("write it as `#[resilient::timeout(..)]`"),
            "{out}"
        );
    }

    #[test]
    fn the_breaker_is_named_after_the_function() {
        let out = ok("circuit", quote!(consecutive_failures = 2), plain());
        assert!(out.contains("const __RESILIENT_NAME : & str = :: core :: concat ! (:: core :: module_path ! () , \"::\" , \"f\")"), "{out}");
        assert!(
            out.contains(". name (__RESILIENT_NAME) . build () ?"),
            "{out}"
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

    #[test]
    fn a_pattern_brings_the_whole_pipeline() {
        let out = ok("pattern", quote!("payments"), asynchronous());
        assert!(out.contains("pipeline_as :: < :: resilient :: registry :: Classifier >"));
        assert!(!out.contains("Pipeline :: builder"));
        let out = ok(
            "pattern",
            quote!(name = names::P, classify = my::Policy, registry = REG),
            asynchronous(),
        );
        assert!(out.contains("Name :: as_str (names :: P)"), "{out}");
        assert!(out.contains("(& * REG)"), "{out}");
        let stacked = quote!(
            #[resilient::retry(attempts = 2)]
            async fn f() -> Result<(), ()> {
                Ok(())
            }
        );
        let err = error_of("pattern", quote!("payments"), stacked);
        assert!(err.contains("brings its own timeouts"), "{err}");
    }

    #[test]
    fn named_strategies_are_looked_up_in_the_registry() {
        let out = ok("circuit", quote!(breaker = "payments"), asynchronous());
        assert!(
            out.contains("Registry :: breaker (:: resilient :: registry () , \"payments\")"),
            "{out}"
        );
        let out = ok(
            "rate_limit",
            quote!(limiter = names::API, scope = call),
            asynchronous(),
        );
        assert!(out.contains("resolve_limiter"), "{out}");
        let out = ok("bulkhead", quote!(bulkhead = "db"), plain());
        assert!(out.contains("Registry :: bulkhead"), "{out}");
    }
}
