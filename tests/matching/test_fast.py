"""The fast matcher gives exactly the reference matcher's result (``docs/performance.md``)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent import crypto
from agent.clock import en_interval_number, interval_start_seconds
from agent.constants import TEK_ROLLING_PERIOD
from agent.export.columns import KeyArrays
from agent.matching import parallel
from agent.matching.core import (
    MatchingError,
    SightingIndex,
    dedupe_keys,
    match_keys,
    search_candidates,
)
from agent.matching.kernel import Prefilter, Search
from agent.matching.match import fast_match
from agent.matching.parallel import find_candidates_parallel
from agent.models import ReportType, TemporaryExposureKey
from tests.matching.dataset import (
    make_dataset,
    observed,
    random_key,
    sighting_of,
    spec_match,
    strip_window_counters,
)

DAY_START = 2_833_344
ROOT = Path(__file__).resolve().parents[2]


BACKENDS = list(crypto.batch_backends())


# --- random data with planted matches --------------------------------------------------------

planted_sighting = st.fixed_dictionaries(
    {
        "key": st.integers(0, 39),
        "offset": st.integers(0, TEK_ROLLING_PERIOD - 1),
        "drift": st.integers(-14, 14),
        "tx": st.sampled_from([-60, -51, -50, -8, 0, 20, 21, 40]),
        "rssi": st.integers(-100, 0),
        "extra_seconds": st.sampled_from([0, 300, 1199, 1200, 1201, 2400]),
    }
)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[TemporaryExposureKey], list, frozenset[bytes]]:
    rng = random.Random(draw(st.integers(0, 2**32)))
    keys = []
    for _ in range(40):
        keys.append(
            random_key(
                rng,
                DAY_START - TEK_ROLLING_PERIOD * draw(st.integers(0, 3)),
                rolling_period=draw(st.sampled_from([1, 71, 144])),
                report_type=draw(st.sampled_from(list(ReportType))),
                days_since_onset_of_symptoms=draw(st.one_of(st.none(), st.integers(-14, 14))),
                transmission_risk_level=draw(st.integers(0, 8)),
            )
        )
    keys += draw(st.lists(st.sampled_from(keys), max_size=5))  # duplicates across "files"
    scans = [observed(rng.randbytes(16), rng.randbytes(4), 1.7e9 + i) for i in range(50)]
    for plant in draw(st.lists(planted_sighting, max_size=25)):
        key = keys[plant["key"]]
        j = key.rolling_start_interval_number + plant["offset"]
        t = interval_start_seconds(j - plant["drift"]) + 17 + plant["extra_seconds"]
        scans.append(sighting_of(key, t, interval=j, tx_power=plant["tx"], rssi=plant["rssi"]))
    own = frozenset(k.key_data for k in draw(st.lists(st.sampled_from(keys), max_size=3)))
    return keys, scans, own


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario=scenarios())
def test_fast_equals_reference(backend: str, scenario: tuple) -> None:
    """The search (which computes only the intervals that can match) against the spec's
    definition (every RPI of every key, compared plainly): the same matches."""
    keys, scans, own = scenario
    index = SightingIndex(scans)
    reference = spec_match(keys, index, own)
    fast = fast_match(keys, index, own, backend=backend, workers=1)
    assert fast.matches == reference.matches
    assert fast.revoked == reference.revoked
    assert strip_window_counters(fast.counters) == strip_window_counters(reference.counters)
    plain = match_keys(keys, index, own)
    assert (plain.matches, plain.revoked, plain.counters) == (
        fast.matches,
        fast.revoked,
        fast.counters,
    )


def test_fast_finds_exactly_the_planted_candidates() -> None:
    data = make_dataset(5000, 3000, planted=25, seed=3)
    search = Search(SightingIndex(data.scans).rpi_blob())
    found = search.find(data.keys.key_data, data.keys.rolling_start, data.keys.rolling_period)
    assert sorted(found) == data.planted
    assert len(fast_match(data.keys, SightingIndex(data.scans)).matches) == 25


@pytest.mark.parametrize("twins", [False, True])
def test_the_prefilter_confirms_exactly(twins: bool) -> None:
    """Also when two observed RPIs share their first 64 bits (the set fallback)."""
    data = make_dataset(400, 300, planted=6, seed=21)
    blob = SightingIndex(data.scans).rpi_blob()
    if twins:  # an RPI that differs from an observed one only in its last byte
        blob += blob[:15] + bytes([blob[15] ^ 1])
    prefilter = Prefilter(blob)
    assert (prefilter._exact is not None) == twins
    search = Search(blob)
    search.prefilter = prefilter
    found = search.find(data.keys.key_data, data.keys.rolling_start, data.keys.rolling_period)
    assert sorted(found) == data.planted
    rpis = np.frombuffer(blob, dtype="<u8")
    assert prefilter.confirm(rpis[0::2], rpis[1::2]).all()
    assert not prefilter.confirm(rpis[0::2] ^ np.uint64(1), rpis[1::2]).any()
    assert not Prefilter(b"").confirm(rpis[0::2], rpis[1::2]).any()


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_worker_processes_give_the_same_candidates(backend: str) -> None:
    data = make_dataset(3000, 2000, planted=12, seed=5)
    blob = SightingIndex(data.scans).rpi_blob()
    seen: list[int] = []
    found = find_candidates_parallel(
        data.keys, blob, workers=2, task_keys=700, progress=seen.append, backend=backend
    )
    assert sorted(found) == data.planted
    assert seen == [700, 1400, 2100, 2800, 3000]


def test_a_dead_worker_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    data = make_dataset(300, 10, planted=1, seed=5)
    blob = SightingIndex(data.scans).rpi_blob()
    monkeypatch.setattr(parallel, "_BOOT", "import os; os._exit(3)")  # dies on start
    with pytest.raises(MatchingError, match="worker process died"):
        find_candidates_parallel(data.keys, blob, workers=2, task_keys=100, backend="pure")


@pytest.mark.slow
def test_a_worker_killed_mid_run_is_a_clear_error() -> None:
    data = make_dataset(300, 10, planted=1, seed=5)
    worker = parallel.WorkerProcess(SightingIndex(data.scans).rpi_blob(), None, "pure")
    try:
        os.kill(worker.pid, signal.SIGKILL)
        with pytest.raises(MatchingError, match="worker process died"):
            worker.find(data.keys.key_data, data.keys.rolling_start, data.keys.rolling_period, 0)
    finally:
        worker.close()


@pytest.mark.slow
def test_a_failed_request_is_reported_and_the_worker_goes_on() -> None:
    data = make_dataset(300, 10, planted=1, seed=5)
    worker = parallel.WorkerProcess(SightingIndex(data.scans).rpi_blob(), None, "pure")
    try:
        with pytest.raises(MatchingError, match="a matching worker failed: ValueError"):
            worker._call((b"", b"abc", b"", 0))  # 3 bytes of int32 starts: refused
        keys = data.keys
        found = worker.find(keys.key_data, keys.rolling_start, keys.rolling_period, 0)
        assert sorted(found) == data.planted
    finally:
        worker.close()


def test_an_unknown_backend_fails_before_any_work() -> None:
    data = make_dataset(300, 10, planted=1, seed=5)
    blob = SightingIndex(data.scans).rpi_blob()
    with pytest.raises(ValueError, match="unknown crypto backend 'rot13'"):
        find_candidates_parallel(data.keys, blob, workers=2, task_keys=100, backend="rot13")


@pytest.mark.slow
def test_a_worker_process_loads_only_the_search() -> None:
    """What keeps a worker small: no protobuf, aiohttp or the rest of the agent (only
    the crypto seam, with cryptography's ciphers for the pure backend)."""
    code = "import sys, agent.matching.worker; print(' '.join(sorted(sys.modules)))"
    modules = subprocess.run(
        [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(ROOT)!r}); {code}"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    assert "numpy" in modules
    heavy = [m for m in modules if m.split(".")[0] in ("google", "aiohttp", "click")]
    assert heavy == []
    assert not [
        m
        for m in modules
        if m.startswith("agent.")
        and m.split(".")[1] in ("export", "models", "cli", "daemon", "store")
    ]
    assert sorted(m for m in modules if m.startswith("agent.matching.")) == [
        "agent.matching.kernel",
        "agent.matching.worker",
    ]


def test_search_candidates_find_the_planted_ones() -> None:
    data = make_dataset(400, 500, planted=10, seed=9)
    keys = [data.keys[i] for i in range(len(data.keys))]
    index = SightingIndex(data.scans)
    assert sorted(search_candidates(keys, index)) == data.planted


# --- flat key arrays ---------------------------------------------------------------------------


def test_key_arrays_round_trip_and_dedupe() -> None:
    rng = random.Random(1)
    a = random_key(rng, DAY_START, days_since_onset_of_symptoms=-3, transmission_risk_level=5)
    b = random_key(rng, DAY_START, rolling_period=12, report_type=ReportType.SELF_REPORT)
    a_revoked = TemporaryExposureKey(a.key_data, DAY_START, report_type=ReportType.REVOKED)
    arrays = KeyArrays.from_keys([a, b, a_revoked, b])
    assert [arrays[i] for i in range(len(arrays))] == [a, b, a_revoked, b]
    unique, removed = arrays.dedupe()
    assert [unique[i] for i in range(len(unique))] == [a_revoked, b]
    assert dedupe_keys([a, b, a_revoked, b]) == ([a_revoked, b], 2)
    assert removed == 2
    assert len(KeyArrays.concat([unique, KeyArrays.from_keys([a])])) == 3
    picked = arrays.select(np.array([False, True, False, False]))
    assert [picked[i] for i in range(len(picked))] == [b]


def test_no_sightings_means_no_crypto_and_no_match() -> None:
    data = make_dataset(100, 0, planted=0)
    result = fast_match(data.keys, SightingIndex([]))
    assert result.matched_keys == 0


def test_time_of_a_planted_dataset_match_is_inside_the_key_day() -> None:
    data = make_dataset(50, 10, planted=5, seed=2)
    result = fast_match(data.keys, SightingIndex(data.scans))
    for match in result.matches:
        start = match.key.rolling_start_interval_number
        for scan in match.scans:
            assert start <= en_interval_number(scan.first_seen) < start + TEK_ROLLING_PERIOD
