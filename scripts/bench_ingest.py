"""Ingest figures for ``scripts/bench``: the daemon's sighting path on one core.

A crowd of ``devices`` phones (one RPI each) is heard for ``duration`` seconds, through
exactly what the daemon runs: bleak's detection callback of
:class:`agent.ble.scanner.BleakEnScanner` (validation in :mod:`agent.ble.detection`)
with synthetic ``AdvertisementData`` as BlueZ delivers it (RSSI in the Device1
properties), the daemon's bounded queue, the flood guard (:mod:`agent.ingest`), the
batching :class:`~agent.store.SightingWriter` and a real SQLite store. The producer
calls the callback as fast as it can, yields to the loop every 100 reports and waits
while the queue is nearly full, so the rate is what the whole path sustains (the
guard keeps one sighting per RPI per 2 s); reports dropped for a full queue are counted.

Database bytes per stored sighting: file growth of the store (after its WAL is merged at
close) over the rows the writer stored.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_refs import ROOT, python_calls_per_second

sys.path.insert(0, str(ROOT))

from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData

from agent.ble.scanner import BleakEnScanner
from agent.clock import SystemClock
from agent.constants import EN_SERVICE_UUID
from agent.ingest import FloodGuard, IngestPipe
from agent.models import ScanPeriod, Sighting
from agent.store import SightingWriter, Store
from agent.store.schema import DB_FILENAME

QUEUE_SIZE = 50_000
"""As the daemon's queue (``agent.daemon.service``)."""


def _advert(payload: bytes, rssi: int) -> AdvertisementData:
    return AdvertisementData(
        local_name=None,
        manufacturer_data={},
        service_data={EN_SERVICE_UUID: payload},
        service_uuids=[EN_SERVICE_UUID],
        tx_power=None,
        rssi=rssi,
        platform_data=("/org/bluez/hci0/dev_00_11_22_33_44_55", {"RSSI": rssi}),
    )


def _db_bytes(data_dir: Path) -> int:
    return sum(
        (data_dir / f"{DB_FILENAME}{suffix}").stat().st_size
        for suffix in ("", "-wal")
        if (data_dir / f"{DB_FILENAME}{suffix}").exists()
    )


async def _below(queue: asyncio.Queue[Sighting | ScanPeriod], level: int) -> None:
    """Until the consumer brought the queue below ``level`` (a Queue has no such event)."""
    while queue.qsize() >= level:  # noqa: ASYNC110
        await asyncio.sleep(0.001)


async def _ingest(data_dir: Path, duration: float, devices: int) -> dict[str, Any]:
    clock = SystemClock()
    store = await Store.open(data_dir)
    queue: asyncio.Queue[Sighting | ScanPeriod] = asyncio.Queue(maxsize=QUEUE_SIZE)
    scanner = BleakEnScanner("hci0", clock, queue)
    scanner.scan_start = clock.wall()
    writer = SightingWriter(store, flush_interval=10.0)
    guard = FloodGuard(clock)
    pipe = IngestPipe(queue, writer.add, guard)
    crowd = [
        (
            BLEDevice(f"00:11:22:33:{i >> 8:02X}:{i & 255:02X}", None, None),
            _advert(os.urandom(20), -40 - i % 50),
        )
        for i in range(devices)
    ]
    on_report = scanner._on_report  # bleak's detection callback
    writer_task = writer.start()
    pipe_task = asyncio.create_task(pipe.run())
    began = time.perf_counter()
    adverts = 0
    while time.perf_counter() - began < duration:
        for _ in range(100):
            device, advert = crowd[adverts % devices]
            on_report(device, advert)
            adverts += 1
        await asyncio.sleep(0)
        await _below(queue, int(QUEUE_SIZE * 0.8))
    await _below(queue, 1)
    seconds = time.perf_counter() - began
    pipe_task.cancel()
    await asyncio.gather(pipe_task, return_exceptions=True)
    pipe.drain()
    await writer.close()
    await writer_task
    await store.close()
    counters = scanner.counters
    return {
        "adverts": adverts,
        "devices": devices,
        "seconds": seconds,
        "adverts_per_second": adverts / seconds,
        "accepted": counters.accepted,
        "queue_full": counters.queue_full,
        "thinned": guard.stats().thinned,
        "flood_dropped": guard.stats().flood_dropped,
        "rows_stored": writer.stats.flushed_rows,
        "batches": writer.stats.batches,
    }


def ingest(duration: float, devices: int) -> dict[str, Any]:
    """The ingest run (call it pinned to one core), with the Python-call reference."""
    before = python_calls_per_second(0.3)
    with tempfile.TemporaryDirectory() as scratch:
        data_dir = Path(scratch) / "data"

        async def empty() -> None:
            await (await Store.open(data_dir)).close()

        asyncio.run(empty())
        empty_bytes = _db_bytes(data_dir)
        result = asyncio.run(_ingest(data_dir, duration, devices))
        grown = _db_bytes(data_dir) - empty_bytes
    reference = (before + python_calls_per_second(0.3)) / 2
    rows = max(1, result["rows_stored"])
    result.update(
        {
            "db_bytes": grown,
            "db_bytes_per_sighting": grown / rows,
            "py_calls_per_advert": reference / result["adverts_per_second"],
            "py_calls_per_second": reference,
        }
    )
    return result
