"""Sightings: batched appends and their aggregation into scan instances and encounters."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from agent.errors import MalformedInputError
from agent.models import ObservedScan, ScanPeriod
from agent.store import Store
from tests.store.conftest import AEM, T0, sighting

X = bytes.fromhex("11" * 16)
Y = bytes.fromhex("22" * 16)
OTHER_AEM = b"\x40\x0a\x00\x00"


def by_rpi(scans: list[ObservedScan], rpi: bytes, aem: bytes = AEM) -> list[ObservedScan]:
    return [s for s in scans if s.rpi == rpi and s.aem == aem]


async def add_scripted_stream(store: Store) -> None:
    """Three 4-second scans a minute apart; X heard in each, Y imported without scans."""
    for start in (T0, T0 + 60, T0 + 120):
        await store.record_scan(ScanPeriod(start, start + 4))
    await store.add_sightings(
        [
            sighting(T0 + 1, X, -60, T0),
            sighting(T0 + 2, X, -70, T0),
            sighting(T0 + 3.7, X, -65, T0),
            sighting(T0 + 2, X, -40, T0, aem=OTHER_AEM),  # same RPI, another AEM (replay)
            sighting(T0 + 61, X, -55, T0 + 60),
            sighting(T0 + 121, X, -80, T0 + 120),
            sighting(T0 + 122, X, -50, T0 + 120),
        ]
    )
    # Y: no scan start; gaps 10/20 s then 26 s (> 25.5: new instance); 200..260 is one
    # instance of exactly 60 s, 270 exceeds the 60 s cap.
    await store.add_sightings(
        [sighting(T0 + dt, Y, -70 - i) for i, dt in enumerate((0, 10, 30, 56, 70))]
        + [sighting(T0 + dt, Y, -90) for dt in (200, 220, 240, 260, 270)]
    )


async def test_scan_instances_with_known_scan_starts(store: Store) -> None:
    await add_scripted_stream(store)
    x = by_rpi(await store.observed_scans(0), X)
    assert [(s.first_seen, s.last_seen, s.count) for s in x] == [
        (T0 + 1, T0 + 3, 3),  # whole seconds are stored
        (T0 + 61, T0 + 61, 1),
        (T0 + 121, T0 + 122, 2),
    ]
    first = x[0]
    assert (first.rssi_min, first.rssi_max) == (-70, -60)
    assert math.isclose(first.rssi_mean, -65.0)
    assert first.previous_scan_end is None  # no scan ended before the first one
    assert x[1].previous_scan_end == T0 + 4
    assert x[2].previous_scan_end == T0 + 64
    assert math.isclose(x[2].rssi_mean, -65.0)
    replay = by_rpi(await store.observed_scans(0), X, OTHER_AEM)
    assert [(s.count, s.rssi_max) for s in replay] == [(1, -40)]


async def test_scan_instances_by_gap_rule_when_scan_start_unknown(store: Store) -> None:
    await add_scripted_stream(store)
    y = by_rpi(await store.observed_scans(0), Y)
    assert [(s.first_seen - T0, s.last_seen - T0, s.count) for s in y] == [
        (0, 30, 3),
        (56, 70, 2),
        (200, 260, 4),
        (270, 270, 1),
    ]
    assert all(s.previous_scan_end is None for s in y)
    assert (y[0].rssi_min, y[0].rssi_max) == (-72, -70)
    assert math.isclose(y[1].rssi_mean, -73.5)


async def test_observed_scans_are_sorted_and_filtered_by_since(store: Store) -> None:
    await add_scripted_stream(store)
    scans = await store.observed_scans(0)
    assert [s.first_seen for s in scans] == sorted(s.first_seen for s in scans)
    later = await store.observed_scans(T0 + 100)
    assert all(s.last_seen >= T0 + 100 for s in later)
    assert {(s.rpi, s.first_seen) for s in later} == {
        (X, T0 + 121),
        (Y, T0 + 200),
        (Y, T0 + 270),
    }


async def test_observed_rpis_are_the_distinct_rpis_of_the_observed_scans(store: Store) -> None:
    assert await store.observed_rpis(0) == b""
    await add_scripted_stream(store)
    for since in (0, T0 + 100, T0 + 250, T0 + 10_000):
        blob = await store.observed_rpis(since)
        rpis = [blob[i : i + 16] for i in range(0, len(blob), 16)]
        assert len(rpis) == len(set(rpis))  # each once
        assert set(rpis) == {s.rpi for s in await store.observed_scans(since)}


async def test_encounters_aggregate_per_rpi_and_aem(store: Store) -> None:
    await add_scripted_stream(store)
    encounters = {(e.rpi, e.aem): e for e in await store.encounters(0)}
    x = encounters[(X, AEM)]
    assert (x.first_seen, x.last_seen, x.count) == (T0 + 1, T0 + 122, 6)
    assert (x.rssi_min, x.rssi_max) == (-80, -50)
    assert math.isclose(x.rssi_mean, (-60 - 70 - 65 - 55 - 80 - 50) / 6)
    assert encounters[(X, OTHER_AEM)].count == 1
    assert encounters[(Y, AEM)].count == 10
    assert "11" * 16 not in repr(x)


async def test_counts_since(store: Store) -> None:
    await add_scripted_stream(store)
    assert await store.sighting_counts(0) == 17
    assert await store.unique_rpis(0) == 2
    assert await store.sighting_counts(T0 + 100) == 2 + 5
    assert await store.unique_rpis(T0 + 250) == 1
    assert await store.sighting_counts(T0 + 1000) == 0


async def test_since_queries_see_old_rows_appended_after_new_ones(store: Store) -> None:
    """A late import of old sightings must not hide newer rows, nor leak into 'since'."""
    await store.add_sightings([sighting(T0 + 1000 + i, X) for i in range(5)])
    await store.add_sightings([sighting(T0 - 1000 + i, Y) for i in range(7)])
    await store.add_sightings([sighting(T0 + 2000, Y)])
    assert await store.sighting_counts(0) == 13
    assert await store.sighting_counts(T0) == 6
    assert await store.sighting_counts(T0 + 1500) == 1
    assert await store.sighting_counts(T0 - 1000) == 13
    old = await store.encounters(T0 - 2000)
    assert {e.rpi: e.count for e in old} == {X: 5, Y: 8}


async def test_a_bad_sighting_rejects_the_whole_batch(store: Store) -> None:
    await store.add_sightings([sighting(T0, X)])
    with pytest.raises(MalformedInputError, match="rssi"):
        await store.add_sightings([sighting(T0 + 1, X), sighting(T0 + 2, X, rssi=127)])
    with pytest.raises(MalformedInputError, match="finite"):
        await store.add_sightings([sighting(float("nan"), X)])
    with pytest.raises(MalformedInputError, match="end before"):
        await store.record_scan(ScanPeriod(T0 + 10, T0))
    assert await store.sighting_counts(0) == 1


async def test_sightings_survive_reopen_and_export_in_time_order(
    store: Store, data_dir: Path
) -> None:
    await store.add_sightings([sighting(T0 + 5, X, -61, T0 + 4), sighting(T0 + 1, Y, -62)])
    await store.close()
    async with await Store.open(data_dir) as reopened:
        rows = [s async for s in reopened.iter_sightings()]
    assert [(s.time, s.rpi, s.aem, s.rssi, s.scan_start) for s in rows] == [
        (T0 + 1, Y, AEM, -62, None),
        (T0 + 5, X, AEM, -61, T0 + 4),
    ]


@pytest.mark.parametrize(("per_query", "queries"), [(1, 4), (500, 4), (1, 1)])
async def test_observed_scans_of_some_rpis_are_those_of_the_full_read(
    store: Store, monkeypatch: pytest.MonkeyPatch, per_query: int, queries: int
) -> None:
    """Reading a few RPIs' scans (in one query, one per RPI, or, for more RPIs than the
    queries may name, one read of all rows, filtered) gives exactly the full read's
    scans of those RPIs, in the same order."""
    from agent.store import sightings

    monkeypatch.setattr(sightings, "_RPIS_PER_QUERY", per_query)
    monkeypatch.setattr(sightings, "_RPI_QUERIES_MAX", queries)
    await add_scripted_stream(store)
    unseen = bytes(16)
    for since in (0, T0 + 100):
        every = await store.observed_scans(since)
        for wanted in ({X}, {Y}, {X, Y}, {X, Y, unseen}, {unseen}):
            assert await store.observed_scans(since, wanted) == [
                s for s in every if s.rpi in wanted
            ]
        assert await store.observed_scans(since, set()) == []
