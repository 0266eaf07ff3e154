#!/usr/bin/env bash
# Builds resilient's docs the way docs.rs does (all features, `--cfg docsrs`, which turns on
# `doc_cfg` in lib.rs) and checks that feature-gated items carry their
# "Available on crate feature ..." badge. docs.rs uses nightly; RUSTC_BOOTSTRAP=1 lets the
# stable rustdoc accept the nightly-only `doc_cfg` feature for this build.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=target/docsrs # RUSTC_BOOTSTRAP would invalidate target/ otherwise
RUSTC_BOOTSTRAP=1 RUSTDOCFLAGS="--cfg docsrs -D warnings" \
    cargo doc -p resilient --all-features --no-deps

doc=$CARGO_TARGET_DIR/doc/resilient
# page : feature whose badge it must show (one gated item of each feature, and the
# tower/http-headers items of the rate limiter and breaker)
checks=(
    "index.html:json"
    "index.html:macros"
    "index.html:tower"
    "attr.retry.html:macros"
    "struct.Pipeline.html:tower"
    "circuit/struct.CircuitBreaker.html:tower"
    "ratelimit/guard/struct.RateLimiter.html:tower"
    "ratelimit/keyed/struct.KeyedLimiter.html:tower"
    "ratelimit/index.html:http-headers"
    "ratelimit/headers/index.html:http-headers"
    "index.html:http"
    "http/index.html:http"
    "attr.fallback.html:macros"
    "fallback/index.html:tower"
    "hedge/index.html:tower"
    "health/index.html:tower"
    "failover/index.html:tower"
    "attr.hedge.html:macros"
    "attr.health_aware.html:macros"
    "attr.pattern.html:macros"
    "registry/index.html:config"
    "registry/builtin/fn.parse_json.html:json"
)
failed=0
for c in "${checks[@]}"; do
    page=${c%%:*} feature=${c##*:}
    if ! grep -q "Available on <strong>crate feature <code>$feature</code>\|Available on crate feature \`$feature\` only" "$doc/$page"; then
        echo "docsrs.sh: no '$feature' feature badge on $page" >&2
        failed=1
    fi
done
exit $failed
