"""``python -m agent.lab.sim`` runs the fake bluetoothd in its own process, as the demo and
manual tests use it; SIGTERM takes its private dbus-daemon down with it."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

from agent.ble.health import BluezHealth
from agent.lab.sim.bus import SYSTEM_BUS_ENV
from tests.integration.conftest import require_dbus_daemon

pytestmark = [pytest.mark.integration, pytest.mark.slow]


async def test_fake_bluetoothd_as_a_process(monkeypatch: pytest.MonkeyPatch) -> None:
    require_dbus_daemon()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "agent.lab.sim",
        "--adapters",
        "hci0,hci7",
        stdout=asyncio.subprocess.PIPE,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 10)).decode().strip()
        assert line.startswith(f"export {SYSTEM_BUS_ENV}=unix:path=")
        address = line.split("=", 1)[1]
        socket_path = Path(address.split("path=", 1)[1].split(",", 1)[0])
        monkeypatch.setenv(SYSTEM_BUS_ENV, address)
        health = BluezHealth("hci7")
        await health.start()
        try:
            assert health.ready and health.passive_available
        finally:
            await health.stop()
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
    assert not socket_path.exists()  # its dbus-daemon and directory are gone
    assert not os.path.exists(socket_path.parent)
