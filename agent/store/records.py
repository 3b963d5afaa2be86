"""Values the store returns beyond agent.models, and the pure scan-instance grouping."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields, replace
from typing import Final

from agent.constants import SCAN_INSTANCE_GAP_SECONDS, SECONDS_SINCE_LAST_SCAN_CAP
from agent.models import ObservedScan

SCAN_INSTANCE_MAX_SECONDS: Final = 60.0
"""A scan instance of unknown scan start never spans more than this (the radio's roll)."""


@dataclass(frozen=True, slots=True)
class Encounter:
    """All stored sightings of one RPI (with one AEM), aggregated."""

    rpi: bytes
    aem: bytes
    first_seen: float
    last_seen: float
    count: int
    rssi_min: int
    rssi_mean: float
    rssi_max: int

    def __repr__(self) -> str:
        return (
            f"Encounter(first_seen={self.first_seen}, last_seen={self.last_seen}, "
            f"count={self.count}, <rpi>)"
        )


@dataclass(frozen=True, slots=True)
class PurgeResult:
    """What a retention purge deleted (row counts) and whether the deletion is final."""

    cutoff: float
    """Everything strictly older than this (Unix seconds) was deleted."""
    sightings: int = 0
    scans: int = 0
    own_teks: int = 0
    exposure_windows: int = 0
    daily_summaries: int = 0
    processed_files: int = 0
    network_contacts: int = 0
    quarantined_copies: int = 0
    checkpointed: bool = False
    """The WAL was checkpointed and truncated: no deleted byte remains in any file."""

    @property
    def total(self) -> int:
        return sum(
            getattr(self, f.name)
            for f in fields(self)
            if f.name not in ("cutoff", "checkpointed")
        )


_GapRow = tuple[bytes, bytes, int, int] | tuple[bytes, bytes, int, int, int]


def group_by_gap(rows: Iterable[_GapRow]) -> list[ObservedScan]:
    """Scan instances of sightings whose scan start is unknown (e.g. imported).

    ``rows`` are (rpi, aem, time, rssi[, relay reasons]) sorted by rpi, aem, time.
    Sightings of one RPI closer than 25.5 s share an instance (Google's ExposureMatchingTracer);
    an instance is capped at 60 s. No scan was recorded, so the time an instance stands for
    comes from the stream of sightings itself (:func:`link_stream`).
    """
    result: list[ObservedScan] = []
    key: tuple[bytes, bytes] | None = None
    first = last = total = count = 0
    low = high = relay = 0

    def emit() -> None:
        assert key is not None
        result.append(
            ObservedScan(
                rpi=key[0],
                aem=key[1],
                first_seen=float(first),
                last_seen=float(last),
                count=count,
                rssi_min=low,
                rssi_max=high,
                rssi_mean=total / count,
                previous_scan_end=None,
                relay=relay,
            )
        )

    for row in rows:
        rpi, aem, t, rssi = row[:4]
        reasons = row[4] if len(row) > 4 else 0
        same = (
            key == (rpi, aem)
            and t - last <= SCAN_INSTANCE_GAP_SECONDS
            and t - first <= SCAN_INSTANCE_MAX_SECONDS
        )
        if same:
            last, count, total = t, count + 1, total + rssi
            low, high, relay = min(low, rssi), max(high, rssi), relay | reasons
            continue
        if key is not None:
            emit()
        key, first, last, count, total, low, high = (rpi, aem), t, t, 1, rssi, rssi, rssi
        relay = reasons
    if key is not None:
        emit()
    return link_stream(result)


def link_stream(instances: list[ObservedScan]) -> list[ObservedScan]:
    """Give instances of unknown scans the start of the previous one of their stream.

    ``instances`` are sorted by rpi, aem, first seen. A stream is one RPI's instances
    less than :data:`SECONDS_SINCE_LAST_SCAN_CAP` (5 min) apart; each instance stands
    for the time since the previous one started (``previous_scan_start``), the first one
    of a stream for the stream's own spacing (the gap to the next instance). A lone
    instance keeps an unknown previous scan (GAEN's 120 s). Without this, every imported
    sighting counted 120 s: sightings 30 s apart weighed four times the time together.
    """
    linked: list[ObservedScan] = []
    for i, scan in enumerate(instances):
        previous = instances[i - 1] if i > 0 else None
        following = instances[i + 1] if i + 1 < len(instances) else None
        start: float | None = None
        if previous is not None and _same_stream(previous, scan):
            start = previous.first_seen
        elif following is not None and _same_stream(scan, following):
            start = scan.first_seen - (following.first_seen - scan.first_seen)
        linked.append(scan if start is None else replace(scan, previous_scan_start=start))
    return linked


def _same_stream(earlier: ObservedScan, later: ObservedScan) -> bool:
    return (earlier.rpi, earlier.aem) == (later.rpi, later.aem) and (
        later.first_seen - earlier.first_seen <= SECONDS_SINCE_LAST_SCAN_CAP
    )
