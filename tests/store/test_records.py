"""Own keys, state, key-file bookkeeping, exposure windows, summaries, notifications."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from agent.errors import MalformedInputError
from agent.keyschedule import KeySchedule, OwnTek
from agent.models import DailySummary, ExposureWindow, ReportType, ScanInstance
from agent.payload import Metadata
from agent.store import Store


def window(key: bytes, start: int, **changes: object) -> ExposureWindow:
    fields: dict[str, object] = {
        "start": start,
        "duration_seconds": 900,
        "report_type": ReportType.CONFIRMED_TEST,
        "infectiousness": 1,
        "calibration_confidence": 0,
        "scan_instances": (ScanInstance(55, 50, 300), ScanInstance(61, 58, 120)),
        "key_data": key,
        "score": 12.5,
        "weighted_duration_seconds": 420.0,
    }
    fields.update(changes)
    return ExposureWindow(**fields)  # type: ignore[arg-type]


async def test_own_teks_round_trip_with_high_water_mark(store: Store, data_dir: Path) -> None:
    schedule = KeySchedule(tek_factory=lambda: bytes(range(16)))
    broadcast = schedule.broadcast(2_833_344 + 5, Metadata(tx_power_dbm=-8))
    assert broadcast is not None
    await store.save_own_teks(schedule.pop_dirty())
    assert await store.load_own_teks() == [broadcast.tek]
    older = OwnTek(b"\x01" * 16, 2_833_344 - 144, 144, 2_833_344 - 1)
    await store.save_own_teks([older])
    # a later change (period cut, new high-water mark) replaces the row
    await store.save_own_teks([OwnTek(bytes(range(16)), 2_833_344, 10, 2_833_344 + 9)])
    await store.close()
    async with await Store.open(data_dir) as reopened:
        teks = await reopened.load_own_teks()
        assert teks == [older, OwnTek(bytes(range(16)), 2_833_344, 10, 2_833_344 + 9)]
        await reopened.delete_own_teks_before(2_833_344)
        assert [t.key_data for t in await reopened.load_own_teks()] == [bytes(range(16))]


async def test_state_set_get_delete_survives_reopen(store: Store, data_dir: Path) -> None:
    assert await store.get_state("consent") is None
    await store.set_state("consent", "on")
    await store.set_state("consent", "off")
    await store.set_state("clock.lower_bound", "1700000000.5")
    await store.delete_state("nothing-there")
    await store.close()
    async with await Store.open(data_dir) as reopened:
        assert await reopened.get_state("consent") == "off"
        await reopened.delete_state("consent")
        assert await reopened.get_state("consent") is None
        assert await reopened.get_state("clock.lower_bound") == "1700000000.5"


async def test_processed_files_are_remembered_once(store: Store) -> None:
    digest = hashlib.sha256(b"export file").digest()
    assert not await store.is_file_processed(digest)
    await store.mark_file_processed(digest, source="https://x/a.zip", key_count=7, processed_at=1.0)
    await store.mark_file_processed(digest, source="again", key_count=9, processed_at=2.0)
    assert await store.is_file_processed(digest)
    assert not await store.is_file_processed(hashlib.sha256(b"other").digest())
    with pytest.raises(MalformedInputError, match="SHA-256"):
        await store.is_file_processed(b"short")


async def test_windows_are_deduplicated_and_notified_once(store: Store) -> None:
    key_a, key_b = b"\xaa" * 16, b"\xbb" * 16
    first = await store.save_exposure_windows([window(key_a, 1000), window(key_b, 5000)])
    assert len(first) == 2
    # reprocessing the same file: same key and start -> nothing new
    again = await store.save_exposure_windows(
        [window(key_a, 1000, score=99.0), window(key_a, 3000)]
    )
    assert len(again) == 1 and again[0] not in first
    stored = await store.exposure_windows()
    assert [(w.key_data, w.start) for w in stored] == [(key_a, 1000), (key_a, 3000), (key_b, 5000)]
    assert stored[0] == window(key_a, 1000)  # first version kept, all fields round-trip
    assert [w.start for w in await store.exposure_windows(since=3000)] == [3000, 5000]

    unnotified = await store.unnotified_windows()
    assert [wid for wid, _ in unnotified] == [first[0], again[0], first[1]]
    await store.mark_notified([first[0], first[1]])
    assert [wid for wid, _ in await store.unnotified_windows()] == [again[0]]


async def test_revoked_key_removes_its_windows(store: Store) -> None:
    key_a, key_b = b"\xaa" * 16, b"\xbb" * 16
    await store.save_exposure_windows([window(key_a, 1000), window(key_a, 3000), window(key_b, 9)])
    assert await store.remove_windows_for_keys([key_a, key_a]) == 2
    assert [w.key_data for w in await store.exposure_windows()] == [key_b]
    assert await store.remove_windows_for_keys([b"\xcc" * 16]) == 0


async def test_daily_summaries_upsert_and_replace(store: Store) -> None:
    day = 1_699_920_000
    await store.save_daily_summaries([DailySummary(day, 10.0, 5.0, 600.0)])
    await store.save_daily_summaries(
        [DailySummary(day, 12.0, 6.0, 700.0), DailySummary(day + 86_400, 1.0, 1.0, 60.0)]
    )
    assert await store.daily_summaries() == [
        DailySummary(day, 12.0, 6.0, 700.0),
        DailySummary(day + 86_400, 1.0, 1.0, 60.0),
    ]
    await store.save_daily_summaries([DailySummary(day + 86_400, 2.0, 2.0, 90.0)], replace_all=True)
    assert await store.daily_summaries() == [DailySummary(day + 86_400, 2.0, 2.0, 90.0)]
