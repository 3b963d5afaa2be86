#!/usr/bin/env bash
# Install contact-agent as a systemd service on Raspberry Pi OS / Debian.
#
#   sudo scripts/install.sh              install or upgrade (idempotent), enable and start
#   sudo scripts/install.sh --uninstall  remove the program, unit and account; keep data+config
#   sudo scripts/install.sh --uninstall --purge   also delete /var/lib/contact-agent and
#                                                 /etc/contact-agent (own keys, sightings)
# Options:
#   --root DIR        install into an alternate root (packaging, tests): no apt, no
#                     systemctl, no account creation (the sysusers.d file is still written)
#   --no-apt          do not apt-get install the system packages
#   --no-start        enable the service but do not (re)start it
#   --pip-args "..."  extra pip arguments, e.g. "--no-index --find-links /media/wheels"
#   --python PATH     the Python used to create the venv (default: python3)
#   --source PATH     what pip installs: this checkout (default) or a built wheel
set -euo pipefail

SRC=$(cd "$(dirname "$0")/.." && pwd)
ROOT=""
APT=1
START=1
UNINSTALL=0
PURGE=0
PIP_ARGS=""
PYTHON=python3
SOURCE=""

while [ $# -gt 0 ]; do
    case "$1" in
        --root) ROOT=$(realpath -m "$2"); shift 2 ;;
        --no-apt) APT=0; shift ;;
        --no-start) START=0; shift ;;
        --uninstall) UNINSTALL=1; shift ;;
        --purge) PURGE=1; shift ;;
        --pip-args) PIP_ARGS=$2; shift 2 ;;
        --python) PYTHON=$2; shift 2 ;;
        --source) SOURCE=$(realpath "$2"); shift 2 ;;
        -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
        *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

PREFIX=$ROOT/opt/contact-agent
VENV=$PREFIX/venv
UNIT_DIR=$ROOT/etc/systemd/system
SYSUSERS_DIR=$ROOT/usr/lib/sysusers.d
CONF_DIR=$ROOT/etc/contact-agent
DATA_DIR=$ROOT/var/lib/contact-agent
BIN_LINK=$ROOT/usr/local/bin/contact-agent
LIVE=0
[ -z "$ROOT" ] && LIVE=1

say() { echo "install.sh: $*"; }

if [ "$LIVE" -eq 1 ] && [ "$(id -u)" -ne 0 ]; then
    echo "install.sh: run as root (sudo), or use --root DIR" >&2
    exit 1
fi
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "install.sh: contact-agent needs Python 3.11 or newer (Debian 12 / Raspberry Pi OS" \
        "Bookworm or later); $PYTHON is $("$PYTHON" -V 2>&1 || echo missing)" >&2
    exit 1
fi
if [ "$LIVE" -eq 1 ] && ! command -v systemctl >/dev/null 2>&1; then
    echo "install.sh: systemctl not found; this installer needs systemd" >&2
    exit 1
fi

uninstall() {
    if [ "$LIVE" -eq 1 ]; then
        systemctl disable --now contact-agent.service 2>/dev/null || true
    fi
    rm -f "$UNIT_DIR/contact-agent.service" "$BIN_LINK" "$SYSUSERS_DIR/contact-agent.conf"
    rm -rf "$PREFIX"
    if [ "$LIVE" -eq 1 ]; then
        systemctl daemon-reload
        if id contact-agent >/dev/null 2>&1; then
            userdel contact-agent 2>/dev/null || say "could not remove the user contact-agent"
        fi
    fi
    if [ "$PURGE" -eq 1 ]; then
        rm -rf "$DATA_DIR" "$CONF_DIR"
        say "removed; data and configuration deleted"
    else
        say "removed; data kept in $DATA_DIR, configuration in $CONF_DIR (use --purge to delete)"
    fi
}

if [ "$UNINSTALL" -eq 1 ]; then
    uninstall
    exit 0
fi

# 1. System packages (BlueZ, D-Bus, venv support, the C extension's build tools).
if [ "$LIVE" -eq 1 ] && [ "$APT" -eq 1 ]; then
    # gcc, python3-dev, libssl-dev: the package build compiles the crypto backend (agent/_gaen.c)
    bash "$SRC/scripts/apt-need.sh" python3-venv bluez dbus gcc python3-dev libssl-dev
fi

# 2. The service account (sysusers.d; falls back to useradd on systems without it).
install -D -m 0644 "$SRC/systemd/contact-agent.conf" "$SYSUSERS_DIR/contact-agent.conf"
if [ "$LIVE" -eq 1 ]; then
    if command -v systemd-sysusers >/dev/null 2>&1; then
        systemd-sysusers "$SYSUSERS_DIR/contact-agent.conf"
    elif ! id contact-agent >/dev/null 2>&1; then
        getent group bluetooth >/dev/null || groupadd --system bluetooth
        useradd --system --home-dir /var/lib/contact-agent --shell /usr/sbin/nologin \
            --user-group --groups bluetooth contact-agent
    fi
    id -nG contact-agent | grep -qw bluetooth || usermod -a -G bluetooth contact-agent
fi

# 3. The program in its own venv (rebuilt in place on upgrade).
mkdir -p "$PREFIX"
if [ ! -x "$VENV/bin/python" ]; then
    say "creating $VENV"
    "$PYTHON" -m venv "$VENV"
fi
SOURCE=${SOURCE:-$SRC}
say "installing contact-agent from $SOURCE"
BUILD=""
if [ -d "$SOURCE" ]; then
    # Build from a copy: pip would leave root-owned build/ and *.egg-info in the checkout.
    BUILD=$(mktemp -d)
    trap 'rm -rf "$BUILD"' EXIT
    cp -r "$SOURCE/pyproject.toml" "$SOURCE/setup.py" "$SOURCE/README.md" "$SOURCE/agent" "$BUILD/"
    # built here, not copied: the C extension and the catalogs of a developer's checkout
    find "$BUILD" -name __pycache__ -prune -exec rm -rf {} +
    find "$BUILD" \( -name '*.so' -o -name '*.mo' \) -delete
    SOURCE=$BUILD
fi
# shellcheck disable=SC2086  # PIP_ARGS is a list of words on purpose
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade $PIP_ARGS "$SOURCE"
install -m 0755 "$SRC/scripts/buzzer-hook.py" "$PREFIX/buzzer-hook.py"
mkdir -p "$(dirname "$BIN_LINK")"
ln -sfn /opt/contact-agent/venv/bin/contact-agent "$BIN_LINK"

# 4. Configuration: written once, never overwritten (it may hold pinned keys and URLs).
install -d -m 0755 "$CONF_DIR"
if [ ! -e "$CONF_DIR/config.toml" ]; then
    install -m 0644 "$SRC/systemd/config.toml.example" "$CONF_DIR/config.toml"
    say "wrote the default configuration $CONF_DIR/config.toml"
else
    say "keeping the existing $CONF_DIR/config.toml"
fi

# The installed program checks the configuration: invalid keys, and settings with which
# it can never notify anyone (no key source, no pinned key) are shown with how to fix them.
if check=$("$VENV/bin/contact-agent" config check "$CONF_DIR/config.toml" 2>&1 >/dev/null); then
    if [ -n "$check" ]; then
        printf '%s\n' "$check" | sed 's/^contact-agent: /install.sh: /' >&2
        say "edit $CONF_DIR/config.toml, then: sudo contact-agent config check"
    fi
elif [ $? -eq 78 ]; then
    printf '%s\n' "$check" | sed 's/^contact-agent: /install.sh: /' >&2
    say "the configuration $CONF_DIR/config.toml is invalid: the service will not start"
else
    say "could not run contact-agent config check (see: $VENV/bin/contact-agent config check)"
fi

# 5. The unit.
install -D -m 0644 "$SRC/systemd/contact-agent.service" "$UNIT_DIR/contact-agent.service"
if [ "$LIVE" -eq 1 ]; then
    systemctl daemon-reload
    systemctl enable contact-agent.service
    if [ "$START" -eq 1 ]; then
        systemctl restart contact-agent.service
        say "started; consent is OFF until you run: sudo contact-agent enable"
    fi
fi
say "done"
