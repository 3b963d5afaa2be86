"""The daemon's time line: its loop cadences, and an accelerated clock for simulations.

:class:`ServiceTiming` holds the cadences of the daemon's loops.

``AcceleratedClock(60)`` (``scale`` agent seconds per real second) makes an hour pass in
a minute for every loop of an :class:`~agent.daemon.service.AgentService` built with
``clock=c, sleep=c.sleep``: wall and monotonic time run ``scale`` times faster than real
time and ``sleep(s)`` waits ``s / scale`` real seconds, so the daemon's cadences keep
their ratios. Several agents may share one clock (one process, one time line).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass


class AcceleratedClock:
    """Wall and monotonic time running ``scale`` times faster than the real clocks."""

    def __init__(self, scale: float, start_wall: float | None = None) -> None:
        if scale <= 0:
            raise ValueError("time scale must be positive")
        self.scale = float(scale)
        self._real_start = time.monotonic()
        self._wall_start = time.time() if start_wall is None else float(start_wall)

    def _elapsed(self) -> float:
        return (time.monotonic() - self._real_start) * self.scale

    def wall(self) -> float:
        return self._wall_start + self._elapsed()

    def monotonic(self) -> float:
        return self._elapsed()

    async def sleep(self, seconds: float) -> None:
        """Sleep ``seconds`` of agent time."""
        await asyncio.sleep(max(0.0, seconds) / self.scale)


@dataclass(frozen=True, slots=True)
class ServiceTiming:
    """Cadences of the daemon's loops (seconds of the injected clock unless noted).

    The defaults are the production values; tests and the demo shrink them.
    """

    tick: float = 1.0
    """Clock watch cadence: steps are seen within a tick."""
    sync_probe: float = 30.0
    """How often timedate1 (or the marker) is asked while untrusted; 10x once trusted."""
    housekeeping: float = 15.0
    """Gauges, status line and the metrics textfile."""
    purge: float = 86_400.0
    first_fetch_delay: float = 5.0
    """After start, before the first key fetch (the clock check settles first)."""
    writer_flush: float = 10.0
    """Sighting batches: at most this long in memory (kill -9 loses at most this)."""
    ready_timeout: float = 30.0
    """Real seconds READY waits for BlueZ before it is sent with a degraded status."""
    heartbeat_max_age: float = 60.0
    """Real seconds a loop may stay silent before the watchdog stops being fed."""
