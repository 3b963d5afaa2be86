"""Housekeeping of the running daemon: the daily purge, gauges, the metrics textfile.

The purge deletes what the 14-day promise requires, with the cutoff of the clock-trust rules
of docs/daemon.md: wall time - 14 days when the clock is trusted, else the persisted lower
bound - 14 days. Gauges and counters are refreshed from the store, the writer and the radio.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from agent.clock import en_interval_number
from agent.constants import RETENTION_SECONDS
from agent.daemon import metrics as metrics_mod
from agent.daemon.radio import is_scanning
from agent.risk import counts_for_notification, score_window

if TYPE_CHECKING:
    from agent.daemon.service import AgentService

_LOGGER = logging.getLogger(__name__)

UNIQUE_RPI_SECONDS = 600


class Housekeeping:
    """Runs as one supervised part of :class:`~agent.daemon.service.AgentService`."""

    def __init__(self, service: AgentService) -> None:
        self._service = service

    async def run(self) -> None:
        service = self._service
        service.heartbeats.register("housekeeping", service.timing.heartbeat_max_age)
        try:
            next_purge = service.clock.monotonic()
            while True:
                if service.clock.monotonic() >= next_purge:
                    await self.purge()
                    next_purge = service.clock.monotonic() + service.timing.purge
                await self.refresh_gauges()
                await self.write_textfile()
                service.update_status_line()
                service.heartbeats.beat("housekeeping")
                await service.sleep(service.timing.housekeeping)
        finally:
            service.heartbeats.unregister("housekeeping")

    async def purge(self) -> None:
        service = self._service
        cutoff = service.clockwatch.purge_cutoff()
        if cutoff is None:
            _LOGGER.info("purge skipped: no trustworthy time yet")
            return
        result = await service.store.purge(cutoff)
        if service.clockwatch.trusted and service.schedule is not None:
            service.schedule.drop_older_than(en_interval_number(service.clock.wall()))
        service.metrics.inc("purges_total")
        _LOGGER.debug("purge: %s", result)

    async def refresh_gauges(self) -> None:
        service = self._service
        metrics, store, risk = service.metrics, service.store, service.config.risk
        wall = service.clock.wall()
        metrics.set("unique_rpis_10min", await store.unique_rpis(wall - UNIQUE_RPI_SECONDS))
        metrics.set("database_bytes", await store.database_bytes())
        windows = await store.exposure_windows(wall - RETENTION_SECONDS)
        counting = [w for w in windows if counts_for_notification(score_window(w, risk), risk)]
        metrics.set("exposures_total", len(counting))
        metrics.set("relay_flagged_windows", sum(1 for w in windows if w.relay))
        if service.writer is not None:
            self._raise_counter("sightings_stored_total", service.writer.stats.flushed_rows)
            self._raise_counter("sighting_write_errors_total", service.writer.stats.errors)
        if service.ingest is not None:
            guard = service.ingest.guard.stats()
            metrics.set("flood", guard.flood)
            self._raise_counter("flood_dropped_total", guard.flood_dropped)
            self._raise_counter("sightings_thinned_total", guard.thinned)
        radio = service.radio_status()
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
        current = self._service.metrics.get(name)
        if value > current:
            self._service.metrics.inc(name, value - current)

    async def write_textfile(self) -> None:
        path = self._service.config.metrics_textfile
        if not path:
            return
        text = self._service.metrics.render()
        try:
            await asyncio.to_thread(metrics_mod.write_textfile, Path(path), text)
        except OSError as exc:
            _LOGGER.warning("cannot write the metrics file %s: %s", path, exc)
