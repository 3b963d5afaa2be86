"""Scan cadence, scan instances and the watchdog, on a fake clock (no Bluetooth)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random

import pytest

from agent.ble import ScanCounters
from agent.ble.scanning import ScanLoop, ScanSchedule
from agent.clock import FakeClock
from agent.models import ScanPeriod


class RecordingScanner:
    """A Scanner port that records what it was told; ``report()`` simulates a report."""

    def __init__(self, clock: FakeClock) -> None:
        self.counters = ScanCounters()
        self.scan_start: float | None = None
        self.events: list[tuple[float, str]] = []
        self._clock = clock
        self._on = False
        self._last: float | None = None

    @property
    def scanning(self) -> bool:
        return self._on

    @property
    def mode(self) -> str | None:
        return "active" if self._on else None

    @property
    def last_report(self) -> float | None:
        return self._last

    def report(self) -> None:
        self._last = self._clock.monotonic()

    async def start(self) -> None:
        self._on = True
        self.events.append((self._clock.wall(), "start"))

    async def stop(self) -> None:
        self._on = False
        self.events.append((self._clock.wall(), "stop"))


class Driver:
    """Simulated time: each sleep advances the clock; stops the loop after ``until`` s."""

    def __init__(self, clock: FakeClock, until: float, on_tick: object = None) -> None:
        self.clock = clock
        self.end = clock.monotonic() + until
        self.done = asyncio.Event()
        self.on_tick = on_tick

    async def sleep(self, seconds: float) -> None:
        if self.clock.monotonic() + seconds > self.end:
            self.done.set()
            await asyncio.Event().wait()
        self.clock.advance(seconds)
        if callable(self.on_tick):
            self.on_tick()
        await asyncio.sleep(0)


async def _run(loop: ScanLoop, driver: Driver) -> None:
    task = asyncio.create_task(loop.run())
    await asyncio.wait_for(driver.done.wait(), 10)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def _drain(queue: asyncio.Queue[ScanPeriod]) -> list[ScanPeriod]:
    out = []
    while not queue.empty():
        out.append(queue.get_nowait())
    return out


async def test_continuous_scan_is_cut_into_60_s_instances() -> None:
    clock = FakeClock(wall=1_600_000_000.0)
    scanner = RecordingScanner(clock)
    periods: asyncio.Queue[ScanPeriod] = asyncio.Queue()
    driver = Driver(clock, until=600, on_tick=scanner.report)  # reports keep coming
    loop = ScanLoop(scanner, clock, ScanSchedule(), periods=periods, sleep=driver.sleep)
    await _run(loop, driver)
    got = _drain(periods)
    assert [e for _, e in scanner.events] == ["start", "stop"]  # one long scan
    assert len(got) == 11  # ten full instances and the one cut by the stop
    assert all(p.end - p.start == 60 for p in got[:10])
    assert all(b.start == a.end for a, b in itertools.pairwise(got))
    assert got[0].start == 1_600_000_000.0
    assert scanner.scan_start == got[-1].start
    assert loop.last_scan_end == got[-1].end
    assert loop.watchdog_restarts == 0


async def test_duty_cycle_scans_4_s_every_210_to_300_s() -> None:
    clock = FakeClock(wall=1_600_000_000.0)
    scanner = RecordingScanner(clock)
    periods: asyncio.Queue[ScanPeriod] = asyncio.Queue()
    driver = Driver(clock, until=3 * 3600)
    schedule = ScanSchedule(mode="duty")
    loop = ScanLoop(
        scanner, clock, schedule, periods=periods, sleep=driver.sleep, rng=random.Random(5)
    )
    await _run(loop, driver)
    got = _drain(periods)
    assert len(got) >= 36  # 3 h / 300 s
    assert all(p.end - p.start == 4.0 for p in got)
    spacing = [b.start - a.start for a, b in itertools.pairwise(got)]
    assert all(210.0 <= s <= 300.0 for s in spacing)
    assert max(spacing) - min(spacing) > 30  # jittered, not a fixed beat
    assert [e for _, e in scanner.events][:4] == ["start", "stop", "start", "stop"]


async def test_watchdog_restarts_when_bluez_stops_discovery() -> None:
    clock = FakeClock(wall=1_600_000_000.0)
    scanner = RecordingScanner(clock)
    drop_at = clock.monotonic() + 15

    def discovering() -> bool:
        """BlueZ lost our discovery at 15 s; our restart brings it back."""
        starts = sum(1 for _, e in scanner.events if e == "start")
        return starts > 1 or clock.monotonic() < drop_at

    driver = Driver(clock, until=35, on_tick=scanner.report)  # reports would not help
    loop = ScanLoop(scanner, clock, ScanSchedule(), sleep=driver.sleep, discovering=discovering)
    await _run(loop, driver)
    assert loop.watchdog_restarts == 1
    assert scanner.events == [
        (1_600_000_000.0, "start"),
        (1_600_000_020.0, "stop"),  # the first watchdog check after the drop
        (1_600_000_020.0, "start"),
        (1_600_000_030.0, "stop"),  # cancelled: the next tick would pass 35 s
    ]


async def test_silence_restarts_with_a_growing_limit_in_an_empty_room() -> None:
    clock = FakeClock()
    scanner = RecordingScanner(clock)
    schedule = ScanSchedule(silence_seconds=300, silence_max_seconds=1200)
    driver = Driver(clock, until=4000)  # nothing is ever heard
    loop = ScanLoop(scanner, clock, schedule, sleep=driver.sleep)
    await _run(loop, driver)
    restarts = [t for t, e in scanner.events if e == "start"][1:]
    gaps = [b - a for a, b in zip([clock.wall() - 4000, *restarts], restarts, strict=False)]
    # 300 s, then 600 s, then 1200 s (the cap) between restarts, within a watchdog tick
    assert [round(g, -1) for g in gaps[:4]] == [310.0, 610.0, 1210.0, 1210.0]
    assert loop.watchdog_restarts == len(restarts)


async def test_reports_keep_the_watchdog_quiet_and_reset_the_limit() -> None:
    clock = FakeClock()
    scanner = RecordingScanner(clock)
    driver = Driver(clock, until=2000, on_tick=scanner.report)
    loop = ScanLoop(scanner, clock, ScanSchedule(silence_seconds=300), sleep=driver.sleep)
    await _run(loop, driver)
    assert loop.watchdog_restarts == 0


def test_schedule_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="continuous"):
        ScanSchedule(mode="sometimes")
    with pytest.raises(ValueError, match="shorter"):
        ScanSchedule(mode="duty", duty_scan_seconds=300, duty_period_seconds=300)
