"""Field report: pure analysis of two devices' sighting logs against ground-truth marks.

Log A is what device A received (B's adverts), log B what B received (A's). Each mark
opens a *segment* that lasts until the next mark (or the end of the logs). Per direction
and segment the report gives:

- detection latency: first sighting at or after the mark, minus the mark's time;
- gaps: stretches longer than ``gap_seconds`` without a sighting, after the first
  detection and up to the segment's end (a segment with no sighting is one whole gap);
- RSSI and attenuation (TX power - calibrated RSSI, Google's matching) statistics, a histogram of
  attenuation per distance, and the exposure windows and score the agent would compute
  (:mod:`agent.field.exposure`).

Clock offset: ``offset_b_seconds`` is B's clock minus A's (``field preflight --peer``
on A); log B's times are shifted onto A's clock. Marks are taken to be on A's clock.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from agent.config import RiskConfig
from agent.field.exposure import ExposureSummary, attenuation, sighting_tx, summarise_exposure
from agent.field.marks import Mark
from agent.models import Sighting, TemporaryExposureKey


@dataclass(frozen=True, slots=True)
class ReportSettings:
    tx_power_dbm: int = -8
    """Assumed TX power of adverts whose AEM cannot be decrypted (no peer keys)."""
    gap_seconds: float = 60.0
    bin_db: int = 5
    scan_period_seconds: float = 60.0
    offset_b_seconds: float = 0.0
    names: tuple[str, str] = ("A", "B")
    risk: RiskConfig = field(default_factory=RiskConfig)


@dataclass(frozen=True, slots=True)
class Segment:
    """The time a mark held: [start, end)."""

    number: int
    """1-based position of the mark in the marks file (sorted by time)."""
    mark: Mark
    start: float
    end: float

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass(frozen=True, slots=True)
class Observation:
    """One sighting of the peer, with its attenuation."""

    time: float
    rssi: int
    tx_power_dbm: int
    attenuation_db: int
    decrypted: bool
    """True when the TX power came from the decrypted AEM."""


@dataclass(frozen=True, slots=True)
class Gap:
    start: float
    end: float
    segment: int

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass(frozen=True, slots=True)
class SegmentStats:
    segment: Segment
    count: int
    latency_seconds: float | None
    """None when the peer was not seen at all during the segment."""
    gaps: tuple[Gap, ...]
    seen_minutes: int
    """Distinct minutes of the segment with at least one sighting."""
    rssi_median: float | None
    attenuation_median: float | None
    attenuation_min: int | None
    attenuation_max: int | None

    @property
    def gap_seconds_total(self) -> float:
        return sum(g.duration for g in self.gaps)


@dataclass(frozen=True, slots=True)
class Histogram:
    """Attenuation counts per distance label; bin i is [edges[i], edges[i+1])."""

    edges: tuple[int, ...]
    counts: dict[str, tuple[int, ...]]

    def bin_label(self, i: int) -> str:
        return f"{self.edges[i]}-{self.edges[i + 1] - 1}"


@dataclass(frozen=True, slots=True)
class Direction:
    receiver: str
    transmitter: str
    total_sightings: int
    foreign_sightings: int
    """Sightings of RPIs that none of the peer's keys generated (other devices)."""
    tx_source: str
    observations: tuple[Observation, ...]
    segments: tuple[SegmentStats, ...]
    histogram: Histogram
    exposure: ExposureSummary

    @property
    def label(self) -> str:
        return f"{self.receiver} hears {self.transmitter}"


@dataclass(frozen=True, slots=True)
class FieldReport:
    settings: ReportSettings
    marks: tuple[Mark, ...]
    segments: tuple[Segment, ...]
    directions: tuple[Direction, ...]
    start: float
    end: float
    notes: tuple[str, ...]


def segments_from_marks(marks: Sequence[Mark], end_time: float) -> list[Segment]:
    """One segment per distance mark, until the next mark or ``end_time``; end marks close."""
    ordered = sorted(marks, key=lambda m: m.time)
    segments = []
    for i, mark in enumerate(ordered):
        if mark.is_end:
            continue
        stop = ordered[i + 1].time if i + 1 < len(ordered) else max(end_time, mark.time)
        segments.append(Segment(number=i + 1, mark=mark, start=mark.time, end=stop))
    return segments


def observations(
    sightings: Sequence[Sighting],
    keys: Sequence[TemporaryExposureKey],
    tx_power_dbm: int,
) -> tuple[list[Observation], list[Sighting], str]:
    """The peer's sightings as observations, the sightings used, and where TX came from.

    If any sighting decrypts with the peer's keys, only those count (the others are other
    devices); otherwise every sighting counts, with the assumed ``tx_power_dbm``.
    """
    ordered = sorted(sightings, key=lambda s: s.time)
    peer = sighting_tx(keys, ordered) if keys else [None] * len(ordered)
    if any(p is not None for p in peer):
        used = [(s, p) for s, p in zip(ordered, peer, strict=True) if p is not None]
        obs = [
            Observation(s.time, s.rssi, p.tx_power_dbm, attenuation(p.tx_power_dbm, s.rssi), True)
            for s, p in used
        ]
        return obs, [s for s, _ in used], "decrypted from the AEM with the peer's keys"
    obs = [
        Observation(s.time, s.rssi, tx_power_dbm, attenuation(tx_power_dbm, s.rssi), False)
        for s in ordered
    ]
    source = f"assumed {tx_power_dbm} dBm (--tx-power; all sightings taken as the peer's)"
    if keys:
        source = "no peer key matched: " + source
    return obs, ordered, source


def segment_stats(
    segment: Segment, obs: Sequence[Observation], gap_seconds: float
) -> SegmentStats:
    """Latency, gaps and RSSI/attenuation figures of the observations inside ``segment``."""
    inside = [o for o in obs if segment.start <= o.time < segment.end]
    if not inside:
        whole = (Gap(segment.start, segment.end, segment.number),) if segment.duration else ()
        return SegmentStats(segment, 0, None, whole, 0, None, None, None, None)
    gaps = []
    times = [o.time for o in inside] + [segment.end]
    for before, after in itertools.pairwise(times):
        if after - before > gap_seconds:
            gaps.append(Gap(before, after, segment.number))
    attenuations = [o.attenuation_db for o in inside]
    return SegmentStats(
        segment=segment,
        count=len(inside),
        latency_seconds=inside[0].time - segment.start,
        gaps=tuple(gaps),
        seen_minutes=len({math.floor(o.time / 60) for o in inside}),
        rssi_median=statistics.median(o.rssi for o in inside),
        attenuation_median=statistics.median(attenuations),
        attenuation_min=min(attenuations),
        attenuation_max=max(attenuations),
    )


def histogram(
    obs: Sequence[Observation], segments: Sequence[Segment], bin_db: int, edges_from: Sequence[
        Observation
    ] = ()
) -> Histogram:
    """Attenuation histogram per distance label; bins are ``bin_db`` wide.

    ``edges_from`` widens the bin range (both directions then share one set of edges).
    """
    values = [o.attenuation_db for o in (*obs, *edges_from)]
    low = (min(values) // bin_db) * bin_db if values else 0
    high = (max(values) // bin_db + 1) * bin_db if values else bin_db
    edges = tuple(range(low, high + 1, bin_db))
    counts: dict[str, list[int]] = {}
    for segment in segments:
        row = counts.setdefault(segment.mark.label, [0] * (len(edges) - 1))
        for o in obs:
            if segment.start <= o.time < segment.end:
                row[(o.attenuation_db - low) // bin_db] += 1
    return Histogram(edges, {label: tuple(row) for label, row in counts.items()})


def _shift(sightings: Sequence[Sighting], seconds: float) -> list[Sighting]:
    if not seconds:
        return list(sightings)
    return [
        replace(
            s,
            time=s.time - seconds,
            scan_start=None if s.scan_start is None else s.scan_start - seconds,
        )
        for s in sightings
    ]


def analyse(
    log_a: Sequence[Sighting],
    log_b: Sequence[Sighting],
    marks: Sequence[Mark],
    settings: ReportSettings,
    keys: Sequence[TemporaryExposureKey] = (),
) -> FieldReport:
    """The whole field report from two logs, the marks and (optionally) the peers' keys.

    ``keys`` may hold both devices' keys: each log is matched against all of them.
    """
    logs = (list(log_a), _shift(log_b, settings.offset_b_seconds))
    times = [s.time for log in logs for s in log] + [m.time for m in marks]
    start, end = (min(times), max(times)) if times else (0.0, 0.0)
    segments = segments_from_marks(marks, end + 1e-6)
    notes: list[str] = []
    if not marks:
        notes.append("no marks: latency, gaps and histograms need `contact-agent mark` lines")
    parsed = [observations(log, keys, settings.tx_power_dbm) for log in logs]
    all_obs = [o for obs, _, _ in parsed for o in obs]
    directions = []
    names = settings.names
    for (obs, used, source), log, (rx, tx) in zip(
        parsed, logs, ((names[0], names[1]), (names[1], names[0])), strict=True
    ):
        if not log:
            notes.append(f"log {rx} has no sightings: did {rx} scan, and {tx} advertise?")
        directions.append(
            Direction(
                receiver=rx,
                transmitter=tx,
                total_sightings=len(log),
                foreign_sightings=len(log) - len(used),
                tx_source=source,
                observations=tuple(obs),
                segments=tuple(segment_stats(s, obs, settings.gap_seconds) for s in segments),
                histogram=histogram(obs, segments, settings.bin_db, all_obs),
                exposure=summarise_exposure(
                    used,
                    keys=keys,
                    tx_power_dbm=settings.tx_power_dbm,
                    risk=settings.risk,
                    scan_period=settings.scan_period_seconds,
                ),
            )
        )
    return FieldReport(
        settings=settings,
        marks=tuple(sorted(marks, key=lambda m: m.time)),
        segments=tuple(segments),
        directions=tuple(directions),
        start=start,
        end=end,
        notes=tuple(notes),
    )
