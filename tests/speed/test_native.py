"""The native kernel finds exactly what the pure kernels and the reference find."""

from __future__ import annotations

import contextlib
import os
import random
import stat
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent import crypto, native
from agent.constants import TEK_ROLLING_PERIOD
from agent.matching import SightingIndex, match_keys, reference_candidates
from agent.matching_fast.finder import (
    NativeFinder,
    PythonFinder,
    backend_choice,
    candidate_finder,
)
from agent.matching_fast.kernel import ecb_backend
from agent.matching_fast.keys import KeyArrays
from agent.matching_fast.match import fast_match
from agent.matching_fast.parallel import find_candidates_parallel
from agent.models import ReportType, TemporaryExposureKey
from tests.matching.dataset import make_dataset, observed, random_key, sighting_of
from tests.vectors import en_v1_2

PURE = ["public", "ctypes"]


def _pure_finders(blob: bytes) -> list[PythonFinder]:
    finders = [PythonFinder(blob, ecb_backend("public"))]
    with contextlib.suppress(OSError):  # without a system libcrypto, public is the pure path
        finders.append(PythonFinder(blob, ecb_backend("ctypes")))
    return finders


def test_native_reproduces_the_official_vector(kernel: native.NativeKernel) -> None:
    rpik, rpis = kernel.rpis(bytes.fromhex(en_v1_2.TEK), en_v1_2.START_INTERVAL)
    assert rpik.hex() == en_v1_2.RPIK
    got = [rpis[16 * i : 16 * (i + 1)].hex() for i in range(TEK_ROLLING_PERIOD)]
    assert got == [rpi for _, rpi, _ in en_v1_2.ADVERTISED]


@settings(max_examples=60, deadline=None)
@given(st.binary(min_size=16, max_size=16), st.integers(0, 2**31 - 1))
def test_native_rpis_equal_the_spec_functions(tek: bytes, start: int) -> None:
    kernel = native.load()
    if kernel is None:
        pytest.skip("no native accelerator on this machine")
    rpik, rpis = kernel.rpis(tek, start)
    assert rpik == crypto.derive_rpik(tek)
    assert rpis == b"".join(crypto.rpis(rpik, start, TEK_ROLLING_PERIOD))


def test_native_pure_and_reference_agree_on_planted_data(kernel: native.NativeKernel) -> None:
    data = make_dataset(6000, 4000, planted=40, seed=21)
    blob = SightingIndex(data.scans).rpi_blob()
    native_found = NativeFinder(blob, kernel).find(data.keys.key_data, data.keys.rolling_start, 0)
    assert sorted(native_found) == data.planted
    for finder in _pure_finders(blob):
        pure = finder.find(data.keys.key_data, data.keys.rolling_start, 0)
        assert sorted(pure) == sorted(native_found), finder.name
    sample = [data.keys[i] for i in range(0, len(data.keys), 7)]  # the reference is slow
    index = SightingIndex(data.scans)
    expected = sorted((7 * i, j) for i, j in reference_candidates(sample, index))
    assert sorted(c for c in native_found if c[0] % 7 == 0) == expected


@st.composite
def crowded(draw: st.DrawFn) -> tuple[KeyArrays, bytes]:
    """Keys whose RPIs are observed at random offsets, often many per key, plus noise."""
    rng = random.Random(draw(st.integers(0, 2**32)))
    starts = [draw(st.sampled_from([0, 144, 2_833_200, 2**31 - 145])) for _ in range(30)]
    keys = KeyArrays.from_keys(
        [random_key(rng, s, rolling_period=draw(st.integers(1, 144))) for s in starts]
    )
    observed_rpis = [rng.randbytes(16) for _ in range(draw(st.integers(0, 50)))]
    for i in draw(st.lists(st.integers(0, 29), max_size=12)):
        key = keys[i]
        rpik = crypto.derive_rpik(key.key_data)
        offsets = draw(st.sets(st.integers(0, 143), min_size=1, max_size=144))
        observed_rpis += [crypto.rpi(rpik, key.rolling_start_interval_number + j) for j in offsets]
    return keys, b"".join(dict.fromkeys(observed_rpis))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(crowded())
def test_native_equals_pure_on_random_tables(case: tuple[KeyArrays, bytes]) -> None:
    """Including keys with all 144 RPIs seen (more pairs than one call's output holds)."""
    kernel = native.load()
    if kernel is None:
        pytest.skip("no native accelerator on this machine")
    keys, blob = case
    found = NativeFinder(blob, kernel).find(keys.key_data, keys.rolling_start, 5)
    for finder in _pure_finders(blob):
        assert sorted(found) == sorted(finder.find(keys.key_data, keys.rolling_start, 5))


def test_output_larger_than_one_call_is_complete(kernel: native.NativeKernel) -> None:
    keys = KeyArrays.from_keys(
        [TemporaryExposureKey(os.urandom(16), 2_833_344 - 144 * (i % 3)) for i in range(80)]
    )
    blob = b"".join(
        rpi
        for i in range(len(keys))
        for rpi in crypto.rpis(
            crypto.derive_rpik(keys[i].key_data), keys[i].rolling_start_interval_number
        )
    )
    found = NativeFinder(blob, kernel).find(keys.key_data, keys.rolling_start, 0)
    assert len(found) == 80 * TEK_ROLLING_PERIOD > native.OUTPUT_SLOTS
    assert sorted(found) == [(i, j) for i in range(80) for j in range(TEK_ROLLING_PERIOD)]


def test_empty_inputs(kernel: native.NativeKernel) -> None:
    none = KeyArrays.from_keys([])
    table = kernel.table(b"")
    assert kernel.find(table, b"", none.rolling_start) == []
    one = KeyArrays.from_keys([TemporaryExposureKey(os.urandom(16), 2_833_344)])
    assert kernel.find(table, one.key_data, one.rolling_start) == []
    with pytest.raises(ValueError, match="16 bytes per rolling start"):
        kernel.find(table, one.key_data[:15], one.rolling_start)


def test_threads_give_the_same_candidates(kernel: native.NativeKernel) -> None:
    data = make_dataset(3000, 2000, planted=12, seed=8)
    blob = SightingIndex(data.scans).rpi_blob()
    seen: list[int] = []
    found = find_candidates_parallel(
        data.keys, blob, workers=2, backend="native", task_keys=700, progress=seen.append
    )
    assert sorted(found) == data.planted
    assert seen == [700, 1400, 2100, 2800, 3000]


@pytest.mark.parametrize("backend", ["native", *PURE])
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32), drifts=st.lists(st.integers(-14, 14), max_size=8))
def test_fast_match_equals_the_reference(backend: str, seed: int, drifts: list[int]) -> None:
    """Whole results (matches, revoked keys, counters) for every backend."""
    if backend == "native" and native.load() is None:
        pytest.skip("no native accelerator on this machine")
    rng = random.Random(seed)
    day = 2_833_344
    keys = [
        random_key(
            rng,
            day - TEK_ROLLING_PERIOD * rng.randint(0, 2),
            rolling_period=rng.choice([1, 70, 144]),
            report_type=rng.choice(list(ReportType)),
        )
        for _ in range(30)
    ]
    scans = [observed(rng.randbytes(16), rng.randbytes(4), 1.7e9 + i) for i in range(40)]
    for drift in drifts:
        key = rng.choice(keys)
        j = key.rolling_start_interval_number + rng.randint(0, 143)
        scans.append(sighting_of(key, (j - drift) * 600 + 30.0, interval=j))
    index = SightingIndex(scans)
    own = frozenset({keys[0].key_data})
    fast = fast_match(keys, index, own, backend=backend, workers=2)
    reference = match_keys(keys, index, own)
    assert (fast.matches, fast.revoked, fast.counters) == (
        reference.matches,
        reference.revoked,
        reference.counters,
    )


def test_skipping_unsighted_keys_keeps_every_match() -> None:
    """Sightings on 3 of 14 days: most keys need no crypto at all, the matches are the
    same; only a replay days after a skipped key's day is no longer counted."""
    data = make_dataset(4000, 0, planted=3, seed=4, days=14)
    sighted_days = {data.keys[i].rolling_start_interval_number for i, _ in data.planted}
    victim = next(
        data.keys[i]
        for i in range(len(data.keys))
        if data.keys[i].rolling_start_interval_number not in sighted_days
    )
    j = victim.rolling_start_interval_number + 60
    replay = sighting_of(victim, (j + 3 * TEK_ROLLING_PERIOD) * 600.0, interval=j)
    index = SightingIndex([*data.scans, replay])
    full = fast_match(data.keys, index)
    lean = fast_match(data.keys, index, skip_unsighted=True)
    assert lean.matches == full.matches and len(full.matches) == 3
    assert full.counters["outside_time_window"] == 1
    assert "outside_time_window" not in lean.counters
    assert lean.counters["unsighted_key_skipped"] > len(data.keys) // 2


def test_backend_names() -> None:
    assert backend_choice("NATIVE") == "native"
    with pytest.raises(ValueError, match="unknown AES backend"):
        backend_choice("rot13")
    assert candidate_finder(b"", "public").name == "public"


def test_native_can_be_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(native.NATIVE_ENV, "0")
    assert not native.enabled()
    monkeypatch.setenv(native.NATIVE_ENV, "1")
    assert native.enabled()


def test_a_cache_others_may_write_is_not_used(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    assert native.build(shared) is None
    assert not list(shared.iterdir())


def test_build_is_cached_and_private(native_cache: Path, kernel: native.NativeKernel) -> None:
    built = native.build(native_cache)
    assert built == kernel.path  # the second call finds the first build
    mode = built.stat().st_mode
    assert not mode & (stat.S_IWGRP | stat.S_IWOTH | stat.S_IRWXO)
    assert [p.name for p in native_cache.iterdir()] == [built.name]  # no scratch left over


def test_planted_rows_survive_native_on_numpy_views(kernel: native.NativeKernel) -> None:
    """Rolling starts as a strided view (not contiguous) are handled."""
    data = make_dataset(500, 300, planted=5, seed=2)
    blob = SightingIndex(data.scans).rpi_blob()
    doubled = np.repeat(data.keys.rolling_start, 2)[::2]
    found = kernel.find(kernel.table(blob), data.keys.key_data, doubled)
    assert sorted(found) == data.planted


def test_cache_dir_follows_the_service_layout(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A systemd service cannot write its home: its cache or data directory is used."""
    for name in (native.CACHE_ENV, "CACHE_DIRECTORY", "INVOCATION_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert native.cache_dir() == tmp_path / "xdg" / "contact-agent" / "native"
    monkeypatch.setenv("INVOCATION_ID", "0123")
    monkeypatch.setenv("CONTACT_AGENT_DATA_DIR", str(tmp_path / "state"))
    assert native.cache_dir() == tmp_path / "state" / "native"
    monkeypatch.setenv("CACHE_DIRECTORY", "/var/cache/contact-agent")
    assert native.cache_dir() == Path("/var/cache/contact-agent/native")
    monkeypatch.setenv(native.CACHE_ENV, str(tmp_path / "mine"))
    assert native.cache_dir() == tmp_path / "mine"


def test_without_a_compiler_the_pure_path_is_used(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # no cc, gcc or clang on it
    monkeypatch.setenv(native.CACHE_ENV, str(tmp_path / "cache"))
    assert native.build() is None
    assert native._load() is None
    data = make_dataset(300, 200, planted=4, seed=6)
    blob = SightingIndex(data.scans).rpi_blob()
    finder = candidate_finder(blob, "public")  # the path that needs nothing but Python
    assert finder.name == "public"
    assert sorted(finder.find(data.keys.key_data, data.keys.rolling_start, 0)) == data.planted
