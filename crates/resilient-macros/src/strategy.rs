//! The table of strategy kinds. Adding a strategy is one parser module, one row in
//! [`KINDS`] and one `#[proc_macro_attribute]` entry point in `lib.rs`.

mod bulkhead;
mod circuit;
mod rate_limit;
mod retry;
mod timeout;

use proc_macro2::{Span, TokenStream};

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
    /// Guards admitted once per logical call (bulkhead).
    PerCall,
    /// The retry loop.
    Retry,
    /// Guards admitted once per attempt (`per = attempt` breakers, rate limiters).
    PerAttempt,
}

/// What one attribute contributes to the pipeline.
pub(crate) struct Stage {
    pub(crate) phase: Phase,
    /// Builder method calls, each `.method(expr)`, appended to `Pipeline::builder()`.
    /// `expr` may use `?` on a `Result<_, ::resilient::ConfigError>`: the generated
    /// initializer returns that error, and it panics at first call with its message.
    pub(crate) calls: TokenStream,
}

/// One strategy attribute.
pub(crate) struct Kind {
    /// The attribute's name: `#[resilient::NAME(..)]`.
    pub(crate) name: &'static str,
    /// Validates the arguments (errors point at the offending token, or at the attribute,
    /// whose span is given) and produces the stage.
    pub(crate) parse: fn(Span, Vec<Arg>) -> syn::Result<Stage>,
}

/// Every strategy the attributes know.
pub(crate) const KINDS: &[Kind] = &[
    Kind {
        name: "retry",
        parse: retry::parse,
    },
    Kind {
        name: "timeout",
        parse: timeout::parse,
    },
    Kind {
        name: "bulkhead",
        parse: bulkhead::parse,
    },
    Kind {
        name: "circuit",
        parse: circuit::parse,
    },
    Kind {
        name: "rate_limit",
        parse: rate_limit::parse,
    },
];

/// The kind named `name`.
pub(crate) fn find(name: &str) -> Option<&'static Kind> {
    KINDS.iter().find(|k| k.name == name)
}
