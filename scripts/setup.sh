#!/usr/bin/env bash
# Set up this checkout for the demo and the tests: README's first command, and CI.
#
#   bash scripts/setup.sh
#
# Installs the Debian packages the demo and the tests need (python3-venv, dbus-daemon,
# systemd for systemd-analyze) as root or through sudo, creates .venv and installs the
# agent with its test tools and the plotting extra (matplotlib, for the reports' plots).
# Needs Debian 12 / Raspberry Pi OS Bookworm or later (Python 3.11 or newer).
set -euo pipefail
cd "$(dirname "$0")/.."

# gcc, python3-dev, libssl-dev: the package build compiles the native crypto backend
# (agent/_gaen.c); without them the pure backend answers the same, more slowly.
bash scripts/apt-need.sh python3-venv dbus-daemon systemd gcc python3-dev libssl-dev
if ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "setup.sh: contact-agent needs Python 3.11 or newer (Debian 12 / Raspberry Pi OS" \
        "Bookworm or later); python3 is $(python3 -V 2>&1)" >&2
    exit 1
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
echo "setup.sh: installing contact-agent and its test tools into .venv"
if ! .venv/bin/pip install -q --disable-pip-version-check -e '.[test,field]' \
        > .venv/pip-install.log 2>&1; then
    cat .venv/pip-install.log >&2
    echo "setup.sh: pip install failed" >&2
    exit 1
fi
# The bytecode, now, as a wheel install has it: an editable install leaves it to the first
# run, which cannot write it where PYTHONDONTWRITEBYTECODE is set (every command would
# compile the modules it imports again: ~25 ms of each `contact-agent status`).
.venv/bin/python -m compileall -q -j 0 agent > /dev/null
echo "setup.sh: ready (demo: .venv/bin/contact-agent demo; tests: .venv/bin/python -m pytest -q)"
