"""Exposure windows and risk scores (Google's ExposureWindow / DailySummariesConfig).

Pure functions over matched scans (:mod:`agent.matching`) and the ``[risk]`` config:

- v2 (Exposure Windows): matched scans of one key are cut into windows of at most 30 min,
  each made of scan instances (typical/min attenuation, seconds since the last scan);
  each window gets a weighted duration and a score; days get a :class:`DailySummary`.
- The notification rule (:func:`qualifying_days`), documented in ``docs/matching.md``.
- The legacy v1 model (attenuation durations and the 8-bucket risk score).
"""

from __future__ import annotations

import enum
import functools
import itertools
import math
import operator
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from agent.config import RiskConfig
from agent.constants import (
    EN_INTERVAL_SECONDS,
    EXPOSURE_WINDOW_MAX_SECONDS,
    SCAN_INSTANCE_GAP_SECONDS,
    SECONDS_SINCE_LAST_SCAN_CAP,
    SECONDS_SINCE_LAST_SCAN_UNKNOWN,
)
from agent.matching.core import KeyMatch, MatchedScan, half_up, typical_attenuation
from agent.models import (
    DailySummary,
    ExposureWindow,
    ReportType,
    ScanInstance,
    TemporaryExposureKey,
)
from agent.relayguard import time_shifted

_DAY = 86_400
_MINUTE = 60


class Infectiousness(enum.IntEnum):
    """Infectiousness of a key's day (Google's ExposureWindowUtils)."""

    NONE = 0
    STANDARD = 1
    HIGH = 2


DAYS_SINCE_ONSET_RANGE = 14
"""Days since onset outside -14..+14 count as missing (Google's ExposureWindowUtils)."""

_N, _S, _H = Infectiousness.NONE, Infectiousness.STANDARD, Infectiousness.HIGH
DEFAULT_DSO_TO_INFECTIOUSNESS: tuple[Infectiousness, ...] = (
    (_N,) * 9  # -14 .. -6: long before symptoms
    + (_S,) * 3  # -5 .. -3
    + (_H,) * 8  # -2 .. +5: around symptom onset, the most infectious days
    + (_S,) * 5  # +6 .. +10
    + (_N,) * 4  # +11 .. +14
)
"""Infectiousness for days since onset -14..+14 (index = dso + 14). Our default; health
authorities configure their own. A missing dso uses ``infectiousness_when_dso_missing``."""

MIN_SCAN_INSTANCES_TO_NOTIFY = 2
"""A qualifying day needs at least two scan instances: one captured and replayed packet
must never be enough for a notification (a relayed advert must not cause a false contact)."""


def infectiousness(
    days_since_onset: int | None,
    config: RiskConfig,
    mapping: Sequence[Infectiousness] = DEFAULT_DSO_TO_INFECTIOUSNESS,
) -> Infectiousness:
    if days_since_onset is None or abs(days_since_onset) > DAYS_SINCE_ONSET_RANGE:
        return Infectiousness(config.infectiousness_when_dso_missing)
    return Infectiousness(mapping[days_since_onset + DAYS_SINCE_ONSET_RANGE])


def effective_report_type(report_type: ReportType, config: RiskConfig) -> ReportType:
    """UNKNOWN (missing) becomes ``report_type_when_missing`` (Google's ExposureWindowUtils)."""
    if report_type == ReportType.UNKNOWN:
        return ReportType(config.report_type_when_missing)
    return report_type


def seconds_since_last_scan(time: float, previous_scan_end: float | None) -> int:
    """60 x min(5, floor_min(t) - floor_min(previous scan)); 120 s when unknown (Google's
    ExposureWindowUtils)."""
    if previous_scan_end is None or previous_scan_end <= 0:
        return SECONDS_SINCE_LAST_SCAN_UNKNOWN
    minutes = math.floor(time / _MINUTE) - math.floor(previous_scan_end / _MINUTE)
    return _MINUTE * max(0, min(SECONDS_SINCE_LAST_SCAN_CAP // _MINUTE, minutes))


def scan_seconds(scan: MatchedScan) -> int:
    """Seconds since the last scan for one matched scan (Google's ExposureWindowUtils).

    When the scanner recorded its scans, the time a scan stands for is measured from the
    previous scan's start to this scan's start: 300 s for GAEN's 4 s scans every 5 min,
    60 s for the 60 s slots of continuous scanning. Imported sightings have no recorded
    scan: the store gives them the start of the previous instance of the same stream
    (:func:`agent.store.records.link_stream`), measured from the first sighting.
    Otherwise GAEN's rule on the end of the previous scan applies (120 s when that is
    unknown too).
    """
    if scan.previous_scan_start is not None:
        start = scan.scan_start if scan.scan_start is not None else scan.first_seen
        return seconds_since_last_scan(start, scan.previous_scan_start)
    return seconds_since_last_scan(scan.first_seen, scan.previous_scan_end)


def _same_instance(group: list[MatchedScan], scan: MatchedScan) -> bool:
    if scan.scan_start is not None and group[0].scan_start is not None:
        return scan.scan_start == group[0].scan_start
    if scan.previous_scan_start is not None and scan.previous_scan_start >= group[0].first_seen:
        return False  # the store linked it as the next instance of a stream
    return scan.first_seen - group[-1].last_seen <= SCAN_INSTANCE_GAP_SECONDS


def scan_instances(scans: Sequence[MatchedScan]) -> list[ScanInstance]:
    """Scan instances of time-sorted matched scans of one key.

    Scans of one recorded scan (e.g. two RPIs of one key across a rotation inside one
    scan) form one instance; without a recorded scan start, scans closer than 25.5 s do.
    typical = the count-weighted mean attenuation rounded half up, min = the minimum,
    seconds since last scan = the first's (:func:`scan_seconds`).
    """
    groups: list[list[MatchedScan]] = []
    for scan in scans:
        if groups and _same_instance(groups[-1], scan):
            groups[-1].append(scan)
        else:
            groups.append([scan])
    result = []
    for group in groups:
        count = sum(s.count for s in group)
        mean = sum(s.mean_attenuation_db * s.count for s in group) / count
        result.append(
            ScanInstance(
                typical_attenuation_db=typical_attenuation(mean),
                min_attenuation_db=min(s.min_attenuation_db for s in group),
                seconds_since_last_scan=scan_seconds(group[0]),
            )
        )
    return result


def attenuation_bucket(typical_attenuation_db: int, thresholds: Sequence[int]) -> int:
    """0 IMMEDIATE (<= t0), 1 NEAR (<= t1), 2 MEDIUM (<= t2), 3 OTHER (Google's
    DailySummaryUtils)."""
    for bucket, threshold in enumerate(thresholds):
        if typical_attenuation_db <= threshold:
            return bucket
    return len(thresholds)


def weighted_duration(instances: Iterable[ScanInstance], config: RiskConfig) -> float:
    """Sum of seconds since last scan x the weight of the instance's attenuation bucket."""
    return sum(
        s.seconds_since_last_scan
        * config.attenuation_weights[
            attenuation_bucket(s.typical_attenuation_db, config.attenuation_thresholds_db)
        ]
        for s in instances
    )


def relay_excluded(window: ExposureWindow, config: RiskConfig) -> bool:
    """The relay guard flagged the window and the policy leaves such windows out."""
    return bool(window.relay) and config.relay_policy == "exclude"


def score_window(window: ExposureWindow, config: RiskConfig) -> ExposureWindow:
    """The window with its weighted duration and score (Google's DailySummaryUtils); a window
    the relay policy excludes (:func:`relay_excluded`) scores 0 with no weighted duration."""
    if relay_excluded(window, config):
        return replace(window, weighted_duration_seconds=0.0, score=0.0)
    duration = weighted_duration(window.scan_instances, config)
    score = (
        duration
        * config.report_type_weights[window.report_type]
        * config.infectiousness_weights[window.infectiousness]
    )
    return replace(window, weighted_duration_seconds=duration, score=score)


def exposure_windows(
    key: TemporaryExposureKey,
    scans: Sequence[MatchedScan],
    config: RiskConfig,
    mapping: Sequence[Infectiousness] = DEFAULT_DSO_TO_INFECTIOUSNESS,
) -> list[ExposureWindow]:
    """Scored exposure windows of one key's time-sorted matched scans (Google's
    ExposureWindowUtils).

    Scans heard far from their RPI's interval are marked time-shifted first
    (:func:`agent.relayguard.time_shifted`); a window carries the OR of its scans' relay
    reasons. A new window starts at the first scan 30 min or more after the window's first scan.
    ``duration_seconds`` is the GAEN estimate of the time together: the sum of the
    instances' seconds since last scan, at most 30 min.
    """
    parts: list[list[MatchedScan]] = []
    shifted = time_shifted(scans, config.time_shift_minutes * _MINUTE)
    for scan in sorted(shifted, key=lambda s: s.first_seen):
        if not parts or scan.first_seen - parts[-1][0].first_seen >= EXPOSURE_WINDOW_MAX_SECONDS:
            parts.append([scan])
        else:
            parts[-1].append(scan)
    report_type = effective_report_type(key.report_type, config)
    level = infectiousness(key.days_since_onset_of_symptoms, config, mapping)
    windows = []
    for part in parts:
        instances = tuple(scan_instances(part))
        window = ExposureWindow(
            start=math.floor(part[0].first_seen),
            duration_seconds=min(
                EXPOSURE_WINDOW_MAX_SECONDS, sum(s.seconds_since_last_scan for s in instances)
            ),
            report_type=report_type,
            infectiousness=int(level),
            calibration_confidence=part[0].calibration_confidence,
            scan_instances=instances,
            key_data=key.key_data,
            relay=functools.reduce(operator.or_, (s.relay for s in part), 0),
        )
        windows.append(score_window(window, config))
    return windows



def matched_windows(matches: Iterable[KeyMatch], config: RiskConfig) -> list[ExposureWindow]:
    """The exposure windows of every matched key, oldest first."""
    windows = [w for match in matches for w in exposure_windows(match.key, match.scans, config)]
    windows.sort(key=lambda w: w.start)
    return windows

def passes_minimum(window: ExposureWindow, config: RiskConfig) -> bool:
    """Windows scoring below ``minimum_window_score`` are dropped (Google's DailySummaryUtils)."""
    return window.score >= config.minimum_window_score


def daily_summaries(windows: Iterable[ExposureWindow], config: RiskConfig) -> list[DailySummary]:
    """One summary per UTC day over the windows that pass the minimum score (Google's
    DailySummaryUtils)."""
    days: dict[int, list[ExposureWindow]] = defaultdict(list)
    for window in windows:
        if passes_minimum(window, config):
            days[window.day].append(window)
    return [
        DailySummary(
            day=day,
            score_sum=sum(w.score for w in found),
            maximum_score=max(w.score for w in found),
            weighted_duration_sum=sum(w.weighted_duration_seconds for w in found),
        )
        for day, found in sorted(days.items())
    ]


def counts_for_notification(window: ExposureWindow, config: RiskConfig) -> bool:
    """A window counts towards a notification if it passes the minimum and scores > 0.

    A zero score means a weight of zero (e.g. infectiousness NONE, report type REVOKED):
    such contacts are recorded but never notified.
    """
    return window.score > 0 and passes_minimum(window, config)


def qualifying_days(windows: Iterable[ExposureWindow], config: RiskConfig) -> list[int]:
    """UTC days (midnight, Unix s) that call for a notification.

    The rule: over the day's counting windows (:func:`counts_for_notification`), the
    weighted duration sum in minutes is at least ``notify_threshold_minutes`` and there
    are at least :data:`MIN_SCAN_INSTANCES_TO_NOTIFY` scan instances.
    """
    seconds: dict[int, float] = defaultdict(float)
    instances: dict[int, int] = defaultdict(int)
    for window in windows:
        if counts_for_notification(window, config):
            seconds[window.day] += window.weighted_duration_seconds
            instances[window.day] += len(window.scan_instances)
    return sorted(
        day
        for day, total in seconds.items()
        if total / _MINUTE >= config.notify_threshold_minutes
        and instances[day] >= MIN_SCAN_INSTANCES_TO_NOTIFY
    )


# --- Legacy v1 model (Google's RiskScoreCalculator) -------------------------------------

V1_ATTENUATION_BUCKETS = (73, 63, 51, 33, 27, 15, 10)
"""Bucket i holds attenuations > bound i; the last bucket (7) is <= 10 dB."""
V1_DAYS_BUCKETS = (14, 12, 10, 8, 6, 4, 2)
"""Bucket i holds days since the key's day >= bound i; the last bucket is 0..1 days."""
V1_DURATION_BUCKETS = (0, 5, 10, 15, 20, 25, 30)
"""Bucket i holds durations <= bound i minutes; the last bucket is > 30 min."""
V1_MAX_GAP_SECONDS = 10 * _MINUTE
"""Sightings further apart than this belong to different v1 exposures."""
V1_SCAN_INTERVAL_SECONDS = 5 * _MINUTE
"""Durations are rounded to this, and each exposure is extended by half of it each side."""
V1_DURATION_CAP_SECONDS = 30 * _MINUTE

_ASCENDING = (1, 2, 3, 4, 5, 6, 7, 8)


@dataclass(frozen=True, slots=True)
class V1Config:
    """ExposureConfiguration of the v1 API; scores 0..8 per bucket (index 0 = lowest risk)."""

    attenuation_scores: tuple[int, ...] = _ASCENDING
    days_since_last_exposure_scores: tuple[int, ...] = _ASCENDING
    duration_scores: tuple[int, ...] = _ASCENDING
    transmission_risk_scores: tuple[int, ...] = _ASCENDING
    minimum_risk_score: int = 0
    duration_at_attenuation_thresholds: tuple[int, int] = (50, 74)


@dataclass(frozen=True, slots=True)
class V1Exposure:
    """One v1 exposure: consecutive sightings of one key, gaps <= 10 min."""

    start: int
    duration_seconds: int
    """(last - first) + 5 min, rounded to 5 min, at most 30 min."""
    attenuation_value: int
    """Time-weighted attenuation."""
    attenuation_durations: tuple[int, int, int]
    """Seconds below, between and at/above ``duration_at_attenuation_thresholds``."""
    risk_score: int


def _bucket_above(value: float, bounds: Sequence[int]) -> int:
    return next((i for i, b in enumerate(bounds) if value > b), len(bounds))


def _bucket_at_least(value: float, bounds: Sequence[int]) -> int:
    return next((i for i, b in enumerate(bounds) if value >= b), len(bounds))


def _bucket_at_most(value: float, bounds: Sequence[int]) -> int:
    return next((i for i, b in enumerate(bounds) if value <= b), len(bounds))


def bucketize_duration(seconds: int) -> int:
    """(seconds + 5 min) rounded to the nearest 5 min (half down), capped at 30 min."""
    step = V1_SCAN_INTERVAL_SECONDS
    estimate = seconds + step
    mod = estimate % step
    rounded = estimate - mod if mod <= step // 2 else estimate + step - mod
    return min(V1_DURATION_CAP_SECONDS, rounded)


def v1_risk_score(
    attenuation_value: int,
    days_since_exposure: int,
    duration_seconds: int,
    transmission_risk_level: int,
    config: V1Config,
) -> int:
    """attenuation x days x duration x TR score; below the minimum it is 0 (Google's
    RiskScoreCalculator)."""
    score = (
        config.attenuation_scores[_bucket_above(attenuation_value, V1_ATTENUATION_BUCKETS)]
        * config.days_since_last_exposure_scores[
            _bucket_at_least(days_since_exposure, V1_DAYS_BUCKETS)
        ]
        * config.duration_scores[_bucket_at_most(duration_seconds // 60, V1_DURATION_BUCKETS)]
        * (
            config.transmission_risk_scores[transmission_risk_level - 1]
            if 1 <= transmission_risk_level <= 8
            else 1
        )
    )
    return score if score >= config.minimum_risk_score else 0


def _v1_exposure(
    points: list[tuple[int, int]], key: TemporaryExposureKey, now: float, config: V1Config
) -> V1Exposure:
    margin = V1_SCAN_INTERVAL_SECONDS // 2
    timeline = [(points[0][0] - margin, points[0][1])]
    for point in [*points, (points[-1][0] + margin, points[-1][1])]:
        if point[0] != timeline[-1][0]:  # a zero-length stretch keeps the earlier sighting
            timeline.append(point)
    low, high = config.duration_at_attenuation_thresholds
    below = between = above = weighted = total = 0
    for (t1, att), (t2, _) in itertools.pairwise(timeline):
        span = t2 - t1
        weighted += att * span
        total += span
        if att < low:
            below += span
        elif att >= high:
            above += span
        else:
            between += span
    attenuation = half_up(weighted / total)
    duration = bucketize_duration(points[-1][0] - points[0][0])
    days = math.floor((now - key.rolling_start_interval_number * EN_INTERVAL_SECONDS) / _DAY)
    cap = V1_DURATION_CAP_SECONDS
    return V1Exposure(
        start=points[0][0],
        duration_seconds=duration,
        attenuation_value=attenuation,
        attenuation_durations=(min(cap, below), min(cap, between), min(cap, above)),
        risk_score=v1_risk_score(attenuation, days, duration, key.transmission_risk_level, config),
    )


def v1_exposures(
    key: TemporaryExposureKey,
    scans: Sequence[MatchedScan],
    now: float,
    config: V1Config | None = None,
) -> list[V1Exposure]:
    """The v1 exposures of one key's matched scans (Google's RiskScoreCalculator;
    KeyExposureEvaluator semantics).

    Each scan counts as a sighting at ``first_seen`` with its typical attenuation. The
    attenuation of a stretch between two sightings is that of the earlier one.
    """
    points = sorted((math.floor(s.first_seen), s.typical_attenuation_db) for s in scans)
    series: list[list[tuple[int, int]]] = []
    for point in points:
        if series and point[0] - series[-1][-1][0] <= V1_MAX_GAP_SECONDS:
            series[-1].append(point)
        else:
            series.append([point])
    return [_v1_exposure(s, key, now, config or V1Config()) for s in series]
