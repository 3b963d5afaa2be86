"""SightingWriter: batches by size and time, flushes on shutdown, survives a full disk."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.errors import StoreError
from agent.models import ScanPeriod, Sighting
from agent.store import SightingWriter, Store
from tests.store.conftest import T0, random_rpis, sighting


async def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


async def test_close_flushes_the_buffer(store: Store) -> None:
    writer = SightingWriter(store, flush_interval=3600, max_rows=1000)
    writer.start()
    for i, rpi in enumerate(random_rpis(10)):
        writer.add(sighting(T0 + i, rpi))
    assert await store.sighting_counts(0) == 0  # still buffered
    await writer.close()
    assert await store.sighting_counts(0) == 10
    assert (writer.stats.batches, writer.stats.flushed_rows, writer.stats.pending) == (1, 10, 0)


async def test_cancelling_the_task_drains_the_queue_and_flushes(store: Store) -> None:
    queue: asyncio.Queue[Sighting | ScanPeriod] = asyncio.Queue()
    writer = SightingWriter(store, queue, flush_interval=3600, max_rows=1000)
    task = asyncio.create_task(writer.run())
    await queue.put(ScanPeriod(T0 - 10, T0 - 6))
    for i in range(20):
        queue.put_nowait(sighting(T0 + i, bytes([i]) * 16, scan_start=T0))
    await asyncio.sleep(0)  # let the feeder take some, not necessarily all
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert await store.sighting_counts(0) == 20
    scans = await store.observed_scans(0)
    assert {s.previous_scan_end for s in scans} == {T0 - 6}


async def test_max_rows_flushes_before_the_interval(store: Store) -> None:
    writer = SightingWriter(store, flush_interval=3600, max_rows=5)
    writer.start()
    for i, rpi in enumerate(random_rpis(12)):
        writer.add(sighting(T0 + i, rpi))
    await wait_until(lambda: writer.stats.flushed_rows >= 10)
    assert await store.sighting_counts(0) >= 10
    await writer.close()
    assert await store.sighting_counts(0) == 12


async def test_interval_flushes_a_small_buffer(store: Store) -> None:
    writer = SightingWriter(store, flush_interval=0.05, max_rows=1000)
    writer.start()
    writer.add(sighting(T0, random_rpis(1)[0]))
    await wait_until(lambda: writer.stats.batches == 1)
    assert await store.sighting_counts(0) == 1
    await writer.close()


async def test_impossible_sightings_are_counted_not_raised(store: Store) -> None:
    writer = SightingWriter(store)
    writer.add(sighting(T0, random_rpis(1)[0], rssi=300))
    writer.add(sighting(float("inf"), random_rpis(1)[0]))
    writer.add(sighting(T0, random_rpis(1)[0]))
    await writer.close()
    assert writer.stats.rejected == 2
    assert await store.sighting_counts(0) == 1


async def test_full_database_keeps_a_bounded_buffer_and_recovers(
    data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Bad input 48: the write fails, rows stay in RAM up to a cap, writing resumes later."""
    store = await Store.open(data_dir, max_bytes=256 * 1024)
    try:
        old = T0 - 30 * 86_400
        with pytest.raises(StoreError, match="full"):
            for n in range(4000):  # fill the database with old sightings, to the last page
                await store.add_sightings([sighting(old + n, rpi) for rpi in random_rpis(50)])
        assert await store.integrity_ok()
        stored_before = await store.sighting_counts(0)

        writer = SightingWriter(store, flush_interval=3600, max_rows=100, max_buffer=300)
        fresh = random_rpis(500)
        with caplog.at_level(logging.WARNING, logger="agent.store.writer"):
            for i, rpi in enumerate(fresh):
                writer.add(sighting(T0 + i, rpi))
                if i % 100 == 99:
                    assert not await writer.flush()
        assert writer.stats.errors == 5
        assert writer.stats.pending == 300
        assert writer.stats.dropped == 200  # the oldest ones
        assert "full" in (writer.stats.last_error or "")
        assert len([r for r in caplog.records if "write failed" in r.message]) == 1
        assert await store.sighting_counts(0) == stored_before

        await store.purge(T0 - 86_400)  # space comes back
        assert await writer.flush()
        assert writer.stats.pending == 0
        encounters = await store.encounters(0)
        assert {e.rpi for e in encounters} == set(fresh[200:])
        assert await store.integrity_ok()
    finally:
        await store.close()


async def test_close_after_the_task_was_cancelled_still_flushes(store: Store) -> None:
    writer = SightingWriter(store, flush_interval=3600)
    task = writer.start()
    await asyncio.sleep(0)
    writer.add(sighting(T0, random_rpis(1)[0]))
    task.cancel()
    await asyncio.wait([task])
    writer.add(sighting(T0 + 1, random_rpis(1)[0]))  # arrives after the task ended
    await writer.close()  # must not raise the task's cancellation
    assert await store.sighting_counts(0) == 2
