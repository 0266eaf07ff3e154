//! HTTP rate-limit headers: writing them from decisions (server side) and reading them
//! from responses (client side), so a retry strategy can honour them.
//!
//! Written fields:
//!
//! - `RateLimit-Policy: "burst";q=100;w=60` and `RateLimit: "burst";r=0;t=7`, the
//!   Structured Fields (RFC 9651) of draft-ietf-httpapi-ratelimit-headers-10, one list
//!   member per limit. `q` is the quota, `w` the window in seconds, `r` the units remaining
//!   and `t` the seconds until the limit admits again: the decision's `retry_after` when
//!   denied, its `reset` (time until full) otherwise;
//! - `X-RateLimit-Limit`, `X-RateLimit-Remaining`, `X-RateLimit-Reset` (delta seconds) from
//!   the binding decision;
//! - `Retry-After` (delta seconds, rounded up) when the request was denied.
//!
//! A decision that can never be admitted (`retry_after` is `Duration::MAX`: the request
//! costs more than the limit's capacity, say after a runtime cut) has no time at which it
//! would pass: its `RateLimit` member has no `t` parameter, and no `Retry-After` is
//! written (retrying cannot help; the `X-RateLimit-*` values are written as usual). Any
//! other duration is written in whole seconds rounded up, capped at the largest
//! Structured Field integer (999,999,999,999,999).
//!
//! Parsing accepts all of those plus `Retry-After` as an HTTP-date; malformed values are
//! ignored, never a panic.

use std::time::{Duration, SystemTime};

use sfv::{BareItem, KeyRef, ListEntry, ListSerializer, Parser, StringRef};

use super::decision::{Decision, Policy};
use crate::engine::error::{ConfigError, RetryAfter};

/// The largest integer a Structured Field can carry.
const SF_MAX: u64 = 999_999_999_999_999;

fn secs_up(d: Duration) -> u64 {
    let s = d.as_secs().saturating_add(u64::from(d.subsec_nanos() > 0));
    s.min(SF_MAX)
}

fn sf_int(n: u64) -> sfv::Integer {
    sfv::Integer::try_from(n.min(SF_MAX)).unwrap_or(sfv::integer(0))
}

/// One limit to describe in headers: a policy name, its quota and the decision.
#[derive(Debug, Clone, Copy)]
pub struct HeaderLimit<'a> {
    /// The policy's name (printable ASCII), e.g. `"burst"` or `"daily"`.
    pub name: &'a str,
    /// The quota (see [`super::Limiter::policy`]).
    pub policy: Policy,
    /// This request's decision for that limit.
    pub decision: Decision,
}

/// Renders the headers of a rejection from the error alone: the rate limiter's state it
/// carries ([`Error::rate_limit_info`](crate::Error::rate_limit_info)) under the policy
/// name `name`, and its `retry_after`. `None` when the error is not a rate-limit rejection
/// or its limiter did not report its state.
///
/// ```
/// use resilient::ratelimit::headers::write_rejection_headers;
/// use resilient::ratelimit::{Rate, RateLimiter};
/// use resilient::{Error, Pipeline};
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let p = Pipeline::builder().rate_limit(RateLimiter::gcra(Rate::per_minute(1))).build().unwrap();
/// let _ = p.execute(|| async { Ok::<(), ()>(()) }).await;
/// let err = p.execute(|| async { Ok::<(), ()>(()) }).await.unwrap_err();
/// let h = write_rejection_headers("api", &err).unwrap().unwrap();
/// assert!(h.contains(&("RateLimit-Policy", r#""api";q=1;w=60"#.to_string())));
/// assert!(h.contains(&("RateLimit", r#""api";r=0;t=60"#.to_string())));
/// assert!(h.contains(&("Retry-After", "60".to_string())));
/// # }
/// ```
pub fn write_rejection_headers<E>(
    name: &str,
    error: &crate::engine::error::Error<E>,
) -> Option<Result<Vec<(&'static str, String)>, ConfigError>> {
    let info = error.rate_limit_info()?;
    let decision = Decision {
        allowed: false,
        limit: info.limit,
        remaining: info.remaining,
        reset: info.reset,
        retry_after: error.retry_after().unwrap_or(Duration::MAX),
    };
    let policy = Policy {
        quota: info.quota,
        window: info.window,
    };
    Some(write_headers(&[HeaderLimit {
        name,
        policy,
        decision,
    }]))
}

/// Renders the headers for one request from the decisions of its limits (see the
/// [module docs](self) for the fields). The `X-RateLimit-*` values come from the binding
/// limit: the denial with the longest wait, or the limit with the fewest units left.
///
/// ```
/// use resilient::ratelimit::headers::{HeaderLimit, write_headers};
/// use resilient::ratelimit::{Gcra, Limiter, Rate};
/// use std::time::Duration;
/// let l = Gcra::limiter(Rate::per_minute(100)).unwrap();
/// l.try_acquire(Duration::ZERO, 100).unwrap();
/// let d = l.try_acquire(Duration::ZERO, 1).unwrap();
/// let h = write_headers(&[HeaderLimit { name: "burst", policy: l.policy(), decision: d }]).unwrap();
/// assert!(h.contains(&("RateLimit-Policy", r#""burst";q=100;w=60"#.to_string())));
/// assert!(h.contains(&("RateLimit", r#""burst";r=0;t=1"#.to_string())));
/// assert!(h.contains(&("Retry-After", "1".to_string())));
/// assert!(h.contains(&("X-RateLimit-Remaining", "0".to_string())));
/// ```
pub fn write_headers(
    limits: &[HeaderLimit<'_>],
) -> Result<Vec<(&'static str, String)>, ConfigError> {
    let mut policy = ListSerializer::new();
    let mut state = ListSerializer::new();
    let q = KeyRef::constant("q");
    let w = KeyRef::constant("w");
    let r = KeyRef::constant("r");
    let t = KeyRef::constant("t");
    for l in limits {
        let name = StringRef::from_str(l.name).map_err(|_| {
            ConfigError::new(
                "headers.name",
                "must be printable ASCII (a Structured Field string)",
            )
        })?;
        let d = &l.decision;
        let until = if d.allowed { d.reset } else { d.retry_after };
        let _ = policy
            .bare_item(name)
            .parameter(q, sf_int(l.policy.quota))
            .parameter(w, sf_int(secs_up(l.policy.window)));
        let member = state.bare_item(name).parameter(r, sf_int(d.remaining));
        if until != Duration::MAX {
            let _ = member.parameter(t, sf_int(secs_up(until)));
        }
    }
    let mut out = Vec::with_capacity(6);
    let (Some(policy), Some(state)) = (policy.finish(), state.finish()) else {
        return Ok(out);
    };
    out.push(("RateLimit-Policy", policy));
    out.push(("RateLimit", state));
    let denied = limits
        .iter()
        .map(|l| &l.decision)
        .filter(|d| !d.allowed)
        .max_by_key(|d| d.retry_after);
    let binding = denied
        .or_else(|| {
            limits
                .iter()
                .map(|l| &l.decision)
                .min_by_key(|d| d.remaining)
        })
        .expect("non-empty");
    out.push(("X-RateLimit-Limit", binding.limit.to_string()));
    out.push(("X-RateLimit-Remaining", binding.remaining.to_string()));
    out.push(("X-RateLimit-Reset", secs_up(binding.reset).to_string()));
    if let Some(d) = denied.filter(|d| d.retry_after != Duration::MAX) {
        out.push(("Retry-After", secs_up(d.retry_after).max(1).to_string()));
    }
    Ok(out)
}

/// One member of a parsed `RateLimit-Policy` field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyItem {
    /// The policy name.
    pub name: String,
    /// `q`: the quota.
    pub quota: Option<u64>,
    /// `w`: the window.
    pub window: Option<Duration>,
}

/// One member of a parsed `RateLimit` field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitItem {
    /// The policy name.
    pub name: String,
    /// `r`: units remaining.
    pub remaining: Option<u64>,
    /// `t`: time until the limit admits again (or resets).
    pub reset: Option<Duration>,
}

fn members(value: &str) -> Vec<(String, Vec<(String, u64)>)> {
    let Ok(list) = Parser::new(value).parse::<sfv::List>() else {
        return Vec::new();
    };
    list.into_iter()
        .filter_map(|m| match m {
            ListEntry::Item(item) => {
                let name = match &item.bare_item {
                    BareItem::String(s) => s.as_str().to_owned(),
                    BareItem::Token(t) => t.as_str().to_owned(),
                    _ => return None,
                };
                let params = item
                    .params
                    .iter()
                    .filter_map(|(k, v)| {
                        let n = u64::try_from(i64::from(v.as_integer()?)).ok()?;
                        Some((k.as_str().to_owned(), n))
                    })
                    .collect();
                Some((name, params))
            }
            ListEntry::InnerList(_) => None,
        })
        .collect()
}

fn param(params: &[(String, u64)], key: &str) -> Option<u64> {
    params.iter().find(|(k, _)| k == key).map(|&(_, v)| v)
}

/// Parses a `RateLimit-Policy` field; an invalid field gives an empty list.
///
/// ```
/// use resilient::ratelimit::headers::parse_ratelimit_policy;
/// use std::time::Duration;
/// let p = parse_ratelimit_policy(r#""burst";q=100;w=60, "daily";q=1000;w=86400"#);
/// assert_eq!(p[0].quota, Some(100));
/// assert_eq!(p[1].window, Some(Duration::from_secs(86_400)));
/// assert!(parse_ratelimit_policy("\u{1}nonsense").is_empty());
/// ```
pub fn parse_ratelimit_policy(value: &str) -> Vec<PolicyItem> {
    members(value)
        .into_iter()
        .map(|(name, p)| PolicyItem {
            name,
            quota: param(&p, "q"),
            window: param(&p, "w").map(Duration::from_secs),
        })
        .collect()
}

/// Parses a `RateLimit` field; an invalid field gives an empty list.
///
/// ```
/// use resilient::ratelimit::headers::parse_ratelimit;
/// use std::time::Duration;
/// let l = parse_ratelimit(r#""burst";r=0;t=7"#);
/// assert_eq!(l[0].name, "burst");
/// assert_eq!(l[0].remaining, Some(0));
/// assert_eq!(l[0].reset, Some(Duration::from_secs(7)));
/// ```
pub fn parse_ratelimit(value: &str) -> Vec<LimitItem> {
    members(value)
        .into_iter()
        .map(|(name, p)| LimitItem {
            name,
            remaining: param(&p, "r"),
            reset: param(&p, "t").map(Duration::from_secs),
        })
        .collect()
}

/// Parses `Retry-After` as delay-seconds or an HTTP-date (relative to `now`; a date in
/// the past is a zero delay). Anything else is `None`.
///
/// ```
/// use resilient::ratelimit::headers::parse_retry_after;
/// use std::time::{Duration, SystemTime, UNIX_EPOCH};
/// let now = UNIX_EPOCH + Duration::from_secs(784_111_770);
/// assert_eq!(parse_retry_after("120", now), Some(Duration::from_secs(120)));
/// assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now), Some(Duration::from_secs(7)));
/// assert_eq!(parse_retry_after("soon", now), None);
/// ```
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let v = value.trim();
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        return v.parse::<u64>().ok().map(Duration::from_secs);
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

fn parse_u64(v: &str) -> Option<u64> {
    let v = v.trim();
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok()
}

/// What a server said about its limits, gathered from response headers. Implements
/// [`RetryAfter`], so an error type that carries it lets retry honour the server's delay.
///
/// `X-RateLimit-Reset` is read as delta seconds, or as a Unix timestamp when it is larger
/// than 10⁹ (some servers send epoch seconds).
///
/// ```
/// use resilient::RetryAfter;
/// use resilient::ratelimit::headers::ServerLimits;
/// use std::time::{Duration, SystemTime};
/// let s = ServerLimits::from_headers(
///     [("ratelimit", r#""burst";r=0;t=7"#), ("X-RateLimit-Limit", "100")],
///     SystemTime::now(),
/// );
/// assert_eq!(s.limit, Some(100));
/// assert_eq!(s.retry_after(), Some(Duration::from_secs(7)));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerLimits {
    /// `X-RateLimit-Limit`.
    pub limit: Option<u64>,
    /// `X-RateLimit-Remaining`.
    pub remaining: Option<u64>,
    /// `X-RateLimit-Reset`, as a delay from now.
    pub reset: Option<Duration>,
    /// `Retry-After`, as a delay from now.
    pub retry_after: Option<Duration>,
    /// `RateLimit-Policy` members.
    pub policies: Vec<PolicyItem>,
    /// `RateLimit` members.
    pub limits: Vec<LimitItem>,
}

impl ServerLimits {
    /// Gathers the rate-limit headers among `headers` (names are case-insensitive; other
    /// headers are ignored). `now` resolves HTTP-dates and epoch timestamps.
    pub fn from_headers<'a, I>(headers: I, now: SystemTime) -> Self
    where
        I: IntoIterator<Item = (&'a str, &'a str)>,
    {
        let mut s = Self::default();
        for (name, value) in headers {
            let n = name.trim();
            if n.eq_ignore_ascii_case("retry-after") {
                s.retry_after = parse_retry_after(value, now).or(s.retry_after);
            } else if n.eq_ignore_ascii_case("ratelimit") {
                s.limits.extend(parse_ratelimit(value));
            } else if n.eq_ignore_ascii_case("ratelimit-policy") {
                s.policies.extend(parse_ratelimit_policy(value));
            } else if n.eq_ignore_ascii_case("x-ratelimit-limit") {
                s.limit = parse_u64(value).or(s.limit);
            } else if n.eq_ignore_ascii_case("x-ratelimit-remaining") {
                s.remaining = parse_u64(value).or(s.remaining);
            } else if n.eq_ignore_ascii_case("x-ratelimit-reset") {
                s.reset = parse_u64(value)
                    .map(|v| {
                        if v > 1_000_000_000 {
                            let at = SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(v));
                            at.and_then(|at| at.duration_since(now).ok())
                                .unwrap_or(Duration::ZERO)
                        } else {
                            Duration::from_secs(v)
                        }
                    })
                    .or(s.reset);
            }
        }
        s
    }

    /// The delay the server asks for: `Retry-After` if present; else the longest `t` of a
    /// `RateLimit` member with `r=0`; else `X-RateLimit-Reset` when
    /// `X-RateLimit-Remaining` is 0. `None` if the server did not say it is exhausted.
    pub fn delay(&self) -> Option<Duration> {
        if let Some(d) = self.retry_after {
            return Some(d);
        }
        let exhausted = self
            .limits
            .iter()
            .filter(|l| l.remaining == Some(0))
            .filter_map(|l| l.reset)
            .max();
        if exhausted.is_some() {
            return exhausted;
        }
        if self.remaining == Some(0) {
            return self.reset;
        }
        None
    }
}

impl RetryAfter for ServerLimits {
    fn retry_after(&self) -> Option<Duration> {
        self.delay()
    }
}
