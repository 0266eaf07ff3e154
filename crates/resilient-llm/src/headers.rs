//! The waits a provider asks for in its response headers.
//!
//! OpenAI-style APIs send, besides the standard `Retry-After`, a `retry-after-ms` and the
//! state of two limits: `x-ratelimit-remaining-requests` / `x-ratelimit-reset-requests`
//! and `x-ratelimit-remaining-tokens` / `x-ratelimit-reset-tokens`, the resets written as
//! Go durations (`"6m0s"`, `"1.5s"`, `"20ms"`).
//!
//! ```
//! use http::HeaderMap;
//! use resilient_llm::headers::retry_delay;
//! use std::time::Duration;
//! let mut h = HeaderMap::new();
//! h.insert("x-ratelimit-remaining-tokens", "0".parse().unwrap());
//! h.insert("x-ratelimit-reset-tokens", "1.5s".parse().unwrap());
//! h.insert("x-ratelimit-remaining-requests", "12".parse().unwrap());
//! h.insert("x-ratelimit-reset-requests", "6m0s".parse().unwrap());
//! // only the exhausted limit counts
//! assert_eq!(retry_delay(&h), Some(Duration::from_millis(1500)));
//! ```

use std::time::{Duration, SystemTime};

use http::HeaderMap;

/// Parses a Go-style duration as OpenAI writes it: one or more `<number><unit>` parts,
/// units `h`, `m`, `s`, `ms`, `us` (or `µs`) and `ns`, numbers with an optional fraction
/// (`"6m0s"`, `"1.5s"`, `"20ms"`, `"1h2m3.5s"`). A bare number is seconds. `None` for
/// anything else.
///
/// ```
/// use resilient_llm::headers::parse_duration;
/// use std::time::Duration;
/// assert_eq!(parse_duration("6m0s"), Some(Duration::from_secs(360)));
/// assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
/// assert_eq!(parse_duration("20ms"), Some(Duration::from_millis(20)));
/// assert_eq!(parse_duration("1h2m3.5s"), Some(Duration::from_millis(3_723_500)));
/// assert_eq!(parse_duration("2"), Some(Duration::from_secs(2)));
/// assert_eq!(parse_duration("soon"), None);
/// ```
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    if let Ok(secs) = text.parse::<f64>() {
        return Duration::try_from_secs_f64(secs).ok();
    }
    let mut rest = text;
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return None;
        }
        let number: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds_per_unit = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += number * seconds_per_unit;
    }
    // whole nanoseconds: 0.02 s as f64 is not exactly 20 ms
    let nanos = (total * 1e9).round();
    (nanos.is_finite() && nanos >= 0.0 && nanos < u64::MAX as f64)
        .then(|| Duration::from_nanos(nanos as u64))
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name)?.to_str().ok().map(str::trim)
}

/// The wait `headers` ask for before the next request, the first found of:
///
/// 1. `retry-after-ms` (milliseconds, sent by OpenAI and Azure OpenAI);
/// 2. `Retry-After` (seconds or an HTTP date) and the IETF `RateLimit` headers, through
///    [`resilient::http::server_delay`];
/// 3. the `x-ratelimit-reset-requests` / `x-ratelimit-reset-tokens` of the limits whose
///    `x-ratelimit-remaining-*` is `0` (the longer one); when no remaining count is sent,
///    the longer of the resets present.
///
/// ```
/// use http::HeaderMap;
/// use resilient_llm::headers::retry_delay;
/// use std::time::Duration;
/// let mut h = HeaderMap::new();
/// h.insert("retry-after", "3".parse().unwrap());
/// assert_eq!(retry_delay(&h), Some(Duration::from_secs(3)));
/// h.insert("retry-after-ms", "250".parse().unwrap());
/// assert_eq!(retry_delay(&h), Some(Duration::from_millis(250)));
/// ```
pub fn retry_delay(headers: &HeaderMap) -> Option<Duration> {
    if let Some(ms) = header(headers, "retry-after-ms").and_then(|v| v.parse::<f64>().ok())
        && let Ok(d) = Duration::try_from_secs_f64(ms / 1000.0)
    {
        return Some(d);
    }
    if let Some(d) = resilient::http::server_delay(headers, SystemTime::now()) {
        return Some(d);
    }
    let limit = |kind: &str| {
        let reset = header(headers, &format!("x-ratelimit-reset-{kind}")).and_then(parse_duration);
        let remaining = header(headers, &format!("x-ratelimit-remaining-{kind}"))
            .and_then(|v| v.parse::<u64>().ok());
        (reset, remaining)
    };
    let limits = [limit("requests"), limit("tokens")];
    let exhausted = limits
        .iter()
        .filter(|(_, remaining)| *remaining == Some(0))
        .filter_map(|(reset, _)| *reset)
        .max();
    if exhausted.is_some() {
        return exhausted;
    }
    if limits.iter().all(|(_, remaining)| remaining.is_none()) {
        return limits.iter().filter_map(|(reset, _)| *reset).max();
    }
    None
}
