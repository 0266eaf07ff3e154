#!/usr/bin/env bash
# The whole test suite: formatting, lints, tests, docs. This is the README's test command.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
# Property tests draw their cases from a fixed seed, so that a run is repeatable (set
# PROPTEST_RNG_SEED to another number to explore other cases; failures found that way go
# to the tests' `.proptest-regressions` files and are re-run first every time).
export PROPTEST_RNG_SEED="${PROPTEST_RNG_SEED:-20261206}"
cargo fmt --all -- --check
./scripts/check-layers.sh
cargo clippy --workspace --all-targets --all-features -- -D warnings
# the lean build (no default features) must stay clean too
cargo clippy -p resilient --no-default-features --all-targets -- -D warnings
cargo test --workspace --all-features
# loom models of the circuit breaker's half-open permits, of GCRA's reserve/refund path and of the bulkhead's slot hand-over
# and rate changes
# (bounded preemptions, own target dir)
RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 CARGO_TARGET_DIR=target/loom \
  cargo test -p resilient --release --no-default-features --test loom_circuit --test loom_gcra --test loom_bulkhead
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --all-features --no-deps
