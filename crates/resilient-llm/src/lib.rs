//! # resilient-llm
//!
//! Calls to OpenAI-style chat-completions APIs that survive what such APIs do: rate
//! limits, used-up quotas, overloaded servers, streams that never start or stall halfway,
//! and JSON answers that are almost JSON. Built on the public API of
//! [`resilient`] only: every provider is a [`resilient::Pipeline`], its limits a
//! [`resilient::Guard`], its JSON repaired by `resilient::json`.
//!
//! - **Retry only what is transient** ([`LlmError::is_retryable`]): connection failures,
//!   408, 429 rate limits and 5xx, never 400, 401 or 403; after the wait the provider asks
//!   for: `retry-after-ms`, `Retry-After`, or `x-ratelimit-reset-requests` /
//!   `x-ratelimit-reset-tokens` (Go durations like `"6m0s"`, see [`headers`]).
//! - **Rotate keys and providers** ([`Client::chat`]): providers are tried in order, and a
//!   used-up quota (429 `insufficient_quota`), a refused key, reached limits or an outage
//!   hands the call to the next; a provider out of quota is skipped for a while.
//! - **Token-based limits** per provider ([`Limits`]): requests and tokens per minute,
//!   each attempt charged its [`estimate_tokens`].
//! - **Stream-aware timeouts** ([`Client::chat_stream`]): time to first token
//!   ([`LlmError::FirstTokenTimeout`], retried) and idle gap between chunks
//!   ([`LlmError::IdleTimeout`]).
//! - **Repaired structured output** ([`Client::parse`]): the answer is repaired into any
//!   `serde::Deserialize` type, and the model is asked again, a bounded number of times,
//!   when repair cannot help.
//! - **A registered pattern** ([`PATTERN`], `"llm"`): the providers' pipeline, found by
//!   name in `resilient::registry()` by any program that links this crate, with no
//!   registration call (see [`pattern`]).
//! - **A mock provider** ([`mock`], feature `mock`) speaking the same API on loopback,
//!   scriptable per request, for tests.
//!
//! ```
//! # #[cfg(feature = "mock")]
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use resilient_llm::mock::{MockServer, Reply};
//! use resilient_llm::{ChatRequest, Client, Provider};
//!
//! let server = MockServer::start().await.unwrap();
//! server.exhaust_key("key-1"); // the first key's quota is used up
//! server.push(Reply::text(r#"```json
//! {name: 'Ada', born: 1815,}
//! ```"#));
//!
//! let client = Client::builder()
//!     .provider(Provider::new("key-1", server.url(), "key-1"))
//!     .provider(Provider::new("key-2", server.url(), "key-2"))
//!     .build()
//!     .unwrap();
//!
//! #[derive(serde::Deserialize)]
//! struct Person { name: String, born: u32 }
//! let person: Person = client.parse(&ChatRequest::new("gpt-4o-mini").user("Who?")).await.unwrap();
//! assert_eq!((person.name.as_str(), person.born), ("Ada", 1815));
//! assert_eq!(server.keys(), ["key-1", "key-2"]);
//! # }
//! # #[cfg(not(feature = "mock"))] fn main() {}
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod client;
mod error;
pub mod headers;
mod limits;
#[cfg(feature = "mock")]
#[cfg_attr(docsrs, doc(cfg(feature = "mock")))]
pub mod mock;
mod pattern;
mod stream;
mod types;

pub use crate::client::{Client, ClientBuilder, Event, LlmPolicy, Provider, should_rotate};
pub use crate::error::{ApiError, ApiErrorKind, LlmError};
pub use crate::limits::Limits;
pub use crate::pattern::{PATTERN, pattern};
pub use crate::stream::ChatStream;
pub use crate::types::{
    ChatChunk, ChatRequest, ChatResponse, Choice, Message, Role, Usage, estimate_tokens,
};

/// The README's examples, compiled as doctests so the README stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
