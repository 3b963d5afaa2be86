"""What the demo agents recorded: sightings per link, exposure windows, notifications.

Read from each agent's own store after the story (nothing is taken from the simulator):
the sightings a receiver stored are attributed to a transmitter with the transmitter's
own keys (the TX power comes from decrypting the AEM, as a matching agent would), so each
link shows the RSSI and attenuation the receiver really measured.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agent import interchange
from agent.field.exposure import attenuation, sighting_tx
from agent.models import DailySummary, ExposureWindow, Sighting, TemporaryExposureKey

if TYPE_CHECKING:
    from agent.lab.demo.world import DemoWorld


@dataclass(frozen=True, slots=True)
class LinkStats:
    """How ``receiver`` heard ``transmitter`` over the whole story."""

    receiver: str
    transmitter: str
    sightings: int
    during_contact: int
    """Sightings while A and B were together."""
    rssi_median: float | None
    attenuation_median: float | None
    attenuation_min: int | None
    attenuation_max: int | None

    def to_json(self) -> dict[str, Any]:
        return {
            "receiver": self.receiver,
            "transmitter": self.transmitter,
            "sightings": self.sightings,
            "during_contact": self.during_contact,
            "rssi_median": self.rssi_median,
            "attenuation_median_db": self.attenuation_median,
            "attenuation_min_db": self.attenuation_min,
            "attenuation_max_db": self.attenuation_max,
        }


@dataclass(frozen=True, slots=True)
class AgentFindings:
    """One agent's results after the story."""

    name: str
    log: tuple[Sighting, ...]
    """Every sighting it stored."""
    own_keys: tuple[TemporaryExposureKey, ...]
    """Its own keys that went on air (to attribute its adverts in others' logs)."""
    windows: tuple[ExposureWindow, ...]
    daily: tuple[DailySummary, ...]
    notifications: tuple[dict[str, Any], ...]
    threshold_minutes: float

    @property
    def weighted_minutes(self) -> float:
        """The largest daily weighted duration, in minutes (the notification rule's sum)."""
        return max((d.weighted_duration_sum for d in self.daily), default=0.0) / 60.0

    def to_json(self) -> dict[str, Any]:
        return {
            "sightings": len(self.log),
            "own_keys": len(self.own_keys),
            "exposure_windows": [window_json(w) for w in self.windows],
            "daily_summaries": [
                {
                    "day": d.day,
                    "score_sum": d.score_sum,
                    "maximum_score": d.maximum_score,
                    "weighted_minutes": round(d.weighted_duration_sum / 60.0, 2),
                }
                for d in self.daily
            ],
            "notifications": list(self.notifications),
        }


def window_json(window: ExposureWindow) -> dict[str, Any]:
    """A window as ``match --json`` shows it, plus its weighted minutes and scan count."""
    return {
        **interchange.window_json(window),
        "weighted_minutes": round(window.weighted_duration_seconds / 60.0, 2),
        "scan_instances": len(window.scan_instances),
    }


@dataclass(frozen=True, slots=True)
class Observation:
    agents: dict[str, AgentFindings]
    links: tuple[LinkStats, ...]

    def link(self, receiver: str, transmitter: str) -> LinkStats | None:
        return next(
            (k for k in self.links if (k.receiver, k.transmitter) == (receiver, transmitter)), None
        )


def link_stats(
    receiver: str,
    transmitter: str,
    log: Sequence[Sighting],
    keys: Sequence[TemporaryExposureKey],
    contact: tuple[float, float] | None,
) -> LinkStats:
    """The receiver's sightings of the transmitter's RPIs, with decrypted TX power."""
    peer = sighting_tx(keys, log) if keys else [None] * len(log)
    heard = [(s, p) for s, p in zip(log, peer, strict=True) if p is not None]
    rssis = [s.rssi for s, _ in heard]
    atts = [attenuation(p.tx_power_dbm, s.rssi) for s, p in heard]
    during = (
        sum(1 for s, _ in heard if contact[0] <= s.time < contact[1]) if contact is not None else 0
    )
    return LinkStats(
        receiver=receiver,
        transmitter=transmitter,
        sightings=len(heard),
        during_contact=during,
        rssi_median=statistics.median(rssis) if rssis else None,
        attenuation_median=statistics.median(atts) if atts else None,
        attenuation_min=min(atts) if atts else None,
        attenuation_max=max(atts) if atts else None,
    )


async def observe(world: DemoWorld, contact: tuple[float, float] | None) -> Observation:
    """Read every agent's store (through its running daemon)."""
    findings: dict[str, AgentFindings] = {}
    for name, agent in world.agents.items():
        service = agent.service
        if service.writer is not None:
            await service.writer.flush()
        store = service.store
        log = tuple(sorted([s async for s in store.iter_sightings(0)], key=lambda s: s.time))
        own = tuple(
            TemporaryExposureKey(t.key_data, t.rolling_start_interval_number, t.rolling_period)
            for t in await store.load_own_teks()
            if t.max_broadcast_interval is not None
        )
        findings[name] = AgentFindings(
            name=name,
            log=log,
            own_keys=own,
            windows=tuple(await store.exposure_windows()),
            daily=tuple(await store.daily_summaries()),
            notifications=tuple(agent.notifications()),
            threshold_minutes=service.config.risk.notify_threshold_minutes,
        )
    links = tuple(
        link_stats(rx, tx, findings[rx].log, findings[tx].own_keys, contact)
        for rx in findings
        for tx in findings
        if rx != tx
    )
    return Observation(findings, links)
