"""No identifier at any log level, in any encoding (security review).

Before, ``--debug`` wrote identifiers to the log: aiosqlite's DEBUG lines print every SQL
statement with its parameters (the own TEK in ``INSERT OR REPLACE INTO own_tek`` as a
``b'\\x01\\xfe...'`` repr, every RPI heard), and ``--debug import sightings`` printed
every imported RPI. The project's scan looked only for hex and missed them.

Here a whole life runs with ``--debug`` everywhere: ``import sightings``, the daemon
scanning and advertising on the simulated air while a neighbour's phone is heard,
``enable``, ``fetch`` through the daemon (the neighbour's key is published, so it
matches), ``report`` of our own keys to the local test key server, and ``fetch`` by the
CLI itself. Every byte of the daemon's log and of every command's output is searched for
every identifier involved -- imported RPIs, the neighbour's TEK, RPI and AEM, our own
TEKs and the RPI and AEM we broadcast, every key the server published -- as hex in
either case, as a Python bytes repr and as base64: no hit.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import re
import sqlite3
import time
from pathlib import Path
from types import ModuleType

import pytest

from agent import crypto
from agent.clock import en_interval_number, rolling_start_interval_number
from agent.lab.keyserver import LocalKeyServer
from agent.logs import REDACTED, configure_logging, redact
from agent.models import ReportType, TemporaryExposureKey
from agent.payload import Metadata
from agent.store import DB_FILENAME
from tests.faults.scripts import base as base
from tests.faults.scripts import harness as harness
from tests.faults.scripts import require_dbus_daemon
from tests.shared import identifier_forms, identifier_leaks

PLANTED = 200
HEX_RUN = re.compile(rb"[0-9a-fA-F]{32}")


def column(data: Path, sql: str) -> list[bytes]:
    conn = sqlite3.connect(str(data / DB_FILENAME), timeout=10)
    try:
        return [bytes(r[0]) for r in conn.execute(sql)]
    finally:
        conn.close()


async def until(check: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_a_whole_run_at_debug_level_logs_no_identifier(
    harness: ModuleType, base: Path
) -> None:
    require_dbus_daemon()
    now = time.time()
    interval = en_interval_number(now)
    planted = [os.urandom(16) for _ in range(PLANTED)]
    neighbour_tek = crypto.new_tek()
    neighbour_rpi = crypto.rpi(crypto.derive_rpik(neighbour_tek), interval)
    neighbour_aem = crypto.encrypt_aem(
        crypto.derive_aemk(neighbour_tek), neighbour_rpi, bytes(Metadata(-8))
    )
    sightings = base / "planted.jsonl"
    sightings.write_text(
        "".join(
            json.dumps({"time": int(now) - i, "rpi": r.hex(), "aem": "40080000", "rssi": -60})
            + "\n"
            for i, r in enumerate(planted)
        )
    )
    outputs: list[str] = []
    async with LocalKeyServer(api_key="test-api-key", embargo=False) as server:
        pem = server.write_public_key(base / "server.pem")
        config = harness.radio_config(server.config_toml(pem))
        async with harness.simulated_air() as (bus, fake):
            daemon = harness.DaemonProcess(base, bus.address, config)

            async def cli(*args: str) -> str:
                code, out, err = await daemon.cli("--debug", *args)
                outputs.extend([out, err])
                assert code == 0, (args, err[-2000:])
                return out

            try:
                await cli("import", "sightings", str(sightings))
                await daemon.start(debug=True)
                await daemon.wait_ready()
                await cli("enable")
                await until(lambda: len(fake.advertisements("hci0")) == 1, 15, "advertising")
                own_payload = fake.advertisements("hci0")[0].en_service_data
                assert own_payload is not None
                harness.en_beacon(fake, "neighbour", neighbour_rpi + neighbour_aem)

                deadline = time.monotonic() + 30
                while neighbour_rpi not in column(daemon.data, "SELECT rpi FROM sighting"):
                    assert time.monotonic() < deadline, "the neighbour was not stored"
                    await daemon.control("status")
                    await asyncio.sleep(0.3)

                # the neighbour reports: its key is in the next export
                server.exports.add(
                    [
                        TemporaryExposureKey(
                            neighbour_tek,
                            rolling_start_interval_number(interval),
                            report_type=ReportType.CONFIRMED_TEST,
                        )
                    ]
                )
                server.exports.release()
                out = await cli("fetch")  # through the daemon
                # the daemon's own schedule may have fetched the export a moment earlier;
                # either way the neighbour's key matched and its window is stored
                matched = column(daemon.data, "SELECT key_data FROM exposure_window")
                assert neighbour_tek in matched, out
                await cli("report", "--code", server.issue_code(), "--yes")
                own_teks = column(daemon.data, "SELECT key_data FROM own_tek")
                assert own_teks
                assert await daemon.stop() == 0
                await cli("fetch")  # by the command itself, no daemon
            finally:
                daemon.close()
        published = [
            key.key_data for batch in server.exports.batches for key in batch.keys
        ]
    assert any(k in published for k in own_teks), "the report published our keys"
    log = daemon.log.read_bytes()
    assert b"DEBUG " in log  # the daemon did log at debug level
    needles = [
        *planted,
        neighbour_tek,
        neighbour_rpi,
        neighbour_aem,
        *own_teks,
        own_payload[:16],
        own_payload[16:],
        *published,
    ]
    assert identifier_leaks(log, needles) == []
    assert HEX_RUN.findall(log) == []
    for text in outputs:
        assert identifier_leaks(text.encode(), needles) == []
        assert HEX_RUN.findall(text.encode()) == []


def test_the_scan_knows_every_encoding() -> None:
    """The scan itself: each form of a planted key is found (so 0 hits means something)."""
    key = os.urandom(16)
    for form, pattern in identifier_forms(key).items():
        text = b"INFO x: prefix " + pattern + b" suffix"
        assert identifier_leaks(text, [key]) != [], form


@pytest.mark.parametrize(
    "render",
    [
        bytes.hex,
        lambda b: b.hex().upper(),
        repr,
        lambda b: repr(list(b)),
        lambda b: identifier_forms(b)["base64"].decode(),
        lambda b: identifier_forms(b)["base64url"].decode(),
        lambda b: ":".join(f"{x:02x}" for x in b),
        lambda b: repr(("INSERT OR REPLACE INTO own_tek", [(b, 2_900_000, 144, None)])),
    ],
)
def test_the_redacting_formatter_catches_what_a_library_would_print(render: object) -> None:
    """Fixed keys (the filter is a heuristic; a test must not depend on luck)."""
    for seed in range(20):
        key = random.Random(seed).randbytes(16)
        line = redact(f"executing {render(key)} completed")  # type: ignore[operator]
        assert REDACTED in line, (seed, line)
        assert identifier_leaks(line.encode(), [key]) == []


def test_ordinary_lines_are_left_alone() -> None:
    for line in (
        "database migrated to schema version 4",
        "refusing data file /var/lib/contact-agent/contact-agent.db-wal: it is a symbolic link",
        "BluetoothAccessDeniedError: org.bluez.Error.NotPermitted at 0x7f372bd9ed40",
        "GET http://127.0.0.1:8080/v1/index.txt answered HTTP 200",
        "scanning for 0000fd6f-0000-1000-8000-00805f9b34fb on hci0",
        "GET https://svc.example/version/v1/diagnosis-keys/country/DE/date failed (HTTP 503)",
    ):
        assert redact(line) == line


def test_libraries_stay_at_warning_with_debug(tmp_path: Path) -> None:
    stream_path = tmp_path / "log.txt"
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        root.handlers = []
        with stream_path.open("w") as stream:
            configure_logging(logging.DEBUG, stream)
            for name in ("aiosqlite", "dbus_fast", "bleak", "bless", "aiohttp"):
                assert not logging.getLogger(name).isEnabledFor(logging.DEBUG), name
                assert not logging.getLogger(name + ".sub").isEnabledFor(logging.INFO), name
            assert logging.getLogger("agent.store").isEnabledFor(logging.DEBUG)
            key = os.urandom(16)
            logging.getLogger("agent.test").warning("oops %r", key)
        assert identifier_leaks(stream_path.read_bytes(), [key]) == []
    finally:
        for handler in root.handlers:
            root.removeHandler(handler)
        root.handlers, level = saved
        root.setLevel(level)
