"""The rotation loop on a fake clock, with a recording advertiser (no Bluetooth)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
from collections.abc import Callable

import pytest

from agent import crypto
from agent.ble.rotation import RotationLoop
from agent.clock import FakeClock, en_interval_number
from agent.errors import BluetoothError
from agent.keyschedule import KeySchedule, OwnTek, RotationPlanner
from agent.payload import Metadata

START = 1_600_000_200.0  # 20 s into an EN interval, mid-day UTC
META = Metadata(tx_power_dbm=-8)


class RecordingAdvertiser:
    """An Advertiser port writing what it was asked into a shared event log."""

    def __init__(self, clock: FakeClock, log: list[tuple[float, str, bytes | None]]) -> None:
        self.clock = clock
        self.log = log
        self.on_air: bytes | None = None
        self.fail_next = 0

    @property
    def advertising(self) -> bool:
        return self.on_air is not None

    def _put(self, what: str, payload: bytes) -> None:
        if self.fail_next:
            self.fail_next -= 1
            raise BluetoothError("Bluetooth: registering the advertisement failed: test")
        self.on_air = payload
        self.log.append((self.clock.wall(), what, payload))

    async def start(self, payload: bytes) -> None:
        self._put("start", payload)

    async def rotate(self, payload: bytes) -> None:
        self._put("rotate", payload)

    async def stop(self) -> None:
        self.on_air = None
        self.log.append((self.clock.wall(), "stop", None))

    def drop(self) -> None:
        """bluetoothd released the advertisement."""
        self.on_air = None


class World:
    """A fake clock, a sleep that advances it, and hooks run at given times.

    Hook times are ``START + elapsed seconds`` (elapsed on the monotonic clock).
    """

    def __init__(self, until: float) -> None:
        self.clock = FakeClock(wall=START)
        self.end = self.clock.monotonic() + until  # monotonic: wall steps in some tests
        self.done = asyncio.Event()
        self.hooks: list[tuple[float, Callable[[], None]]] = []
        self.log: list[tuple[float, str, bytes | None]] = []
        self._mono0 = self.clock.monotonic()

    async def sleep(self, seconds: float) -> None:
        if self.clock.monotonic() + seconds > self.end:
            self.done.set()
            await asyncio.Event().wait()
        self.clock.advance(seconds)
        for when, hook in list(self.hooks):
            if self.clock.monotonic() - self._mono0 >= when - START:
                self.hooks.remove((when, hook))
                hook()
        await asyncio.sleep(0)

    def loop(self, adv: RecordingAdvertiser, schedule: KeySchedule, **kw: object) -> RotationLoop:
        async def persist(teks: list[OwnTek]) -> None:
            self.log.append((self.clock.wall(), "persist", b"".join(t.key_data for t in teks)))

        return RotationLoop(
            adv,
            schedule,
            META,
            self.clock,
            sleep=self.sleep,
            planner=RotationPlanner(random.Random(11)),
            persist=persist,
            **kw,  # type: ignore[arg-type]
        )

    async def run(self, loop: RotationLoop) -> None:
        task = asyncio.create_task(loop.run())
        await asyncio.wait_for(self.done.wait(), 10)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _payload(tek: OwnTek, interval: int) -> bytes:
    rpi = crypto.rpi(crypto.derive_rpik(tek.key_data), interval)
    return rpi + crypto.encrypt_aem(crypto.derive_aemk(tek.key_data), rpi, bytes(META))


def _aired(log: list[tuple[float, str, bytes | None]]) -> list[tuple[float, bytes]]:
    return [(t, p) for t, what, p in log if what in ("start", "rotate") and p is not None]


async def test_rotates_every_10_to_20_minutes_with_the_schedules_rpi() -> None:
    world = World(until=6 * 3600)
    schedule = KeySchedule()
    adv = RecordingAdvertiser(world.clock, world.log)
    loop = world.loop(adv, schedule)
    await world.run(loop)
    aired = _aired(world.log)
    assert len(aired) >= 18 and loop.rotations == len(aired)
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(aired)]
    assert all(600 < g < 1200 for g in gaps)
    assert len({p for _, p in aired}) == len(aired)  # every rotation a new RPI
    (tek,) = schedule.teks
    for when, payload in aired:
        assert payload == _payload(tek, en_interval_number(when))
    assert world.log[-1][1] == "stop"  # cancelled: off air


async def test_keys_are_persisted_before_their_rpi_goes_on_air() -> None:
    world = World(until=3600)
    adv = RecordingAdvertiser(world.clock, world.log)
    await world.run(world.loop(adv, KeySchedule()))
    kinds = [what for _, what, _ in world.log]
    assert kinds[:2] == ["persist", "start"]
    for i, what in enumerate(kinds):
        if what in ("start", "rotate"):
            assert kinds[i - 1] == "persist"  # the new high-water mark is saved first


async def test_clock_steps_rotate_at_the_next_check_when_the_interval_changed() -> None:
    world = World(until=900)
    schedule = KeySchedule()
    adv = RecordingAdvertiser(world.clock, world.log)
    loop = world.loop(adv, schedule, check_interval=10.0)
    world.hooks.append((START + 100, loop.request_rotation))  # same interval: nothing to do
    world.hooks.append((START + 200, lambda: world.clock.step(5)))  # small NTP correction
    world.hooks.append((START + 300, lambda: world.clock.step(3 * 3600)))
    world.hooks.append((START + 600, loop.request_rotation))  # by now in a new interval
    await world.run(loop)
    aired = _aired(world.log)
    assert [round(t - START) for t, _ in aired[:3]] == [0, 3 * 3600 + 305, 3 * 3600 + 605]
    (tek,) = schedule.teks  # no key was ended early
    for when, payload in aired:
        assert payload == _payload(tek, en_interval_number(when))


async def test_backward_steps_use_new_keys_then_pause_until_an_unused_interval() -> None:
    world = World(until=3600)
    schedule = KeySchedule()
    adv = RecordingAdvertiser(world.clock, world.log)
    loop = world.loop(adv, schedule, check_interval=10.0)
    for at in (50, 100, 150):  # three steps back by one interval each
        world.hooks.append((START + at, lambda: world.clock.step(-600)))
    await world.run(loop)
    assert len(schedule.teks) == 3  # the daily maximum of keys per start interval
    stops = [t for t, what, _ in world.log if what == "stop"]
    assert stops, "advertising paused when no key could broadcast"
    resumed = [t for t, p in _aired(world.log) if t > stops[0]]
    assert resumed and resumed[0] % 600 == 0  # at the start of an interval
    # never the same (TEK, interval) twice on air
    owner = {}
    for tek in schedule.teks:
        for i in range(tek.rolling_start_interval_number, tek.end_interval_number):
            owner[_payload(tek, i)] = (tek.key_data, i)
    aired = [owner[p] for _, p in _aired(world.log)]
    assert len(set(aired)) == len(aired)


async def test_dropped_advertisement_is_registered_again_with_the_same_rpi() -> None:
    world = World(until=3000)
    adv = RecordingAdvertiser(world.clock, world.log)
    loop = world.loop(adv, KeySchedule(), check_interval=10.0)
    world.hooks.append((START + 200, adv.drop))
    await world.run(loop)
    aired = _aired(world.log)
    assert aired[1][1] == aired[0][1] and aired[1][0] == pytest.approx(START + 200)
    # the re-registration keeps the deadline: the RPI still leaves the air in time
    assert aired[2][0] - aired[0][0] < 1200
    assert loop.rotations == len({p for _, p in aired})


async def test_a_failed_registration_is_retried_with_the_same_broadcast() -> None:
    world = World(until=100)
    schedule = KeySchedule()
    adv = RecordingAdvertiser(world.clock, world.log)
    adv.fail_next = 2
    loop = world.loop(adv, schedule)
    for _ in range(2):
        with pytest.raises(BluetoothError):
            await loop.run()
    await world.run(loop)
    (tek,) = schedule.teks  # no key burnt by the failures
    assert _aired(world.log)[0][1] == _payload(tek, en_interval_number(START))
