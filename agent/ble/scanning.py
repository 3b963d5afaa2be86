"""When to scan: continuous or duty-cycled, scan instances, and the scanner watchdog.

- ``continuous`` (mains power): one long scan cut into scan instances of 60 s; each
  instance is recorded as a :class:`~agent.models.ScanPeriod` and stamps its start on
  the sightings heard in it.
- ``duty`` (GAEN-like): scan ``duty_scan_seconds`` (4 s), then pause so that scans start
  every ``duty_period_seconds x (1 - U[0, 0.3))`` (Android: 300 - rand[0, 90) s, Google's
  BleScannerImpl).
- Watchdog (continuous only): restart the scan when BlueZ says discovery stopped although
  we scan actively, or when nothing at all was reported for ``silence_seconds``; that
  limit doubles while restarts bring nothing (an empty room), up to ``silence_max``.

Times of day come from the injected clock, waits from the injected sleep function.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass

from agent.ble import Scanner, ScanPeriodSink, Sleep
from agent.clock import Clock
from agent.constants import (
    DUTY_SCAN_JITTER_FRACTION,
    SCAN_INSTANCE_SECONDS,
    SCANNER_SILENCE_MAX_SECONDS,
    SCANNER_SILENCE_SECONDS,
)
from agent.models import ScanPeriod

_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ScanSchedule:
    """Scan cadence and watchdog limits."""

    mode: str = "continuous"
    """``continuous`` or ``duty``."""
    instance_seconds: float = SCAN_INSTANCE_SECONDS
    duty_scan_seconds: float = 4.0
    duty_period_seconds: float = 300.0
    jitter_fraction: float = DUTY_SCAN_JITTER_FRACTION
    watchdog_interval: float = 10.0
    """How often a continuous scan checks on itself."""
    silence_seconds: float = SCANNER_SILENCE_SECONDS
    silence_max_seconds: float = SCANNER_SILENCE_MAX_SECONDS

    def __post_init__(self) -> None:
        if self.mode not in ("continuous", "duty"):
            raise ValueError(f"scan mode must be 'continuous' or 'duty', got {self.mode!r}")
        if not 0 < self.duty_scan_seconds < self.duty_period_seconds:
            raise ValueError("duty scan must be shorter than its period")
        if self.instance_seconds <= 0 or self.watchdog_interval <= 0:
            raise ValueError("scan instance and watchdog interval must be positive")


class ScanLoop:
    """Drives a :class:`~agent.ble.Scanner` by the schedule; run it as a task."""

    def __init__(
        self,
        scanner: Scanner,
        clock: Clock,
        schedule: ScanSchedule,
        *,
        periods: ScanPeriodSink | None = None,
        sleep: Sleep = asyncio.sleep,
        discovering: Callable[[], bool | None] = lambda: None,
        rng: random.Random | None = None,
    ) -> None:
        self.scanner = scanner
        self.schedule = schedule
        self.watchdog_restarts = 0
        self.last_scan_end: float | None = None
        """Wall time the latest scan instance ended (for seconds-since-last-scan)."""
        self._clock = clock
        self._periods = periods
        self._sleep = sleep
        self._discovering = discovering
        self._rng = rng or random.Random()
        self._instance_start: float | None = None
        self._instance_start_mono = 0.0
        self._scan_started = 0.0
        self._silence = schedule.silence_seconds

    async def run(self) -> None:
        """Scan until cancelled; a scanner failure ends the run with its error."""
        try:
            if self.schedule.mode == "continuous":
                await self._continuous()
            else:
                await self._duty()
        finally:
            await self._end_scan()

    # ---- scan instances ----------------------------------------------------------------
    async def _begin_scan(self) -> None:
        self._open_instance()
        self._scan_started = self._clock.monotonic()
        await self.scanner.start()

    def _open_instance(self) -> None:
        self._instance_start = self._clock.wall()
        self._instance_start_mono = self._clock.monotonic()
        self.scanner.scan_start = self._instance_start

    def _close_instance(self) -> None:
        if self._instance_start is None:
            return
        end = self._clock.wall()
        period = ScanPeriod(start=self._instance_start, end=max(end, self._instance_start))
        self._instance_start = None
        self.last_scan_end = period.end
        if self._periods is not None:
            try:
                self._periods.put_nowait(period)
            except asyncio.QueueFull:
                _LOGGER.warning("scan period dropped: the consumer fell behind")

    async def _end_scan(self) -> None:
        self._close_instance()
        await self.scanner.stop()

    # ---- cadences ----------------------------------------------------------------------
    async def _continuous(self) -> None:
        await self._begin_scan()
        while True:
            instance_end = self._instance_start_mono + self.schedule.instance_seconds
            wait = min(self.schedule.watchdog_interval, instance_end - self._clock.monotonic())
            await self._sleep(max(0.0, wait))
            if self._clock.monotonic() >= instance_end:
                self._close_instance()
                self._open_instance()
            await self._watchdog()

    async def _duty(self) -> None:
        s = self.schedule
        while True:
            started = self._clock.monotonic()
            await self._begin_scan()
            await self._sleep(s.duty_scan_seconds)
            await self._end_scan()
            period = s.duty_period_seconds * (1.0 - self._rng.uniform(0.0, s.jitter_fraction))
            await self._sleep(max(0.0, started + period - self._clock.monotonic()))

    async def _watchdog(self) -> None:
        now = self._clock.monotonic()
        heard = self.scanner.last_report
        if self.scanner.mode == "active" and self._discovering() is False:
            why = "BlueZ stopped discovery"
        elif now - max(heard or 0.0, self._scan_started) > self._silence:
            why = f"no reports for {self._silence:.0f} s"
            self._silence = min(self.schedule.silence_max_seconds, self._silence * 2)
        else:
            if heard is not None and heard > self._scan_started:
                self._silence = self.schedule.silence_seconds
            return
        self.watchdog_restarts += 1
        _LOGGER.info("scanner watchdog: %s; restarting the scan", why)
        await self._end_scan()
        await self._begin_scan()
