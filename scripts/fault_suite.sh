#!/usr/bin/env bash
# The reliability, security and privacy figures of docs/reliability.md, reproduced.
#
#   scripts/fault_suite.sh            # the full run (about 20 min on 2 cores)
#   scripts/fault_suite.sh --quick    # the CI-sized run (about 4 min)
#
# Runs, and prints the figures of:
#   1. scripts/fault_killdaemon.py  kill -9 of `contact-agent run` (200 rounds; quick: 30)
#   2. scripts/killtest_store.py    kill -9 of a store writer (200 rounds; quick: 50)
#   3. scripts/flood.py             2,000 adverts/s for 10 min (quick: 30 s)
#   3b. scripts/hostile_keyserver.py  every hostile key server scenario against the daemon
#      (39 junk files of 19.5 MB, 4 KB/s drip, stall, ...; quick: the test suite's sizes)
#   4. the fault, privacy and fuzz tests (tests/faults, tests/privacy, tests/fuzz), the
#      fuzz targets with FUZZ_EXAMPLES examples each (3,000; quick: 300)
#   5. systemd-analyze security of the shipped unit (when systemd-analyze exists)
# Exit status 0 when every part passed.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}

if [ "${1:-}" = "--quick" ]; then
    KILL_ROUNDS=30 STORE_ROUNDS=50 FLOOD_MINUTES=0.5 FUZZ=300 HOSTILE=(--quick)
else
    KILL_ROUNDS=200 STORE_ROUNDS=200 FLOOD_MINUTES=10 FUZZ=3000 HOSTILE=()
fi
failed=()

run() {
    local name=$1
    shift
    echo
    echo "== $name: $*"
    local started=$SECONDS
    if "$@"; then
        echo "== $name: passed ($((SECONDS - started)) s)"
    else
        echo "== $name: FAILED ($((SECONDS - started)) s)"
        failed+=("$name")
    fi
}

run "kill -9 of the daemon" "$PY" scripts/fault_killdaemon.py --rounds "$KILL_ROUNDS"
run "kill -9 of the store" "$PY" scripts/killtest_store.py --rounds "$STORE_ROUNDS"
run "RPI flood" "$PY" scripts/flood.py --minutes "$FLOOD_MINUTES"
run "hostile key server" "$PY" scripts/hostile_keyserver.py "${HOSTILE[@]}"
run "fault, privacy and fuzz tests" env FUZZ_EXAMPLES="$FUZZ" "$PY" -m pytest -q \
    -p no:cacheprovider --durations=0 tests/faults tests/privacy tests/fuzz
if command -v systemd-analyze >/dev/null 2>&1; then
    run "systemd sandbox" sh -c \
        'systemd-analyze security --offline=true systemd/contact-agent.service | tail -n 1'
fi

echo
if [ ${#failed[@]} -eq 0 ]; then
    echo "fault suite: all parts passed"
else
    echo "fault suite: FAILED: ${failed[*]}"
    exit 1
fi
