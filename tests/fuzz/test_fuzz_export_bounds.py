"""The export fuzzing of tests/export/test_fuzz.py (ZIP reader, export.bin parser,
signature check) again, with the per-example bounds of F12 it does not check: CPU time
and memory of every example, plus decompression bombs and huge key counts, which must be
refused before they cost memory.
"""

from __future__ import annotations

import io
import resource
import zipfile

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.constants import EXPORT_HEADER
from agent.errors import ExportFileError
from agent.export import (
    build_export_sig,
    read_verified_export,
    read_verified_export_arrays,
    zip_entries,
)
from tests.export.test_bad_input import _raw_export
from tests.export.test_fuzz import BIN, DECLARED, GOOD, KEY, SIG, STORED, _all_readers, mutated
from tests.export.test_fuzz import RING as RING
from tests.fuzz.bounds import FUZZ, bounded

MAX_RSS_GROWTH = 100 * 1024 * 1024
"""F12 asks for RSS < 200 MB; protobuf's C allocations escape tracemalloc, so the
process's peak resident size is checked too (its growth over each test)."""


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


_baseline = [0]


@pytest.fixture(autouse=True)
def _rss_baseline() -> None:
    """The peak is a high-water mark of the whole pytest process: earlier tests (other
    modules) may have raised it, so each test measures from where it starts."""
    _baseline[0] = _peak_rss()


def check(data: bytes) -> None:
    bounded(lambda: _all_readers(data), DECLARED)
    assert _peak_rss() - _baseline[0] < MAX_RSS_GROWTH


@pytest.mark.slow
@FUZZ
@given(st.one_of(mutated(GOOD), mutated(STORED), st.binary(max_size=4096)))
def test_zip_reader_within_bounds(data: bytes) -> None:
    check(data)


@pytest.mark.slow
@FUZZ
@given(st.one_of(mutated(BIN[16:]), st.binary(max_size=1024)))
def test_signed_protobuf_within_bounds(payload: bytes) -> None:
    export_bin = EXPORT_HEADER + payload
    check(zip_entries([("export.bin", export_bin), ("export.sig", SIG)]))
    signed = build_export_sig(export_bin, [(KEY, "310", "v1")])
    check(zip_entries([("export.bin", export_bin), ("export.sig", signed)]))


@pytest.mark.slow
@FUZZ
@given(st.one_of(mutated(SIG), st.binary(max_size=512)))
def test_signature_check_within_bounds(export_sig: bytes) -> None:
    check(zip_entries([("export.bin", BIN), ("export.sig", export_sig)]))


def bomb(size: int) -> bytes:
    """A ZIP whose export.bin inflates to ``size`` zero bytes, built without holding them."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        with archive.open("export.bin", "w") as entry:
            entry.write(EXPORT_HEADER)
            for _ in range(size // CHUNK):
                entry.write(ZEROS)
        archive.writestr("export.sig", SIG)
    return out.getvalue()


CHUNK = 1 << 20
ZEROS = bytes(CHUNK)


@pytest.mark.slow
def test_decompression_bombs_are_refused_before_they_cost_memory() -> None:
    for size in (20 * CHUNK, 200 * CHUNK):  # inflate to 20 MB and 200 MB
        data = bomb(size)
        for reader in (read_verified_export, read_verified_export_arrays):
            outcome = bounded(lambda r=reader, d=data: r(d, RING), DECLARED)  # type: ignore[misc]
            assert isinstance(outcome.error, ExportFileError)
            assert "zip bomb" in str(outcome.error) or "over the cap" in str(outcome.error)
        assert _peak_rss() - _baseline[0] < MAX_RSS_GROWTH


def test_a_file_over_the_key_cap_is_refused_before_its_keys_are_built() -> None:
    """Bad input 32: a signed file claiming 2.1 million keys."""
    head = _raw_export().SerializeToString()  # region, batch 1/1, the 310-v1 info
    key = b"\x0a\x10" + bytes(16) + b"\x20\x90\x01"  # key_data, rolling_period 144
    export_bin = EXPORT_HEADER + head + (b"\x3a" + bytes([len(key)]) + key) * 2_100_000
    signed = build_export_sig(export_bin, [(KEY, "310", "v1")])
    data = zip_entries(
        [("export.bin", export_bin), ("export.sig", signed)], compression=zipfile.ZIP_STORED
    )
    del export_bin
    outcome = bounded(
        lambda: read_verified_export_arrays(data, RING), DECLARED, peak_bytes=128 << 20
    )
    assert isinstance(outcome.error, ExportFileError)
    assert "over the cap of 2000000" in str(outcome.error)
