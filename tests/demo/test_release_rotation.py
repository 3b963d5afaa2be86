"""Found by the demo: same-day release must rotate even within the EN interval on air.

The daemon's ``release_keys`` ends the key on air and asks the radio to rotate; it
answers only once a fresh key is on air. The rotation loop used to ignore requests
within the interval on air (right for small clock steps), so a report made in the same
interval as the last rotation waited 20 s and the CLI gave up after 5 s.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from agent.ble.rotation import RotationLoop
from agent.clock import FakeClock, en_interval_number
from agent.keyschedule import KeySchedule
from tests.unit.test_ble_rotation import META, START, RecordingAdvertiser


async def _spin(loop_done: asyncio.Task[None], until: Callable[[], bool]) -> None:
    """Let the event loop run until ``until()`` holds (or a thousand rounds passed)."""
    for _ in range(1000):
        if until() or loop_done.done():
            return
        await asyncio.sleep(0)


async def test_a_released_key_is_rotated_away_within_its_interval() -> None:
    clock = FakeClock(wall=START)
    log: list[tuple[float, str, bytes | None]] = []
    advertiser = RecordingAdvertiser(clock, log)
    schedule = KeySchedule()

    async def sleep(seconds: float) -> None:
        clock.advance(min(seconds, 5.0))
        await asyncio.sleep(0)

    loop = RotationLoop(advertiser, schedule, META, clock, sleep=sleep, check_interval=5.0)
    task = asyncio.create_task(loop.run())
    await _spin(task, lambda: bool(log))
    interval = en_interval_number(clock.wall())
    ended = schedule.end_current_key(interval)
    assert ended is not None
    loop.request_rotation()
    await _spin(task, lambda: len(log) >= 2)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    (_, first, old), (when, second, new) = log[0], log[1]
    assert (first, second) == ("start", "rotate")
    assert en_interval_number(when) == interval  # still the same interval
    assert old != new
    assert loop.rotations == 2
    keys = {t.key_data: t for t in schedule.teks}
    assert len(keys) == 2 and keys[ended.key_data].end_interval_number == interval + 1


async def test_a_plain_request_within_the_interval_still_keeps_the_rpi() -> None:
    clock = FakeClock(wall=START)
    log: list[tuple[float, str, bytes | None]] = []
    advertiser = RecordingAdvertiser(clock, log)
    schedule = KeySchedule()

    async def sleep(seconds: float) -> None:
        clock.advance(min(seconds, 5.0))
        if clock.wall() - START > 60:  # one minute is enough: stop advancing
            await asyncio.Event().wait()
        await asyncio.sleep(0)

    loop = RotationLoop(advertiser, schedule, META, clock, sleep=sleep, check_interval=5.0)
    loop.request_rotation()
    task = asyncio.create_task(loop.run())
    await _spin(task, lambda: False)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert [what for _, what, _ in log] == ["start", "stop"]
    assert loop.rotations == 1 and len(schedule.teks) == 1
