//! HTTP headers: written from decisions, parsed back, and parsers that never panic.
#![cfg(feature = "http-headers")]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proptest::prelude::*;
use resilient::ratelimit::headers::{
    HeaderLimit, ServerLimits, parse_ratelimit, parse_ratelimit_policy, parse_retry_after,
    write_headers,
};
use resilient::ratelimit::{Gcra, Limiter, Rate};
use resilient::{AllErrors, Classify, HonorRetryAfter, RetryAfter};

fn get<'a>(h: &'a [(&'static str, String)], name: &str) -> Option<&'a str> {
    h.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
}

#[test]
fn writes_ietf_and_legacy_fields() {
    let burst = Gcra::limiter(Rate::per_minute(100)).unwrap();
    let daily = Gcra::limiter(Rate::per_day(1000)).unwrap();
    let now = Duration::ZERO;
    let b = burst.try_acquire(now, 100).unwrap();
    let d = daily.try_acquire(now, 100).unwrap();
    let h = write_headers(&[
        HeaderLimit {
            name: "burst",
            policy: burst.policy(),
            decision: b,
        },
        HeaderLimit {
            name: "daily",
            policy: daily.policy(),
            decision: d,
        },
    ])
    .unwrap();
    assert_eq!(
        get(&h, "RateLimit-Policy"),
        Some(r#""burst";q=100;w=60, "daily";q=1000;w=86400"#)
    );
    assert_eq!(
        get(&h, "RateLimit"),
        Some(r#""burst";r=0;t=60, "daily";r=900;t=8640"#)
    );
    assert_eq!(get(&h, "X-RateLimit-Limit"), Some("100"));
    assert_eq!(get(&h, "X-RateLimit-Remaining"), Some("0"));
    assert_eq!(get(&h, "X-RateLimit-Reset"), Some("60"));
    assert_eq!(get(&h, "Retry-After"), None, "allowed: no Retry-After");

    let denied = burst.try_acquire(Duration::from_millis(100), 1).unwrap();
    let h = write_headers(&[HeaderLimit {
        name: "burst",
        policy: burst.policy(),
        decision: denied,
    }])
    .unwrap();
    // 0.5 s to wait rounds up to 1 s.
    assert_eq!(get(&h, "RateLimit"), Some(r#""burst";r=0;t=1"#));
    assert_eq!(get(&h, "Retry-After"), Some("1"));
    assert!(write_headers(&[]).unwrap().is_empty());
    let bad = write_headers(&[HeaderLimit {
        name: "bad\u{7f}",
        policy: burst.policy(),
        decision: denied,
    }]);
    assert_eq!(bad.unwrap_err().field(), "headers.name");
}

#[test]
fn written_headers_parse_back() {
    let l = Gcra::limiter(Rate::per_second(10)).unwrap();
    l.try_acquire(Duration::ZERO, 10).unwrap();
    let d = l.try_acquire(Duration::ZERO, 1).unwrap();
    let h = write_headers(&[HeaderLimit {
        name: "api",
        policy: l.policy(),
        decision: d,
    }])
    .unwrap();
    let s = ServerLimits::from_headers(h.iter().map(|(n, v)| (*n, v.as_str())), SystemTime::now());
    assert_eq!(s.limit, Some(10));
    assert_eq!(s.remaining, Some(0));
    assert_eq!(s.retry_after, Some(Duration::from_secs(1)));
    assert_eq!(s.policies[0].quota, Some(10));
    assert_eq!(s.policies[0].window, Some(Duration::from_secs(1)));
    assert_eq!(s.limits[0].name, "api");
    assert_eq!(s.retry_after(), Some(Duration::from_secs(1)));
}

#[test]
fn parses_the_draft_examples_and_tokens() {
    let p = parse_ratelimit_policy(r#""burst";q=100;w=60,"daily";q=1000;w=86400"#);
    assert_eq!(p.len(), 2);
    assert_eq!(p[1].name, "daily");
    let l = parse_ratelimit(r#"burst;r=3;t=2, "x";r=-1"#);
    assert_eq!(l[0].name, "burst");
    assert_eq!(l[0].remaining, Some(3));
    assert_eq!(l[1].remaining, None, "negative numbers are ignored");
    assert!(
        parse_ratelimit("(1 2), 3").is_empty(),
        "non-name members are skipped"
    );
}

#[test]
fn retry_after_forms() {
    let now = UNIX_EPOCH + Duration::from_secs(784_111_777);
    assert_eq!(
        parse_retry_after(" 30 ", now),
        Some(Duration::from_secs(30))
    );
    assert_eq!(
        parse_retry_after("Sun, 06 Nov 1994 08:49:47 GMT", now),
        Some(Duration::from_secs(10))
    );
    assert_eq!(
        parse_retry_after("Sun, 06 Nov 1994 08:49:00 GMT", now),
        Some(Duration::ZERO),
        "a past date means now"
    );
    for bad in ["", "-1", "1.5", "99999999999999999999999", "tomorrow"] {
        assert_eq!(parse_retry_after(bad, now), None, "{bad:?}");
    }
}

#[test]
fn server_delay_precedence_and_epoch_reset() {
    let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let s = ServerLimits::from_headers(
        [
            ("X-RateLimit-Remaining", "0"),
            ("X-RateLimit-Reset", "1700000042"),
        ],
        now,
    );
    assert_eq!(s.delay(), Some(Duration::from_secs(42)));
    let s = ServerLimits::from_headers(
        [("RateLimit", r#""a";r=0;t=5, "b";r=0;t=9, "c";r=4;t=60"#)],
        now,
    );
    assert_eq!(s.delay(), Some(Duration::from_secs(9)));
    let s = ServerLimits::from_headers([("ratelimit", r#""a";r=2;t=5"#)], now);
    assert_eq!(s.delay(), None, "not exhausted");
    let s =
        ServerLimits::from_headers([("Retry-After", "3"), ("RateLimit", r#""a";r=0;t=9"#)], now);
    assert_eq!(s.delay(), Some(Duration::from_secs(3)), "Retry-After wins");
}

/// An error type a client returns for HTTP 429, carrying what the server said.
#[derive(Debug)]
struct TooMany(ServerLimits);
impl RetryAfter for TooMany {
    fn retry_after(&self) -> Option<Duration> {
        self.0.retry_after()
    }
}

#[test]
fn retry_honours_parsed_headers() {
    let err = TooMany(ServerLimits::from_headers(
        [("Retry-After", "7")],
        SystemTime::now(),
    ));
    let c = HonorRetryAfter(AllErrors);
    let r: Result<(), TooMany> = Err(err);
    assert_eq!(c.retry_after(1, &r), Some(Duration::from_secs(7)));
}

proptest! {
    #[test]
    fn parsers_never_panic(s in any::<String>(), secs in any::<u64>()) {
        let now = UNIX_EPOCH.checked_add(Duration::from_secs(secs % (1 << 40))).unwrap();
        let _ = parse_retry_after(&s, now);
        let _ = parse_ratelimit(&s);
        let _ = parse_ratelimit_policy(&s);
        let limits = ServerLimits::from_headers(
            [("retry-after", s.as_str()), ("ratelimit", s.as_str()),
             ("ratelimit-policy", s.as_str()), ("x-ratelimit-reset", s.as_str()),
             ("x-ratelimit-limit", s.as_str()), ("x-ratelimit-remaining", s.as_str())],
            now,
        );
        let _ = limits.delay();
    }

    #[test]
    fn structured_field_like_input_never_panics(
        s in r#"[" a-z0-9;=,()*?:.\-]{0,64}"#
    ) {
        let _ = parse_ratelimit(&s);
        let _ = parse_ratelimit_policy(&s);
    }

    #[test]
    fn written_values_round_trip(quota in 1u64..1_000_000, window in 1u64..100_000, used in 0u64..1_000_000) {
        let used = used % (quota + 1);
        let l = Gcra::limiter(Rate::new(quota, Duration::from_secs(window))).unwrap();
        let d = l.try_acquire(Duration::ZERO, used).unwrap();
        let h = write_headers(&[HeaderLimit { name: "p", policy: l.policy(), decision: d }]).unwrap();
        let s = ServerLimits::from_headers(h.iter().map(|(n, v)| (*n, v.as_str())), SystemTime::now());
        prop_assert_eq!(s.policies[0].quota, Some(quota));
        prop_assert_eq!(s.limits[0].remaining, Some(d.remaining));
        prop_assert_eq!(s.remaining, Some(d.remaining));
    }
}

/// A decision that can never be admitted (a limit cut below the cost: `retry_after` is
/// `Duration::MAX`) writes no `Retry-After` and no `t` for its limit, instead of
/// overflowing `as_secs() + 1` (a panic with overflow checks; `Retry-After: 1` and `t=0`
/// in release builds, for a request that can never pass).
#[test]
fn a_never_decision_writes_no_retry_after_and_no_t() {
    use resilient::ratelimit::{Decision, FixedWindow, RateLimiter};
    use std::sync::Arc;
    let window = Arc::new(FixedWindow::limiter(5, Duration::from_secs(60)).unwrap());
    let l = RateLimiter::builder()
        .limit(window.clone())
        .cost(3)
        .build()
        .unwrap();
    assert!(l.check().allowed);
    window.algorithm().set_limit(2).unwrap();
    let never = l.check();
    assert!(!never.allowed);
    assert_eq!(never.retry_after, Duration::MAX);
    let other = Gcra::limiter(Rate::per_second(1)).unwrap();
    let fine = other.try_acquire(Duration::ZERO, 1).unwrap();
    let h = write_headers(&[
        HeaderLimit {
            name: "cut",
            policy: window.policy(),
            decision: never,
        },
        HeaderLimit {
            name: "ok",
            policy: other.policy(),
            decision: fine,
        },
    ])
    .unwrap();
    assert_eq!(get(&h, "Retry-After"), None, "{h:?}");
    let state = get(&h, "RateLimit").unwrap();
    assert_eq!(state, r#""cut";r=0, "ok";r=0;t=1"#);
    let parsed = parse_ratelimit(state);
    assert_eq!(parsed[0].reset, None);
    assert_eq!(parsed[1].reset, Some(Duration::from_secs(1)));
    assert_eq!(get(&h, "X-RateLimit-Limit"), Some("2"));
    // The largest finite wait is written capped, never wrapped.
    let long = Decision {
        retry_after: Duration::MAX - Duration::from_nanos(1),
        ..never
    };
    let h = write_headers(&[HeaderLimit {
        name: "long",
        policy: window.policy(),
        decision: long,
    }])
    .unwrap();
    assert!(
        h.contains(&("Retry-After", "999999999999999".to_string())),
        "{h:?}"
    );
}
