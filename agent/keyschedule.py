"""Own keys over time: which TEK and RPI to broadcast now, and when to rotate.

Pure logic driven by interval numbers (the caller reads its injected clock). The schedule
holds the own TEKs of the last 14 days with, for each, the highest interval already put on
air (the broadcast high-water mark); it never hands out an already broadcast
(TEK, interval) pair, even after the wall clock steps backwards (bad-input case 43).
Persisting the keys it creates or changes is the caller's job: see :meth:`pop_dirty`.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from agent import crypto
from agent.clock import rolling_start_interval_number
from agent.constants import (
    MAX_TEKS_PER_START_INTERVAL,
    RETENTION_DAYS,
    ROTATION_MAX_SECONDS,
    ROTATION_MIN_SECONDS,
    TEK_LENGTH,
    TEK_ROLLING_PERIOD,
)
from agent.errors import MalformedInputError
from agent.payload import Metadata, ServiceData


@dataclass(frozen=True, slots=True)
class OwnTek:
    """One of our own Temporary Exposure Keys."""

    key_data: bytes
    rolling_start_interval_number: int
    rolling_period: int = TEK_ROLLING_PERIOD
    """Shortened when the key is ended early (same-day release or a clock step)."""
    max_broadcast_interval: int | None = None
    """Highest interval whose RPI of this key went on air, or None if never."""

    def __post_init__(self) -> None:
        if len(self.key_data) != TEK_LENGTH:
            raise MalformedInputError(f"TEK must be {TEK_LENGTH} bytes")
        if not 1 <= self.rolling_period <= TEK_ROLLING_PERIOD:
            raise MalformedInputError(f"rolling_period must be 1..144, got {self.rolling_period}")

    @property
    def end_interval_number(self) -> int:
        return self.rolling_start_interval_number + self.rolling_period

    def covers(self, en_interval: int) -> bool:
        return self.rolling_start_interval_number <= en_interval < self.end_interval_number

    def __repr__(self) -> str:
        return (
            f"OwnTek(<16 bytes>, start={self.rolling_start_interval_number}, "
            f"period={self.rolling_period}, hwm={self.max_broadcast_interval})"
        )


@dataclass(frozen=True, slots=True)
class Broadcast:
    """What to put on air for one rotation."""

    tek: OwnTek
    en_interval: int
    service_data: ServiceData


class KeySchedule:
    """Chooses the TEK and RPI for an interval and remembers what went on air."""

    def __init__(
        self,
        teks: Iterable[OwnTek] = (),
        *,
        tek_factory: Callable[[], bytes] = crypto.new_tek,
    ) -> None:
        self._teks: list[OwnTek] = sorted(teks, key=lambda t: t.rolling_start_interval_number)
        self._tek_factory = tek_factory
        self._dirty: dict[bytes, OwnTek] = {}
        self._ended: set[bytes] = set()

    @property
    def teks(self) -> list[OwnTek]:
        """All own keys, oldest first."""
        return list(self._teks)

    def pop_dirty(self) -> list[OwnTek]:
        """Keys created or changed since the last call; persist them (synchronous=FULL)."""
        dirty = list(self._dirty.values())
        self._dirty.clear()
        return dirty

    def _put(self, tek: OwnTek) -> OwnTek:
        for i, old in enumerate(self._teks):
            if old.key_data == tek.key_data:
                self._teks[i] = tek
                break
        else:
            self._teks.append(tek)
            self._teks.sort(key=lambda t: t.rolling_start_interval_number)
        self._dirty[tek.key_data] = tek
        return tek

    def _usable(self, tek: OwnTek, en_interval: int) -> bool:
        return tek.covers(en_interval) and (
            tek.max_broadcast_interval is None or en_interval > tek.max_broadcast_interval
        )

    def tek_for(self, en_interval: int) -> OwnTek | None:
        """The key to broadcast at ``en_interval``, creating one if needed.

        Returns None when every allowed key of this day has already broadcast this
        interval (a backward clock step after three keys): advertising must pause.
        """
        if en_interval < 0:
            raise MalformedInputError("interval number must not be negative")
        start = rolling_start_interval_number(en_interval)
        same_day = [t for t in self._teks if t.rolling_start_interval_number == start]
        live = [t for t in same_day if t.covers(en_interval)]
        if live and self._usable(live[-1], en_interval):
            return live[-1]
        if len(same_day) >= MAX_TEKS_PER_START_INTERVAL:
            # No fresh key allowed: pause until the interval passes the high-water mark,
            # then the last key continues.
            return None
        for tek in live:  # a backward step: end keys that already broadcast this interval
            if not self._usable(tek, en_interval):
                self._end(tek)
        return self._put(OwnTek(self._tek_factory(), start))

    def _end(self, tek: OwnTek) -> None:
        last = tek.max_broadcast_interval
        if last is None:
            return
        period = max(1, min(tek.rolling_period, last - tek.rolling_start_interval_number + 1))
        if period != tek.rolling_period:
            self._put(replace(tek, rolling_period=period))

    def broadcast(self, en_interval: int, metadata: Metadata) -> Broadcast | None:
        """RPI and AEM to put on air at ``en_interval``; records the high-water mark.

        Returns None when advertising must pause (see :meth:`tek_for`).
        """
        tek = self.tek_for(en_interval)
        if tek is None:
            return None
        rpi = crypto.rpi(crypto.derive_rpik(tek.key_data), en_interval)
        aem = crypto.encrypt_aem(crypto.derive_aemk(tek.key_data), rpi, bytes(metadata))
        tek = self._put(replace(tek, max_broadcast_interval=en_interval))
        return Broadcast(tek=tek, en_interval=en_interval, service_data=ServiceData(rpi, aem))

    def end_current_key(self, en_interval: int) -> OwnTek | None:
        """Same-day release: end the key on air now so it can be published (Google's key server
        docs).

        The key's rolling period is cut to the intervals already broadcast; the next
        :meth:`broadcast` starts a fresh key with the same start interval.
        """
        start = rolling_start_interval_number(en_interval)
        ended = None
        for tek in [t for t in self._teks if t.rolling_start_interval_number == start]:
            if tek.covers(en_interval):
                self._ended.add(tek.key_data)
                if tek.max_broadcast_interval is None:
                    # never on air: nothing to release, and it must not be used later
                    self._teks.remove(tek)
                    self._dirty.pop(tek.key_data, None)
                    continue
                self._end(tek)
                ended = tek
        return ended

    def ended(self, tek: OwnTek) -> bool:
        """True when ``tek`` was ended early and must leave the air now.

        Set by :meth:`end_current_key`, also in a day's last interval, where ending does
        not shorten the rolling period.
        """
        return tek.key_data in self._ended

    def releasable(self, en_interval: int, days: int = RETENTION_DAYS) -> list[OwnTek]:
        """Keys that ended before ``en_interval`` and started within ``days`` days."""
        oldest = rolling_start_interval_number(en_interval) - days * TEK_ROLLING_PERIOD
        return [
            t
            for t in self._teks
            if t.rolling_start_interval_number >= oldest
            and t.end_interval_number <= en_interval
            and t.max_broadcast_interval is not None
        ]

    def own_rpis(self, en_interval: int, days: int = RETENTION_DAYS) -> frozenset[bytes]:
        """Every RPI our keys of the last ``days`` days could have broadcast (reflection guard)."""
        oldest = rolling_start_interval_number(en_interval) - days * TEK_ROLLING_PERIOD
        result: set[bytes] = set()
        for tek in self._teks:
            if tek.rolling_start_interval_number >= oldest:
                rpik = crypto.derive_rpik(tek.key_data)
                result.update(crypto.rpis(rpik, tek.rolling_start_interval_number))
        return frozenset(result)

    def drop_older_than(self, en_interval: int, days: int = RETENTION_DAYS) -> list[OwnTek]:
        """Forget keys that started more than ``days`` days before ``en_interval``."""
        oldest = rolling_start_interval_number(en_interval) - days * TEK_ROLLING_PERIOD
        gone = [t for t in self._teks if t.rolling_start_interval_number < oldest]
        self._teks = [t for t in self._teks if t.rolling_start_interval_number >= oldest]
        for tek in gone:
            self._dirty.pop(tek.key_data, None)
            self._ended.discard(tek.key_data)
        return gone


class RotationPlanner:
    """Random rotation delays for address + RPI: uniform in (10 min, 20 min) (Bluetooth spec
    v1.2)."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.SystemRandom()

    def next_delay(self) -> float:
        """Seconds until the next rotation; strictly between 600 and 1200."""
        while True:
            delay = self._rng.uniform(ROTATION_MIN_SECONDS, ROTATION_MAX_SECONDS)
            if ROTATION_MIN_SECONDS < delay < ROTATION_MAX_SECONDS:
                return delay
