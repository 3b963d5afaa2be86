"""The one candidate search: only the intervals that can match, exactly the spec's pairs."""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent import crypto
from agent.constants import MATCH_TOLERANCE_INTERVALS, TEK_ROLLING_PERIOD
from agent.export.columns import KeyArrays
from agent.matching.core import SightingIndex
from agent.matching.kernel import CHUNK_BLOCKS, Prefilter, Search, Windows, plan
from agent.models import TemporaryExposureKey
from tests.matching.dataset import random_key, sighting_of

BACKENDS = list(crypto.batch_backends())
DAY = 2_833_344


def _wanted(start: int, period: int, sighted: list[int]) -> set[int]:
    """The definition: intervals of the period within 12 of a sighting."""
    return {
        j
        for j in range(start, start + period)
        if any(abs(j - s) <= MATCH_TOLERANCE_INTERVALS for s in sighted)
    }


@settings(max_examples=200, deadline=None)
@given(
    sighted=st.lists(st.integers(DAY - 200, DAY + 500), max_size=12),
    keys=st.lists(
        st.tuples(st.sampled_from([DAY - 144, DAY, DAY + 144, DAY + 7]), st.integers(1, 144)),
        max_size=10,
    ),
)
def test_plan_covers_exactly_the_intervals_that_can_match(
    sighted: list[int], keys: list[tuple[int, int]]
) -> None:
    work = plan(
        np.array([s for s, _ in keys], dtype=np.int32),
        np.array([p for _, p in keys], dtype=np.int32),
        Windows.around(sighted),
    )
    assert all(work.counts >= 1)
    got: dict[int, list[int]] = {}
    for row, first, count in zip(work.rows, work.firsts, work.counts, strict=True):
        got.setdefault(int(row), []).extend(range(int(first), int(first) + int(count)))
    for i, (start, period) in enumerate(keys):
        intervals = got.get(i, [])
        assert len(intervals) == len(set(intervals))  # nothing computed twice
        assert set(intervals) == _wanted(start, period, sighted)


@st.composite
def crowded(draw: st.DrawFn) -> tuple[list[TemporaryExposureKey], SightingIndex]:
    """Keys whose RPIs are seen at random offsets and times (often many per key, some far
    outside their window), plus noise."""
    rng = random.Random(draw(st.integers(0, 2**32)))
    keys = [
        random_key(
            rng,
            draw(st.sampled_from([DAY - 144, DAY, DAY + 144])),
            rolling_period=draw(st.integers(1, 144)),
        )
        for _ in range(draw(st.integers(0, 25)))
    ]
    scans = [sighting_of(keys[0], DAY * 600.0)] if keys else []
    for _ in range(draw(st.integers(0, 40))):
        if not keys:
            break
        key = rng.choice(keys)
        j = key.rolling_start_interval_number + rng.randint(0, 143)
        drift = draw(st.sampled_from([0, 5, 12, 13, -13, 200]))
        scans.append(sighting_of(key, (j + drift) * 600.0 + 3, interval=j))
    return keys, SightingIndex(scans)


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(crowded())
def test_search_equals_the_spec_definition(
    backend: str, case: tuple[list[TemporaryExposureKey], SightingIndex]
) -> None:
    """Every (key, offset) whose RPI was observed and whose interval lies in the period
    and within 12 of a sighting: computed plainly for all 144, then filtered."""
    keys, index = case
    arrays = KeyArrays.from_keys(keys)
    sighted = index.intervals()
    expected = sorted(
        (i, offset)
        for i, key in enumerate(keys)
        for offset, rpi in enumerate(
            crypto.rpis(crypto.derive_rpik(key.key_data), key.rolling_start_interval_number)
        )
        if rpi in index.by_rpi
        and key.rolling_start_interval_number + offset
        in _wanted(key.rolling_start_interval_number, key.rolling_period, sighted)
    )
    search = Search(index.rpi_blob(), Windows.around(sighted), backend)
    found = search.find(arrays.key_data, arrays.rolling_start, arrays.rolling_period, 0)
    assert sorted(found) == expected
    everything = Search(index.rpi_blob(), None, backend)
    all_found = everything.find(arrays.key_data, arrays.rolling_start, arrays.rolling_period, 3)
    assert set(expected) <= {(i - 3, j) for i, j in all_found}


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_more_rpis_than_one_buffer_are_all_found(backend: str) -> None:
    """Every RPI of 1100 keys observed: over 150k hits, across buffer chunks."""
    rng = random.Random(3)
    keys = [random_key(rng, DAY - 144 * (i % 3)) for i in range(1100)]
    blob = b"".join(
        rpi
        for key in keys
        for rpi in crypto.rpis(crypto.derive_rpik(key.key_data), key.rolling_start_interval_number)
    )
    arrays = KeyArrays.from_keys(keys)
    assert len(blob) // 16 > CHUNK_BLOCKS
    found = Search(blob, None, backend).find(
        arrays.key_data, arrays.rolling_start, arrays.rolling_period
    )
    assert sorted(found) == [(i, j) for i in range(1100) for j in range(TEK_ROLLING_PERIOD)]


def test_a_sparse_device_computes_a_fraction_of_the_blocks() -> None:
    """Sightings on 3 of 14 days, 4 hours a day: about a tenth of 144 blocks per key."""
    starts = np.repeat(DAY - 144 * np.arange(14), 1000).astype(np.int32)
    periods = np.full(len(starts), 144, dtype=np.int32)
    sighted = [
        DAY - 144 * day + 54 + hour_interval  # 09:00 to 13:00
        for day in (1, 5, 9)
        for hour_interval in range(24)
    ]
    work = plan(starts, periods, Windows.around(sighted))
    per_key = work.blocks / len(starts)
    assert per_key == pytest.approx(3 * (24 + 2 * 12) / 14)  # ~10.3 instead of 144
    assert set(np.unique(starts[work.rows])) == {DAY - 144 * d for d in (1, 5, 9)}


def test_no_sighting_no_crypto() -> None:
    search = Search(b"", Windows.around([]))
    assert search.find(bytes(16), np.array([DAY]), np.array([144])) == []
    search = Search(bytes(16), Windows.around([]))
    assert search.find(bytes(16), np.array([DAY]), np.array([144])) == []
    assert search.blocks == 0


def _near_misses(rpi: bytes, salt: int) -> list[bytes]:
    """RPIs a hostile broadcaster could craft next to a real one: the same first 8 bytes
    (equal high halves: one bucket, a scan over equals; and the Bloom filter's bits and
    word), the same first 4 (the Bloom filter's bits) and the same top bits of the high
    half."""
    tail = salt.to_bytes(8, "little")
    return [rpi[:8] + tail, rpi[:4] + tail + rpi[12:], tail[:6] + rpi[6:]]


@pytest.mark.skipif("native" not in BACKENDS, reason="the native backend was not built")
@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.binary(min_size=16, max_size=16), st.integers(0, 2**32 - 400)),
        min_size=1,
        max_size=6,
    ),
    st.lists(st.integers(0, 6 * 300 - 1), max_size=40),
    st.lists(st.integers(0, 2**64 - 1), max_size=40),
    st.integers(0, 300),
)
def test_the_fused_native_check_equals_rpis_into_and_the_numpy_check(
    rows: list[tuple[bytes, int]], picks: list[int], salts: list[int], count: int
) -> None:
    """agent._gaen's rpis_match finds exactly the RPIs of rpis_into's output that are in
    the observed set, with observed sets built to stress the check: real RPIs, repeats,
    and near misses sharing 4, 6 or 8 bytes with real ones."""
    _, rpis_into = crypto.batch_backend("native")
    match = crypto.batch_match("native")
    assert match is not None
    teks = b"".join(tek for tek, _ in rows)
    firsts = np.array([first for _, first in rows], dtype=np.uint32)
    counts = np.full(len(rows), count, dtype=np.uint32)
    out = bytearray(16 * count * len(rows))
    rpis_into(teks, firsts.data, counts.data, out)
    computed = [bytes(out[i : i + 16]) for i in range(0, len(out), 16)]
    chosen = [computed[p % len(computed)] for p in picks] if computed else []
    observed = chosen + chosen[:3]  # repeats
    for rpi, salt in zip(chosen, salts, strict=False):
        observed += _near_misses(rpi, salt)
    observed += [salt.to_bytes(8, "little") * 2 for salt in salts]
    prefilter = Prefilter(b"".join(observed))
    hits = np.empty(max(1, len(computed)), dtype=np.int64)
    found = match(
        teks,
        firsts.data,
        counts.data,
        prefilter.bloom.data,
        prefilter.bloom_shift,
        prefilter.high.data,
        prefilter.low.data,
        prefilter.buckets.data,
        hits.data,
    )
    wanted = set(observed)
    assert hits[:found].tolist() == [i for i, rpi in enumerate(computed) if rpi in wanted]


@pytest.mark.skipif("native" not in BACKENDS, reason="the native backend was not built")
def test_the_fused_native_check_refuses_wrong_sizes() -> None:
    match = crypto.batch_match("native")
    assert match is not None
    prefilter = Prefilter(bytes(range(16)))
    one = np.array([1], dtype=np.uint32).data
    args = [
        bytes(16), one, one, prefilter.bloom.data, prefilter.bloom_shift,
        prefilter.high.data, prefilter.low.data, prefilter.buckets.data, bytearray(8),
    ]  # fmt: skip
    assert match(*args) in (0, 1)
    for position, wrong in ((0, bytes(15)), (5, bytes(16)), (7, bytes(16)), (8, bytearray(7))):
        with pytest.raises(ValueError):
            match(*args[:position], wrong, *args[position + 1 :])
    with pytest.raises(ValueError):
        match(*args[:4], 40, *args[5:])
