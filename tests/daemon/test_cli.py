"""``run``, ``status``, ``enable``, ``disable`` as a user types them (no daemon running)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def cli(*args: str, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("INVOCATION_ID", "NOTIFY_SOCKET")}
    env.update(env_extra or {})
    return subprocess.run(
        [sys.executable, "-m", "agent", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


@pytest.mark.slow
def test_status_of_a_data_dir_that_does_not_exist_creates_nothing(short_dir: Path) -> None:
    data = short_dir / "nothing-here"
    result = cli("--data-dir", str(data), "status", "--json")
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert status["daemon"] == {"running": False}
    assert status["consent"] == "not given"
    assert status["advertising_reason"] == "the daemon is not running"
    assert not data.exists()


@pytest.mark.slow
def test_enable_and_disable_without_a_daemon_persist(short_dir: Path) -> None:
    data = str(short_dir / "data")
    enabled = cli("--data-dir", data, "enable")
    assert enabled.returncode == 0
    assert "enabled; the daemon is not running, it applies this at start" in enabled.stdout
    assert json.loads(cli("--data-dir", data, "status", "--json").stdout)["consent"] == "enabled"
    assert cli("--data-dir", data, "disable").returncode == 0
    table = cli("--data-dir", data, "status").stdout
    assert "daemon not running" in table
    assert "consent              disabled" in table


@pytest.mark.slow
def test_run_with_a_bad_config_exits_78_with_one_line(short_dir: Path) -> None:
    config = short_dir / "config.toml"
    config.write_text("[clock]\nrequire_sync = 'maybe'\n")
    result = cli("--data-dir", str(short_dir / "data"), "--config", str(config), "run")
    assert result.returncode == 78
    lines = result.stderr.strip().splitlines()
    assert lines[-1] == ("contact-agent: config: clock.require_sync must be bool, got 'maybe'")
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_run_rejects_a_malformed_adapter_name(short_dir: Path) -> None:
    result = cli("--data-dir", str(short_dir / "data"), "run", "--adapter", "wlan0")
    assert result.returncode == 2
    assert "must look like hci0" in result.stderr
