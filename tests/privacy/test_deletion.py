"""Privacy proofs in real processes (``docs/reliability.md`` F7: deletion is provable).

* Consent never given: nothing is advertised and nothing is scanned (the fake
  bluetoothd's call log and its frames on air).
* ``export sightings`` of a device that heard its own reflections holds neither its own
  keys nor its own RPIs.
* ``forget --yes`` while the daemon runs goes through its control socket; afterwards a
  raw byte search of every file in the data directory finds none of 1,000 planted RPIs,
  nor the neighbour's or our own RPI, nor an own key -- also after the daemon stopped.
* ``purge`` and ``forget`` without a daemon (CLI processes): the same search.
* The daemon's log and the CLI's output of the whole run hold no identifier at all.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sqlite3
import time
from pathlib import Path
from types import ModuleType

import pytest

from agent.constants import RETENTION_SECONDS
from agent.store import DB_FILENAME
from tests.faults.scripts import base as base
from tests.faults.scripts import harness as harness
from tests.faults.scripts import require_dbus_daemon
from tests.shared import identifier_leaks

PLANTED = 1_000
HEX_RUN = re.compile(rb"[0-9a-fA-F]{32}")
RADIO_CALLS = {"StartDiscovery", "RegisterMonitor", "RegisterAdvertisement"}


def plant(base: Path, rpis: list[bytes], at: float, name: str = "planted.jsonl") -> Path:
    """A sightings file (the interchange format) outside the data directory."""
    path = base / name
    lines = [
        json.dumps({"time": int(at) - i, "rpi": r.hex(), "aem": "40080000", "rssi": -60})
        for i, r in enumerate(rpis)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def column(data: Path, sql: str) -> list[bytes]:
    """One blob column of the database, read as another process would."""
    conn = sqlite3.connect(str(data / DB_FILENAME), timeout=10)
    try:
        return [bytes(r[0]) for r in conn.execute(sql)]
    finally:
        conn.close()


def no_identifier_in(text: bytes, needles: list[bytes]) -> None:
    """No 32-hex run at all, and no needle as hex (either case), bytes repr or base64."""
    assert HEX_RUN.findall(text) == []
    assert identifier_leaks(text, needles) == []


async def until(check: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_consent_export_and_forget_through_the_running_daemon(
    harness: ModuleType, base: Path
) -> None:
    require_dbus_daemon()
    planted = [os.urandom(16) for _ in range(PLANTED)]
    neighbour = os.urandom(20)
    outputs: list[bytes] = []
    async with harness.simulated_air() as (bus, fake):
        config = harness.radio_config(harness.local_keys(base))
        daemon = harness.DaemonProcess(base, bus.address, config)
        try:
            planted_file = str(plant(base, planted, time.time()))
            code, out, err = await daemon.cli("import", "sightings", planted_file)
            assert code == 0, err
            await daemon.start()
            await daemon.wait_ready()
            harness.en_beacon(fake, "neighbour", neighbour)

            # consent never given: no advertising, no scanning at all
            await asyncio.sleep(2.0)
            assert [c.member for c in fake.calls if c.member in RADIO_CALLS] == []
            assert fake.frames("hci0") == [] and fake.discovery_sessions("hci0") == {}
            status = await daemon.control("status")
            assert (status["advertising"], status["scanning"]) == (False, False)
            assert status["metrics"]["adverts_heard_total"] == 0

            code, out, err = await daemon.cli("enable")
            assert code == 0 and "applied by the running daemon" in out
            await until(lambda: len(fake.advertisements("hci0")) == 1, 15, "advertising")
            own_payload = fake.advertisements("hci0")[0].en_service_data
            assert own_payload is not None
            harness.en_beacon(fake, "mirror", own_payload, rssi=-40)  # our own reflection

            async def heard_both() -> bool:
                await daemon.control("fetch")  # writes what was heard before the cycle
                rpis = set(column(daemon.data, "SELECT rpi FROM sighting"))
                return {neighbour[:16], own_payload[:16]} <= rpis

            deadline = time.monotonic() + 20
            while not await heard_both():
                assert time.monotonic() < deadline, "the beacons were not stored"
                await asyncio.sleep(0.3)

            # export: the neighbour and the planted RPIs, never our own key or RPI
            code, out, err = await daemon.cli("export", "sightings")
            assert code == 0, err
            outputs.append(err.encode())  # (standard output is the export itself)
            exported = {json.loads(line)["rpi"] for line in out.splitlines()}
            keys = column(daemon.data, "SELECT key_data FROM own_tek")
            assert keys, "the daemon saved its key before advertising"
            assert neighbour[:16].hex() in exported and planted[0].hex() in exported
            assert own_payload[:16].hex() not in exported
            assert [k for k in keys if k.hex() in out] == []

            # forget through the daemon: radio off within 2 s, then nothing left anywhere
            code, out, err = await daemon.cli("forget", "--yes")
            outputs += [out.encode(), err.encode()]
            assert code == 0 and "by the running daemon" in out, err
            started = time.monotonic()
            await until(
                lambda: not fake.advertisements("hci0") and not fake.discovery_sessions("hci0"),
                2.0,
                "radio off after forget",
            )
            assert time.monotonic() - started < 2.0
            needles = [*planted, neighbour[:16], own_payload[:16], *keys]
            assert harness.identifier_hits(daemon.data, needles) == []
            status = await daemon.control("status")
            assert status["consent"] == "disabled"
            assert status["sightings"] == {"today": 0, "last_14_days": 0}
            await asyncio.sleep(1.0)  # the beacons are still on air
            assert await daemon.stop() == 0
            assert harness.identifier_hits(daemon.data, needles) == []
            assert column(daemon.data, "SELECT key_data FROM own_tek") == []
        finally:
            daemon.close()
    no_identifier_in(daemon.log.read_bytes(), needles)
    for text in outputs:
        no_identifier_in(text, needles)


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_purge_and_forget_by_the_cli_leave_no_planted_rpi_in_any_file(
    harness: ModuleType, base: Path
) -> None:
    old = [os.urandom(16) for _ in range(PLANTED)]
    recent = [os.urandom(16) for _ in range(PLANTED)]
    now = time.time()
    cli = harness.DaemonProcess(base, "unix:path=/nonexistent", harness.radio_config())
    try:
        for path in (
            plant(base, old, now - RETENTION_SECONDS - 3_600, "old.jsonl"),
            plant(base, recent, now, "recent.jsonl"),
        ):
            code, _, err = await cli.cli("import", "sightings", str(path))
            assert code == 0, err
        assert len({i for _, i, _ in harness.identifier_hits(cli.data, old)}) == PLANTED

        code, out, err = await cli.cli("purge")
        assert code == 0 and f"{PLANTED} sightings" in out, out + err
        assert harness.identifier_hits(cli.data, old) == []
        assert len({i for _, i, _ in harness.identifier_hits(cli.data, recent)}) == PLANTED

        code, out, err = await cli.cli("forget", "--yes")
        assert code == 0 and "all data deleted;" in out, err
        assert harness.identifier_hits(cli.data, old + recent) == []
        for text in (out, err):
            no_identifier_in(text.encode(), old + recent)
    finally:
        cli.close()
