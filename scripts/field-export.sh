#!/usr/bin/env bash
# Export one device's field-test logs into a directory and a .tar.gz beside it:
#   sightings.jsonl    every stored sighting (time, rpi, aem, rssi)    `export sightings`
#   marks.jsonl        the ground-truth marks of this device (if any)  `contact-agent mark`
#   adverts.jsonl      own-advert log, when this agent version has `export adverts`
#   preflight.json     `field preflight --json` (adapter, BlueZ, -E, clock, calibration)
#   status.json        `status --json`
#   own-keys.zip       with --with-keys only: `keys export-own` (+ own-keys.pub.pem)
#
# Run it on both devices after the test, copy the two archives to one machine, then:
#   contact-agent field report A/sightings.jsonl B/sightings.jsonl --marks A/marks.jsonl
#
# Usage: field-export.sh [-d DATA_DIR] [-c CONFIG] [-o OUT_PARENT] [-n NAME] [--with-keys]
# CONTACT_AGENT overrides the command (e.g. "python3 -m agent").
set -euo pipefail

usage() {
    sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
    exit "${1:-0}"
}

data_dir="" config="" out_parent="." name="$(hostname -s 2>/dev/null || hostname)" with_keys=0
while [ $# -gt 0 ]; do
    case "$1" in
        -d|--data-dir) data_dir="${2:?$1 needs a directory}"; shift 2 ;;
        -c|--config) config="${2:?$1 needs a file}"; shift 2 ;;
        -o|--out) out_parent="${2:?$1 needs a directory}"; shift 2 ;;
        -n|--name) name="${2:?$1 needs a name}"; shift 2 ;;
        --with-keys) with_keys=1; shift ;;
        -h|--help) usage 0 ;;
        *) echo "field-export: unknown argument: $1 (try --help)" >&2; exit 2 ;;
    esac
done
case "$name" in
    *[!A-Za-z0-9._-]*|"") echo "field-export: --name may only use letters, digits, . _ -" >&2; exit 2 ;;
esac

read -r -a agent <<< "${CONTACT_AGENT:-contact-agent}"
common=()
[ -n "$data_dir" ] && common+=(--data-dir "$data_dir")
[ -n "$config" ] && common+=(--config "$config")
ca() { "${agent[@]}" "${common[@]}" "$@"; }

# Where `mark` wrote marks.jsonl: the same default data dir as agent/paths.py.
if [ -z "$data_dir" ]; then
    if [ -n "${CONTACT_AGENT_DATA_DIR:-}" ]; then
        data_dir="$CONTACT_AGENT_DATA_DIR"
    elif [ "$(id -u)" = 0 ] || [ -n "${INVOCATION_ID:-}" ]; then
        data_dir=/var/lib/contact-agent
    else
        data_dir="${XDG_STATE_HOME:-$HOME/.local/state}/contact-agent"
    fi
fi

stamp="$(date -u +%Y%m%dT%H%M%SZ)"
out="$out_parent/field-$name-$stamp"
mkdir -p "$out"
chmod 700 "$out"

ca export sightings --format jsonl -o "$out/sightings.jsonl"
echo "sightings: $(wc -l < "$out/sightings.jsonl") lines"

if [ -f "$data_dir/marks.jsonl" ]; then
    cp "$data_dir/marks.jsonl" "$out/marks.jsonl"
    echo "marks: $(grep -c . "$out/marks.jsonl" || true) lines"
else
    echo "marks: none in $data_dir (take them on one device with: contact-agent mark --distance M)"
fi

if ca export adverts --help >/dev/null 2>&1; then
    ca export adverts --format jsonl -o "$out/adverts.jsonl"
    echo "adverts: $(wc -l < "$out/adverts.jsonl") lines"
else
    echo "adverts: this agent has no own-advert log (export adverts); skipped"
fi

# Preflight and status describe the device; a failing check must not stop the export.
ca field preflight --json > "$out/preflight.json" || true
ca status --json > "$out/status.json" 2>/dev/null || rm -f "$out/status.json"

if [ "$with_keys" = 1 ]; then
    echo "WARNING: own-keys.zip lets its holder recognise this device's broadcasts of the" \
         "last 14 days. Share it only with the person writing the report; delete it after." >&2
    ca keys export-own --yes -o "$out/own-keys.zip"
fi

tar -C "$out_parent" -czf "$out.tar.gz" "$(basename "$out")"
chmod 600 "$out.tar.gz"
echo "exported to $out and $out.tar.gz"
