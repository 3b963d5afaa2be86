"""Preflight: real runs on this machine, against the fake bluetoothd, and on built trees."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from agent.config import RadioConfig
from agent.field import preflight as pf
from agent.field import probes
from agent.field.timeoffset import OffsetEstimate
from agent.lab.sim import FakeBluez, PrivateBus, find_dbus_daemon
from agent.lab.sim.bus import SYSTEM_BUS_ENV


def _has_bluetooth() -> bool:
    path = Path("/sys/class/bluetooth")
    return path.exists() and any(path.iterdir())


@pytest.mark.slow
def test_preflight_without_bluetooth_fails_clearly(tmp_path: Path) -> None:
    if _has_bluetooth():
        pytest.skip("this machine has a Bluetooth adapter")
    env = {**os.environ, SYSTEM_BUS_ENV: f"unix:path={tmp_path}/no-bus"}
    command = [sys.executable, "-m", "agent", "--data-dir", str(tmp_path), "field", "preflight"]
    text = subprocess.run(command, capture_output=True, text=True, timeout=60, env=env)
    assert text.returncode == 1
    assert text.stdout.splitlines()[0].startswith("fail: no adapter")
    assert "      fix: " in text.stdout
    assert "Traceback" not in text.stdout + text.stderr
    as_json = subprocess.run(
        [*command, "--json"], capture_output=True, text=True, timeout=60, env=env
    )
    assert as_json.returncode == 1
    document = json.loads(as_json.stdout)
    assert document["ok"] is False
    checks = {c["name"]: c for c in document["checks"]}
    assert checks["adapter"]["status"] == "fail"
    assert checks["adapter"]["summary"].startswith("no adapter")
    assert checks["adapter"]["fix"]
    assert set(checks) >= {"adapter", "bluez", "experimental", "clock", "peer-offset",
                           "calibration", "data-dir", "plots"}
    assert all(c["status"] in ("ok", "warn", "fail") for c in document["checks"])


# --- against the project's fake bluetoothd on a private bus, through the real busctl -----
@pytest.fixture
def system_bus(monkeypatch: pytest.MonkeyPatch) -> object:
    if find_dbus_daemon() is None and os.environ.get("CI"):
        pytest.fail("CI needs dbus-daemon (Debian package dbus-daemon)")
    if find_dbus_daemon() is None or shutil.which("busctl") is None:
        pytest.skip("dbus-daemon or busctl (systemd) missing")
    with PrivateBus() as bus:
        monkeypatch.setenv(SYSTEM_BUS_ENV, bus.address)
        yield bus


async def _adapter_check(root: Path, wanted: str = "hci0") -> pf.Check:
    import asyncio

    facts = await asyncio.to_thread(probes.probe_adapters, root)
    return pf.check_adapter(facts, wanted)


async def test_adapter_check_through_busctl(system_bus: object, tmp_path: Path) -> None:
    fake = await FakeBluez(("hci0",), tick=0.05).start()
    try:
        check = await _adapter_check(tmp_path)
        assert check.status is pf.Status.OK, check
        assert check.details["address"] == "00:AA:00:00:00:00"
        missing = await _adapter_check(tmp_path, "hci1")
        assert missing.status is pf.Status.FAIL
        assert missing.summary == "no adapter hci1 in org.bluez (found: hci0)"
        assert "radio.adapter" in missing.fix
        fake.set_powered("hci0", False)
        off = await _adapter_check(tmp_path)
        assert (off.status, off.summary) == (pf.Status.FAIL, "hci0 is present but powered off")
        assert "power on" in off.fix
        fake.deny_access()
        denied = await _adapter_check(tmp_path)
        assert denied.status is pf.Status.FAIL
        assert denied.summary.startswith("org.bluez refused access")
        assert "bluetooth group" in denied.fix
    finally:
        await fake.stop()
    gone = await _adapter_check(tmp_path)
    assert gone.status is pf.Status.FAIL
    assert gone.summary.startswith("no adapter: the kernel has no hci device")


# --- built /proc, /etc and /sys trees with a real bluetoothd stand-in script ---------------
def build_root(
    tmp_path: Path,
    *,
    argv: tuple[str, ...] | None,
    version: str = "5.66",
    conf: str | None = None,
    conf_path: str = "etc/bluetooth/main.conf",
) -> Path:
    root = tmp_path / "root"
    binary = root / "usr/libexec/bluetooth/bluetoothd"
    binary.parent.mkdir(parents=True)
    binary.write_text(f"#!/bin/sh\necho {version}\n")
    binary.chmod(0o755)
    (root / "proc/1").mkdir(parents=True)
    (root / "proc/1/comm").write_text("init\n")
    (root / "proc/1/cmdline").write_bytes(b"/sbin/init\0")
    if argv is not None:
        (root / "proc/4242").mkdir()
        (root / "proc/4242/comm").write_text("bluetoothd\n")
        (root / "proc/4242/cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")
    if conf is not None:
        path = root / conf_path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(conf)
    return root


BLUETOOTHD = "/usr/libexec/bluetooth/bluetoothd"


@pytest.mark.parametrize(
    ("argv", "conf", "enabled"),
    [
        ((BLUETOOTHD, "-E"), None, True),
        ((BLUETOOTHD, "-nE"), None, True),
        ((BLUETOOTHD, "--experimental"), None, True),
        ((BLUETOOTHD,), "[General]\nExperimental = true\n", True),
        ((BLUETOOTHD, "-n"), "[General]\n# Experimental = true\nExperimental=false\n", False),
        ((BLUETOOTHD, "-p", "Example"), None, False),  # -p takes a value: not -E
        ((BLUETOOTHD, "-d"), "[Policy]\nAutoEnable=true\n", False),
    ],
)
def test_experimental_from_cmdline_and_main_conf(
    tmp_path: Path, argv: tuple[str, ...], conf: str | None, enabled: bool
) -> None:
    facts = probes.probe_bluez(build_root(tmp_path, argv=argv, conf=conf))
    assert facts.version == "5.66"  # from running the stand-in binary
    assert facts.daemon_cmdline == argv
    check = pf.check_experimental(facts)
    assert (check.status is pf.Status.OK) is enabled
    if not enabled:
        assert "passive scanning" in check.summary and "BlueZ < 5.77" in check.summary
        assert "systemctl edit bluetooth" in check.fix


def test_custom_config_file_is_read(tmp_path: Path) -> None:
    root = build_root(
        tmp_path,
        argv=(BLUETOOTHD, "-f", "/etc/bt/custom.conf"),
        conf="[General]\nExperimental=true\n",
        conf_path="etc/bt/custom.conf",
    )
    facts = probes.probe_bluez(root)
    assert facts.conf_path.endswith("etc/bt/custom.conf") and facts.conf_experimental is True
    assert pf.check_experimental(facts).status is pf.Status.OK


def test_new_bluez_without_e_only_loses_passive_scanning(tmp_path: Path) -> None:
    facts = probes.probe_bluez(build_root(tmp_path, argv=(BLUETOOTHD,), version="5.82"))
    check = pf.check_experimental(facts)
    assert check.status is pf.Status.WARN
    assert "passive scanning" in check.summary and "5.77" not in check.summary
    assert pf.check_bluez_version(facts).summary == "BlueZ 5.82"


def test_bluetoothd_not_running(tmp_path: Path) -> None:
    facts = probes.probe_bluez(build_root(tmp_path, argv=None, version="5.55"))
    assert facts.daemon_cmdline is None and facts.version == "5.55"
    assert pf.check_experimental(facts).status is pf.Status.WARN
    old = pf.check_bluez_version(facts)
    assert old.status is pf.Status.WARN and "older than" in old.summary


def test_kernel_adapter_and_rfkill_are_read(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "sys/class/bluetooth/hci0").mkdir(parents=True)
    switch = root / "sys/class/rfkill/rfkill1"
    switch.mkdir(parents=True)
    (switch / "type").write_text("bluetooth\n")
    (switch / "soft").write_text("1\n")
    (switch / "hard").write_text("0\n")
    facts = probes.probe_adapters(root, run=lambda argv: probes.run_tool(["false"]))
    assert facts.kernel_adapters == ("hci0",) and facts.rfkill_blocked
    check = pf.check_adapter(facts, "hci0")
    assert check.status is pf.Status.FAIL
    assert check.summary.startswith("no adapter via org.bluez: bluetoothd is not reachable")
    no_busctl = probes.probe_adapters(root, run=lambda argv: probes.run_tool(["no-such-tool"]))
    assert no_busctl.bluez_error == probes.BUSCTL_MISSING
    assert pf.check_adapter(no_busctl, "hci0").status is pf.Status.WARN
    powered_off = probes.AdapterFacts(("hci0",), True, True, "", {"hci0": {"Powered": False}})
    assert "rfkill unblock bluetooth" in pf.check_adapter(powered_off, "hci0").fix


def test_clock_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    marker = tmp_path / "synchronized"
    monkeypatch.setenv("CONTACT_AGENT_SYNC_MARKER", str(marker))
    unsynced = probes.probe_clock()
    assert not unsynced.marker
    if unsynced.ntp_synchronized is None:
        assert pf.check_clock(unsynced, require_sync=True).status is pf.Status.FAIL
        assert pf.check_clock(unsynced, require_sync=False).status is pf.Status.WARN
    marker.touch()
    synced = probes.probe_clock()
    assert synced.marker and pf.check_clock(synced, require_sync=True).status is pf.Status.OK


@pytest.mark.parametrize(
    ("offset", "delay", "status"),
    [(0.2, 0.01, pf.Status.OK), (-1.5, 0.02, pf.Status.WARN), (0.3, 0.6, pf.Status.WARN),
     (3.0, 0.01, pf.Status.FAIL)],
)
def test_offset_thresholds(offset: float, delay: float, status: pf.Status) -> None:
    check = pf.check_offset(OffsetEstimate(offset, delay, 8, "pi-b:47610"), None)
    assert check.status is status
    assert f"{offset:+.3f} s" in check.summary
    assert (check.fix == "") is (status is pf.Status.OK)


def test_offset_error_and_absence() -> None:
    assert pf.check_offset(None, None).status is pf.Status.WARN
    failed = pf.check_offset(None, "no answer from pi-b port 47610")
    assert failed.status is pf.Status.FAIL and "time-server" in failed.fix


def test_calibration_and_data_dir(tmp_path: Path) -> None:
    assert pf.check_calibration(RadioConfig()).status is pf.Status.WARN
    tuned = pf.check_calibration(RadioConfig(tx_power_dbm=-12, rssi_correction_db=4))
    assert tuned.status is pf.Status.OK and "-12" in tuned.summary
    assert pf.check_data_dir(tmp_path / "new" / "dir").status is pf.Status.OK
