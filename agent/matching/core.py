"""Matching diagnosis keys against observed RPIs (the GAEN matching rules).

Pure functions: keys and observations in, matched scans and counters out; nothing reads a
clock, a file or the network. Matching has two stages:

1. *Candidates*: the one search (:mod:`agent.matching.kernel`): for each key, the
   RPIs of the intervals of its rolling period that lie within +-12 intervals of a
   sighting (the only ones that can match), found among the observed RPIs by a
   prefilter and an exact 16-byte comparison. :func:`search_candidates` runs it in this
   thread; :mod:`agent.matching.parallel` spreads it over cores for many keys. The tests
   check it against the spec's definition (every RPI of every key, compared plainly).
2. *Evaluation* (:func:`evaluate_candidates`): keep only intervals inside the key's
   rolling period, sightings within +-12 intervals of the RPI's interval, drop replays
   (more than 20 min after the RPI's first sighting), decrypt the AEM and reject TX
   power outside -50..+20 dBm, then compute attenuations.

Keys with report type RECURSIVE are skipped; REVOKED keys are not matched but returned, so
that the caller removes earlier results of those keys. Our own keys never match, and
sightings of our own RPIs (reflections, bad-input case 8) are dropped before matching.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from agent import crypto
from agent.clock import en_interval_number
from agent.constants import (
    MATCH_TOLERANCE_INTERVALS,
    METADATA_MAJOR_1,
    METADATA_MAJOR_MASK,
    REPLAY_WINDOW_SECONDS,
    TX_POWER_MAX_DBM,
    TX_POWER_MIN_DBM,
)
from agent.errors import AgentError
from agent.matching.kernel import Windows, search_columns
from agent.models import ObservedScan, ReportType, TemporaryExposureKey
from agent.payload import Metadata

_LOGGER = logging.getLogger(__name__)


class MatchingError(AgentError):
    """Matching could not finish (a worker process died, e.g. killed for memory)."""


WORKER_DIED = (
    "a matching worker process died (out of memory? the service is capped at MemoryMax); "
    "nothing was stored, the files are matched again next time"
)

Candidate = tuple[int, int]
"""(index of the key, interval offset j - rolling_start 0..143) of an observed RPI."""


class KeySequence(Protocol):
    """What the evaluation needs of the keys: indexable, sized (a list or KeyArrays)."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int, /) -> TemporaryExposureKey: ...


@dataclass(frozen=True, slots=True)
class MatchedScan:
    """One observed scan of a diagnosis key's RPI that passed every check."""

    en_interval: int
    """Interval of the RPI that was seen (j)."""
    first_seen: float
    last_seen: float
    count: int
    typical_attenuation_db: int
    """round(TX power - mean calibrated RSSI), at least 0."""
    min_attenuation_db: int
    """TX power - strongest calibrated RSSI, at least 0."""
    mean_attenuation_db: float
    """TX power - mean calibrated RSSI, unrounded (to merge scans into one instance)."""
    tx_power_dbm: int
    calibration_confidence: int
    previous_scan_end: float | None
    scan_start: float | None = None
    previous_scan_start: float | None = None
    relay: int = 0
    """Relay guard reasons of the observed scan (:class:`agent.relayguard.Reason`)."""


@dataclass(frozen=True, slots=True)
class KeyMatch:
    """A diagnosis key with its matched scans, sorted by time."""

    key: TemporaryExposureKey
    scans: tuple[MatchedScan, ...]


@dataclass(slots=True)
class MatchResult:
    """What one matching run found."""

    matches: list[KeyMatch] = field(default_factory=list)
    revoked: list[bytes] = field(default_factory=list)
    """key_data of REVOKED keys: earlier results of these keys must be removed."""
    counters: Counter[str] = field(default_factory=Counter)
    """Reasons for dropped keys and sightings (no identifiers)."""

    @property
    def matched_keys(self) -> int:
        return len(self.matches)


def half_up(value: float) -> int:
    """Round half away from zero for non-negative values (Java's Math.round for x >= 0)."""
    return math.floor(value + 0.5)


class SightingIndex:
    """The observed scans, loaded once, indexed by RPI.

    Sightings of our own RPIs are dropped here (reflection/replay of our own beacons).
    """

    def __init__(self, scans: Iterable[ObservedScan], own_rpis: frozenset[bytes] = frozenset()):
        by_rpi: dict[bytes, list[ObservedScan]] = {}
        dropped = 0
        for scan in scans:
            if scan.rpi in own_rpis:
                dropped += 1
                continue
            by_rpi.setdefault(bytes(scan.rpi), []).append(scan)
        self.by_rpi: dict[bytes, tuple[ObservedScan, ...]] = {
            rpi: tuple(sorted(found, key=lambda s: s.first_seen)) for rpi, found in by_rpi.items()
        }
        self.own_rpi_scans_dropped = dropped

    def __len__(self) -> int:
        return len(self.by_rpi)

    def __contains__(self, rpi: object) -> bool:
        return rpi in self.by_rpi

    def rpi_blob(self) -> bytes:
        """All distinct observed RPIs concatenated (16 bytes each), for the search."""
        return b"".join(self.by_rpi)

    def intervals(self) -> list[int]:
        """The distinct intervals in which a scan began, ascending (for the search)."""
        return sorted(
            {en_interval_number(s.first_seen) for scans in self.by_rpi.values() for s in scans}
        )


def match_filter(key: TemporaryExposureKey, own_keys: frozenset[bytes]) -> str | None:
    """Why a key is not matched at all (a counter name), or None to match it."""
    if key.report_type == ReportType.RECURSIVE:
        return "recursive_key_skipped"
    if key.report_type == ReportType.REVOKED:
        return "revoked_key"
    if key.key_data in own_keys:
        return "own_key_skipped"
    return None


def search_candidates(
    keys: KeySequence, index: SightingIndex, own_keys: frozenset[bytes] = frozenset()
) -> list[Candidate]:
    """Observed (key index, interval offset) pairs of the keys to match, in this thread
    (the search of :mod:`agent.matching.kernel`)."""
    rows = [i for i in range(len(keys)) if match_filter(keys[i], own_keys) is None]
    if not rows or not len(index):
        return []
    chosen = [keys[i] for i in rows]
    found = search_columns(
        b"".join(k.key_data for k in chosen),
        np.array([k.rolling_start_interval_number for k in chosen], dtype=np.int64),
        np.array([k.rolling_period for k in chosen], dtype=np.int64),
        index.rpi_blob(),
        index.intervals(),
    )
    return [(rows[row], offset) for row, offset in found]


def typical_attenuation(mean_attenuation_db: float) -> int:
    """The ScanInstance's typical attenuation: the mean, rounded half up, at least 0."""
    return max(0, half_up(mean_attenuation_db))


def evaluate_rpi(
    aemk: bytes,
    rpi: bytes,
    en_interval: int,
    scans: Sequence[ObservedScan],
    counters: Counter[str],
) -> list[MatchedScan]:
    """Apply the validity window, replay guard and TX-power check to one RPI's scans.

    ``scans`` are all observations of ``rpi``, sorted by ``first_seen``.
    """
    valid = [
        s
        for s in scans
        if abs(en_interval_number(s.first_seen) - en_interval) <= MATCH_TOLERANCE_INTERVALS
    ]
    counters["outside_time_window"] += len(scans) - len(valid)
    if not valid:
        return []
    first = valid[0].first_seen
    kept = [s for s in valid if s.first_seen - first <= REPLAY_WINDOW_SECONDS]
    counters["replay_dropped"] += len(valid) - len(kept)
    result: list[MatchedScan] = []
    for scan in kept:
        metadata = Metadata.from_bytes(crypto.decrypt_aem(aemk, rpi, scan.aem))
        if metadata.version & METADATA_MAJOR_MASK != METADATA_MAJOR_1:
            counters["aem_unknown_version"] += 1
        tx_power = metadata.tx_power_dbm
        if not TX_POWER_MIN_DBM <= tx_power <= TX_POWER_MAX_DBM:
            counters["tx_power_rejected"] += 1
            continue
        mean = tx_power - scan.rssi_mean
        result.append(
            MatchedScan(
                en_interval=en_interval,
                first_seen=scan.first_seen,
                last_seen=scan.last_seen,
                count=scan.count,
                typical_attenuation_db=typical_attenuation(mean),
                min_attenuation_db=max(0, tx_power - scan.rssi_max),
                mean_attenuation_db=mean,
                tx_power_dbm=tx_power,
                calibration_confidence=metadata.calibration_confidence,
                previous_scan_end=scan.previous_scan_end,
                scan_start=scan.scan_start,
                previous_scan_start=scan.previous_scan_start,
                relay=scan.relay,
            )
        )
    return result


@dataclass(frozen=True, slots=True)
class CandidateKey:
    """A key with the RPIs of its candidate intervals inside its rolling period."""

    key: TemporaryExposureKey
    rpis: tuple[tuple[int, bytes], ...]
    """(en_interval_number, rpi), ascending."""
    outside: int
    """Candidate offsets at or beyond the key's rolling period (counted, not matched)."""


def candidate_keys(
    keys: KeySequence, candidates: Iterable[Candidate], own_keys: frozenset[bytes] = frozenset()
) -> list[CandidateKey]:
    """The keys of ``candidates`` that may match, in key order, with their RPIs: what
    the evaluation reads the sightings of."""
    by_key: dict[int, list[int]] = {}
    for key_index, offset in candidates:
        by_key.setdefault(key_index, []).append(offset)
    found: list[CandidateKey] = []
    for key_index in sorted(by_key):
        key = keys[key_index]
        if match_filter(key, own_keys) is not None:
            continue
        rpik = crypto.derive_rpik(key.key_data)
        offsets = sorted(set(by_key[key_index]))
        inside = [key.rolling_start_interval_number + o for o in offsets if o < key.rolling_period]
        found.append(
            CandidateKey(
                key=key,
                rpis=tuple((j, crypto.rpi(rpik, j)) for j in inside),
                outside=len(offsets) - len(inside),
            )
        )
    return found


def evaluate_candidates(
    keys: KeySequence,
    candidates: Iterable[Candidate],
    index: SightingIndex,
    own_keys: frozenset[bytes] = frozenset(),
) -> MatchResult:
    """Turn candidate pairs into matches (stage 2; shared by every candidate finder).

    ``index`` needs to hold only the scans of the candidates' RPIs
    (:func:`candidate_keys`); the skipped and REVOKED keys are counted by the search.
    """
    return evaluate_candidate_keys(candidate_keys(keys, candidates, own_keys), index)


def evaluate_candidate_keys(found: Sequence[CandidateKey], index: SightingIndex) -> MatchResult:
    """:func:`evaluate_candidates` for candidates already turned into RPIs."""
    result = MatchResult()
    result.counters["own_rpi_scans_dropped"] += index.own_rpi_scans_dropped
    for candidate in found:
        key = candidate.key
        result.counters["outside_rolling_period"] += candidate.outside
        aemk = crypto.derive_aemk(key.key_data)
        matched: list[MatchedScan] = []
        for j, rpi in candidate.rpis:
            matched.extend(evaluate_rpi(aemk, rpi, j, index.by_rpi.get(rpi, ()), result.counters))
        if matched:
            matched.sort(key=lambda s: (s.first_seen, s.en_interval))
            result.matches.append(KeyMatch(key=key, scans=tuple(matched)))
    _LOGGER.debug("evaluated %d candidate keys, %d matched", len(found), len(result.matches))
    result.counters = +result.counters  # drop zero counts
    return result


def count_skipped_keys(
    keys: Iterable[TemporaryExposureKey], own_keys: frozenset[bytes], result: MatchResult
) -> None:
    """Add the REVOKED keys and the skip counters of ``keys`` to ``result``."""
    for key in keys:
        reason = match_filter(key, own_keys)
        if reason is None:
            continue
        result.counters[reason] += 1
        if reason == "revoked_key":
            result.revoked.append(key.key_data)


def match_keys(
    keys: Sequence[TemporaryExposureKey],
    index: SightingIndex,
    own_keys: frozenset[bytes] = frozenset(),
) -> MatchResult:
    """Match keys in this thread: the search, then the evaluation (for a few keys;
    :func:`agent.matching.match.fast_match` spreads the search over cores)."""
    result = evaluate_candidates(keys, search_candidates(keys, index, own_keys), index, own_keys)
    count_skipped_keys(keys, own_keys, result)
    searched = [k for k in keys if match_filter(k, own_keys) is None]
    if outside := Windows.around(index.intervals()).unreached(
        np.array([k.rolling_start_interval_number for k in searched], dtype=np.int64),
        np.array([k.rolling_period for k in searched], dtype=np.int64),
    ):
        result.counters["unsighted_key_skipped"] += outside  # no sighting's window reaches
    return result


def dedupe_keys(keys: Iterable[TemporaryExposureKey]) -> tuple[list[TemporaryExposureKey], int]:
    """One entry per key_data; a later entry (a revision) replaces an earlier one.

    Returns the unique keys in the order of their last occurrence (as
    :meth:`agent.matching.KeyArrays.dedupe`) and the number of duplicates removed
    (padding clones, the same key in several files; ``docs/bad-input-coverage.md`` case 38).
    """
    unique: dict[bytes, TemporaryExposureKey] = {}
    total = 0
    for key in keys:
        total += 1
        unique.pop(key.key_data, None)
        unique[key.key_data] = key
    return list(unique.values()), total - len(unique)
