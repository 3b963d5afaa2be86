"""Exposure windows, scan instances, v2 scores, the notification rule and v1, by hand."""

from __future__ import annotations

import dataclasses

import pytest

from agent.config import RiskConfig
from agent.matching.core import MatchedScan
from agent.models import ReportType, TemporaryExposureKey
from agent.risk import (
    MIN_SCAN_INSTANCES_TO_NOTIFY,
    Infectiousness,
    V1Config,
    attenuation_bucket,
    bucketize_duration,
    daily_summaries,
    effective_report_type,
    exposure_windows,
    infectiousness,
    qualifying_days,
    scan_instances,
    seconds_since_last_scan,
    v1_exposures,
    v1_risk_score,
)

T0 = 1_700_000_400  # 2023-11-14 22:20:00 UTC, a whole minute
DAY = T0 - T0 % 86_400
KEY = TemporaryExposureKey(
    b"k" * 16, DAY // 600, report_type=ReportType.CONFIRMED_TEST, days_since_onset_of_symptoms=0
)
CONFIG = RiskConfig()


def scan(
    t: float,
    attenuation: float,
    *,
    count: int = 1,
    minimum: int | None = None,
    previous: float | None = -1.0,
    length: float = 4.0,
) -> MatchedScan:
    """A matched scan at ``t``; ``previous`` defaults to a scan that ended 5 min before."""
    return MatchedScan(
        en_interval=int(t // 600),
        first_seen=t,
        last_seen=t + length,
        count=count,
        typical_attenuation_db=round(attenuation),
        min_attenuation_db=round(attenuation) if minimum is None else minimum,
        mean_attenuation_db=attenuation,
        tx_power_dbm=-8,
        calibration_confidence=0,
        previous_scan_end=t - 300 if previous == -1.0 else previous,
    )


@pytest.mark.parametrize(
    ("t", "previous", "expected"),
    [
        (T0 + 10, None, 120),  # unknown
        (T0 + 10, 0, 120),  # unknown (0 as in the reference's proto)
        (T0 + 305, T0 + 50, 300),  # minutes 5 - 0
        (T0 + 605, T0 + 50, 300),  # 10 min: capped at 5
        (T0 + 65, T0 + 59, 60),  # a minute boundary between them: 1 min
        (T0 + 30, T0 + 10, 0),  # same minute
        (T0 + 10, T0 + 200, 0),  # previous after this one (clock noise): not negative
    ],
)
def test_seconds_since_last_scan(t: float, previous: float | None, expected: int) -> None:
    assert seconds_since_last_scan(t, previous) == expected


def test_scans_within_25_5_s_form_one_instance() -> None:
    first = scan(T0, 50.0, count=1, minimum=48)
    second = scan(T0 + 4 + 25.5, 54.0, count=3, minimum=51, previous=T0 - 60)
    third = scan(T0 + 4 + 25.5 + 4 + 26, 70.0)
    instances = scan_instances([first, second, third])
    assert len(instances) == 2
    assert instances[0].typical_attenuation_db == 53  # (50 + 3 * 54) / 4
    assert instances[0].min_attenuation_db == 48
    assert instances[0].seconds_since_last_scan == 300  # the first scan's
    assert instances[1].typical_attenuation_db == 70


@pytest.mark.parametrize(
    ("typical", "bucket"), [(0, 0), (55, 0), (56, 1), (63, 1), (64, 2), (73, 2), (74, 3)]
)
def test_attenuation_buckets(typical: int, bucket: int) -> None:
    assert attenuation_bucket(typical, (55, 63, 73)) == bucket


def test_windows_split_at_30_minutes_and_cap_duration() -> None:
    scans = [scan(T0 + 300 * i, 50.0) for i in range(7)]  # 0, 5, ..., 30 min
    first, second = exposure_windows(KEY, scans, CONFIG)
    assert first.start == T0
    assert len(first.scan_instances) == 6  # 0..25 min; 30 min starts a new window
    assert first.duration_seconds == 1800  # 6 x 300 s
    assert second.start == T0 + 1800
    assert second.duration_seconds == 300
    assert first.key_data == KEY.key_data
    assert (first.report_type, first.infectiousness) == (ReportType.CONFIRMED_TEST, 2)


def test_weighted_duration_and_score_by_hand() -> None:
    scans = [scan(T0 + 300 * i, att) for i, att in enumerate([50.0, 60.0, 70.0, 80.0])]
    (window,) = exposure_windows(KEY, scans, CONFIG)
    # 300 x 1.0 (IMMEDIATE) + 300 x 1.0 (NEAR) + 300 x 0.5 (MEDIUM) + 300 x 0.0 (OTHER)
    assert window.weighted_duration_seconds == 750
    assert window.score == 750  # report type and infectiousness weights 1.0
    assert window.duration_seconds == 1200
    assert window.min_attenuation_db == 50
    weighted = dataclasses.replace(
        CONFIG,
        report_type_weights=(1.0, 2.0, 1.0, 1.0, 0.0, 0.0),
        infectiousness_weights=(0.0, 1.0, 1.5),
    )
    (window,) = exposure_windows(KEY, scans, weighted)
    assert window.score == 750 * 2.0 * 1.5
    assert window.weighted_duration_seconds == 750


def test_missing_report_type_and_onset_use_the_config() -> None:
    config = dataclasses.replace(
        CONFIG, report_type_when_missing=3, infectiousness_when_dso_missing=2
    )
    assert effective_report_type(ReportType.UNKNOWN, config) == ReportType.SELF_REPORT
    assert effective_report_type(ReportType.CONFIRMED_TEST, config) == ReportType.CONFIRMED_TEST
    assert infectiousness(None, config) == Infectiousness.HIGH
    assert infectiousness(15, config) == Infectiousness.HIGH  # outside -14..14: missing
    assert infectiousness(-14, config) == Infectiousness.NONE
    assert infectiousness(-4, config) == Infectiousness.STANDARD
    assert infectiousness(0, config) == Infectiousness.HIGH
    assert infectiousness(8, config) == Infectiousness.STANDARD
    assert infectiousness(12, config) == Infectiousness.NONE


def test_daily_summaries_drop_windows_below_the_minimum() -> None:
    day1 = exposure_windows(KEY, [scan(T0 - 3 * 3600 + 300 * i, 50.0) for i in range(3)], CONFIG)
    day2 = exposure_windows(KEY, [scan(T0 + 7200 + 300 * i, 60.0) for i in range(2)], CONFIG)
    weak = exposure_windows(KEY, [scan(T0 + 3 * 3600, 70.0)], CONFIG)  # 150: below 200
    config = dataclasses.replace(CONFIG, minimum_window_score=200)
    summaries = daily_summaries(day1 + day2 + weak, config)
    assert [s.day for s in summaries] == [DAY, DAY + 86_400]
    assert (summaries[0].score_sum, summaries[0].maximum_score) == (900, 900)
    assert summaries[1].weighted_duration_sum == 600
    assert summaries[1].score_sum == 600  # the 150 window is not in it


def test_notification_rule() -> None:
    fifteen = exposure_windows(KEY, [scan(T0 - 3600 + 300 * i, 50.0) for i in range(3)], CONFIG)
    assert fifteen[0].weighted_duration_seconds == 900
    assert qualifying_days(fifteen, CONFIG) == [DAY]
    short = [dataclasses.replace(w, weighted_duration_seconds=899.0) for w in fifteen]
    assert qualifying_days(short, CONFIG) == []
    none = dataclasses.replace(KEY, days_since_onset_of_symptoms=-10)  # infectiousness NONE
    zero = exposure_windows(none, [scan(T0 - 3600 + 300 * i, 50.0) for i in range(3)], CONFIG)
    assert zero[0].score == 0 and qualifying_days(zero, CONFIG) == []
    lenient = dataclasses.replace(CONFIG, notify_threshold_minutes=0)
    one_scan = exposure_windows(KEY, [scan(T0, 40.0)], lenient)
    assert MIN_SCAN_INSTANCES_TO_NOTIFY == 2
    assert qualifying_days(one_scan, lenient) == []  # one replayed packet is never enough
    strict = dataclasses.replace(CONFIG, minimum_window_score=901)
    assert qualifying_days(fifteen, strict) == []


# --- v1 ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "bucketized"),
    [(0, 300), (149, 300), (150, 300), (151, 600), (1500, 1800), (4000, 1800)],
)
def test_v1_duration_rounding(seconds: int, bucketized: int) -> None:
    assert bucketize_duration(seconds) == bucketized


def test_v1_exposure_by_hand() -> None:
    key = dataclasses.replace(KEY, transmission_risk_level=5)
    now = DAY + 3 * 86_400 + 3600  # 3 days after the key's day
    scans = [scan(T0, 40.0), scan(T0 + 300, 60.0), scan(T0 + 600, 80.0)]
    (exposure,) = v1_exposures(key, scans, now)
    # timeline: [-150, 0) 40, [0, 300) 40, [300, 600) 60, [600, 750) 80
    assert exposure.attenuation_value == 53  # 48000 / 900 = 53.3
    assert exposure.attenuation_durations == (450, 300, 150)  # < 50, 50..73, >= 74
    assert exposure.duration_seconds == 900  # 600 + 300
    # attenuation 53 > 51: bucket 2 -> 3; 3 days >= 2: bucket 6 -> 7; 15 min: bucket 3 -> 4;
    # TR 5 -> 5 (default scores: bucket + 1)
    assert exposure.risk_score == 3 * 7 * 4 * 5
    assert v1_exposures(key, scans, now, V1Config(minimum_risk_score=421))[0].risk_score == 0


def test_v1_gap_over_10_minutes_splits_exposures_and_caps_durations() -> None:
    scans = [scan(T0 + 300 * i, 30.0) for i in range(9)] + [scan(T0 + 2400 + 601, 30.0)]
    first, second = v1_exposures(KEY, scans, T0)
    assert first.duration_seconds == 1800  # 40 min + 5 rounded, capped at 30
    assert first.attenuation_durations == (1800, 0, 0)  # 2700 s below 50, capped
    assert second.start == T0 + 3001
    assert second.duration_seconds == 300


def test_v1_transmission_risk_zero_counts_as_factor_one() -> None:
    assert v1_risk_score(5, 0, 0, 0, V1Config()) == 8 * 8 * 1 * 1
    assert v1_risk_score(80, 20, 3600, 8, V1Config()) == 1 * 1 * 8 * 8
