"""Found by the demo: same-day release must rotate even within the EN interval on air.

The daemon's ``release_keys`` ends the key on air and asks the radio to rotate; it
answers only once a fresh key is on air. The rotation loop used to ignore requests
within the interval on air (right for small clock steps), so a report made in the same
interval as the last rotation waited 20 s and the CLI gave up after 5 s.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from agent.ble.rotation import RotationLoop
from agent.clock import FakeClock, en_interval_number
from agent.keyschedule import KeySchedule
from tests.unit.test_ble_rotation import META, START, RecordingAdvertiser


class Rig:
    """A rotation loop on a fake clock that stops advancing one minute after START
    (START is 20 s into an EN interval: everything here happens within that interval)."""

    def __init__(self, start: float = START) -> None:
        self.start = start
        self.clock = FakeClock(wall=start)
        self.log: list[tuple[float, str, bytes | None]] = []
        self.schedule = KeySchedule()
        self.loop = RotationLoop(
            RecordingAdvertiser(self.clock, self.log),
            self.schedule,
            META,
            self.clock,
            sleep=self.sleep,
            check_interval=5.0,
        )
        self.task: asyncio.Task[None] | None = None

    async def sleep(self, seconds: float) -> None:
        self.clock.advance(min(seconds, 5.0))
        if self.clock.wall() - self.start > 60:
            await asyncio.Event().wait()
        await asyncio.sleep(0)

    async def run_until(self, until: Callable[[], bool]) -> None:
        """Start the loop (once) and let it run until ``until()`` holds or it settles."""
        if self.task is None:
            self.task = asyncio.create_task(self.loop.run())
        for _ in range(1000):
            if until():
                return
            await asyncio.sleep(0)

    async def stop(self) -> None:
        assert self.task is not None
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


@pytest.mark.parametrize("last_of_day", [False, True], ids=["mid-day", "last-interval"])
async def test_a_released_key_is_rotated_away_within_its_interval(last_of_day: bool) -> None:
    start = START
    if last_of_day:  # 20 s into the day's last interval: ending keeps the period at 144
        interval = en_interval_number(START)
        start = (interval - interval % 144 + 143) * 600 + 20.0
    rig = Rig(start)
    await rig.run_until(lambda: bool(rig.log))
    interval = en_interval_number(rig.clock.wall())
    ended = rig.schedule.end_current_key(interval)
    assert ended is not None
    rig.loop.request_rotation()
    await rig.run_until(lambda: len(rig.log) >= 2)
    await rig.stop()
    (_, first, old), (when, second, new) = rig.log[0], rig.log[1]
    assert (first, second) == ("start", "rotate")
    assert en_interval_number(when) == interval  # still the same interval
    assert old != new
    assert rig.loop.rotations == 2
    keys = {t.key_data: t for t in rig.schedule.teks}
    assert len(keys) == 2 and keys[ended.key_data].end_interval_number == interval + 1
    assert rig.schedule.ended(ended)


async def test_a_plain_request_within_the_interval_still_keeps_the_rpi() -> None:
    rig = Rig()
    rig.loop.request_rotation()
    await rig.run_until(lambda: False)  # a minute of checks, all in the same interval
    await rig.stop()
    assert [what for _, what, _ in rig.log] == ["start", "stop"]
    assert rig.loop.rotations == 1 and len(rig.schedule.teks) == 1


async def test_a_rotation_request_wakes_the_loop_at_once() -> None:
    """A request must not wait for the loop's next periodic check (clock steps, release)."""
    clock = FakeClock(wall=START)
    log: list[tuple[float, str, bytes | None]] = []
    schedule = KeySchedule()
    parked = asyncio.Event()

    async def sleep_forever(seconds: float) -> None:
        parked.set()
        await asyncio.Event().wait()  # the periodic check never comes

    loop = RotationLoop(
        RecordingAdvertiser(clock, log), schedule, META, clock, sleep=sleep_forever,
        check_interval=600.0,
    )  # fmt: skip
    task = asyncio.create_task(loop.run())
    try:
        await asyncio.wait_for(parked.wait(), 5)
        assert [what for _, what, _ in log] == ["start"]
        clock.advance(600)  # the next EN interval: a rotation is due once asked for
        loop.request_rotation()
        for _ in range(200):
            if len(log) >= 2:
                break
            await asyncio.sleep(0)
        assert [what for _, what, _ in log] == ["start", "rotate"]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
