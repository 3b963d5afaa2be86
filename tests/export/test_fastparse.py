"""The fixed-stride decoder gives exactly what protobuf gives, or declines."""

from __future__ import annotations

import io
import os
import struct
import zipfile
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.constants import EXPORT_HEADER
from agent.export import export_pb2 as pb
from agent.export import (
    generate_signing_key,
    inspect_export,
    read_verified_export,
    read_verified_export_arrays,
)
from agent.export.arrays import _from_protobuf, _parse_drops, parse_keys
from agent.export.columns import KeyArrays
from agent.export.fastparse import DecodedKeys, decode_key_run, split_export
from agent.export.parse import parse_export_bin
from tests.export.factory import NOW_INTERVAL, make_keys, ring_for, signed_export
from tests.export.test_google_sample import FIRST_KEY
from tests.shared import shared_path

INT32 = st.integers(-(2**31), 2**31 - 1)
FIELDS = {2: "tr", 3: "rsin", 4: "rp", 5: "rt", 6: "dso"}


def _varint(value: int, width: int | None = None) -> bytes:
    """Protobuf varint of ``value`` (negatives as 64-bit), optionally padded to ``width``."""
    v = value & (2**64 - 1)
    out = bytearray()
    while True:
        byte = v & 0x7F
        v >>= 7
        if v or (width is not None and len(out) + 1 < width):
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _zigzag(value: int) -> int:
    return ((value << 1) ^ (value >> 31)) & 0xFFFFFFFF


def _record(key: bytes, values: dict[int, int], order: list[int], width: int | None) -> bytes:
    body = b"\x0a" + bytes([len(key)]) + key
    for field in order:
        if field in values:
            raw = _zigzag(values[field]) if field == 6 else values[field]
            body += bytes([field << 3]) + _varint(raw, width)
    return b"\x3a" + _varint(len(body)) + body


def _payload(records: list[bytes]) -> bytes:
    head = b"\x09" + struct.pack("<Q", 1) + b"\x11" + struct.pack("<Q", 2) + b"\x1a\x02ZZ"
    return head + b"\x20\x01\x28\x01" + b"".join(records)


def _columns_equal(a: DecodedKeys, b: DecodedKeys) -> None:
    assert a.key_data.tobytes() == b.key_data.tobytes()
    for name in ("rolling_start", "rolling_period", "transmission_risk", "report_type"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert np.array_equal(a.has_days_since_onset, b.has_days_since_onset)
    assert np.array_equal(
        np.where(a.has_days_since_onset, a.days_since_onset, 0),
        np.where(b.has_days_since_onset, b.days_since_onset, 0),
    )


@st.composite
def exports(draw: st.DrawFn) -> tuple[bytes, bool]:
    present = draw(st.sets(st.sampled_from(sorted(FIELDS))))
    order = draw(st.permutations([1, *sorted(present)]))
    order = [f for f in order if f != 1]
    padded = draw(st.booleans())
    count = draw(st.integers(1, 25))
    records = []
    for _ in range(count):
        values = {f: draw(INT32) for f in present}
        if 4 in values and draw(st.booleans()):
            values[4] = draw(st.integers(-2, 150))  # near the valid period range
        if 5 in values and draw(st.booleans()):
            values[5] = draw(st.integers(-1, 7))  # report types, some unknown
        if 6 in values and draw(st.booleans()):
            values[6] = draw(st.integers(-20, 20))
        key = os.urandom(draw(st.sampled_from([16, 16, 16, 15])))
        records.append(_record(key, values, order, 10 if padded else None))
    return _payload(records), padded


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(exports())
def test_fast_path_equals_protobuf(case: tuple[bytes, bool]) -> None:
    payload, padded = case
    message = pb.TemporaryExposureKeyExport()
    message.ParseFromString(payload)
    dropped_pb: Counter[str] = Counter()
    reference = _from_protobuf(message, dropped_pb)
    fast = decode_key_run(payload, len(message.keys))
    if "key_length" in dropped_pb:
        assert fast is None  # 15-byte keys always go the protobuf way
        return
    if padded:
        assert fast is not None  # uniform widths: the fast path must take it
    if fast is not None:
        dropped_fast: Counter[str] = Counter()
        _columns_equal(_parse_drops(fast, dropped_fast), reference)
        assert dropped_fast == dropped_pb


def test_mixed_layouts_are_declined() -> None:
    key = os.urandom(16)
    a = _record(key, {2: 1, 3: 100}, [2, 3], None)
    b = _record(key, {2: 1, 3: 100, 4: 5}, [2, 3, 4], None)
    c = _record(key, {2: 1, 3: 2_000_000}, [2, 3], None)  # wider rsin varint
    d = _record(key, {3: 100, 2: 1}, [3, 2], None)  # other order
    body = b"\x0a\x10" + key + b"\x10\x01\x18\x64\x40\x01"  # + variant_of_concern (8)
    e = b"\x3a" + bytes([len(body)]) + body
    for records in ([a, b], [a, c], [a, d], [e, e]):
        payload = _payload(records)
        message = pb.TemporaryExposureKeyExport()
        message.ParseFromString(payload)
        assert decode_key_run(payload, len(message.keys)) is None


def _export_bin(zip_bytes: bytes) -> bytes:
    with zipfile.ZipFile(io.BytesIO(zip_bytes)) as archive:
        return archive.read("export.bin")


def test_servers_layout_takes_the_fast_path() -> None:
    key = generate_signing_key()
    data = signed_export(make_keys(500), key)
    export = read_verified_export(data, ring_for(key))
    assert decode_key_run(_export_bin(data)[len(EXPORT_HEADER) :], 500) is not None
    arrays = read_verified_export_arrays(data, ring_for(key), now_interval=NOW_INTERVAL)
    assert arrays.keys.key_data == b"".join(k.key_data for k in export.keys)


def test_googles_sample_takes_the_fast_path() -> None:
    sample = shared_path("testdata/google-sample-diagnosis-key-file.zip").read_bytes()
    columns = decode_key_run(_export_bin(sample)[len(EXPORT_HEADER) :], 140)
    assert columns is not None
    assert columns.key_data[0].tobytes().hex() == FIRST_KEY
    assert int(columns.rolling_start[0]) == 2653920 and int(columns.transmission_risk[0]) == 3
    assert set(columns.rolling_period.tolist()) == {144}


def test_revised_keys_are_decoded_like_the_keys() -> None:
    """Revised keys take the flat path too (a million revisions are not a million
    objects) and equal the protobuf path's, in order, with the same drops."""
    key = generate_signing_key()
    keys, revised = make_keys(50), make_keys(300)
    data = signed_export(keys, key, revised_keys=revised)
    message = parse_export_bin(zipfile.ZipFile(io.BytesIO(data)).read("export.bin"))
    message.revised_keys[7].rolling_period = 0  # a parse-level drop, in a run of its own
    export_bin = EXPORT_HEADER + message.SerializeToString()
    assert split_export(memoryview(export_bin)[len(EXPORT_HEADER) :]) is not None
    parsed = parse_keys(export_bin, lambda message: None)
    assert len(parsed.message.revised_keys) == 0  # not parsed by protobuf
    assert isinstance(parsed.revised_keys, KeyArrays) and len(parsed.revised_keys) == 299
    protobuf = parse_export_bin(export_bin)
    dropped: Counter[str] = Counter()
    _columns_equal(_from_protobuf(protobuf, dropped, revised=True), _decoded(parsed.revised_keys))
    assert dropped == Counter(rolling_period=1) == parsed.dropped
    objects = inspect_export(export_bin)  # a raw export.bin: read unverified
    assert tuple(parsed.revised_keys) == objects.revised_keys
    assert dict(objects.dropped) == {"rolling_period": 1}
    arrays = read_verified_export_arrays(data, ring_for(key), now_interval=NOW_INTERVAL)
    assert tuple(arrays.revised_keys) == read_verified_export(data, ring_for(key)).revised_keys
    assert len(arrays.revised_keys) == 300
    plain = signed_export(keys, key)
    none = read_verified_export_arrays(plain, ring_for(key), now_interval=NOW_INTERVAL)
    assert len(none.revised_keys) == 0 and tuple(none.revised_keys) == ()


def _decoded(keys: KeyArrays) -> DecodedKeys:
    return DecodedKeys(
        key_data=np.frombuffer(keys.key_data, dtype=np.uint8).reshape(-1, 16),
        rolling_start=keys.rolling_start,
        rolling_period=keys.rolling_period.astype(np.int32),
        transmission_risk=keys.transmission_risk.astype(np.int32),
        report_type=keys.report_type.astype(np.int32),
        days_since_onset=keys.days_since_onset.astype(np.int32),
        has_days_since_onset=keys.has_days_since_onset,
    )
