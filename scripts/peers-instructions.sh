#!/usr/bin/env bash
# Instructions per call of every contender of issue 10's harness (benches/peers.rs), from
# callgrind: deterministic, unlike timings on a shared machine. Each contender runs alone in
# the harness's quick mode (no `--bench`: 2 x N calls) for N = 1,000 and N = 6,000; the
# difference of the two totals over 10,000 is its instructions per call. From each total the
# calibration of the CPU's counter (quanta's, in a `once_cell` initializer) is taken out: it
# spins for a time, not a number of instructions, so it does not cancel out.
#
#   scripts/peers-instructions.sh [ROW_FILTER]      (PROFILE=bench-lto for the LTO build)
set -euo pipefail
cd "$(dirname "$0")/.."
profile="${PROFILE:-bench}"
nice -n 10 cargo bench -q -p resilient-bench --profile "$profile" --bench peers --no-run >&2
bin=$(cargo bench -p resilient-bench --profile "$profile" --bench peers --no-run --message-format=json 2>/dev/null |
    sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -1)

out=$(mktemp)
trap 'rm -f "$out"' EXIT
total() { # row contender iters
    valgrind --tool=callgrind --callgrind-out-file="$out" "$bin" "$1" --only "$2" --iters "$3" >/dev/null 2>&1
    callgrind_annotate --inclusive=yes "$out" 2>/dev/null | tr -d , | awk '
        / PROGRAM TOTALS/ { total = $1 }
        /once_cell::imp::OnceCell<T>::initialize / && !seen { calibration = $1; seen = 1 }
        END { print total - calibration }'
}

echo "profile \`$profile\`, instructions per call (callgrind)"
echo
echo "| row | contender | instructions per call |"
echo "|---|---|---:|"
"$bin" --list ${1:+"$1"} | while IFS=$'\t' read -r row name; do
    a=$(total "$row" "$name" 1000)
    b=$(total "$row" "$name" 6000)
    echo "| $row | ${name//|/\\|} | $(( (b - a) / 10000 )) |"
done
