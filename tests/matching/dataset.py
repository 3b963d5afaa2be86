"""Seeded test data for the matchers: random keys, random sightings and planted matches.

Shared by the tests and ``scripts/bench``. Planted matches are real: the RPI and
AEM come from the key with the spec's crypto, so only a correct matcher finds them.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass

import numpy as np

from agent import crypto
from agent.clock import en_interval_number, interval_start_seconds
from agent.constants import EN_INTERVAL_SECONDS, TEK_ROLLING_PERIOD
from agent.export.columns import KeyArrays
from agent.matching.core import (
    MatchResult,
    SightingIndex,
    count_skipped_keys,
    evaluate_candidates,
    match_filter,
)
from agent.models import ObservedScan, ReportType, TemporaryExposureKey
from agent.payload import Metadata

DAY = 86_400


def observed(
    rpi: bytes,
    aem: bytes,
    first_seen: float,
    rssi: int = -60,
    *,
    count: int = 1,
    duration: float = 0.0,
    rssi_spread: int = 0,
    previous_scan_end: float | None = None,
) -> ObservedScan:
    """One scan's aggregate of an RPI: mean ``rssi``, max ``rssi + rssi_spread``."""
    return ObservedScan(
        rpi=rpi,
        aem=aem,
        first_seen=first_seen,
        last_seen=first_seen + duration,
        count=count,
        rssi_min=rssi - rssi_spread,
        rssi_max=rssi + rssi_spread,
        rssi_mean=float(rssi),
        previous_scan_end=previous_scan_end,
    )


def sighting_of(
    key: TemporaryExposureKey,
    time: float,
    *,
    rssi: int = -60,
    tx_power: int = -8,
    interval: int | None = None,
    metadata: bytes | None = None,
    previous_scan_end: float | None = None,
    count: int = 1,
    duration: float = 0.0,
    rssi_spread: int = 0,
) -> ObservedScan:
    """What a scanner records when ``key``'s owner broadcasts at ``time``.

    ``interval`` is the ENIN the sender used for the RPI (default: that of ``time``), so
    a clock drift between sender and receiver is ``interval - ENIN(time)``.
    """
    j = en_interval_number(time) if interval is None else interval
    rpi = crypto.rpi(crypto.derive_rpik(key.key_data), j)
    plain = metadata if metadata is not None else bytes(Metadata(tx_power_dbm=tx_power))
    aem = crypto.encrypt_aem(crypto.derive_aemk(key.key_data), rpi, plain)
    return observed(
        rpi,
        aem,
        time,
        rssi,
        count=count,
        duration=duration,
        rssi_spread=rssi_spread,
        previous_scan_end=previous_scan_end,
    )


def random_key(rng: random.Random, rolling_start: int, **fields: object) -> TemporaryExposureKey:
    return TemporaryExposureKey(
        key_data=rng.randbytes(16), rolling_start_interval_number=rolling_start, **fields
    )  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class Dataset:
    keys: KeyArrays
    scans: list[ObservedScan]
    planted: list[tuple[int, int]]
    """(key index, interval offset) of every planted match."""
    now: float


def make_dataset(
    n_keys: int,
    n_sightings: int,
    *,
    planted: int = 30,
    days: int = 14,
    seed: int = 1,
    now: float = 1_700_006_400.0,
) -> Dataset:
    """``n_keys`` random daily keys of the last ``days`` days; ``n_sightings`` random RPIs
    seen between 06:00 and 22:00 UTC; ``planted`` keys of them really seen once."""
    rng = random.Random(seed)
    gen = np.random.default_rng(seed)
    today = en_interval_number(now) // TEK_ROLLING_PERIOD * TEK_ROLLING_PERIOD
    starts = (today - TEK_ROLLING_PERIOD * gen.integers(1, days + 1, n_keys)).astype(np.int32)
    keys = KeyArrays(
        key_data=gen.bytes(16 * n_keys),
        rolling_start=starts,
        rolling_period=np.full(n_keys, TEK_ROLLING_PERIOD, dtype=np.int32),
        transmission_risk=np.zeros(n_keys, dtype=np.int32),
        report_type=np.full(n_keys, int(ReportType.CONFIRMED_TEST), dtype=np.int32),
        days_since_onset=np.zeros(n_keys, dtype=np.int32),
        has_days_since_onset=np.zeros(n_keys, dtype=bool),
    )
    scans = []
    for _ in range(n_sightings):
        day = today - TEK_ROLLING_PERIOD * rng.randint(0, days)
        t = interval_start_seconds(day) + rng.uniform(6 * 3600, 22 * 3600)
        scans.append(observed(rng.randbytes(16), rng.randbytes(4), t, rng.randint(-90, -40)))
    marks = []
    for index in rng.sample(range(n_keys), min(planted, n_keys)):
        key = keys[index]
        offset = rng.randint(36, 131)
        t = interval_start_seconds(key.rolling_start_interval_number + offset) + rng.uniform(
            0, EN_INTERVAL_SECONDS
        )
        scans.append(sighting_of(key, t, rssi=rng.randint(-80, -50)))
        marks.append((index, offset))
    rng.shuffle(scans)
    return Dataset(keys=keys, scans=scans, planted=sorted(marks), now=now)


# --- the spec's definition, for property tests ---------------------------------------------------


def spec_candidates(
    keys: list[TemporaryExposureKey], index: SightingIndex, own_keys: frozenset[bytes]
) -> list[tuple[int, int]]:
    """Observed (key index, offset) pairs the plain way: all 144 RPIs of every key to
    match, one AES call each, compared as bytes (what the search must agree with)."""
    found = []
    for i, key in enumerate(keys):
        if match_filter(key, own_keys) is not None:
            continue
        rpik = crypto.derive_rpik(key.key_data)
        for offset, rpi in enumerate(
            crypto.rpis(rpik, key.rolling_start_interval_number, TEK_ROLLING_PERIOD)
        ):
            if rpi in index.by_rpi:
                found.append((i, offset))
    return found


def spec_match(
    keys: list[TemporaryExposureKey], index: SightingIndex, own_keys: frozenset[bytes]
) -> MatchResult:
    """:func:`agent.matching.core.match_keys` over :func:`spec_candidates`."""
    result = evaluate_candidates(keys, spec_candidates(keys, index, own_keys), index, own_keys)
    count_skipped_keys(keys, own_keys, result)
    return result


WINDOW_COUNTERS = ("outside_time_window", "outside_rolling_period", "unsighted_key_skipped")
"""Sightings of an RPI the search does not compute (outside the key's period or the
+-12 intervals around any sighting) are not counted: they could never match. Keys whose
whole period lies outside every sighting's window are counted by the search alone."""


def strip_window_counters(counters: Counter[str]) -> Counter[str]:
    return Counter({k: v for k, v in counters.items() if k not in WINDOW_COUNTERS})
