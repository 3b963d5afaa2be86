"""Keeping the current RPI on air: the advertiser's rotation loop.

At each rotation the loop asks the key schedule for the broadcast of the current EN
interval (:meth:`~agent.keyschedule.KeySchedule.broadcast`), hands the keys it created or
changed to ``persist`` *before* the new RPI goes on air, and rotates the advertiser
(new address and RPI together). The next rotation follows after a random 10-20 min delay
(:class:`~agent.keyschedule.RotationPlanner`), so no RPI stays on air for 20 minutes.

It rotates early when asked (:meth:`RotationLoop.request_rotation`) or when the wall clock
steps (:class:`~agent.clock.StepDetector`), if the EN interval is no longer the one on air
(a small step within the interval changes nothing). Re-registering is not rotating: after
bluetoothd restarted, the adapter came back, an attempt failed or bluetoothd dropped the
advertisement, the loop puts the *same* broadcast on air again until its deadline, since
asking the schedule twice for one interval would end the key and burn one of the day's
three. (The new registration gets a new address, so one RPI may be seen on two addresses
around a bluetoothd restart; rotations never do that.) When the schedule refuses to
broadcast (every allowed key of the day already used this interval after a backward clock
step) advertising pauses until the next interval. Time comes from the injected clock and
sleep function only.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from agent.ble import Advertiser, Sleep
from agent.clock import Clock, StepDetector, en_interval_number, interval_start_seconds
from agent.keyschedule import Broadcast, KeySchedule, OwnTek, RotationPlanner
from agent.payload import Metadata

_LOGGER = logging.getLogger(__name__)

PersistTeks = Callable[[list[OwnTek]], Awaitable[None]]


class RotationLoop:
    """Run :meth:`run` as a task; cancel it to take the advertisement off air."""

    def __init__(
        self,
        advertiser: Advertiser,
        schedule: KeySchedule,
        metadata: Metadata,
        clock: Clock,
        *,
        sleep: Sleep = asyncio.sleep,
        planner: RotationPlanner | None = None,
        persist: PersistTeks | None = None,
        check_interval: float = 10.0,
    ) -> None:
        self.advertiser = advertiser
        self.schedule = schedule
        self.metadata = metadata
        self.rotations = 0
        self.last_rotation: float | None = None
        """Wall time the current payload went on air."""
        self.paused_reason: str | None = None
        self._clock = clock
        self._sleep = sleep
        self._planner = planner or RotationPlanner()
        self._persist = persist
        self._check = check_interval
        self._requested = False
        self._wake = asyncio.Event()
        self._current: Broadcast | None = None
        self._aired: Broadcast | None = None
        self._deadline: float | None = None

    def request_rotation(self) -> None:
        """Rotate now if the EN interval changed (e.g. after a clock step) or the key on
        air was ended; the loop wakes at once instead of at its next check."""
        self._requested = True
        self._wake.set()

    async def _nap(self, seconds: float) -> None:
        """Sleep ``seconds``, or less when a rotation is requested meanwhile."""
        if self._requested:
            return
        self._wake.clear()
        sleeper = asyncio.ensure_future(self._sleep(seconds))
        waker = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sleeper, waker):
                task.cancel()
            await asyncio.gather(sleeper, waker, return_exceptions=True)

    async def run(self) -> None:
        """Advertise and rotate until cancelled; the advertisement is stopped on exit."""
        steps = StepDetector(self._clock)
        fresh = False
        try:
            while True:
                broadcast = await self._choose(fresh=fresh)
                if broadcast is None:
                    await self._pause(steps)
                    fresh = True
                    continue
                self.paused_reason = None
                payload = bytes(broadcast.service_data)
                if self.advertiser.advertising:
                    await self.advertiser.rotate(payload)
                else:
                    await self.advertiser.start(payload)
                if broadcast is not self._aired:
                    self._aired = broadcast
                    self.rotations += 1
                    self.last_rotation = self._clock.wall()
                    _LOGGER.debug(
                        "advertising interval %d (rotation %d)",
                        broadcast.en_interval,
                        self.rotations,
                    )
                assert self._deadline is not None
                fresh = await self._wait(self._deadline, steps)
        finally:
            await self.advertiser.stop()

    async def _choose(self, *, fresh: bool) -> Broadcast | None:
        """The broadcast to put on air now.

        Re-registering (after bluetoothd restarted, the adapter came back or a failed
        attempt) keeps the current broadcast and its deadline while its interval lasts:
        asking the schedule again for the same interval would end the key early and burn
        one of the day's three keys. Only a rotation takes a new broadcast.
        """
        interval = en_interval_number(self._clock.wall())
        current = self._current
        if (
            not fresh
            and current is not None
            and current.en_interval == interval
            and self._deadline is not None
            and self._clock.monotonic() < self._deadline
        ):
            return current
        broadcast = self.schedule.broadcast(interval, self.metadata)
        dirty = self.schedule.pop_dirty()
        if dirty and self._persist is not None:
            await self._persist(dirty)
        self._current = broadcast
        self._deadline = self._clock.monotonic() + self._planner.next_delay()
        return broadcast

    async def _pause(self, steps: StepDetector) -> None:
        """No key may broadcast now: off air until the next interval."""
        if self.paused_reason is None:
            _LOGGER.warning("advertising paused: every key of today already used this interval")
        self.paused_reason = "interval already broadcast (clock stepped back)"
        if self.advertiser.advertising:
            await self.advertiser.stop()
        wall = self._clock.wall()
        next_start = interval_start_seconds(en_interval_number(wall) + 1)
        await self._wait(self._clock.monotonic() + (next_start - wall), steps)

    async def _wait(self, deadline: float, steps: StepDetector) -> bool:
        """Sleep until ``deadline`` (monotonic) or a reason to act earlier.

        Returns True to rotate, False to register the current payload again (bluetoothd
        dropped the advertisement).
        """
        while True:
            remaining = deadline - self._clock.monotonic()
            if remaining <= 0:
                return True
            await self._nap(min(remaining, self._check))
            reason = None
            if self._requested:
                self._requested = False
                reason = "rotation requested"
            elif steps.check():
                reason = "wall clock stepped"
            if reason is not None:
                current = self._current
                if (
                    current is None
                    or current.en_interval != en_interval_number(self._clock.wall())
                    or self.schedule.ended(current.tek)  # same-day release
                ):
                    _LOGGER.info("%s: rotating address and RPI now", reason)
                    return True
                # same interval: the RPI on air is still right; a new one would need a new key
                _LOGGER.debug("%s within the interval on air: no rotation", reason)
            if self.paused_reason is None and not self.advertiser.advertising:
                _LOGGER.info("bluetoothd dropped the advertisement: registering again")
                return False
