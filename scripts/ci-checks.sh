#!/usr/bin/env bash
# Extra CI checks for the systemd integration (run by .ci/run when present):
#  1. `systemd-analyze security --offline=true` must rate the unit at most MAX_EXPOSURE;
#  2. `systemd-analyze verify` must be clean apart from the missing installed binary;
#  3. the sysusers.d file must parse; the shell scripts must parse.
set -euo pipefail
cd "$(dirname "$0")/.."

UNIT=${UNIT:-systemd/contact-agent.service}
SYSUSERS=systemd/contact-agent.conf
MAX_EXPOSURE=${MAX_EXPOSURE:-1.5}
fail=0

if ! command -v systemd-analyze >/dev/null 2>&1; then
    echo "ci-checks: systemd-analyze is not installed (apt-get install systemd)" >&2
    exit 1
fi

echo "-- systemd-analyze security (must be <= $MAX_EXPOSURE)"
# --threshold takes tenths: 1.5 -> 15. The command exits non-zero above it.
threshold=$(awk -v m="$MAX_EXPOSURE" 'BEGIN { printf "%d", m * 10 + 0.5 }')
set +e
security=$(systemd-analyze security --offline=true --threshold="$threshold" "$UNIT" 2>&1)
security_rc=$?
set -e
score=$(printf '%s\n' "$security" | sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p' | tail -n 1)
if [ -z "$score" ]; then
    printf '%s\n' "$security" >&2
    echo "ci-checks: could not read the exposure level" >&2
    fail=1
elif ! awk -v s="$score" -v m="$MAX_EXPOSURE" 'BEGIN { exit !(s <= m) }' || [ "$security_rc" -ne 0 ]; then
    printf '%s\n' "$security" | grep -F '✗' >&2 || true
    echo "ci-checks: exposure $score is above $MAX_EXPOSURE (rc $security_rc)" >&2
    fail=1
else
    echo "exposure $score (OK)"
fi

echo "-- systemd-analyze verify"
set +e
verify=$(systemd-analyze verify "$UNIT" 2>&1)
set -e
# Expected on a build machine: the installed program and man pages do not exist here.
unexpected=$(printf '%s\n' "$verify" | grep -v -e '^$' \
    -e 'is not executable: No such file or directory' \
    -e 'Command .* not found' \
    -e "man:.*not found\|Documentation=.*not found\|No manual entry" || true)
if [ -n "$unexpected" ]; then
    printf '%s\n' "$unexpected" >&2
    echo "ci-checks: systemd-analyze verify reported problems" >&2
    fail=1
else
    echo "verify clean (missing binaries ignored)"
fi

echo "-- sysusers.d syntax"
if command -v systemd-sysusers >/dev/null 2>&1; then
    if ! out=$(systemd-sysusers --dry-run "$PWD/$SYSUSERS" 2>&1) || grep -qi 'fail\|invalid\|syntax' <<<"$out"; then
        printf '%s\n' "$out" >&2
        echo "ci-checks: $SYSUSERS does not parse" >&2
        fail=1
    else
        echo "$SYSUSERS ok"
    fi
fi

echo "-- shell syntax"
for script in scripts/*.sh; do
    bash -n "$script" || { echo "ci-checks: $script has a syntax error" >&2; fail=1; }
done

exit "$fail"
