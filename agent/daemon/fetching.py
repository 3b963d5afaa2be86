"""The daemon's key schedule: download + verify + match every ``fetch_interval_hours``.

Each cycle is :func:`agent.pipeline.fetch_and_match`; its new qualifying exposures go to
the :class:`~agent.daemon.notify.Notifier` once (the pipeline marks them notified after
the notifier returns). Nothing is fetched or matched without consent or while the clock
is untrusted (docs/daemon.md, "Clock trust"); such a cycle is skipped and retried a minute
later. A failed cycle is retried with exponential backoff (:class:`agent.backoff.Backoff`: 1 min
doubling up to the fetch interval), and never before a Retry-After the server asked for (capped
at ``keys.max_retry_after_seconds``), so a broken server never causes a download loop. A cycle
that left files for later (byte budget, file cap) is followed by another a minute later.
Download times are jittered by +-10 %.

The watchdog does not wait for downloads: they are bounded by their own deadlines
(``keys.file_deadline_seconds``, ``keys.cycle_deadline_seconds``) and run on the event
loop without blocking it, so ``WATCHDOG=1`` keeps reflecting the loop's and the radio's
health while a slow server drips. ``status`` shows the running download
(:class:`~agent.pipeline.fetch.FetchActivity`).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import aiohttp

from agent.backoff import Backoff
from agent.clock import Clock
from agent.config import Config
from agent.daemon.clockwatch import ClockWatch
from agent.daemon.metrics import Metrics
from agent.daemon.notify import Notice, Notifier
from agent.daemon.radio import Sleep
from agent.daemon.status_model import FetchSchedule, RunningDownload
from agent.errors import AgentError, ClockUntrustedError, ConfigError
from agent.jsonout import dumps
from agent.pipeline import (
    LAST_FETCH_STATE_KEY,
    QualifyingExposure,
    RingSource,
    config_ring,
    fetch_and_match,
    refresh_results,
)
from agent.pipeline.fetch import FetchActivity, source_limits
from agent.servertext import MESSAGE_LIMIT, server_text
from agent.sources import make_session
from agent.store import Store

_LOGGER = logging.getLogger(__name__)

FIRST_FETCH_DELAY = 5.0
"""Seconds after start before the first cycle (lets the clock check settle)."""
SKIP_RECHECK_SECONDS = 60.0
RETRY_FIRST_SECONDS = 60.0
JITTER = 0.1
CHUNK_SECONDS = 1.0


def notice_for(exposures: Sequence[QualifyingExposure]) -> Notice:
    """One notice for all new qualifying days: about the newest, listing every day."""
    newest = max(exposures, key=lambda e: e.day)
    return Notice(
        day=newest.day,
        minutes=max(1, round(newest.minutes)),
        windows=sum(len(e.window_ids) for e in exposures),
        risk_level="high",
        days=tuple(sorted(e.day for e in exposures)),
        possibly_relayed=any(w.relay and w.score > 0 for e in exposures for w in e.windows),
    )


class FetchScheduler:
    """Runs fetch cycles on schedule, on request (``fetch`` command) and after sync."""

    def __init__(
        self,
        store: Store,
        config: Config,
        clock: Clock,
        clockwatch: ClockWatch,
        *,
        consent: Callable[[], bool],
        notifier: Notifier,
        sleep: Sleep,
        metrics: Metrics,
        base_dir: Path | None,
        before_cycle: Callable[[], Awaitable[object]] | None = None,
        first_delay: float = FIRST_FETCH_DELAY,
        rng: random.Random | None = None,
    ) -> None:
        self._store = store
        self._clock = clock
        self._clockwatch = clockwatch
        self._consent = consent
        self._sleep = sleep
        self._metrics = metrics
        self._base_dir = base_dir
        self._before_cycle = before_cycle
        self._rng = rng or random.SystemRandom()
        self._lock = asyncio.Lock()
        self._wake = False
        self._failures = 0
        self._due = clock.monotonic() + first_delay
        self.activity: FetchActivity | None = None
        """The running cycle's downloads (None between cycles)."""
        self.last_skip: str | None = None
        self.notifications = 0
        self.cycles = 0
        self.reconfigure(config, notifier)

    def reconfigure(self, config: Config, notifier: Notifier) -> None:
        """Apply a new configuration; raises ConfigError when keys cannot be verified."""
        ring: RingSource | None = None
        if config.keys.sources:
            ring = config_ring(config, self._base_dir)
        self._config = config
        self._ring = ring
        self._notifier = notifier

    def wake(self) -> None:
        """Run a cycle at the next chance (the clock just became trusted)."""
        self._wake = True

    def skip_reason(self) -> str | None:
        if not self._consent():
            return "consent not given"
        if not self._clockwatch.trusted:
            return f"clock not trusted ({self._clockwatch.decision.reason})"
        if self._ring is None:
            return "no key sources configured"
        return None

    def summary(self) -> FetchSchedule:
        """The ``fetch`` block of ``status``."""
        activity = self.activity
        return FetchSchedule(
            interval_hours=self._config.keys.fetch_interval_hours,
            next_in_seconds=max(0, round(self._due - self._clock.monotonic())),
            skipped=self.last_skip,
            consecutive_failures=self._failures,
            cycles=self.cycles,
            notifications=self.notifications,
            running=None
            if activity is None
            else RunningDownload(
                source=activity.source,
                file=activity.file,
                file_bytes=activity.file_bytes,
                cycle_bytes=activity.cycle_bytes,
                files_downloaded=activity.files,
            ),
        )

    def status_line(self) -> str:
        if self.last_skip:
            return f"key fetch skipped: {self.last_skip}"
        if self._failures:
            return f"key fetch failing ({self._failures}x)"
        if self.cycles == 0:
            return "no key fetch yet"
        return "key fetch ok"

    async def run(self) -> None:
        # no heartbeat of its own: a cycle is bounded by its deadlines, not by the watchdog
        await self._notify_pending()
        while True:
            while not self._wake and self._clock.monotonic() < self._due:
                remaining = self._due - self._clock.monotonic()
                await self._sleep(min(CHUNK_SECONDS, max(0.0, remaining)))
            self._wake = False
            await self.fetch_now()

    async def fetch_now(self) -> dict[str, Any]:
        """One cycle now (or a skip with its reason); returns the fetch summary."""
        async with self._lock:
            reason = self.skip_reason()
            if reason is not None:
                if self._ring is None and self._consent() and self._clockwatch.trusted:
                    await self._notify_pending()  # windows from `match` run by hand
                if reason != self.last_skip:
                    _LOGGER.info("key fetch skipped: %s", reason)
                self.last_skip = reason
                self._due = self._clock.monotonic() + SKIP_RECHECK_SECONDS
                return {"skipped": reason}
            self.last_skip = None
            if self._before_cycle is not None:
                await self._before_cycle()  # match what was heard up to now
            return await self._cycle()

    async def _cycle(self) -> dict[str, Any]:
        assert self._ring is not None
        started = self._clock.monotonic()
        now = self._clock.wall()
        self._metrics.inc("key_fetches_total")
        self.cycles += 1
        self.activity = FetchActivity()
        try:
            async with make_session(source_limits(self._config)) as session:
                report = await fetch_and_match(
                    self._store,
                    self._config,
                    session,
                    clock=self._clock,
                    trust=self._clockwatch.decision,
                    ring=self._ring,
                    notifier=self._notify,
                    activity=self.activity,
                )
        except ClockUntrustedError as exc:
            self.last_skip = str(exc)
            self._due = self._clock.monotonic() + SKIP_RECHECK_SECONDS
            return {"skipped": str(exc)}
        except ConfigError:
            raise
        except (AgentError, aiohttp.ClientError, OSError) as exc:
            error = server_text(exc, MESSAGE_LIMIT) or type(exc).__name__
            summary = {"at": now, "ok": False, "error": error}
            await self._store.set_state(LAST_FETCH_STATE_KEY, dumps(summary))
            self._finish(started, ok=False)
            _LOGGER.warning("key fetch failed: %s", summary["error"])
            return summary
        finally:
            self.activity = None
        summary = report.summary(now)
        self._finish(
            started,
            ok=bool(summary["ok"]),
            retry_after=report.retry_after,
            more=report.deferred > 0,
        )
        if not summary["ok"]:
            _LOGGER.warning(
                "key fetch had problems: %s", summary.get("refused") or summary["failed"]
            )
        return summary

    def _finish(
        self, started: float, *, ok: bool, retry_after: float | None = None, more: bool = False
    ) -> None:
        """Schedule the next cycle: the interval, soon when files were left for later, or
        the backoff (never before a server's Retry-After)."""
        duration = self._clock.monotonic() - started
        interval = self._config.keys.fetch_interval_hours * 3600
        self._metrics.set("last_fetch_success", ok)
        self._metrics.set("last_fetch_duration_seconds", round(duration, 3))
        self._metrics.set("last_fetch_timestamp_seconds", round(self._clock.wall()))
        if ok:
            self._failures = 0
            delay = interval * self._rng.uniform(1 - JITTER, 1 + JITTER)
        else:
            self._metrics.inc("key_fetch_failures_total")
            backoff = Backoff(min(RETRY_FIRST_SECONDS, interval), interval, JITTER)
            delay = backoff.delay(self._failures, self._rng)
            self._failures += 1
        if more:
            delay = min(delay, RETRY_FIRST_SECONDS * self._rng.uniform(1 - JITTER, 1 + JITTER))
        delay = max(delay, retry_after or 0.0)
        self._due = self._clock.monotonic() + delay

    async def _notify_pending(self) -> None:
        """Windows stored while no daemon ran (``match`` by hand, a crash before marking)."""
        if self._consent() and self._clockwatch.trusted:
            await refresh_results(self._store, self._config.risk, self._clock.wall(), self._notify)

    async def _notify(self, exposures: Sequence[QualifyingExposure]) -> None:
        notice = notice_for(exposures)
        results = await self._notifier.notify(notice, now=self._clock.wall())
        self.notifications += 1
        self._metrics.inc("notifications_total")
        delivered = ", ".join(name for name, ok in results.items() if ok)
        _LOGGER.info("exposure notification delivered via %s", delivered or "nothing")
