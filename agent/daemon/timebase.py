"""An accelerated clock for the demo and simulations: ``scale`` agent seconds per second.

``AcceleratedClock(60)`` makes an hour pass in a minute for every loop of an
:class:`~agent.daemon.service.AgentService` built with ``clock=c, sleep=c.sleep``: wall
and monotonic time run ``scale`` times faster than real time and ``sleep(s)`` waits
``s / scale`` real seconds, so the daemon's cadences keep their ratios. Several agents
may share one clock (one process, one time line).
"""

from __future__ import annotations

import asyncio
import time


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
