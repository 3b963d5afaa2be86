"""Field-test preflight: is this device ready for a two-device test?

Each check is a pure function from gathered facts (:mod:`agent.field.probes`) to a
:class:`Check`: ``ok``, ``warn`` or ``fail``, a one-line summary and a one-line fix.
:func:`run_preflight` gathers the facts and runs every check; a ``fail`` means the test
would not produce usable logs.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from agent.config import Config, RadioConfig
from agent.errors import AgentError
from agent.field import probes
from agent.field.plots import matplotlib_available
from agent.field.timeoffset import OffsetEstimate

EXPERIMENTAL_STABLE_VERSION = (5, 77)
"""From BlueZ 5.77 MinInterval/MaxInterval/TxPower no longer need -E (``docs/raspberry-pi.md``)."""
OLDEST_TESTED_VERSION = (5, 66)
"""Raspberry Pi OS Bookworm's BlueZ."""
OFFSET_OK_SECONDS = 0.5
OFFSET_WARN_SECONDS = 2.0
"""Latencies are measured against marks taken on one device: beyond 2 s they blur."""

DOC_HINT = "docs/field-testing.md"


class Status(enum.StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    status: Status
    summary: str
    fix: str = ""
    details: dict[str, object] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "status": str(self.status),
            "summary": self.summary,
            "fix": self.fix,
            "details": self.details,
        }


def _version_tuple(version: str | None) -> tuple[int, int] | None:
    if not version:
        return None
    major, _, minor = version.partition(".")
    if not (major.isdigit() and minor.isdigit()):
        return None
    return int(major), int(minor)


_ACCESS_DENIED_HINTS = ("accessdenied", "access denied", "rejected send message", "not allowed")
"""How dbus-daemon and busctl word a policy refusal."""


def check_adapter(facts: probes.AdapterFacts, wanted: str) -> Check:
    """The configured adapter exists in org.bluez and is powered."""
    details: dict[str, object] = {
        "wanted": wanted,
        "kernel_adapters": list(facts.kernel_adapters),
        "bluez_adapters": sorted(facts.adapters),
        "rfkill_blocked": facts.rfkill_blocked,
    }
    start_bluez = "sudo systemctl enable --now bluetooth"
    if not facts.bluez_reachable:
        details["bluez_error"] = facts.bluez_error
        if any(hint in facts.bluez_error.lower() for hint in _ACCESS_DENIED_HINTS):
            return Check(
                "adapter",
                Status.FAIL,
                f"org.bluez refused access ({facts.bluez_error})",
                "add this user to the bluetooth group (sudo usermod -aG bluetooth $USER) "
                "and log in again",
                details,
            )
        if not facts.kernel_adapters:
            return Check(
                "adapter",
                Status.FAIL,
                "no adapter: the kernel has no hci device and org.bluez is not reachable "
                f"({facts.bluez_error})",
                "attach or enable a Bluetooth adapter (Pi: is the onboard radio disabled by "
                f"a dtoverlay?), then {start_bluez}",
                details,
            )
        if facts.bluez_error.startswith(probes.BUSCTL_MISSING):
            return Check(
                "adapter",
                Status.WARN,
                f"the kernel has {', '.join(facts.kernel_adapters)}, but busctl is missing, "
                "so org.bluez could not be asked",
                "sudo apt install systemd (busctl) and run the preflight again",
                details,
            )
        return Check(
            "adapter",
            Status.FAIL,
            f"no adapter via org.bluez: bluetoothd is not reachable ({facts.bluez_error})",
            start_bluez,
            details,
        )
    props = facts.adapters.get(wanted)
    if props is None:
        others = ", ".join(sorted(facts.adapters)) or "none"
        fix = (
            f"use --adapter or set radio.adapter to one of: {others}"
            if facts.adapters
            else f"attach a Bluetooth adapter; check `rfkill list` and {start_bluez}"
        )
        return Check(
            "adapter", Status.FAIL, f"no adapter {wanted} in org.bluez (found: {others})", fix,
            details,
        )
    details["address"] = props.get("Address", "")
    details["powered"] = bool(props.get("Powered", False))
    if not props.get("Powered", False):
        fix = (
            "rfkill unblock bluetooth, then bluetoothctl power on"
            if facts.rfkill_blocked
            else f"bluetoothctl select {props.get('Address', wanted)} && bluetoothctl power on"
        )
        return Check("adapter", Status.FAIL, f"{wanted} is present but powered off", fix, details)
    roles = props.get("Roles")
    if isinstance(roles, list) and roles and not {"central", "peripheral"} <= set(roles):
        return Check(
            "adapter",
            Status.WARN,
            f"{wanted} is powered but lacks a role (has {', '.join(map(str, roles))})",
            "use an adapter that can both scan (central) and advertise (peripheral)",
            details,
        )
    return Check("adapter", Status.OK, f"{wanted} present and powered", "", details)


def check_bluez_version(facts: probes.BluezFacts) -> Check:
    version = _version_tuple(facts.version)
    details: dict[str, object] = {"version": facts.version}
    if version is None:
        return Check(
            "bluez",
            Status.WARN,
            "BlueZ version unknown (neither bluetoothd nor bluetoothctl answered --version)",
            "sudo apt install bluez",
            details,
        )
    if version < OLDEST_TESTED_VERSION:
        return Check(
            "bluez",
            Status.WARN,
            f"BlueZ {facts.version} is older than the tested 5.66",
            "upgrade the OS (Raspberry Pi OS Bookworm ships 5.66)",
            details,
        )
    return Check("bluez", Status.OK, f"BlueZ {facts.version}", "", details)


_BLUETOOTHD_OPTIONS_WITH_VALUE = "dpPf"
"""Short options of bluetoothd that take a value (-d debug, -p/-P plugins, -f config)."""


def experimental_enabled(facts: probes.BluezFacts) -> bool:
    """True when bluetoothd runs with -E/--experimental or main.conf enables it."""
    argv = facts.daemon_cmdline or ()
    skip_next = False
    for arg in argv[1:]:
        if skip_next:
            skip_next = False
            continue
        if arg == "--experimental":
            return True
        if not arg.startswith("-") or arg.startswith("--"):
            continue
        for position, letter in enumerate(arg[1:], start=1):
            if letter == "E":
                return True
            if letter in _BLUETOOTHD_OPTIONS_WITH_VALUE:
                skip_next = position == len(arg) - 1 and letter != "d"
                break
    return facts.daemon_cmdline is not None and bool(facts.conf_experimental)


def check_experimental(facts: probes.BluezFacts) -> Check:
    """Passive scanning always needs -E; interval and TX power need it before 5.77."""
    details: dict[str, object] = {
        "cmdline": list(facts.daemon_cmdline) if facts.daemon_cmdline else None,
        "conf_experimental": facts.conf_experimental,
        "conf_path": facts.conf_path,
    }
    fix = (
        "sudo systemctl edit bluetooth (add ExecStart= and ExecStart=<bluetoothd path> -E) "
        f"or set Experimental = true under [General] in {facts.conf_path}; "
        "then sudo systemctl restart bluetooth"
    )
    if facts.daemon_cmdline is None:
        return Check(
            "experimental",
            Status.WARN,
            "bluetoothd is not running, so -E/Experimental cannot be checked",
            "sudo systemctl enable --now bluetooth",
            details,
        )
    if experimental_enabled(facts):
        return Check("experimental", Status.OK, "bluetoothd runs with experimental features", "",
                     details)
    version = _version_tuple(facts.version)
    lost = "passive scanning (AdvertisementMonitor) is unavailable"
    if version is None or version < EXPERIMENTAL_STABLE_VERSION:
        lost += "; the advertising interval and TX power are ignored (BlueZ < 5.77)"
    return Check("experimental", Status.WARN, f"bluetoothd runs without -E: {lost}", fix, details)


def check_clock(facts: probes.ClockFacts, require_sync: bool) -> Check:
    details: dict[str, object] = {
        "marker": facts.marker,
        "ntp_synchronized": facts.ntp_synchronized,
        "detail": facts.detail,
    }
    if facts.marker or facts.ntp_synchronized:
        return Check("clock", Status.OK, "clock synchronised", "", details)
    fix = (
        "sudo timedatectl set-ntp true and wait for `timedatectl` to say synchronized "
        "(an RTC-less Pi needs a network); both devices must be in sync"
    )
    status = Status.FAIL if require_sync else Status.WARN
    return Check(
        "clock", status, f"clock not synchronised (no timesyncd marker; {facts.detail})", fix,
        details,
    )


def check_offset(estimate: OffsetEstimate | None, error: str | None) -> Check:
    fix_server = (
        "run `contact-agent field time-server` on the other device, then "
        "`contact-agent field preflight --peer ADDRESS` here"
    )
    if estimate is None:
        if error is None:
            return Check("peer-offset", Status.WARN, "time offset to the peer not measured",
                         fix_server)
        return Check("peer-offset", Status.FAIL, f"time offset unknown: {error}", fix_server)
    details: dict[str, object] = {
        "offset_seconds": round(estimate.offset_seconds, 4),
        "delay_seconds": round(estimate.delay_seconds, 4),
        "samples": estimate.samples,
        "peer": estimate.peer,
    }
    worst = abs(estimate.offset_seconds) + estimate.error_bound_seconds
    text = (
        f"peer {estimate.peer} is {estimate.offset_seconds:+.3f} s "
        f"(+-{estimate.error_bound_seconds:.3f} s) from this clock"
    )
    fix = "synchronise both devices with NTP (timedatectl set-ntp true), or pass the offset "
    fix += "to `field report --offset-b`"
    if worst <= OFFSET_OK_SECONDS:
        return Check("peer-offset", Status.OK, text, "", details)
    if worst <= OFFSET_WARN_SECONDS:
        return Check("peer-offset", Status.WARN, text, fix, details)
    return Check("peer-offset", Status.FAIL, text, fix, details)


def check_calibration(radio: RadioConfig) -> Check:
    defaults = RadioConfig()
    details: dict[str, object] = {
        "tx_power_dbm": radio.tx_power_dbm,
        "rssi_correction_db": radio.rssi_correction_db,
    }
    text = f"tx_power_dbm {radio.tx_power_dbm}, rssi_correction_db {radio.rssi_correction_db}"
    if (radio.tx_power_dbm, radio.rssi_correction_db) == (
        defaults.tx_power_dbm,
        defaults.rssi_correction_db,
    ):
        return Check(
            "calibration",
            Status.WARN,
            f"radio not calibrated ({text} are the defaults)",
            f"calibrate at 1 m as in {DOC_HINT} (Calibration)",
            details,
        )
    return Check("calibration", Status.OK, f"radio calibrated: {text}", "", details)


def check_data_dir(data_dir: Path) -> Check:
    target = data_dir
    while not target.exists() and target.parent != target:
        target = target.parent
    details: dict[str, object] = {"data_dir": str(data_dir)}
    if os.access(target, os.W_OK | os.X_OK):
        return Check("data-dir", Status.OK, f"data dir {data_dir} writable", "", details)
    return Check(
        "data-dir",
        Status.FAIL,
        f"data dir {data_dir} is not writable by this user",
        "run as the agent's user (sudo) or pass --data-dir to a directory you own",
        details,
    )


def check_plots(available: bool) -> Check:
    if available:
        return Check("plots", Status.OK, "matplotlib present: the report will have PNG plots")
    return Check(
        "plots",
        Status.WARN,
        "matplotlib missing: the report will be Markdown/HTML without plots",
        "pip install 'contact-agent[field]' (or sudo apt install python3-matplotlib)",
    )


@dataclass(frozen=True, slots=True)
class PreflightInputs:
    """Where to look; tests point ``root`` at a directory tree and ``run`` at a stub."""

    adapter: str
    data_dir: Path
    config: Config | None
    config_error: str | None = None
    root: Path = Path("/")
    run: probes.Runner = probes.run_tool
    measure: Callable[[], OffsetEstimate] | None = None
    """Measures the offset to the peer (None: no --peer given)."""


def run_preflight(inputs: PreflightInputs) -> list[Check]:
    """Every check, in the order a person would fix them."""
    checks = [check_adapter(probes.probe_adapters(inputs.root, inputs.run), inputs.adapter)]
    bluez = probes.probe_bluez(inputs.root, inputs.run)
    checks += [check_bluez_version(bluez), check_experimental(bluez)]
    require_sync = inputs.config.clock.require_sync if inputs.config else True
    checks.append(check_clock(probes.probe_clock(inputs.run), require_sync))
    estimate, error = None, None
    if inputs.measure is not None:
        try:
            estimate = inputs.measure()
        except AgentError as exc:
            error = str(exc)
    checks.append(check_offset(estimate, error))
    if inputs.config is not None:
        checks.append(check_calibration(inputs.config.radio))
    else:
        checks.append(
            Check("config", Status.FAIL, f"config unusable: {inputs.config_error}",
                  "fix the config file (see docs/daemon.md)")
        )
    checks.append(check_data_dir(inputs.data_dir))
    checks.append(check_plots(matplotlib_available()))
    return checks


def overall_ok(checks: list[Check]) -> bool:
    return all(c.status is not Status.FAIL for c in checks)
