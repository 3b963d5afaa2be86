"""Time: an injectable clock, EN interval arithmetic, and clock trust for RTC-less devices.

Wall time (Unix seconds, UTC) drives EN intervals and storage; monotonic time drives
timeouts and watchdogs. Nothing else in the agent reads ``time`` directly, so tests and
the simulator can run the whole agent on a :class:`FakeClock`.

Clock trust (``docs/daemon.md``, "Clock trust"): a Pi without an RTC boots with a stale
or 1970 wall clock, so the agent treats time as UNTRUSTED until the system reports NTP
synchronisation and the result is plausible against a persisted lower bound.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass
from typing import Protocol

from agent.constants import (
    CLOCK_PLAUSIBLE_JUMP_SECONDS,
    CLOCK_STEP_THRESHOLD_SECONDS,
    EN_INTERVAL_SECONDS,
    TEK_ROLLING_PERIOD,
)
from agent.errors import MalformedInputError


class Clock(Protocol):
    """Source of wall and monotonic time, in seconds."""

    def wall(self) -> float:
        """Unix time in seconds (UTC)."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never steps; only differences are meaningful."""
        ...


class SystemClock:
    """The real clocks of this machine."""

    def wall(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()


class FakeClock:
    """A clock that moves only when told to: for tests and the accelerated simulator."""

    def __init__(self, wall: float = 1_600_000_000.0, monotonic: float = 1_000.0) -> None:
        self._wall = float(wall)
        self._monotonic = float(monotonic)

    def wall(self) -> float:
        return self._wall

    def monotonic(self) -> float:
        return self._monotonic

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` pass on both clocks."""
        if seconds < 0:
            raise ValueError("time only moves forward; use step() for a wall-clock step")
        self._wall += seconds
        self._monotonic += seconds

    def step(self, seconds: float) -> None:
        """Step the wall clock alone (an NTP correction or ``date -s``)."""
        self._wall += seconds

    def set_wall(self, wall: float) -> None:
        """Set the wall clock to an absolute time (a step)."""
        self._wall = float(wall)


def en_interval_number(unix_seconds: float) -> int:
    """ENIntervalNumber of a Unix time: ``floor(t / 600)`` (crypto spec v1.2)."""
    if unix_seconds < 0:
        raise MalformedInputError(f"time must not be negative, got {unix_seconds}")
    return int(unix_seconds // EN_INTERVAL_SECONDS)


def rolling_start_interval_number(en_interval: int) -> int:
    """The TEK start interval for an interval: the UTC midnight at or before it."""
    if en_interval < 0:
        raise MalformedInputError(f"interval number must not be negative, got {en_interval}")
    return en_interval - en_interval % TEK_ROLLING_PERIOD


def interval_start_seconds(en_interval: int) -> int:
    """Unix time at which an EN interval begins."""
    return en_interval * EN_INTERVAL_SECONDS


class ClockTrust(enum.Enum):
    """Whether wall time may be used to advertise, match, upload and delete."""

    UNTRUSTED = "untrusted"
    """Not synchronised since boot, or the synchronised time was implausible."""
    SYNCED = "synced"
    """The system reports NTP sync and the time is plausible."""
    ASSUMED = "assumed"
    """``clock.require_sync = false``: a device with a trusted RTC, or a test."""

    @property
    def trusted(self) -> bool:
        return self is not ClockTrust.UNTRUSTED


@dataclass(frozen=True, slots=True)
class TrustDecision:
    """A trust state with the reason a person can read in ``status``."""

    state: ClockTrust
    reason: str


def decide_clock_trust(
    *,
    require_sync: bool,
    system_synchronized: bool,
    wall: float,
    lower_bound: float | None,
) -> TrustDecision:
    """Pure trust decision (docs/daemon.md, "Clock trust").

    Args:
        require_sync: the ``clock.require_sync`` config value.
        system_synchronized: NTPSynchronized from timedate1, or systemd's marker file.
        wall: the current wall time.
        lower_bound: the persisted last-good time (true time is at least this), if any.
    """
    if not require_sync:
        return TrustDecision(ClockTrust.ASSUMED, "clock trusted by configuration")
    if not system_synchronized:
        return TrustDecision(ClockTrust.UNTRUSTED, "system clock not synchronised (NTP)")
    if lower_bound is not None:
        if wall < lower_bound:
            return TrustDecision(
                ClockTrust.UNTRUSTED, "synchronised time is earlier than the last known good time"
            )
        if wall > lower_bound + CLOCK_PLAUSIBLE_JUMP_SECONDS:
            return TrustDecision(
                ClockTrust.UNTRUSTED, "synchronised time is more than a year past the last known"
            )
    return TrustDecision(ClockTrust.SYNCED, "system clock synchronised")


class StepDetector:
    """Detects wall-clock steps by comparing wall and monotonic progress between ticks."""

    def __init__(self, clock: Clock, threshold: float = CLOCK_STEP_THRESHOLD_SECONDS) -> None:
        self._clock = clock
        self._threshold = threshold
        self._last_wall = clock.wall()
        self._last_mono = clock.monotonic()

    def check(self) -> float:
        """Return the size of a step since the last check (0.0 when none)."""
        wall, mono = self._clock.wall(), self._clock.monotonic()
        drift = (wall - self._last_wall) - (mono - self._last_mono)
        self._last_wall, self._last_mono = wall, mono
        return drift if abs(drift) > self._threshold else 0.0
