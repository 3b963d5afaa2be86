"""Housekeeping of the running daemon: the daily purge, gauges, the metrics textfile.

The purge deletes what the 14-day promise requires, with the cutoff of the clock-trust rules
of docs/daemon.md: wall time - 14 days when the clock is trusted, else the persisted lower
bound - 14 days. Gauges and counters are refreshed from the store, the writer and the radio.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

from agent.clock import Clock, en_interval_number
from agent.config import Config
from agent.constants import RETENTION_SECONDS
from agent.daemon import metrics as metrics_mod
from agent.daemon.radio import is_scanning
from agent.risk import counts_for_notification, score_window

if TYPE_CHECKING:
    from agent.daemon.actions import RadioControl
    from agent.daemon.clockwatch import ClockWatch
    from agent.daemon.metrics import Metrics
    from agent.daemon.sdnotify import Heartbeats
    from agent.daemon.timebase import ServiceTiming
    from agent.ingest import IngestPipe
    from agent.store import SightingWriter, Store

_LOGGER = logging.getLogger(__name__)

UNIQUE_RPI_SECONDS = 600


class Housekeeping:
    """Runs as one supervised part of :class:`~agent.daemon.service.AgentService`."""

    def __init__(
        self,
        *,
        clock: Clock,
        sleep: Callable[[float], Awaitable[None]],
        timing: ServiceTiming,
        heartbeats: Heartbeats,
        metrics: Metrics,
        store: Store,
        clockwatch: ClockWatch,
        radio: RadioControl,
        writer: SightingWriter,
        ingest: IngestPipe,
        config: Callable[[], Config],
        after_round: Callable[[], None],
    ) -> None:
        """config: the current configuration (a reload replaces it); after_round: called
        after each round (the service refreshes systemd's status line)."""
        self._clock = clock
        self._sleep = sleep
        self._timing = timing
        self._heartbeats = heartbeats
        self._metrics = metrics
        self._store = store
        self._clockwatch = clockwatch
        self._radio = radio
        self._writer = writer
        self._ingest = ingest
        self._config = config
        self._after_round = after_round

    async def run(self) -> None:
        clock, timing = self._clock, self._timing
        self._heartbeats.register("housekeeping", timing.heartbeat_max_age)
        try:
            next_purge = clock.monotonic()
            while True:
                if clock.monotonic() >= next_purge:
                    await self.purge()
                    next_purge = clock.monotonic() + timing.purge
                await self.refresh_gauges()
                await self.write_textfile()
                self._after_round()
                self._heartbeats.beat("housekeeping")
                await self._sleep(timing.housekeeping)
        finally:
            self._heartbeats.unregister("housekeeping")

    async def purge(self) -> None:
        cutoff = self._clockwatch.purge_cutoff()
        if cutoff is None:
            _LOGGER.info("purge skipped: no trustworthy time yet")
            return
        result = await self._store.purge(cutoff)
        if self._clockwatch.trusted:
            self._radio.schedule.drop_older_than(en_interval_number(self._clock.wall()))
        self._metrics.inc("purges_total")
        _LOGGER.debug("purge: %s", result)

    async def refresh_gauges(self) -> None:
        metrics, store, risk = self._metrics, self._store, self._config().risk
        wall = self._clock.wall()
        metrics.set("unique_rpis_10min", await store.unique_rpis(wall - UNIQUE_RPI_SECONDS))
        metrics.set("database_bytes", await store.database_bytes())
        windows = await store.exposure_windows(wall - RETENTION_SECONDS)
        counting = [w for w in windows if counts_for_notification(score_window(w, risk), risk)]
        metrics.set("exposures_total", len(counting))
        metrics.set("relay_flagged_windows", sum(1 for w in windows if w.relay))
        self._raise_counter("sightings_stored_total", self._writer.stats.flushed_rows)
        self._raise_counter("sighting_write_errors_total", self._writer.stats.errors)
        guard = self._ingest.guard.stats()
        metrics.set("flood", guard.flood)
        self._raise_counter("flood_dropped_total", guard.flood_dropped)
        self._raise_counter("sightings_thinned_total", guard.thinned)
        radio = self._radio.status()
        counters = radio.get("counters") or {}
        metrics.set("advertising", bool(radio.get("advertising")))
        metrics.set("scanning", is_scanning(radio))
        restarts = sum(int(counters.get(k, 0)) for k in ("scanner_restarts", "watchdog_restarts"))
        for counter, value in (
            ("adverts_heard_total", counters.get("accepted")),
            ("rotations_total", radio.get("rotations")),
            ("scanner_restarts_total", restarts),
            ("relay_flagged_sightings_total", counters.get("relay_flagged")),
        ):
            if isinstance(value, int):
                self._raise_counter(counter, value)

    def _raise_counter(self, name: str, value: float) -> None:
        """Raise a counter to a total kept elsewhere (never lowers it)."""
        current = self._metrics.get(name)
        if value > current:
            self._metrics.inc(name, value - current)

    async def write_textfile(self) -> None:
        path = self._config().metrics_textfile
        if not path:
            return
        text = self._metrics.render()
        try:
            await asyncio.to_thread(metrics_mod.write_textfile, Path(path), text)
        except OSError as exc:
            _LOGGER.warning("cannot write the metrics file %s: %s", path, exc)
