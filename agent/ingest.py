"""The flood guard between the scanner's queue and the sighting writer (RPI flooding must not
exhaust storage or CPU).

A cheap transmitter can send thousands of fresh RPIs a second, and one phone sends a
burst of reports per second; stored one row each, both would grow the database without
bound (bad-input cases 9 and 11). :class:`FloodGuard` (pure logic, time from an injected
monotonic clock) keeps the growth within a budget:

- **New RPIs per window.** At most ``max_new_rpis`` RPIs not seen in the previous window
  are admitted per ``window_seconds`` (5 min); the first ones win, sightings of the rest
  are dropped and counted, and the guard reports ``flood`` for this and the next window.
  RPIs admitted in the previous window carry over without counting as new (at most
  ``max_tracked_rpis`` in all), so a neighbour heard before the flood stays recorded.
  Past the cap, an RPI heard again and again for ``persist_seconds`` (10 s) is still
  admitted, up to ``max_persistent_rpis`` per window: a real phone is heard for minutes,
  a flooder's throw-away RPIs for moments, so the neighbour's next RPI gets in within
  seconds instead of at the next window. The candidates are kept in a table of at most
  ``max_candidates`` entries, least recently heard out first.
- **Burst thinning.** Per RPI one sighting per slot: the strongest report of the first
  ``thin_seconds`` (2 s) of the slot is kept, the rest are counted as thinned. A slot
  lasts ``thin_seconds`` and a new scan instance opens a new slot -- until the window's
  rows pass each eighth of ``max_rows_per_window``: then every RPI's slot doubles (4 s,
  8 s, ... up to the window). A window thus stores at most about
  ``max_rows_per_window + max_tracked_rpis`` rows however many RPIs send however often,
  and each admitted RPI keeps its fair share (the neighbour as much as any flooder).

A held sighting waits at most ``thin_seconds`` before :meth:`FloodGuard.release` gives
it out. :class:`IngestPipe` runs the guard on the daemon's queue and feeds the writer;
:meth:`IngestPipe.drain` hands over everything held (at shutdown and before ``forget``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from agent.models import ScanPeriod, Sighting

_LOGGER = logging.getLogger(__name__)

Item = Sighting | ScanPeriod
_LEVELS = 8
"""Slots double after each eighth of the row budget ..."""
_MAX_LEVEL = 16
"""... up to the window's length (2 s x 2**16 is far beyond any window)."""


class Monotonic(Protocol):
    def monotonic(self) -> float: ...


@dataclass(frozen=True, slots=True)
class GuardLimits:
    """The budget: with the defaults a 5-minute window stores at most about 6,000 + 4,000 =
    10,000 rows (~400 kB), any 5 minutes of wall time (two windows) at most 20,000."""

    window_seconds: float = 300.0
    max_new_rpis: int = 2_000
    """Distinct RPIs not seen in the previous window admitted per window (bad-input case 9)."""
    max_tracked_rpis: int = 4_000
    """RPIs admitted per window, new and carried over together (bounds memory)."""
    thin_seconds: float = 2.0
    """At most one sighting per RPI per this long, per scan instance (bad-input case 11)."""
    max_rows_per_window: int = 6_000
    """Row budget of a window: past each eighth of it, every slot doubles."""
    persist_seconds: float = 10.0
    max_persistent_rpis: int = 100
    """RPIs admitted past the cap per window, for having been heard ``persist_seconds``."""
    max_candidates: int = 8_000

    def __post_init__(self) -> None:
        if min(self.window_seconds, self.thin_seconds) <= 0:
            raise ValueError("window and thinning intervals must be positive")
        if not 1 <= self.max_new_rpis <= self.max_tracked_rpis or self.max_rows_per_window < 1:
            raise ValueError("need 1 <= max_new_rpis <= max_tracked_rpis and a row budget")


@dataclass(slots=True)
class _Rpi:
    window: int
    """The latest window the RPI was admitted in."""
    slot_end: float = -math.inf
    pending: Sighting | None = None
    """The strongest report of the slot's first ``thin_seconds``, until released."""
    scan_start: float | None = None
    """Scan instance of the current slot."""
    token: int = 0
    """Which slot the release queue entry belongs to."""


@dataclass(slots=True)
class GuardStats:
    """Counters for ``status`` and metrics (no identifiers)."""

    offered: int = 0
    accepted: int = 0
    """Sightings handed on to the writer."""
    thinned: int = 0
    """Burst duplicates folded into a stronger report of the same slot."""
    flood_dropped: int = 0
    """Sightings of RPIs beyond the per-window cap."""
    flood_windows: int = 0
    """Windows in which the cap was reached."""
    window_new_rpis: int = 0
    window_rpis: int = 0
    window_rows: int = 0
    slot_seconds: float = 0.0
    persistent_admitted: int = 0
    """RPIs admitted past the cap for having been heard long enough."""
    held: int = 0
    flood: bool = False


class FloodGuard:
    """Caps new RPIs per window and thins bursts; see the module docstring."""

    def __init__(self, clock: Monotonic, limits: GuardLimits | None = None) -> None:
        self.limits = limits or GuardLimits()
        self._clock = clock
        self._rpis: dict[bytes, _Rpi] = {}
        self._releases: deque[tuple[float, bytes, int]] = deque()
        self._window = self._window_of(clock.monotonic())
        self._new = 0
        self._admitted = 0
        self._rows = 0
        self._persistent = 0
        self._candidates: OrderedDict[bytes, float] = OrderedDict()
        self._flooded: set[int] = set()
        self._tokens = 0
        self._stats = GuardStats()

    # ---- the public face ------------------------------------------------------------------
    @property
    def flood(self) -> bool:
        """The cap was reached in this window or the previous one."""
        return bool(self._flooded & {self._window, self._window - 1})

    def stats(self) -> GuardStats:
        self._roll(self._clock.monotonic())
        s = self._stats
        s.window_new_rpis, s.window_rpis = self._new, self._admitted
        s.window_rows, s.slot_seconds = self._rows, self._slot_seconds()
        s.held = sum(1 for r in self._rpis.values() if r.pending is not None)
        s.flood = self.flood
        return s

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self.stats())

    def offer(self, sighting: Sighting) -> list[Sighting]:
        """Take one sighting; returns what is due for the writer now (maybe nothing)."""
        now = self._clock.monotonic()
        self._roll(now)
        self._stats.offered += 1
        state = self._admit(sighting.rpi, now)
        out = self._due(now)
        if state is None:
            return out
        if now < state.slot_end:
            crowded = self._slot_seconds() > self.limits.thin_seconds
            if crowded or sighting.scan_start == state.scan_start:
                self._fold(state, sighting)
                return out
        if state.pending is not None:  # the slot ended or a new scan instance began
            out.append(self._take(state))
        self._open_slot(state, sighting, now)
        return out

    def release(self, *, everything: bool = False) -> list[Sighting]:
        """Sightings whose holding time is over (or all held ones)."""
        now = self._clock.monotonic()
        self._roll(now)
        if not everything:
            return self._due(now)
        out = [self._take(r) for r in self._rpis.values() if r.pending is not None]
        self._releases.clear()
        return out

    def clear(self) -> None:
        """Forget every RPI (after ``forget``); counters stay."""
        self._rpis.clear()
        self._releases.clear()
        self._candidates.clear()
        self._new = self._admitted = self._rows = self._persistent = 0

    # ---- windows and admission ----------------------------------------------------------
    def _window_of(self, now: float) -> int:
        return math.floor(now / self.limits.window_seconds)

    def _roll(self, now: float) -> None:
        window = self._window_of(now)
        if window == self._window:
            return
        self._window, self._new, self._admitted, self._rows = window, 0, 0, 0
        self._persistent = 0
        self._rpis = {
            rpi: r
            for rpi, r in self._rpis.items()
            if r.window >= window - 1 or r.pending is not None
        }
        self._flooded = {w for w in self._flooded if w >= window - 1}

    def _admit(self, rpi: bytes, now: float) -> _Rpi | None:
        state = self._rpis.get(rpi)
        if state is not None and state.window == self._window:
            return state
        limits = self.limits
        carried = state is not None and state.window == self._window - 1
        room = self._admitted < limits.max_tracked_rpis
        if room and (carried or self._new < limits.max_new_rpis or self._persists(rpi, now)):
            self._new += 0 if carried else 1
            self._admitted += 1
            if state is None:
                state = self._rpis[rpi] = _Rpi(self._window)
            state.window = self._window
            return state
        self._stats.flood_dropped += 1
        if self._window not in self._flooded:
            self._flooded.add(self._window)
            self._stats.flood_windows += 1
            _LOGGER.warning(
                "flood: more than %d new identifiers in %.0f s; dropping the rest of this window",
                limits.max_new_rpis,
                limits.window_seconds,
            )
        return None

    def _persists(self, rpi: bytes, now: float) -> bool:
        """Past the cap: heard for ``persist_seconds`` already (and quota left)?"""
        limits = self.limits
        first = self._candidates.get(rpi)
        if first is None:
            self._candidates[rpi] = now
            if len(self._candidates) > limits.max_candidates:
                self._candidates.popitem(last=False)
            return False
        self._candidates.move_to_end(rpi)
        if now - first < limits.persist_seconds or self._persistent >= limits.max_persistent_rpis:
            return False
        del self._candidates[rpi]
        self._persistent += 1
        self._stats.persistent_admitted += 1
        return True

    # ---- slots ----------------------------------------------------------------------------
    def _slot_seconds(self) -> float:
        limits = self.limits
        level = min(_MAX_LEVEL, self._rows * _LEVELS // limits.max_rows_per_window)
        return min(limits.window_seconds, limits.thin_seconds * (1 << level))

    def _open_slot(self, state: _Rpi, sighting: Sighting, now: float) -> None:
        self._tokens += 1
        self._rows += 1
        state.pending, state.token = sighting, self._tokens
        state.slot_end = now + self._slot_seconds()
        state.scan_start = sighting.scan_start
        self._releases.append((now + self.limits.thin_seconds, sighting.rpi, self._tokens))

    def _fold(self, state: _Rpi, sighting: Sighting) -> None:
        """A report inside an open slot: keep it if stronger than the held one; the
        relay guard's reasons of both are kept."""
        self._stats.thinned += 1
        held = state.pending
        if held is None:
            return
        if sighting.rssi > held.rssi:
            state.pending = sighting
            if held.relay & ~sighting.relay:
                state.pending = dataclasses.replace(sighting, relay=sighting.relay | held.relay)
        elif sighting.relay & ~held.relay:
            state.pending = dataclasses.replace(held, relay=sighting.relay | held.relay)

    def _take(self, state: _Rpi) -> Sighting:
        sighting, state.pending = state.pending, None
        assert sighting is not None
        self._stats.accepted += 1
        return sighting

    def _due(self, now: float) -> list[Sighting]:
        out: list[Sighting] = []
        releases = self._releases
        while releases and releases[0][0] <= now:
            _, rpi, token = releases.popleft()
            state = self._rpis.get(rpi)
            if state is not None and state.token == token and state.pending is not None:
                out.append(self._take(state))
        return out


class IngestPipe:
    """Moves the radio's items through a :class:`FloodGuard` into the writer's ``add``."""

    def __init__(
        self,
        source: asyncio.Queue[Item],
        sink: Callable[[Item], None],
        guard: FloodGuard,
        *,
        tick: float = 0.5,
        batch: int = 2_000,
    ) -> None:
        self.guard = guard
        self._source = source
        self._sink = sink
        self._tick = tick
        self._batch = batch

    async def run(self) -> None:
        """Until cancelled: feed the guard, hand on what it releases (every ``tick`` s)."""
        while True:
            try:
                async with asyncio.timeout(self._tick):
                    self._offer(await self._source.get())
            except TimeoutError:
                pass
            for _ in range(self._batch):
                try:
                    self._offer(self._source.get_nowait())
                except asyncio.QueueEmpty:
                    break
            self._emit(self.guard.release())

    def hand_over(self) -> None:
        """Everything queued and held goes to the writer now (before a match or a flush)."""
        while True:
            try:
                self._offer(self._source.get_nowait())
            except asyncio.QueueEmpty:
                break
        self._emit(self.guard.release(everything=True))

    def drain(self) -> None:
        """:meth:`hand_over`, then the guard forgets its RPIs (shutdown, ``forget``)."""
        self.hand_over()
        self.guard.clear()

    def _offer(self, item: Item) -> None:
        if isinstance(item, Sighting):
            self._emit(self.guard.offer(item))
        else:
            self._sink(item)

    def _emit(self, sightings: list[Sighting]) -> None:
        for sighting in sightings:
            self._sink(sighting)
