//! The table of strategy kinds. Adding a strategy is one parser module, one row in
//! [`KINDS`] and one `#[proc_macro_attribute]` entry point in `lib.rs`.

mod bulkhead;
mod circuit;
mod fallback;
mod health_aware;
mod hedge;
pub(crate) mod pattern;
mod rate_limit;
mod retry;
mod timeout;

use std::time::Duration;

use proc_macro2::{Span, TokenStream};
use syn::Expr;

use crate::args::Arg;

/// Where a stage's builder calls go. The generated builder emits stages in this order,
/// which is the pipeline's phase order: guards before `.retry(..)` are admitted once per
/// call, guards after it once per attempt. Timeouts are settings, so their place in the
/// builder does not matter (the engine applies the request timeout outermost and the
/// operation timeout around each attempt).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Phase {
    /// `.timeout(..)` settings.
    Timeouts,
    /// Guards admitted once per logical call (bulkhead, `scope = call` guards).
    PerCall,
    /// The retry loop.
    Retry,
    /// Guards admitted once per attempt (`scope = attempt` breakers, rate limiters).
    PerAttempt,
}

/// What one attribute contributes to the pipeline.
pub(crate) struct Stage {
    pub(crate) phase: Phase,
    /// The kind's place within its phase ([`Kind::order`]); set by the caller of `parse`.
    pub(crate) order: u8,
    /// Builder method calls, each `.method(expr)`, appended to `Pipeline::builder()`.
    /// `expr` may use `?` on a `Result<_, ::resilient::ConfigError>` (the generated
    /// initializer returns that error) and the `__RESILIENT_NAME` constant (the function's
    /// `module::path::name`).
    pub(crate) calls: TokenStream,
    /// The pipeline's classifier `(type, value)`, if this stage sets one.
    pub(crate) classify: Option<(TokenStream, TokenStream)>,
    /// Settings that only work on `async` functions: the error to report on a blocking one.
    pub(crate) async_only: Vec<syn::Error>,
    /// What the checks across attributes need to know.
    pub(crate) facts: Facts,
    /// The call's key for a keyed limiter (`key = ..`): an argument's name or an
    /// expression over the arguments, hashed once per call (`Call::key`).
    pub(crate) key: Option<Expr>,
    /// The units a call costs its keyed limiter (`Call::cost`), if not 1.
    pub(crate) call_cost: Option<u64>,
    /// A fallback chain's builder calls (`.or_else(..)`, `.or_value(..)`, `.handle(..)`),
    /// run around the whole pipeline call.
    pub(crate) fallback: Option<TokenStream>,
    /// A whole pipeline from elsewhere (`#[resilient::pattern(..)]`): its classifier type
    /// and an expression of type `Result<Pipeline<that type>, ConfigError>`, used instead
    /// of a built one.
    pub(crate) pipeline: Option<(TokenStream, TokenStream)>,
    /// Building this stage's part of the pipeline needs the tokio runtime (a background
    /// health check): the pipeline is then built when an `async fn` is first polled, not
    /// when it is called.
    pub(crate) builds_on_runtime: bool,
}

impl Stage {
    pub(crate) fn new(phase: Phase, calls: TokenStream) -> Self {
        Self {
            phase,
            order: 0,
            calls,
            classify: None,
            async_only: Vec::new(),
            facts: Facts::default(),
            key: None,
            call_cost: None,
            fallback: None,
            pipeline: None,
            builds_on_runtime: false,
        }
    }
}

/// Literal settings (and where they were written) that a check across attributes needs:
/// the macros reject at compile time what `PipelineBuilder::build` would reject at run
/// time when the values are literals.
#[derive(Default)]
pub(crate) struct Facts {
    pub(crate) operation: Option<(Duration, Span)>,
    pub(crate) request: Option<(Duration, Span)>,
    pub(crate) circuit_timeout: Option<(Duration, Span)>,
    /// A breaker the attribute builds (not a `breaker = PATH` of the user's).
    pub(crate) breaker: Option<circuit::Facts>,
    pub(crate) retry: Option<retry::Plan>,
}

/// One strategy attribute.
pub(crate) struct Kind {
    /// The attribute's name: `#[resilient::NAME(..)]`.
    pub(crate) name: &'static str,
    /// The stage's place among the guards of its phase (lower is outermost, admitted
    /// first); see [`KINDS`].
    pub(crate) order: u8,
    /// Validates the arguments (errors point at the offending token, or at the attribute,
    /// whose span is given) and produces the stage.
    pub(crate) parse: fn(Span, Vec<Arg>) -> syn::Result<Stage>,
}

/// Every strategy the attributes know.
///
/// Within a phase, guards are admitted in a fixed order, whatever the order the attributes
/// are written in (resilience4j's: `CircuitBreaker(RateLimiter(Bulkhead(call)))`):
/// the breaker first, so an open breaker rejects without using up a rate-limit unit or a
/// bulkhead slot (an inner guard's rejection releases the breaker's permit uncounted: it
/// says nothing about the dependency); the rate limiter next, so a call waiting for rate
/// capacity does not hold a bulkhead slot; the bulkhead innermost, so its slots bound the
/// calls actually running.
pub(crate) const KINDS: &[Kind] = &[
    Kind {
        name: "timeout",
        order: 0,
        parse: timeout::parse,
    },
    Kind {
        name: "retry",
        order: 0,
        parse: retry::parse,
    },
    // the health check rejects first: cheaper than anything after it, and an unhealthy
    // dependency's calls then use up no breaker permit, rate or slot
    Kind {
        name: "health_aware",
        order: 0,
        parse: health_aware::parse,
    },
    Kind {
        name: "circuit",
        order: 1,
        parse: circuit::parse,
    },
    Kind {
        name: "rate_limit",
        order: 2,
        parse: rate_limit::parse,
    },
    Kind {
        name: "bulkhead",
        order: 3,
        parse: bulkhead::parse,
    },
    Kind {
        name: "fallback",
        order: 4,
        parse: fallback::parse,
    },
    // after `.retry(..)` (order 0 of the retry phase): its attempts are what is hedged
    Kind {
        name: "hedge",
        order: 1,
        parse: hedge::parse,
    },
    Kind {
        name: "pattern",
        order: 5,
        parse: pattern::parse,
    },
];

/// The kind named `name`.
pub(crate) fn find(name: &str) -> Option<&'static Kind> {
    KINDS.iter().find(|k| k.name == name)
}

/// `scope = call | attempt` (for a breaker, also under its old name `per`).
pub(crate) fn scope(key: &syn::Ident, value: &Expr, what: &str) -> syn::Result<Phase> {
    let (word, rest) = crate::args::call(value)?;
    match word.to_string().as_str() {
        "call" if rest.is_empty() => Ok(Phase::PerCall),
        "attempt" if rest.is_empty() => Ok(Phase::PerAttempt),
        _ => Err(syn::Error::new_spanned(
            value,
            format!("`{key}` is `call` (a logical call {what} once) or `attempt` (every attempt)"),
        )),
    }
}

/// Checks across attributes, on literal values: what `PipelineBuilder::build` would
/// otherwise reject when the function is first called.
pub(crate) fn check(stages: &[Stage]) -> syn::Result<()> {
    pattern::check_alone(stages)?;
    let mut facts = Facts::default();
    let mut per_attempt_guard = false;
    for s in stages {
        let f = &s.facts;
        facts.operation = facts.operation.or(f.operation);
        facts.request = facts.request.or(f.request);
        facts.circuit_timeout = facts.circuit_timeout.or(f.circuit_timeout);
        if f.breaker.is_some() {
            facts.breaker = f.breaker;
        }
        if f.retry.is_some() {
            facts.retry = f.retry.clone();
        }
        per_attempt_guard |= s.phase == Phase::PerAttempt;
    }
    if let (Some((circuit, at)), Some(b)) = (facts.circuit_timeout, facts.breaker) {
        b.check_circuit_timeout(circuit, at)?;
    }
    if let Some(plan) = &facts.retry {
        if let Some((request, at)) = facts.request {
            plan.check_request_timeout(request, at)?;
        }
        if let Some(span) = plan.retry_on_timeout
            && facts.operation.is_none()
        {
            return Err(syn::Error::new(
                span,
                "`retry_on_timeout` decides whether an attempt that hit the operation \
                 timeout is retried, and there is none: add \
                 `#[resilient::timeout(operation = \"..\")]` or remove it",
            ));
        }
        if let Some(span) = plan.retry_rejected
            && !per_attempt_guard
        {
            return Err(syn::Error::new(
                span,
                "`retry_rejected` retries attempts a per-attempt guard rejected, and there is \
                 none: it needs a `#[resilient::circuit(.., scope = attempt)]` or a \
                 `#[resilient::rate_limit(..)]` (per attempt by default)",
            ));
        }
    }
    Ok(())
}
