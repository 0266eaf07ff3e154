#!/usr/bin/env bash
# Checks the layering of the `resilient` crate (run by scripts/test.sh):
#  1. internal code imports by module path, never through the crate root's re-exports
#     (no `use crate::{..}`, no `crate::Name` of a re-exported item), so the real
#     dependency graph is visible and renaming a re-export cannot break internals;
#  2. the engine (`src/engine/`: clock, randomness, errors, context, classification, the
#     guard seam) imports no strategy module and not the pipeline built on top of it;
#  3. the strategies (retry, timeout, circuit, ratelimit, bulkhead, fallback, hedge,
#     failover, health, chaos) import neither the
#     pipeline, the tower adapter nor the registry built on top of them (the pipeline's entry for each
#     strategy lives in `src/pipeline/`, their tower layers over pipelines in `tower.rs`).
# Comment lines (docs, intra-doc links) are exempt.
set -euo pipefail
cd "$(dirname "$0")/../crates/resilient/src"
status=0
code_lines() { grep -rnE "$1" --include=*.rs "${@:2}" | grep -vE '^[^:]+:[0-9]+:\s*//' || true; }

hits=$(code_lines '(^|[^:[:alnum:]_])crate::(\{|[A-Z]|system_clock\b|thread_random\b|inherited_deadline\b)' . \
    | grep -v '^\./lib\.rs:' || true)
if [[ -n "$hits" ]]; then
    echo "check-layers: import by module path, not through the crate root's re-exports:" >&2
    echo "$hits" >&2
    status=1
fi

hits=$(code_lines 'crate::(retry|timeout|circuit|ratelimit|bulkhead|pipeline|tower|registry|testing|guide|__private)\b' engine)
if [[ -n "$hits" ]]; then
    echo "check-layers: the engine must not import strategy modules or the pipeline:" >&2
    echo "$hits" >&2
    status=1
fi
hits=$(code_lines 'crate::(pipeline|tower|registry|register_pattern|testing|guide|__private)\b' retry timeout circuit ratelimit bulkhead fallback hedge failover health chaos)
if [[ -n "$hits" ]]; then
    echo "check-layers: a strategy must not import the pipeline, the tower adapter or the registry:" >&2
    echo "$hits" >&2
    status=1
fi
[[ $status == 0 ]] && echo "check-layers: ok"
exit $status
