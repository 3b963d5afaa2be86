"""Facts about this machine's Bluetooth stack and clock, gathered for the preflight.

Thin I/O only: read ``/sys``, ``/proc`` and ``/etc`` below an injectable root, and run a
few standard tools (``busctl``, ``bluetoothd --version``, ``timedatectl``). The verdicts
are in :mod:`agent.field.preflight`, as pure functions over these facts.

org.bluez is asked through ``busctl`` (systemd's D-Bus client, which honours
``DBUS_SYSTEM_BUS_ADDRESS``), which keeps D-Bus libraries inside ``agent/ble``.
"""

from __future__ import annotations

import configparser
import json
import re
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.clocksync import marker_synchronized

Runner = Callable[[Sequence[str]], "RunResult"]

BUSCTL_MISSING = "busctl: not found"

_BLUETOOTHD_CANDIDATES = (
    "usr/libexec/bluetooth/bluetoothd",
    "usr/lib/bluetooth/bluetoothd",
    "usr/sbin/bluetoothd",
)


@dataclass(frozen=True, slots=True)
class RunResult:
    returncode: int
    stdout: str
    stderr: str


def run_tool(argv: Sequence[str], timeout: float = 5.0) -> RunResult:
    """Run a tool; a missing tool or a timeout is a result with code 127/124, not an error."""
    try:
        done = subprocess.run(
            list(argv), capture_output=True, text=True, timeout=timeout, check=False
        )
    except FileNotFoundError:
        return RunResult(127, "", f"{argv[0]}: not found")
    except subprocess.TimeoutExpired:
        return RunResult(124, "", f"{argv[0]}: no answer within {timeout:g} s")
    except OSError as exc:
        return RunResult(126, "", f"{argv[0]}: {exc.strerror}")
    return RunResult(done.returncode, done.stdout, done.stderr)


@dataclass(frozen=True, slots=True)
class AdapterFacts:
    kernel_adapters: tuple[str, ...]
    """hciN devices the kernel knows (``/sys/class/bluetooth``)."""
    rfkill_blocked: bool
    """A Bluetooth rfkill switch is soft- or hard-blocked."""
    bluez_reachable: bool
    bluez_error: str
    """Why org.bluez could not be asked (empty when it could)."""
    adapters: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Adapter name -> its org.bluez.Adapter1 properties (plain values)."""


@dataclass(frozen=True, slots=True)
class BluezFacts:
    version: str | None
    """e.g. ``5.66``; None when no bluetoothd or bluetoothctl answered."""
    daemon_cmdline: tuple[str, ...] | None
    """The running bluetoothd's argv; None when it is not running (or not visible)."""
    conf_experimental: bool | None
    """``Experimental`` in [General] of main.conf; None when unset or unreadable."""
    conf_path: str


@dataclass(frozen=True, slots=True)
class ClockFacts:
    marker: bool
    """systemd-timesyncd's ``/run/systemd/timesync/synchronized`` exists."""
    ntp_synchronized: bool | None
    """``timedatectl show -p NTPSynchronized``; None when timedatectl cannot tell."""
    detail: str


def _unvariant(value: Any) -> Any:
    """busctl's JSON wraps every variant as {"type": ..., "data": ...}."""
    if isinstance(value, dict) and set(value) == {"type", "data"}:
        return _unvariant(value["data"])
    if isinstance(value, dict):
        return {k: _unvariant(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unvariant(v) for v in value]
    return value


def parse_managed_objects(text: str) -> dict[str, dict[str, Any]]:
    """Adapter1 objects from ``busctl --json=short call ... GetManagedObjects`` output."""
    document = json.loads(text)
    data = document.get("data") if isinstance(document, dict) else None
    objects = data[0] if isinstance(data, list) and data else {}
    adapters: dict[str, dict[str, Any]] = {}
    if not isinstance(objects, dict):
        return adapters
    for path, interfaces in objects.items():
        if isinstance(interfaces, dict) and "org.bluez.Adapter1" in interfaces:
            props = _unvariant(interfaces["org.bluez.Adapter1"])
            adapters[str(path).rsplit("/", 1)[-1]] = props if isinstance(props, dict) else {}
    return adapters


def probe_adapters(root: Path = Path("/"), run: Runner = run_tool) -> AdapterFacts:
    """Kernel adapters, rfkill state and org.bluez's adapters."""
    sys_bt = root / "sys/class/bluetooth"
    kernel = tuple(sorted(p.name for p in _children(sys_bt) if p.name.startswith("hci")))
    blocked = False
    for entry in _children(root / "sys/class/rfkill"):
        if _read(entry / "type") == "bluetooth" and "1" in (
            _read(entry / "soft"),
            _read(entry / "hard"),
        ):
            blocked = True
    result = run(
        [
            "busctl",
            "--system",
            "--json=short",
            "call",
            "org.bluez",
            "/",
            "org.freedesktop.DBus.ObjectManager",
            "GetManagedObjects",
        ]
    )
    if result.returncode == 127:
        return AdapterFacts(kernel, blocked, False, BUSCTL_MISSING)
    if result.returncode != 0:
        error = (result.stderr or result.stdout).strip().splitlines()
        return AdapterFacts(kernel, blocked, False, error[-1] if error else "busctl failed")
    try:
        adapters = parse_managed_objects(result.stdout)
    except (ValueError, IndexError, AttributeError):
        why = "org.bluez gave an answer busctl could not print"
        return AdapterFacts(kernel, blocked, False, why)
    return AdapterFacts(kernel, blocked, True, "", adapters)


def _children(directory: Path) -> list[Path]:
    try:
        return list(directory.iterdir())
    except OSError:
        return []


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return ""


_VERSION = re.compile(r"(\d+\.\d+)")


def _find_bluetoothd(root: Path, cmdline: tuple[str, ...] | None) -> str | None:
    if cmdline and Path(cmdline[0]).is_absolute() and (root / cmdline[0].lstrip("/")).exists():
        return str(root / cmdline[0].lstrip("/"))
    for candidate in _BLUETOOTHD_CANDIDATES:
        if (root / candidate).exists():
            return str(root / candidate)
    return shutil.which("bluetoothd") if root == Path("/") else None


def bluetoothd_cmdline(root: Path = Path("/")) -> tuple[str, ...] | None:
    """argv of a running bluetoothd, from ``/proc/PID/cmdline``."""
    for proc in _children(root / "proc"):
        if not proc.name.isdigit():
            continue
        if _read(proc / "comm") != "bluetoothd":
            continue
        try:
            raw = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        argv = tuple(a.decode("utf-8", "replace") for a in raw.split(b"\0") if a)
        if argv:
            return argv
    return None


def read_conf_experimental(path: Path) -> bool | None:
    """``[General] Experimental`` of BlueZ's main.conf (a GLib key file)."""
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    try:
        parser.read_string(path.read_text(encoding="utf-8", errors="replace"))
    except (OSError, configparser.Error):
        return None
    value = parser.get("General", "Experimental", fallback=None)
    if value is None:
        return None
    return value.strip().lower() in ("true", "1", "yes")


def probe_bluez(root: Path = Path("/"), run: Runner = run_tool) -> BluezFacts:
    """BlueZ version, bluetoothd's command line and main.conf's Experimental flag."""
    cmdline = bluetoothd_cmdline(root)
    version: str | None = None
    binary = _find_bluetoothd(root, cmdline)
    attempts = [[binary, "--version"]] if binary else []
    attempts.append(["bluetoothctl", "--version"])
    for argv in attempts:
        result = run(argv)
        match = _VERSION.search(result.stdout) if result.returncode == 0 else None
        if match:
            version = match.group(1)
            break
    conf = root / "etc/bluetooth/main.conf"
    given = _option_value(cmdline or (), "-f", "--configfile")
    if given:
        conf = root / given.lstrip("/") if Path(given).is_absolute() else Path(given)
    return BluezFacts(version, cmdline, read_conf_experimental(conf), str(conf))


def _option_value(argv: Sequence[str], short: str, long: str) -> str | None:
    """The value of ``-f FILE``, ``-fFILE``, ``--configfile FILE`` or ``--configfile=FILE``."""
    for i, arg in enumerate(argv):
        if arg in (short, long):
            return argv[i + 1] if i + 1 < len(argv) else None
        if arg.startswith(long + "="):
            return arg[len(long) + 1 :]
        if arg.startswith(short) and not arg.startswith("--") and len(arg) > len(short):
            return arg[len(short) :]
    return None


def probe_clock(run: Runner = run_tool, marker: Path | None = None) -> ClockFacts:
    """systemd's sync marker and ``timedatectl``'s NTPSynchronized."""
    has_marker = marker_synchronized(marker)
    result = run(["timedatectl", "show", "--property=NTPSynchronized", "--value"])
    answer = result.stdout.strip().lower()
    if result.returncode == 0 and answer in ("yes", "no"):
        return ClockFacts(has_marker, answer == "yes", f"timedatectl says NTPSynchronized={answer}")
    why = (result.stderr.strip().splitlines() or ["no answer"])[-1]
    return ClockFacts(has_marker, None, f"timedatectl unavailable ({why})")
