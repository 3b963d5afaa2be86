"""Keeps one radio running for the daemon: build it, run it, rebuild it on request.

The radio is rebuilt when ``[radio]`` changes on reload and after ``forget`` (a new, empty
key schedule), and by the supervisor after a failure. It is alive for the watchdog while
its own supervision rounds advance.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from agent.daemon.radio import RadioFactory, RadioPort, RadioRequest
from agent.daemon.sdnotify import Heartbeats
from agent.daemon.supervise import wait_until
from agent.keyschedule import KeySchedule

_LOGGER = logging.getLogger(__name__)

HEARTBEAT = "radio"


class RadioRunner:
    """The daemon's current radio, switched by policy and restarted on request."""

    def __init__(
        self,
        factory: RadioFactory,
        request: Callable[[KeySchedule], RadioRequest],
        schedule: KeySchedule,
        *,
        heartbeats: Heartbeats,
        heartbeat_max_age: float,
    ) -> None:
        self._factory = factory
        self._request = request
        self.schedule = schedule
        self._heartbeats = heartbeats
        self._max_age = heartbeat_max_age
        self._radio: RadioPort | None = None
        self._restart = asyncio.Event()
        self._last_beat: float | None = None
        self._allowed = (False, False)

    @property
    def ready(self) -> bool:
        return self._radio is not None and self._radio.ready

    def status(self) -> dict[str, Any]:
        return dict(self._radio.status()) if self._radio is not None else {}

    def allow(self, *, scanning: bool, advertising: bool) -> None:
        """Switch scanning and advertising (applied to every radio built later too)."""
        self._allowed = (scanning, advertising)
        if self._radio is not None:
            self._radio.set_scanning_allowed(scanning)
            self._radio.set_advertising_allowed(advertising)

    def rotate_now(self) -> None:
        if self._radio is not None:
            self._radio.rotate_now()

    def restart(self, schedule: KeySchedule | None = None) -> None:
        """Build a new radio, optionally on a new key schedule."""
        if schedule is not None:
            self.schedule = schedule
        self._restart.set()

    def build(self) -> RadioPort:
        radio = self._factory(self._request(self.schedule))
        self._radio = radio
        scanning, advertising = self._allowed
        radio.set_scanning_allowed(scanning)  # nothing on air before policy allows it
        radio.set_advertising_allowed(advertising)
        return radio

    async def run(self) -> None:
        """Run the radio until cancelled; a failure propagates to the supervisor."""
        self._heartbeats.register(HEARTBEAT, self._max_age)
        while True:
            radio = self._radio if self._radio is not None else self.build()
            self._restart.clear()
            task = asyncio.create_task(radio.run())
            restart = asyncio.create_task(self._restart.wait())
            try:
                await asyncio.wait({task, restart}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                restart.cancel()
                if not task.done():
                    task.cancel()
                    await asyncio.wait({task})  # stopped: advertisement off air
            self._radio = None  # rebuilt by the next round or the supervisor's restart
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
            _LOGGER.info("restarting the radio")

    async def wait_ready(self, running: asyncio.Task[None], timeout: float) -> bool:
        """Until BlueZ answered, the radio task ended, or ``timeout`` real seconds."""
        await wait_until(lambda: self.ready or running.done(), timeout)
        return self.ready

    def check_heartbeat(self) -> None:
        """Alive while the radio's supervision rounds advance (or before it started)."""
        beat = self._radio.heartbeat if self._radio is not None else None
        if beat is None or beat != self._last_beat:
            self._heartbeats.beat(HEARTBEAT)
        self._last_beat = beat
