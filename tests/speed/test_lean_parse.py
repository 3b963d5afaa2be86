"""The memory-lean export parse gives exactly what the full protobuf parse gives."""

from __future__ import annotations

import json
import os
import random
import struct
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.constants import EXPORT_HEADER
from agent.export import (
    KeyArrays,
    generate_signing_key,
    groups,
    read_export_keys,
    read_verified_export_arrays,
)
from agent.export.arrays import _full_parse, _lean_parse, validate_columns
from agent.export.fastparse import split_export
from agent.export.validation import validate_arrays
from agent.matching.core import dedupe_keys
from agent.models import ReportType, TemporaryExposureKey
from tests.export.factory import NOW_INTERVAL, TODAY, make_keys, ring_for, signed_export
from tests.export.test_fastparse import _columns_equal

ROOT = Path(__file__).resolve().parents[2]
KEY = generate_signing_key()
RING = ring_for(KEY)


def _varint(value: int) -> bytes:
    v = value & (2**64 - 1)
    out = bytearray()
    while True:
        byte, v = v & 0x7F, v >> 7
        out.append(byte | (0x80 if v else 0))
        if not v:
            return bytes(out)


def _field(number: int, wire: int, body: bytes) -> bytes:
    return _varint(number << 3 | wire) + body


def _bytes_field(number: int, data: bytes) -> bytes:
    return _field(number, 2, _varint(len(data)) + data)


@st.composite
def key_records(draw: st.DrawFn, field: int = 7) -> bytes:
    """One ``keys`` (or, field 8, ``revised_keys``) record: key_data and any subset of
    the other fields, in any order."""
    fields = [_bytes_field(1, os.urandom(draw(st.sampled_from([16, 16, 16, 0, 15]))))]
    for number in draw(st.sets(st.sampled_from([2, 3, 4, 5, 6]))):
        value = draw(st.integers(-(2**31), 2**31 - 1))
        if number == 3:
            value = draw(st.sampled_from([TODAY, TODAY - 144, -5, 2**31 - 1]))
        elif number == 4:
            value = draw(st.integers(-1, 200))
        elif number == 6:
            value = ((value << 1) ^ (value >> 31)) & 0xFFFFFFFF  # zigzag
        fields.append(_field(number, 0, _varint(value)))
    order = draw(st.permutations(fields))
    return _bytes_field(field, b"".join(order))


@st.composite
def payloads(draw: st.DrawFn) -> bytes:
    """export.bin payloads: header fields, keys and revised keys in any interleaving,
    records of several shapes (so several runs), unknown fields."""
    shape = draw(st.lists(key_records(), min_size=1, max_size=4))
    records = [draw(st.sampled_from(shape)) for _ in range(draw(st.integers(0, 60)))]
    parts = [
        _field(1, 1, struct.pack("<Q", 1)),
        _field(2, 1, struct.pack("<Q", 2)),
        _bytes_field(3, b"ZZ"),
        _field(4, 0, b"\x01"),
        _field(5, 0, b"\x01"),
        _bytes_field(6, _bytes_field(3, b"v1") + _bytes_field(4, b"310")),
        _field(9, 0, _varint(draw(st.integers(0, 2**40)))),  # unknown varint
        _bytes_field(10, os.urandom(draw(st.integers(0, 40)))),  # unknown bytes
        _field(11, 5, b"\x00\x00\x00\x00"),  # unknown fixed32
    ]
    mixed = parts + draw(st.lists(key_records(8), max_size=3))
    rng = random.Random(draw(st.integers(0, 2**32)))
    for record in records:  # keys keep their order; other fields land between them
        mixed.append(record)
        if rng.random() < 0.1:
            mixed.append(mixed.pop(rng.randrange(len(parts))))
    return EXPORT_HEADER + b"".join(mixed)


def _nothing(message: object) -> None:
    del message


@pytest.mark.slow
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payloads())
def test_lean_parse_equals_the_full_parse(export_bin: bytes) -> None:
    full_message, full_columns, full_revised, full_dropped = _full_parse(export_bin, _nothing)
    lean = _lean_parse(export_bin, _nothing)
    if lean is None:  # declined: the caller uses the full parse, so nothing can differ
        return
    message, columns, revised, dropped = lean
    _columns_equal(columns, full_columns)
    _columns_equal(revised, full_revised)  # regular revised records: decoded flat
    assert dropped == full_dropped  # keys' and revised keys' parse drops, together
    for cleared in (full_message, message):
        cleared.ClearField("keys")
        cleared.ClearField("revised_keys")
    assert message == full_message  # every header field, unknown fields aside


def test_server_exports_take_the_lean_path() -> None:
    data = signed_export(make_keys(3000), KEY, revised_keys=make_keys(5))
    arrays_ = read_verified_export_arrays(data, RING, now_interval=NOW_INTERVAL)
    import io
    import zipfile

    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        export_bin = archive.read("export.bin")
    split = split_export(export_bin[len(EXPORT_HEADER) :])
    assert split is not None and split.key_count == 3000 and len(split.runs) == 1
    lean = _lean_parse(export_bin, _nothing)
    assert lean is not None
    assert len(arrays_) == 3000 and len(arrays_.revised_keys) == 5


def test_irregular_layouts_are_declined() -> None:
    group = _field(12, 3, b"") + _field(12, 4, b"")  # an unknown group: protobuf skips it
    long_tag = b"\xba\x00" + _varint(2) + b"\x0a\x00"  # field 7 with a 2-byte tag
    truncated = _bytes_field(3, b"ZZ")[:-1]
    for payload in (group, long_tag, truncated):
        assert split_export(payload) is None


@pytest.mark.parametrize("rows", [10, 300])
def test_grouped_validation_equals_validate_arrays(
    monkeypatch: pytest.MonkeyPatch, rows: int
) -> None:
    monkeypatch.setattr(groups, "GROUP_ROWS", 16)
    rng = np.random.default_rng(rows)
    keys = rng.integers(0, 256, (rows, 16), dtype=np.uint8)
    keys[rows // 2 :] = keys[: rows - rows // 2]  # every second half a duplicate ...
    starts = rng.choice([TODAY, TODAY - 144, TODAY + 144], rows).astype(np.int32)
    dso = rng.integers(-16, 17, rows).astype(np.int32)  # ... some also bad otherwise
    has = rng.random(rows) < 0.5
    columns = KeyArrays(
        key_data=keys.tobytes(),
        rolling_start=starts,
        rolling_period=np.full(rows, 144, dtype=np.int32),
        transmission_risk=np.zeros(rows, dtype=np.int32),
        report_type=np.zeros(rows, dtype=np.int32),
        days_since_onset=dso,
        has_days_since_onset=has,
    )
    dropped: Counter[str] = Counter()
    valid = validate_columns(columns, NOW_INTERVAL, dropped)
    expected, reasons = validate_arrays(keys.tobytes(), starts, dso, has, NOW_INTERVAL)
    assert np.array_equal(valid, expected)
    assert dropped == reasons and reasons["duplicate"] > 0


def test_cheap_dedupe_equals_the_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    """Last occurrence wins, in order; keys that share their first 8 bytes are not taken
    for duplicates."""
    monkeypatch.setattr(groups, "GROUP_ROWS", 8)
    rng = random.Random(3)
    base = [os.urandom(16) for _ in range(40)]
    twins = [base[0][:8] + os.urandom(8) for _ in range(3)]  # same prefix, other keys
    pool = base + twins
    keys = [
        TemporaryExposureKey(
            rng.choice(pool),
            TODAY,
            report_type=rng.choice([ReportType.CONFIRMED_TEST, ReportType.REVOKED]),
        )
        for _ in range(200)
    ]
    unique, removed = KeyArrays.from_keys(keys).dedupe()
    expected, expected_removed = dedupe_keys(keys)
    assert [unique[i] for i in range(len(unique))] == expected
    assert removed == expected_removed > 0


def test_compact_keeps_every_value() -> None:
    keys = make_keys(50)
    compact = KeyArrays.from_keys(keys).compact()
    assert [compact[i] for i in range(len(compact))] == keys
    assert compact.report_type.dtype == np.int8 and compact.rolling_period.dtype == np.uint8
    odd = KeyArrays.from_keys([TemporaryExposureKey(os.urandom(16), TODAY)])
    odd = KeyArrays(
        key_data=odd.key_data,
        rolling_start=odd.rolling_start,
        rolling_period=odd.rolling_period,
        transmission_risk=odd.transmission_risk,
        report_type=odd.report_type,
        days_since_onset=np.array([300], dtype=np.int32),  # does not fit int8: kept
        has_days_since_onset=np.array([True]),
    )
    assert odd.compact().days_since_onset.dtype == np.int32
    assert odd.compact()[0].days_since_onset_of_symptoms == 300


def test_read_export_keys_round_trip() -> None:
    keys = make_keys(700)
    parsed = read_export_keys(signed_export(keys, KEY), RING, NOW_INTERVAL)
    assert {parsed.keys[i].key_data for i in range(len(parsed.keys))} == {k.key_data for k in keys}
    assert parsed.key_count == 700


def test_read_export_keys_puts_valid_revisions_last() -> None:
    """Revised keys are validated like the keys (counted as ``revised_*``) and come after
    them, so that a revision wins the dedupe; the columns stay narrow."""
    keys, revised = make_keys(40), make_keys(30)
    revised[3] = TemporaryExposureKey(os.urandom(16), TODAY - 144 * 40)  # too old
    revised[4] = keys[0]  # a revision of a key of the same file
    parsed = read_export_keys(signed_export(keys, KEY, revised_keys=revised), RING, NOW_INTERVAL)
    assert parsed.key_count == 70 and len(parsed.keys) == 69
    assert parsed.dropped == {"revised_rolling_start_too_old": 1}
    assert {parsed.keys[i].key_data for i in range(40, 69)} == {
        k.key_data for i, k in enumerate(revised) if i != 3
    }
    assert parsed.keys.report_type.dtype == np.int8
    only = signed_export([], KEY, revised_keys=revised)
    only_revised = read_export_keys(only, RING, NOW_INTERVAL)
    assert len(only_revised.keys) == 29 and only_revised.keys.report_type.dtype == np.int8


_PEAK = """
import json, sys
from agent.export import PublicKeyRing, read_verified_export_arrays
from agent.export import arrays

def high_water():  # VmHWM: ru_maxrss would start at the parent's (pytest's) peak
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])

data = open(sys.argv[1], "rb").read()
ring = PublicKeyRing.from_pem(open(sys.argv[2], "rb").read(), "310", "v1")
if sys.argv[3] == "full":
    arrays._lean_parse = lambda export_bin, verify: None  # the protobuf path
before = high_water()
read_verified_export_arrays(data, ring)
print(json.dumps(high_water() - before))
"""


@pytest.mark.slow
def test_lean_parse_needs_far_less_memory(tmp_path: Path) -> None:
    """The peak memory of parsing 300k keys, each way in a fresh process."""
    from agent.export import public_key_pem

    export = tmp_path / "export.zip"
    export.write_bytes(signed_export(make_keys(300_000), KEY))
    pem = tmp_path / "key.pem"
    pem.write_bytes(public_key_pem(KEY))

    def peak_kb(how: str) -> int:
        out = subprocess.run(
            [sys.executable, "-c", _PEAK, str(export), str(pem), how],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        ).stdout
        return int(json.loads(out))

    full, lean = peak_kb("full"), peak_kb("lean")
    # both hold the file, its export.bin and the result; only the full parse also
    # holds ~90 bytes of protobuf objects per key
    assert lean < 0.75 * full, (lean, full)
