"""Retention purge and forget: boundaries, and a raw-byte proof that deleted RPIs are gone."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from agent.constants import RETENTION_SECONDS
from agent.errors import StoreError
from agent.keyschedule import OwnTek
from agent.models import DailySummary, ScanPeriod
from agent.store import PENDING_STATE_KEY, Store
from tests.store.conftest import T0, found_in_files, random_rpis, sighting
from tests.store.test_records import window

DAY = 86_400
NOW = T0 + 30 * DAY
CUTOFF = NOW - RETENTION_SECONDS


def interval(t: float) -> int:
    return int(t // 600)


async def test_purge_boundary_keeps_13d23h_and_deletes_14d1min(store: Store) -> None:
    kept, gone = b"K" * 16, b"G" * 16
    await store.add_sightings(
        [sighting(NOW - (13 * DAY + 23 * 3600), kept), sighting(NOW - (14 * DAY + 60), gone)]
    )
    await store.record_scan(ScanPeriod(NOW - 15 * DAY, NOW - 15 * DAY + 4))
    await store.record_scan(ScanPeriod(NOW - 13 * DAY, NOW - 13 * DAY + 4))
    day = interval(NOW - 14 * DAY) // 144 * 144  # the day that holds the cutoff
    ended_old = OwnTek(b"\x01" * 16, day - 144, 144, day - 1)  # ended before the cutoff
    recent = OwnTek(b"\x02" * 16, day, 144, day + 100)  # still valid at the cutoff
    await store.save_own_teks([ended_old, recent])
    await store.save_exposure_windows(
        [window(b"\xaa" * 16, int(NOW - 15 * DAY)), window(b"\xbb" * 16, int(NOW - 13 * DAY))]
    )
    midnight = int(NOW) - int(NOW) % DAY
    await store.save_daily_summaries(
        [DailySummary(midnight - 15 * DAY, 1, 1, 1), DailySummary(midnight - 14 * DAY, 2, 2, 2)]
    )
    old_file, kept_file = hashlib.sha256(b"old").digest(), hashlib.sha256(b"kept").digest()
    await store.mark_file_processed(old_file, source="a", key_count=1, processed_at=NOW - 29 * DAY)
    await store.mark_file_processed(kept_file, source="b", key_count=1, processed_at=NOW - 20 * DAY)

    result = await store.purge(CUTOFF)

    assert result.checkpointed
    assert (result.sightings, result.scans, result.own_teks) == (1, 1, 1)
    assert (result.exposure_windows, result.daily_summaries, result.processed_files) == (1, 1, 1)
    assert [e.rpi for e in await store.encounters(0)] == [kept]
    assert await store.load_own_teks() == [recent]
    assert [w.key_data for w in await store.exposure_windows()] == [b"\xbb" * 16]
    # the summary of the day that straddles the cutoff stays until the whole day is older
    assert [s.day for s in await store.daily_summaries()] == [midnight - 14 * DAY]
    assert not await store.is_file_processed(old_file)
    assert await store.is_file_processed(kept_file)  # kept 28 days: never matched again
    assert await store.get_state(PENDING_STATE_KEY) is None
    assert await store.integrity_ok()


async def test_purge_leaves_no_deleted_rpi_in_any_file(store: Store, data_dir: Path) -> None:
    old, recent = random_rpis(1000), random_rpis(1000)
    for i in range(0, 1000, 250):  # several batches, as the writer makes them
        chunk = range(i, i + 250)
        await store.add_sightings([sighting(NOW - 15 * DAY + j, old[j]) for j in chunk])
        await store.add_sightings([sighting(NOW - DAY + j, recent[j]) for j in chunk])
    assert len({i for _, i in found_in_files(data_dir, old)}) == 1000  # the search works

    result = await store.purge(CUTOFF)

    assert result.sightings == 1000 and result.checkpointed
    assert found_in_files(data_dir, old) == []
    assert len({i for _, i in found_in_files(data_dir, recent)}) == 1000
    assert await store.sighting_counts(0) == 1000
    await store.close()
    assert found_in_files(data_dir, old) == []


async def test_forget_leaves_no_rpi_or_key_in_any_file(data_dir: Path) -> None:
    """The CLI may forget while the daemon holds its own connection open."""
    daemon = await Store.open(data_dir)
    cli = await Store.open(data_dir)
    try:
        rpis, teks = random_rpis(1000), random_rpis(20)
        for i in range(0, 1000, 100):
            await daemon.add_sightings([sighting(NOW - j, rpis[j]) for j in range(i, i + 100)])
        await daemon.save_own_teks([OwnTek(k, 2_800_000 + 144 * n) for n, k in enumerate(teks)])
        await daemon.save_exposure_windows([window(teks[0], int(NOW))])
        await daemon.set_state("consent", "on")
        assert len({i for _, i in found_in_files(data_dir, rpis)}) == 1000

        await cli.forget()

        assert found_in_files(data_dir, rpis) == []
        assert found_in_files(data_dir, teks) == []
        assert await daemon.sighting_counts(0) == 0
        assert await daemon.load_own_teks() == []
        assert await daemon.exposure_windows() == []
        assert await daemon.get_state("consent") is None
        assert await cli.integrity_ok()
        # the store keeps working after forget
        await daemon.add_sightings([sighting(NOW, rpis[0])])
        assert await cli.sighting_counts(0) == 1
    finally:
        await cli.close()
        await daemon.close()
    assert found_in_files(data_dir, rpis[1:]) == []


async def test_an_interrupted_forget_finishes_at_the_next_open(data_dir: Path) -> None:
    """A kill after forget was requested (the mark is durable) must not keep the data."""
    rpis = random_rpis(50)
    async with await Store.open(data_dir) as store:
        await store.add_sightings([sighting(NOW, r) for r in rpis])
        await store.set_state(PENDING_STATE_KEY, "forget")  # what forget() writes first
    async with await Store.open(data_dir) as store:
        assert await store.sighting_counts(0) == 0
        assert await store.get_state(PENDING_STATE_KEY) is None
        assert found_in_files(data_dir, rpis) == []


async def test_an_interrupted_checkpoint_finishes_at_the_next_open(data_dir: Path) -> None:
    async with await Store.open(data_dir) as store:
        await store.add_sightings([sighting(NOW, r) for r in random_rpis(5)])
        await store.set_state(PENDING_STATE_KEY, "checkpoint")
    async with await Store.open(data_dir) as store:
        assert await store.get_state(PENDING_STATE_KEY) is None
        assert await store.sighting_counts(0) == 5
    assert os.path.getsize(data_dir / "contact-agent.db") > 0


async def test_forget_works_on_a_full_database(data_dir: Path) -> None:
    store = await Store.open(data_dir, max_bytes=128 * 1024)
    try:
        rpis: list[bytes] = []
        with pytest.raises(StoreError, match="full"):
            while True:
                batch = random_rpis(100)
                await store.add_sightings([sighting(NOW, r) for r in batch])
                rpis += batch
        await store.forget()
        assert await store.sighting_counts(0) == 0
        assert found_in_files(data_dir, rpis) == []
    finally:
        await store.close()
