"""The flood guard (agent.ingest): bad-input cases 9 (RPI flood) and 11 (burst duplicates).

Pure logic on a FakeClock; the pipe test runs the real asyncio queue into a real writer
and SQLite store.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.clock import FakeClock
from agent.ingest import FloodGuard, GuardLimits, IngestPipe
from agent.models import ScanPeriod, Sighting
from agent.store import SightingWriter, Store

WALL = 1_700_000_000.0


def seen(clock: FakeClock, rpi: bytes, rssi: int = -60, scan: float | None = WALL) -> Sighting:
    return Sighting(clock.wall(), rpi, bytes(4), rssi, scan_start=scan)


def guard_at_window_start(limits: GuardLimits | None = None) -> tuple[FakeClock, FloodGuard]:
    clock = FakeClock(wall=WALL, monotonic=3_000.0)  # 3000 s: a window boundary
    return clock, FloodGuard(clock, limits)


def feed(guard: FloodGuard, sightings: list[Sighting]) -> list[Sighting]:
    out: list[Sighting] = []
    for s in sightings:
        out += guard.offer(s)
    return out


def test_a_burst_keeps_the_strongest_report_per_two_seconds() -> None:
    clock, guard = guard_at_window_start()
    rpi = os.urandom(16)
    out: list[Sighting] = []
    for rssi in (-70, -52, -65, -80):  # 40 reports/s for 0.1 s
        out += guard.offer(seen(clock, rpi, rssi))
        clock.advance(0.025)
    assert out == []  # held until the slot's 2 s are over
    clock.advance(2.0)
    released = guard.release()
    assert [s.rssi for s in released] == [-52]
    stats = guard.stats()
    assert (stats.offered, stats.accepted, stats.thinned, stats.held) == (4, 1, 3, 0)


def test_hundreds_of_reports_per_second_give_one_row_per_slot() -> None:
    clock, guard = guard_at_window_start()
    rpi = os.urandom(16)
    out: list[Sighting] = []
    for _ in range(20 * 300):  # 300 reports/s for 20 s
        out += guard.offer(seen(clock, rpi, -60))
        clock.advance(1 / 300)
    out += guard.release(everything=True)
    assert 10 <= len(out) <= 11  # one per 2 s
    assert guard.stats().thinned == 20 * 300 - len(out)


def test_a_new_scan_instance_gets_its_own_row() -> None:
    clock, guard = guard_at_window_start()
    rpi = os.urandom(16)
    first = guard.offer(seen(clock, rpi, -60, scan=WALL))
    clock.advance(0.5)
    second = guard.offer(seen(clock, rpi, -70, scan=WALL + 60))
    assert first == [] and [s.scan_start for s in second] == [WALL]
    clock.advance(2)
    assert [s.scan_start for s in guard.release()] == [WALL + 60]


def test_scan_periods_and_sightings_pass_the_pipe_in_order() -> None:
    clock, guard = guard_at_window_start()
    out: list[object] = []
    queue: asyncio.Queue[Sighting | ScanPeriod] = asyncio.Queue()
    pipe = IngestPipe(queue, out.append, guard)
    period = ScanPeriod(WALL, WALL + 4)
    queue.put_nowait(seen(clock, b"a" * 16))
    queue.put_nowait(period)
    pipe.drain()
    assert out[0] == period and isinstance(out[1], Sighting)
    assert guard.stats().held == 0


def test_more_than_the_cap_of_new_rpis_is_dropped_and_raises_flood() -> None:
    limits = GuardLimits(max_new_rpis=100, max_tracked_rpis=200)
    clock, guard = guard_at_window_start(limits)
    neighbour = os.urandom(16)
    guard.offer(seen(clock, neighbour))
    flood = [seen(clock, os.urandom(16)) for _ in range(1_000)]
    kept = feed(guard, flood) + guard.release(everything=True)
    assert len(kept) == 100  # the neighbour and the first 99 of the flood
    assert neighbour in {s.rpi for s in kept}
    stats = guard.stats()
    assert stats.flood and stats.flood_dropped == 901 and stats.flood_windows == 1
    # the neighbour stays recorded for the rest of the window and the next one
    clock.advance(150)
    assert guard.offer(seen(clock, neighbour)) == []
    assert [s.rpi for s in guard.release(everything=True)] == [neighbour]
    clock.advance(300)  # next window: carried over, not counted as new
    feed(guard, [seen(clock, os.urandom(16)) for _ in range(500)])
    guard.offer(seen(clock, neighbour))
    assert neighbour in {s.rpi for s in guard.release(everything=True)}
    assert guard.stats().flood  # this window flooded as well
    clock.advance(600)  # two quiet windows later the flood status is gone
    assert not guard.stats().flood


def test_past_the_cap_an_rpi_heard_for_ten_seconds_still_gets_in() -> None:
    """The neighbour's RPI changes in the middle of a flooded window (its 10-min
    rotation): it is recorded again after 10 s, the flooder's throw-away RPIs never."""
    clock, guard = guard_at_window_start()
    feed(guard, [seen(clock, os.urandom(16)) for _ in range(2_000)])  # the cap is full
    rotated = os.urandom(16)
    rows: list[Sighting] = []
    for _ in range(30 * 4):  # 30 s: the neighbour 4 times a second, 50 fresh RPIs each
        rows += guard.offer(seen(clock, rotated))
        rows += feed(guard, [seen(clock, os.urandom(16)) for _ in range(50)])
        clock.advance(0.25)
        rows += guard.release()
    mine = [s for s in rows if s.rpi == rotated]
    stats = guard.stats()
    assert stats.persistent_admitted == 1  # only the neighbour
    assert mine and mine[0].time >= WALL + 10
    assert stats.flood_dropped >= 30 * 4 * 50


def test_the_persistence_quota_is_bounded() -> None:
    limits = GuardLimits(max_new_rpis=10, max_tracked_rpis=100, max_persistent_rpis=5)
    clock, guard = guard_at_window_start(limits)
    stayers = [os.urandom(16) for _ in range(40)]  # 40 transmitters that keep their RPI
    for _ in range(60):
        feed(guard, [seen(clock, r) for r in stayers])
        clock.advance(1.0)
    assert guard.stats().window_rpis == 10 + 5


def test_carried_rpis_are_bounded_too() -> None:
    limits = GuardLimits(max_new_rpis=50, max_tracked_rpis=80)
    clock, guard = guard_at_window_start(limits)
    first = [os.urandom(16) for _ in range(50)]
    feed(guard, [seen(clock, r) for r in first])
    clock.advance(300)
    second = [os.urandom(16) for _ in range(50)]
    feed(guard, [seen(clock, r) for r in first + second])  # 50 carried + 30 new fit
    assert guard.stats().window_rpis == 80
    assert guard.stats().flood_dropped == 20


@pytest.mark.slow
def test_a_crowd_stretches_the_slot_to_keep_the_row_budget() -> None:
    limits = GuardLimits(max_new_rpis=1_000, max_tracked_rpis=1_000, max_rows_per_window=2_000)
    clock, guard = guard_at_window_start(limits)
    crowd = [os.urandom(16) for _ in range(1_000)]
    rows = 0
    for _ in range(300):  # every RPI reported each second for a whole window
        for rpi in crowd:
            rows += len(guard.offer(seen(clock, rpi)))
        clock.advance(1.0)
        rows += len(guard.release())
    # without the budget: 1,000 RPIs x 150 slots = 150,000 rows
    assert rows <= limits.max_rows_per_window + 2 * len(crowd)
    assert rows >= len(crowd)  # every RPI of the crowd was recorded


def test_after_a_burst_of_fresh_rpis_the_neighbour_keeps_a_row_every_few_seconds() -> None:
    clock, guard = guard_at_window_start()  # the defaults: 2,000 new, 6,000 rows
    neighbour = os.urandom(16)
    rows: list[Sighting] = []
    for second in range(300):
        if second == 10:  # 3,000 one-shot RPIs within a second (BlindSignedID)
            rows += feed(guard, [seen(clock, os.urandom(16)) for _ in range(3_000)])
        for _ in range(4):  # the neighbour, 4 adverts/s
            rows += guard.offer(seen(clock, neighbour))
            clock.advance(0.25)
        rows += guard.release()
    mine = [s for s in rows if s.rpi == neighbour]
    assert guard.stats().flood_dropped == 1_001  # the neighbour took one of the 2,000
    assert len(rows) - len(mine) == 1_999
    assert len(mine) >= 300 / 8  # slots grew from 2 s to at most 8 s


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 30), st.integers(-100, 10), st.floats(0, 3), st.booleans()),
        max_size=300,
    )
)
def test_every_slot_gives_at_most_one_row_and_nothing_is_invented(
    events: list[tuple[int, int, float, bool]],
) -> None:
    clock, guard = guard_at_window_start(GuardLimits(max_new_rpis=20, max_tracked_rpis=25))
    offered: list[Sighting] = []
    out: list[Sighting] = []
    for who, rssi, wait, new_scan in events:
        rpi = who.to_bytes(16, "big")
        s = seen(clock, rpi, rssi, scan=WALL + (60 if new_scan else 0))
        offered.append(s)
        out += guard.offer(s)
        clock.advance(wait)
        out += guard.release()
    out += guard.release(everything=True)
    stats = guard.stats()
    assert stats.offered == len(offered)
    assert stats.accepted == len(out)
    assert stats.accepted + stats.thinned + stats.flood_dropped == len(offered)
    assert len({id(s) for s in out}) == len(out)
    assert {id(s) for s in out} <= {id(s) for s in offered}
    assert len({s.rpi for s in out}) <= 25


async def test_the_pipe_feeds_a_real_writer_and_drain_hands_over_what_is_held(
    tmp_path: Path,
) -> None:
    clock, guard = guard_at_window_start()
    queue: asyncio.Queue[Sighting | ScanPeriod] = asyncio.Queue()
    async with await Store.open(tmp_path / "data") as store:
        writer = SightingWriter(store, flush_interval=60)
        pipe = IngestPipe(queue, writer.add, guard, tick=0.01)
        task = asyncio.create_task(pipe.run())
        rpis = [os.urandom(16) for _ in range(30)]
        for rpi in rpis:
            for rssi in (-80, -50, -70):
                queue.put_nowait(seen(clock, rpi, rssi))
        await asyncio.sleep(0.05)
        assert writer.stats.pending == 0  # all held by the guard
        clock.advance(2.0)
        for _ in range(100):
            if writer.stats.pending == 30:
                break
            await asyncio.sleep(0.01)
        queue.put_nowait(seen(clock, rpis[0], -40))  # a new slot, held
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        pipe.drain()
        await writer.close()
        assert await store.sighting_counts(0) == 31
        assert {e.rssi_max for e in await store.encounters(0)} == {-50, -40}


def test_thinning_keeps_the_relay_reasons_of_folded_reports() -> None:
    clock, guard = guard_at_window_start()
    rpi = os.urandom(16)
    flagged = dataclasses.replace(seen(clock, rpi, -80), relay=2)
    assert guard.offer(flagged) == []
    assert guard.offer(seen(clock, rpi, -50)) == []  # stronger, but unflagged
    assert guard.offer(dataclasses.replace(seen(clock, rpi, -90), relay=4)) == []
    (kept,) = guard.release(everything=True)
    assert kept.rssi == -50 and kept.relay == 2 | 4
