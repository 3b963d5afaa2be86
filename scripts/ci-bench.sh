#!/usr/bin/env bash
# CI speed check: `scripts/bench --quick` (about a minute on the 2-core VM) prints the
# figures and exits 1 when a ratio misses its target by more than the margin (see
# scripts/bench_report.py). Ratios are to references measured in the same run, so a
# slower CI machine does not fail it; a slower matcher does.
#
# The test exports are cached in $BENCH_CACHE (default: a fresh temporary directory,
# removed afterwards). Extra arguments go to scripts/bench (e.g. --json).
set -euo pipefail
cd "$(dirname "$0")/.."

python=.venv/bin/python
[ -x "$python" ] || python=python3

cleanup=""
if [ -z "${BENCH_CACHE:-}" ]; then
    BENCH_CACHE=$(mktemp -d -t contact-agent-bench.XXXXXX)
    cleanup=$BENCH_CACHE
fi
trap 'if [ -n "$cleanup" ]; then rm -rf "$cleanup"; fi' EXIT

echo "== speed (scripts/bench --quick)"
"$python" scripts/bench --quick --cache "$BENCH_CACHE" "$@"
