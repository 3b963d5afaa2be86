#!/usr/bin/env bash
# Install those of the given Debian packages that are missing, as root or through sudo.
#
#   scripts/apt-need.sh PACKAGE...
#
# apt-get update comes first: on a fresh machine the package lists are empty and
# apt-get install finds nothing. Root needs no sudo (a fresh Debian has none); another
# user needs sudo. Nothing is done when every package is installed.
set -euo pipefail

if ! command -v dpkg-query >/dev/null 2>&1; then
    echo "apt-need.sh: not a Debian system; make sure these are installed: $*" >&2
    exit 0
fi
missing=()
for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
        || missing+=("$pkg")
done
[ "${#missing[@]}" -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
    as_root=()
elif command -v sudo >/dev/null 2>&1; then
    as_root=(sudo)
else
    echo "apt-need.sh: ${missing[*]} must be installed: run this as root or install sudo" >&2
    exit 1
fi
echo "apt-need.sh: installing ${missing[*]}"
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -q --no-install-recommends "${missing[@]}"
