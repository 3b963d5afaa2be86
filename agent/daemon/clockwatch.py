"""Clock trust while running (``docs/daemon.md``, "Clock trust").

:class:`ClockWatch` combines the system's synchronisation signal (timedate1 or systemd's
marker), the persisted lower bound of true time and the step detector into one state the
daemon acts on: advertising, matching and uploads only while trusted; an immediate
rotation after any step; purge cutoffs from the lower bound while untrusted.

The lower bound (LB) is "true time is at least this": the last trusted wall time we
persisted, plus the monotonic time elapsed since. Monotonic time excludes suspend, so the
bound errs on the early side, which only ever keeps data longer than promised by the
unsynchronised span, never deletes it early.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from agent.clock import Clock, ClockTrust, StepDetector, TrustDecision, decide_clock_trust
from agent.constants import EN_INTERVAL_SECONDS, RETENTION_SECONDS
from agent.daemon.status_model import ClockStatus

_LOGGER = logging.getLogger(__name__)

SyncProbe = Callable[[], Awaitable[tuple[bool, str]]]
"""Returns (system clock synchronised, which signal answered)."""


@dataclass(frozen=True, slots=True)
class ClockEvent:
    """What changed at one :meth:`ClockWatch.check`."""

    trust_changed: bool
    step_seconds: float
    """Size of a wall-clock step since the last check (0.0: none)."""


class ClockWatch:
    """Trust state, step detection and the lower bound of true time."""

    def __init__(
        self,
        clock: Clock,
        *,
        require_sync: bool,
        probe: SyncProbe,
        lower_bound: float | None,
    ) -> None:
        self._clock = clock
        self.require_sync = require_sync
        self._probe = probe
        self._bound = lower_bound
        self._bound_mono = clock.monotonic()
        self._steps = StepDetector(clock)
        self.source = "none"
        self.synchronized = False
        self.decision = TrustDecision(ClockTrust.UNTRUSTED, "clock not checked yet")

    @property
    def trusted(self) -> bool:
        return self.decision.state.trusted

    def lower_bound(self) -> float | None:
        """True time is at least this (None: nothing known yet)."""
        if self._bound is None:
            return None
        return self._bound + max(0.0, self._clock.monotonic() - self._bound_mono)

    def _raise_bound(self, value: float) -> None:
        current = self.lower_bound()
        if current is None or value > current:
            self._bound = value
            self._bound_mono = self._clock.monotonic()

    async def check(self, *, probe: bool = True) -> ClockEvent:
        """Detect steps; with ``probe`` also ask the system whether it is synchronised."""
        step = self._steps.check()
        if step:
            _LOGGER.warning("wall clock stepped by %+.1f s", step)
        if probe and self.require_sync:
            self.synchronized, self.source = await self._probe()
        elif not self.require_sync:
            self.source = "config"
        before = self.decision.state
        self.decision = decide_clock_trust(
            require_sync=self.require_sync,
            system_synchronized=self.synchronized,
            wall=self._clock.wall(),
            lower_bound=self.lower_bound(),
        )
        if self.trusted:
            self._raise_bound(self._clock.wall())
        changed = self.decision.state is not before
        if changed:
            _LOGGER.info("clock %s: %s", self.decision.state.value, self.decision.reason)
        return ClockEvent(trust_changed=changed, step_seconds=step)

    def persistable_bound(self) -> float | None:
        """The value to persist as last-good time (synchronous=FULL)."""
        return self.lower_bound()

    def purge_cutoff(self) -> float | None:
        """Rows older than this may be deleted now (None: nothing provably old).

        Trusted: wall - 14 days. Untrusted: LB - 14 days (rows provably older than 14 days
        by true time), so an unsynchronised device still keeps its promise.
        """
        if self.trusted:
            return self._clock.wall() - RETENTION_SECONDS
        bound = self.lower_bound()
        return None if bound is None else bound - RETENTION_SECONDS

    def summary(self) -> ClockStatus:
        """The ``clock`` block of ``status``."""
        return ClockStatus.of(
            self.decision,
            source=self.source,
            require_sync=self.require_sync,
            lower_bound=self.lower_bound(),
        )


class BoundKeeper:
    """Persists the lower bound of true time at every interval change (and on demand)."""

    def __init__(self, watch: ClockWatch, save: Callable[[float], Awaitable[None]]) -> None:
        """save: writes the bound durably (the store's ``set_clock_lower_bound``)."""
        self._watch = watch
        self._save = save
        self._interval: int | None = None

    async def save(self, *, force: bool = False) -> None:
        """Save the bound when its interval changed since the last save (or ``force``)."""
        bound = self._watch.persistable_bound()
        if bound is None:
            return
        interval = int(bound // EN_INTERVAL_SECONDS)
        if force or interval != self._interval:
            await self._save(bound)
            self._interval = interval
