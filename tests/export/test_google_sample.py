"""The real signed export Google published, checked against its public facts.

The facts are kept here as literals (Google's sample_diagnosis_key_file.zip); the file itself
is read from ../shared and never copied into the project.
"""

from __future__ import annotations

import io
import zipfile

import pytest

from agent.errors import ExportFileError, SignatureError
from agent.export import (
    PublicKeyRing,
    generate_signing_key,
    inspect_export,
    public_key_pem,
    read_verified_export,
    read_verified_export_arrays,
    validate_keys,
    zip_entries,
)
from tests.shared import shared_path

GOOGLE_TEST_KEY_310_V1 = (
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE49JY6kekDgxj3Crm4y6kEHdfoKQFSNDM4mV9cgDb+e5nOAw0"
    "GeRoRThCu9/wX5wDT2QloFoOjl2pGZHI0f3C3w=="
)
SAMPLE_SHA256 = "837eb489b4537ca6dc39fd45940cce9fe042fbdfda1fa018f03c71f09d0ea947"
KEY_COUNT = 140
FIRST_KEY = "0003d60b188f19856e8b3dd29a0c463b"
FIRST_RSIN = 2653920
FIRST_TR = 3
START = 1593633600
END = 1593633900


@pytest.fixture(scope="module")
def sample() -> bytes:
    return shared_path("testdata/google-sample-diagnosis-key-file.zip").read_bytes()


@pytest.fixture(scope="module")
def ring() -> PublicKeyRing:
    return PublicKeyRing.from_pem(GOOGLE_TEST_KEY_310_V1.encode(), "310", "v1")


def _entries(zip_bytes: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(zip_bytes)) as archive:
        return {i.filename: archive.read(i) for i in archive.infolist()}


def test_sample_verifies_and_has_the_public_facts(sample: bytes, ring: PublicKeyRing) -> None:
    export = read_verified_export(sample, ring)
    assert export.verified
    assert export.sha256.hex() == SAMPLE_SHA256
    assert (export.start_timestamp, export.end_timestamp) == (START, END)
    assert (export.region, export.batch_num, export.batch_size) == ("US", 1, 1)
    assert len(export.keys) == KEY_COUNT
    assert export.revised_keys == ()
    assert [(i.key_id, i.key_version, i.algorithm) for i in export.signature_infos] == [
        ("310", "v1", "1.2.840.10045.4.3.2")
    ]
    first = export.keys[0]
    assert first.key_data.hex() == FIRST_KEY
    assert first.rolling_start_interval_number == FIRST_RSIN
    assert first.transmission_risk_level == FIRST_TR
    # No key carries rolling_period: the proto default 144 applies.
    assert {k.rolling_period for k in export.keys} == {144}
    assert all(k.rolling_start_interval_number % 144 == 0 for k in export.keys)
    assert [k.key_data for k in export.keys] == sorted(k.key_data for k in export.keys)
    assert {k.transmission_risk_level for k in export.keys} <= set(range(3, 9))


def test_sample_arrays_give_the_same_keys(sample: bytes, ring: PublicKeyRing) -> None:
    now = max(k.rolling_start_interval_number for k in read_verified_export(sample, ring).keys)
    export = read_verified_export(sample, ring)
    arrays = read_verified_export_arrays(sample, ring, now_interval=now + 10)
    kept, dropped = validate_keys(export.keys, now + 10)
    assert arrays.valid_keys() == kept
    assert dict(dropped) == dict(arrays.dropped)
    assert arrays.keys.key_data[:16].hex() == FIRST_KEY
    assert len(arrays) == KEY_COUNT


def test_sample_key_id_only_or_wildcard_ring_verifies(sample: bytes) -> None:
    for key_id, version in (("", ""), ("310", ""), ("", "v1")):
        ring = PublicKeyRing.from_pem(GOOGLE_TEST_KEY_310_V1.encode(), key_id, version)
        assert len(read_verified_export(sample, ring).keys) == KEY_COUNT


def test_sample_wrong_version_pin_is_rejected(sample: bytes) -> None:
    ring = PublicKeyRing.from_pem(GOOGLE_TEST_KEY_310_V1.encode(), "310", "v2")
    with pytest.raises(SignatureError, match="no signature from a pinned key: signed by 310-v1"):
        read_verified_export(sample, ring)


def test_sample_with_flipped_byte_in_export_bin_is_rejected(
    sample: bytes, ring: PublicKeyRing
) -> None:
    parts = _entries(sample)
    export_bin = bytearray(parts["export.bin"])
    export_bin[export_bin.index(bytes.fromhex(FIRST_KEY)) + 7] ^= 0x01  # inside a key
    broken = zip_entries([("export.bin", bytes(export_bin)), ("export.sig", parts["export.sig"])])
    with pytest.raises(SignatureError, match="signature invalid for key 310-v1"):
        read_verified_export(broken, ring)
    # The unverified inspector still parses it, and says so.
    shown = inspect_export(broken)
    assert not shown.verified
    assert shown.keys[0].key_data.hex() != FIRST_KEY


def test_sample_with_foreign_key_is_rejected(sample: bytes) -> None:
    foreign = PublicKeyRing.from_pem(public_key_pem(generate_signing_key()), "310", "v1")
    with pytest.raises(SignatureError, match="signature invalid"):
        read_verified_export(sample, foreign)


def test_sample_with_signature_removed_is_rejected(sample: bytes, ring: PublicKeyRing) -> None:
    parts = _entries(sample)
    only_bin = zip_entries([("export.bin", parts["export.bin"])])
    with pytest.raises(ExportFileError, match=r"no export\.sig"):
        read_verified_export(only_bin, ring)
    empty_sig = zip_entries([("export.bin", parts["export.bin"]), ("export.sig", b"")])
    with pytest.raises(SignatureError, match="unsigned"):
        read_verified_export(empty_sig, ring)


def test_sample_with_duplicated_entry_is_rejected(sample: bytes, ring: PublicKeyRing) -> None:
    parts = _entries(sample)
    duplicated = zip_entries(
        [
            ("export.bin", parts["export.bin"]),
            ("export.sig", parts["export.sig"]),
            ("export.bin", parts["export.bin"][:-16] + bytes(16)),
        ]
    )
    with pytest.raises(ExportFileError, match="3 entries"):
        read_verified_export(duplicated, ring)
    swapped = zip_entries(
        [("export.bin", parts["export.bin"]), ("export.bin", parts["export.bin"])]
    )
    with pytest.raises(ExportFileError, match=r"export\.bin twice"):
        read_verified_export(swapped, ring)
