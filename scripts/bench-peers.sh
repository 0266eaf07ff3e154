#!/usr/bin/env bash
# Issue 10's harness (crates/resilient-bench/benches/peers.rs), three runs in each of the
# two profiles: `bench` (cargo's default for `cargo bench`) and `bench-lto` (fat LTO,
# codegen-units = 1). Prints `uptime` before every run; the tables go to the file given as
# the first argument (default: stdout). Progress goes to stderr.
#
#   scripts/bench-peers.sh [OUT] [-- ARGS...]
#
# ARGS are passed to the harness (a row filter, `--rounds N`, `--ms M`, `--tsv`), e.g.
#   scripts/bench-peers.sh /tmp/peers.md -- --rounds 3 --ms 50
#   scripts/bench-peers.sh - -- retry
# RUNS=1 makes one run per profile; PROFILES="bench" picks profiles.
set -euo pipefail
cd "$(dirname "$0")/.."

out="-"
if [[ $# -gt 0 && "$1" != "--" ]]; then
    out="$1"
    shift
fi
if [[ $# -gt 0 && "$1" == "--" ]]; then
    shift
fi
runs="${RUNS:-3}"
profiles="${PROFILES:-bench bench-lto}"

if [[ "$out" == "-" ]]; then
    exec 3>&1
else
    exec 3>"$out"
fi

for profile in $profiles; do
    echo "building profile $profile" >&2
    nice -n 10 cargo bench -q -p resilient-bench --profile "$profile" --bench peers --no-run >&2
done

for run in $(seq 1 "$runs"); do
    for profile in $profiles; do
        {
            echo
            echo "### Run $run, profile \`$profile\`"
            echo
            echo "Command: \`cargo bench -p resilient-bench --profile $profile --bench peers -- $*\`"
            echo
            echo "Start: $(date -u +%H:%M:%S) UTC, commit $(git rev-parse --short HEAD), uptime:$(uptime | sed 's/.*load average/ load average/')"
            echo
        } >&3
        echo "run $run, profile $profile: $(uptime)" >&2
        cargo bench -q -p resilient-bench --profile "$profile" --bench peers -- "$@" >&3
    done
done
