"""The reference matcher against hand-made sightings (``docs/matching.md``)."""

from __future__ import annotations

import dataclasses
import random

import pytest

from agent import crypto
from agent.clock import en_interval_number, interval_start_seconds
from agent.constants import TEK_ROLLING_PERIOD
from agent.matching.core import SightingIndex, dedupe_keys, match_keys
from agent.models import ReportType, TemporaryExposureKey
from tests.matching.dataset import observed, random_key, sighting_of

DAY_START = 2_833_344  # an interval number on a UTC midnight (2023-11-14)
NOON = interval_start_seconds(DAY_START + 72)


@pytest.fixture
def rng() -> random.Random:
    return random.Random(7)


@pytest.fixture
def key(rng: random.Random) -> TemporaryExposureKey:
    return random_key(rng, DAY_START, report_type=ReportType.CONFIRMED_TEST)


def test_exact_match_with_attenuations(key: TemporaryExposureKey) -> None:
    seen = sighting_of(key, NOON + 30, rssi=-60, tx_power=-8, rssi_spread=5, count=3)
    result = match_keys([key], SightingIndex([seen]))
    assert result.matched_keys == 1
    (scan,) = result.matches[0].scans
    assert result.matches[0].key == key
    assert scan.en_interval == en_interval_number(NOON + 30)
    assert scan.typical_attenuation_db == 52  # -8 - (-60)
    assert scan.min_attenuation_db == 47  # -8 - (-55), the strongest RSSI
    assert scan.tx_power_dbm == -8
    assert scan.count == 3


def test_typical_attenuation_rounds_half_up_and_never_below_zero(
    key: TemporaryExposureKey,
) -> None:
    half = dataclasses.replace(sighting_of(key, NOON, rssi=-60), rssi_mean=-60.5)
    scan = match_keys([key], SightingIndex([half])).matches[0].scans[0]
    assert scan.typical_attenuation_db == 53  # 52.5 rounds up
    loud = sighting_of(key, NOON, rssi=10, tx_power=-8)
    scan = match_keys([key], SightingIndex([loud])).matches[0].scans[0]
    assert (scan.typical_attenuation_db, scan.min_attenuation_db) == (0, 0)


@pytest.mark.parametrize(("drift", "matches"), [(-13, False), (-12, True), (12, True), (13, False)])
def test_validity_window_is_plus_minus_12_intervals(
    key: TemporaryExposureKey, drift: int, matches: bool
) -> None:
    """The sender's RPI interval j vs the receiver's ENIN(t): valid iff |ENIN(t) - j| <= 12."""
    t = NOON + 100
    seen = sighting_of(key, t, interval=en_interval_number(t) + drift)
    result = match_keys([key], SightingIndex([seen]))
    assert result.matched_keys == (1 if matches else 0)
    # an RPI 13 intervals from every sighting is not even computed by the search
    assert "outside_time_window" not in result.counters


@pytest.mark.parametrize(
    ("tx_power", "accepted"), [(21, False), (20, True), (-50, True), (-51, False)]
)
def test_tx_power_bounds(key: TemporaryExposureKey, tx_power: int, accepted: bool) -> None:
    seen = sighting_of(key, NOON, tx_power=tx_power, rssi=-70)
    result = match_keys([key], SightingIndex([seen]))
    assert result.matched_keys == (1 if accepted else 0)
    assert result.counters["tx_power_rejected"] == (0 if accepted else 1)


def test_unknown_metadata_version_is_counted_but_matched(key: TemporaryExposureKey) -> None:
    seen = sighting_of(key, NOON, metadata=bytes([0x80, 0xF8, 0, 0]))  # major 2, -8 dBm
    result = match_keys([key], SightingIndex([seen]))
    assert result.matches[0].scans[0].tx_power_dbm == -8
    assert result.counters["aem_unknown_version"] == 1


def test_replay_guard_drops_sightings_20_min_after_the_first(key: TemporaryExposureKey) -> None:
    j = en_interval_number(NOON)
    times = [NOON + 5, NOON + 5 + 600, NOON + 5 + 1200, NOON + 5 + 1201, NOON + 5 + 3000]
    scans = [sighting_of(key, t, interval=j) for t in times]
    result = match_keys([key], SightingIndex(scans))
    assert [s.first_seen for s in result.matches[0].scans] == times[:3]
    assert result.counters["replay_dropped"] == 2


def test_rpis_of_the_next_rotation_count_separately(key: TemporaryExposureKey) -> None:
    scans = [sighting_of(key, NOON + 600 * i + 10) for i in range(4)]
    result = match_keys([key], SightingIndex(scans))
    assert len(result.matches[0].scans) == 4
    assert [s.en_interval for s in result.matches[0].scans] == [
        en_interval_number(NOON) + i for i in range(4)
    ]


def test_only_intervals_inside_the_rolling_period_count(rng: random.Random) -> None:
    short = random_key(rng, DAY_START, rolling_period=72)
    inside = sighting_of(short, interval_start_seconds(DAY_START + 71) + 5)
    outside = sighting_of(short, interval_start_seconds(DAY_START + 72) + 5)
    result = match_keys([short], SightingIndex([inside, outside]))
    assert [s.en_interval for s in result.matches[0].scans] == [DAY_START + 71]
    # the search never computes an RPI past the rolling period: nothing to drop later
    assert "outside_rolling_period" not in result.counters


def test_own_keys_never_match_and_own_rpis_are_dropped(
    key: TemporaryExposureKey, rng: random.Random
) -> None:
    other = random_key(rng, DAY_START)
    own_rpi = crypto.rpi(crypto.derive_rpik(other.key_data), en_interval_number(NOON))
    scans = [sighting_of(key, NOON), sighting_of(other, NOON)]
    by_key = match_keys([key, other], SightingIndex(scans), own_keys=frozenset({key.key_data}))
    assert [m.key for m in by_key.matches] == [other]
    assert by_key.counters["own_key_skipped"] == 1
    by_rpi = match_keys([key, other], SightingIndex(scans, own_rpis=frozenset({own_rpi})))
    assert [m.key for m in by_rpi.matches] == [key]
    assert by_rpi.counters["own_rpi_scans_dropped"] == 1


def test_recursive_skipped_and_revoked_returned(rng: random.Random) -> None:
    recursive = random_key(rng, DAY_START, report_type=ReportType.RECURSIVE)
    revoked = random_key(rng, DAY_START, report_type=ReportType.REVOKED)
    scans = [sighting_of(recursive, NOON), sighting_of(revoked, NOON)]
    result = match_keys([recursive, revoked], SightingIndex(scans))
    assert result.matched_keys == 0
    assert result.revoked == [revoked.key_data]
    assert result.counters["recursive_key_skipped"] == 1
    assert result.counters["revoked_key"] == 1


def test_unrelated_sightings_do_not_match(key: TemporaryExposureKey, rng: random.Random) -> None:
    scans = [observed(rng.randbytes(16), rng.randbytes(4), NOON + i) for i in range(200)]
    result = match_keys([key], SightingIndex(scans))
    assert result.matched_keys == 0
    assert not result.counters


def test_dedupe_keeps_one_per_key_and_the_last_revision_wins(rng: random.Random) -> None:
    a = random_key(rng, DAY_START, report_type=ReportType.CONFIRMED_CLINICAL_DIAGNOSIS)
    b = random_key(rng, DAY_START)
    a_revoked = TemporaryExposureKey(
        a.key_data, DAY_START, TEK_ROLLING_PERIOD, report_type=ReportType.REVOKED
    )
    unique, removed = dedupe_keys([a, b, b, a_revoked])
    assert unique == [b, a_revoked]
    assert removed == 2
