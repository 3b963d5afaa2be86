"""The systemd unit, the CI checks, the installer and the example GPIO hook."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "systemd" / "contact-agent.service"
CI_CHECKS = ROOT / "scripts" / "ci-checks.sh"
INSTALL = ROOT / "scripts" / "install.sh"


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _need(binary: str) -> None:
    if shutil.which(binary) is None:
        if _in_ci():
            pytest.fail(f"{binary} is missing; CI must install it")
        pytest.skip(f"{binary} is not installed")


def unit_settings(path: Path) -> dict[str, list[str]]:
    """``Key=value`` lines of a unit (keys may repeat), comments skipped."""
    settings: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        settings.setdefault(key, []).append(value)
    return settings


def test_unit_has_the_documented_hardening() -> None:
    s = unit_settings(UNIT)
    expected = {
        "Type": "notify",
        "NotifyAccess": "main",
        "WatchdogSec": "60",
        "User": "contact-agent",
        "SupplementaryGroups": "bluetooth",
        "CapabilityBoundingSet": "",
        "AmbientCapabilities": "",
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectClock": "yes",
        "StateDirectory": "contact-agent",
        "StateDirectoryMode": "0700",
        "RuntimeDirectory": "contact-agent",
        "UMask": "0077",
        "RestartPreventExitStatus": "78",
        "LimitCORE": "0",
        "MemoryDenyWriteExecute": "yes",
        "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
    }
    for key, value in expected.items():
        assert s.get(key) == [value], key
    assert s["SystemCallFilter"] == ["@system-service", "~@privileged @resources"]
    assert "After" in s and "time-sync.target" not in s["After"][0]
    # the installer puts the program where ExecStart looks for it
    assert s["ExecStart"] == ["/opt/contact-agent/venv/bin/contact-agent run"]
    assert "/opt/contact-agent" in INSTALL.read_text()
    sysusers = (ROOT / "systemd" / "contact-agent.conf").read_text()
    assert "u contact-agent " in sysusers and "m contact-agent bluetooth" in sysusers


def test_ci_checks_pass_for_the_shipped_unit() -> None:
    _need("systemd-analyze")
    result = subprocess.run(
        ["bash", str(CI_CHECKS)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    exposure = next(line for line in result.stdout.splitlines() if line.startswith("exposure"))
    assert float(exposure.split()[1]) <= 1.5
    assert "verify clean" in result.stdout


def test_ci_checks_fail_for_a_weak_or_broken_unit(tmp_path: Path) -> None:
    _need("systemd-analyze")
    weak = tmp_path / "weak.service"
    weak.write_text("[Service]\nExecStart=/bin/true\nNoSuchSetting=1\n")
    result = subprocess.run(
        ["bash", str(CI_CHECKS)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "UNIT": str(weak)},
    )
    assert result.returncode == 1
    assert "is above 1.5" in result.stderr
    assert "Unknown key" in result.stderr


def _wheel(directory: Path) -> Path:
    """A minimal wheel of this checkout, written by hand: no build backend, no network."""
    from agent import __version__

    name = f"contact_agent-{__version__}"
    path = directory / f"{name}-py3-none-any.whl"
    directory.mkdir(parents=True, exist_ok=True)
    files = [
        p
        for p in (ROOT / "agent").rglob("*")
        if p.is_file()
        and "__pycache__" not in p.parts
        and p.suffix in (".py", ".po", ".mo", ".typed")
    ]
    meta = {
        f"{name}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: contact-agent\n"
        f"Version: {__version__}\n",
        f"{name}.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: tests\n"
        "Root-Is-Purelib: true\nTag: py3-none-any\n",
        f"{name}.dist-info/entry_points.txt": "[console_scripts]\ncontact-agent = agent.cli:main\n",
    }
    with zipfile.ZipFile(path, "w") as archive:
        for file in files:
            archive.write(file, file.relative_to(ROOT).as_posix())
        for member, text in meta.items():
            archive.writestr(member, text)
        archive.writestr(f"{name}.dist-info/RECORD", "")
    return path


@pytest.mark.slow
def test_install_is_idempotent_and_uninstall_keeps_data(tmp_path: Path) -> None:
    """Install into an alternate root from a wheel of this checkout (offline)."""
    wheel = _wheel(tmp_path / "wheels")
    root = tmp_path / "root"
    command = [
        "bash",
        str(INSTALL),
        "--root",
        str(root),
        "--python",
        sys.executable,
        "--source",
        str(wheel),
        "--pip-args",
        "--no-deps --no-index",
    ]
    first = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "wrote the default configuration" in first.stdout
    config = root / "etc/contact-agent/config.toml"
    unit = root / "etc/systemd/system/contact-agent.service"
    assert unit.read_text() == UNIT.read_text()
    assert (root / "usr/lib/sysusers.d/contact-agent.conf").exists()
    assert os.readlink(root / "usr/local/bin/contact-agent") == (
        "/opt/contact-agent/venv/bin/contact-agent"
    )
    site = next((root / "opt/contact-agent/venv/lib").glob("python3*/site-packages"))
    assert (site / "agent/daemon/locale/ru/LC_MESSAGES/contact-agent.mo").exists()
    assert (root / "opt/contact-agent/buzzer-hook.py").exists()

    config.write_text("[notify]\nlanguage = 'kk'\n")  # the admin's edit survives upgrades
    second = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert second.returncode == 0, second.stderr
    assert "keeping the existing" in second.stdout
    assert config.read_text() == "[notify]\nlanguage = 'kk'\n"

    data = root / "var/lib/contact-agent"
    data.mkdir(parents=True)
    (data / "contact-agent.db").write_bytes(b"x")
    gone = subprocess.run(
        ["bash", str(INSTALL), "--root", str(root), "--uninstall"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert gone.returncode == 0
    assert not unit.exists() and not (root / "opt/contact-agent").exists()
    assert (data / "contact-agent.db").exists() and config.exists()
    purge = subprocess.run(
        ["bash", str(INSTALL), "--root", str(root), "--uninstall", "--purge"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert purge.returncode == 0
    assert not data.exists() and not config.exists()


def test_install_refuses_unknown_options() -> None:
    result = subprocess.run(
        ["bash", str(INSTALL), "--frobnicate"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 2
    assert "unknown option --frobnicate" in result.stderr


def _hook_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("buzzer_hook", ROOT / "scripts/buzzer-hook.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run_hook(stdin: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts/buzzer-hook.py"), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_buzzer_hook_reads_the_notification_json() -> None:
    event = {
        "event": "exposure",
        "risk_level": "high",
        "day": "2024-03-01",
        "minutes": 25,
        "title": "Possible exposure",
    }
    result = _run_hook(json.dumps(event), "--dry-run", "--pin", "17")
    assert result.returncode == 0
    assert "would beep 3x on pin 17 (Possible exposure: 2024-03-01, 25 min)" in result.stdout
    bad = _run_hook("not json")
    assert bad.returncode == 2 and "stdin is not JSON" in bad.stderr
    assert _run_hook("[1, 2]").returncode == 2


def test_buzzer_hook_drives_sysfs_gpio(tmp_path: Path) -> None:
    hook = _hook_module()
    sysfs = tmp_path / "gpio"
    for pin in (18, 23):  # what the kernel creates after "export"
        (sysfs / f"gpio{pin}").mkdir(parents=True)
        (sysfs / f"gpio{pin}" / "direction").write_text("in")
        (sysfs / f"gpio{pin}" / "value").write_text("0")
    (sysfs / "export").write_text("")
    hook.SYSFS = sysfs
    assert hook._drive_sysfs([18, 23], [(0.01, 0.01)], 23) is True
    assert (sysfs / "gpio18" / "direction").read_text() == "out"
    assert (sysfs / "gpio18" / "value").read_text() == "0"  # buzzer off after the beep
    assert (sysfs / "gpio23" / "value").read_text() == "1"  # LED stays on
    assert hook.beep_pattern("high") == [(0.6, 0.3)] * 3
    assert hook.beep_pattern("low") == [(0.15, 0.1)]
