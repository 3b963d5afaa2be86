"""Hypothesis fuzzing of the ZIP reader, the export parser and the signature check (F12).

Whatever the bytes, only the declared error types come out: ExportFileError (which
SignatureError extends) or MalformedInputError.
"""

from __future__ import annotations

import contextlib
import zipfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.constants import EXPORT_HEADER
from agent.errors import ExportFileError, MalformedInputError
from agent.export import (
    PublicKeyRing,
    build_export_sig,
    generate_signing_key,
    inspect_export,
    read_verified_export,
    read_verified_export_arrays,
    zip_entries,
)
from tests.export.factory import export_parts, make_keys, ring_for, zip_of

KEY = generate_signing_key()
RING = ring_for(KEY)
BIN, SIG = export_parts(make_keys(6), KEY)
GOOD = zip_of(BIN, SIG)
STORED = zip_entries([("export.bin", BIN), ("export.sig", SIG)], compression=zipfile.ZIP_STORED)
DECLARED = (ExportFileError, MalformedInputError)
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _all_readers(data: bytes) -> None:
    for reader in (read_verified_export, read_verified_export_arrays):
        try:
            result = reader(data, RING)
        except DECLARED:
            continue
        assert result.verified  # only a verified file can come back from these
    with contextlib.suppress(*DECLARED):
        inspect_export(data)


@st.composite
def mutated(draw: st.DrawFn, base: bytes) -> bytes:
    data = bytearray(base)
    for _ in range(draw(st.integers(1, 8))):
        action = draw(st.sampled_from(["flip", "set", "cut", "insert", "delete"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if action == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif action == "set" and data:
            data[pos] = draw(st.integers(0, 255))
        elif action == "cut":
            del data[pos:]
        elif action == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif data:
            del data[pos : pos + draw(st.integers(1, 16))]
    return bytes(data)


@FUZZ
@given(st.binary(max_size=2048))
def test_random_bytes(data: bytes) -> None:
    _all_readers(data)


@pytest.mark.slow
@FUZZ
@given(st.one_of(mutated(GOOD), mutated(STORED)))
def test_mutated_zips(data: bytes) -> None:
    _all_readers(data)


@pytest.mark.slow
@FUZZ
@given(st.one_of(mutated(BIN[16:]), st.binary(max_size=512)))
def test_signed_export_bin_payloads(payload: bytes) -> None:
    """Correctly signed garbage reaches the protobuf parser itself."""
    export_bin = EXPORT_HEADER + payload
    data = zip_of(export_bin, build_export_sig(export_bin, [(KEY, "310", "v1")]))
    _all_readers(data)


@pytest.mark.slow
@FUZZ
@given(st.one_of(mutated(SIG), st.binary(max_size=256)))
def test_export_sig_payloads(export_sig: bytes) -> None:
    _all_readers(zip_of(BIN, export_sig))


@pytest.mark.slow
@FUZZ
@given(st.binary(max_size=200), st.text(max_size=200))
def test_public_key_loading(raw: bytes, text: str) -> None:
    for data in (raw, text.encode(), b"-----BEGIN PUBLIC KEY-----\n" + raw):
        with contextlib.suppress(MalformedInputError):
            PublicKeyRing.from_pem(data)
