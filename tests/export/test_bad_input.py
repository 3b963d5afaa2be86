"""Bad input catalogue, file and key level (bad-input cases 13-38: forged or unsigned keys never
match).

Every broken file fails with its own clear message from both verifying readers, so no
key of it can reach the matcher. Broken keys are dropped with a counted reason while the
rest of the file is used.
"""

from __future__ import annotations

import os
import struct
import zipfile
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from agent.constants import EXPORT_HEADER
from agent.errors import ExportFileError, SignatureError
from agent.export import (
    PublicKeyRing,
    build_export_sig,
    generate_signing_key,
    read_verified_export,
    read_verified_export_arrays,
    validate_keys,
    zip_entries,
)
from agent.export import export_pb2 as pb
from agent.models import TemporaryExposureKey
from tests.export.factory import (
    NOW_INTERVAL,
    TODAY,
    export_parts,
    make_keys,
    ring_for,
    signed_export,
    zip_of,
)

KEY = generate_signing_key()
RING = ring_for(KEY)
KEYS = make_keys(5)
BIN, SIG = export_parts(KEYS, KEY)
GOOD = zip_of(BIN, SIG)

Builder = Callable[[], bytes]


def _patch_central(data: bytes, name: bytes, offset: int, fmt: str, value: int) -> bytes:
    """Patch a field of ``name``'s central directory header."""
    out = bytearray(data)
    pos = out.find(b"PK\x01\x02")
    while pos >= 0:
        (name_len,) = struct.unpack_from("<H", out, pos + 28)
        if bytes(out[pos + 46 : pos + 46 + name_len]) == name:
            struct.pack_into(fmt, out, pos + offset, value)
        pos = out.find(b"PK\x01\x02", pos + 1)
    return bytes(out)


def _patch_eocd_count(data: bytes, count: int) -> bytes:
    out = bytearray(data)
    pos = out.rfind(b"PK\x05\x06")
    struct.pack_into("<HH", out, pos + 8, count, count)
    return bytes(out)


def _signed_bin(export_bin: bytes, signing_key: ec.EllipticCurvePrivateKey = KEY) -> bytes:
    return zip_of(export_bin, build_export_sig(export_bin, [(signing_key, "310", "v1")]))


def _raw_export(*keys: pb.TemporaryExposureKey) -> pb.TemporaryExposureKeyExport:
    return pb.TemporaryExposureKeyExport(
        region="ZZ",
        batch_num=1,
        batch_size=1,
        signature_infos=[
            pb.SignatureInfo(
                verification_key_id="310",
                verification_key_version="v1",
                signature_algorithm="1.2.840.10045.4.3.2",
            )
        ],
        keys=list(keys),
    )


def _bomb() -> bytes:
    return zip_entries([("export.bin", EXPORT_HEADER + bytes(8_000_000)), ("export.sig", SIG)])


def _flip_key_byte() -> bytes:
    broken = bytearray(BIN)
    broken[broken.index(KEYS[0].key_data) + 3] ^= 0x80
    return zip_of(bytes(broken), SIG)


def _corrupt_der() -> bytes:
    message = pb.TEKSignatureList()
    message.ParseFromString(SIG)
    message.signatures[0].signature = bytes(70)
    return zip_of(BIN, message.SerializeToString())


FILE_CASES: list[tuple[str, Builder, type[Exception], str]] = [
    (
        "13 html page",
        lambda: b"<html><body>503 Service Unavailable</body></html>",
        ExportFileError,
        "not a ZIP file",
    ),
    ("13 empty body", lambda: b"", ExportFileError, "not a ZIP file"),
    ("16 truncated download", lambda: GOOD[: len(GOOD) // 2], ExportFileError, "not a ZIP file"),
    (
        "20 missing export.bin",
        lambda: zip_entries([("export.sig", SIG)]),
        ExportFileError,
        "has no export.bin",
    ),
    (
        "20 missing export.sig",
        lambda: zip_entries([("export.bin", BIN)]),
        ExportFileError,
        "no export.sig",
    ),
    (
        "20 unexpected entry",
        lambda: zip_entries([("export.bin", BIN), ("../evil.sh", SIG)]),
        ExportFileError,
        "unexpected entry '../evil.sh'",
    ),
    (
        "20 duplicate export.bin",
        lambda: zip_entries([("export.bin", BIN), ("export.bin", BIN)]),
        ExportFileError,
        "export.bin twice",
    ),
    (
        "20 three entries",
        lambda: zip_entries([("export.bin", BIN), ("export.sig", SIG), ("export.sig", SIG)]),
        ExportFileError,
        "has 3 entries",
    ),
    ("21 zip bomb ratio", _bomb, ExportFileError, "zip bomb"),
    (
        "21 lying uncompressed size",
        lambda: _patch_central(GOOD, b"export.bin", 24, "<I", len(BIN) - 40),
        ExportFileError,
        "corrupt|wrong size",
    ),
    (
        "21 declared size over cap",
        lambda: _patch_central(GOOD, b"export.bin", 24, "<I", 900_000_000),
        ExportFileError,
        "declares 900000000 bytes, over the cap",
    ),
    (
        "22 encrypted entry",
        lambda: _patch_central(GOOD, b"export.bin", 8, "<H", 0x1),
        ExportFileError,
        "encrypted",
    ),
    (
        "22 bzip2 compression",
        lambda: zip_entries(
            [("export.bin", BIN), ("export.sig", SIG)], compression=zipfile.ZIP_BZIP2
        ),
        ExportFileError,
        "compression method 12",
    ),
    ("22 zip64 entry count", lambda: _patch_eocd_count(GOOD, 0xFFFF), ExportFileError, "ZIP64"),
    (
        "24 wrong header",
        lambda: _signed_bin(b"EK Export v2    " + BIN[16:]),
        ExportFileError,
        "does not start with the header",
    ),
    (
        "24 no header",
        lambda: _signed_bin(BIN[16:]),
        ExportFileError,
        "does not start with the header",
    ),
    ("25 zero signatures", lambda: zip_of(BIN, b""), SignatureError, "unsigned"),
    ("26 flipped bit in a key", _flip_key_byte, SignatureError, "signature invalid for key 310-v1"),
    ("26 garbage DER signature", _corrupt_der, SignatureError, "signature invalid"),
    (
        "26 signed by another key",
        lambda: _signed_bin(BIN, generate_signing_key()),
        SignatureError,
        "signature invalid",
    ),
    (
        "27 unknown key id",
        lambda: zip_of(*export_parts(KEYS, KEY, key_id="999")),
        SignatureError,
        "no signature from a pinned key: signed by 999-v1",
    ),
    (
        "27 unknown key version",
        lambda: zip_of(*export_parts(KEYS, KEY, version="v9")),
        SignatureError,
        "signed by 310-v9",
    ),
    (
        "28 more infos than signatures",
        lambda: zip_of(*export_parts(KEYS, KEY, infos=[("310", "v1", "1.2.840.10045.4.3.2")] * 2)),
        SignatureError,
        r"1 signature\(s\) but export.bin lists 2",
    ),
    (
        "28 verifying signature not listed",
        lambda: zip_of(*export_parts(KEYS, KEY, infos=[("311", "v1", "1.2.840.10045.4.3.2")])),
        SignatureError,
        "not listed in export.bin",
    ),
    (
        "28 batch 2 of 1",
        lambda: zip_of(*export_parts(KEYS, KEY, batch=(2, 1))),
        SignatureError,
        "batch 2/1 is not a valid",
    ),
    (
        "28 batch missing",
        lambda: zip_of(*export_parts(KEYS, KEY, batch=(0, 0))),
        SignatureError,
        "batch 0/0 is not a valid",
    ),
    (
        "28 signature for another batch",
        lambda: zip_of(*export_parts(KEYS, KEY, batch=(1, 2), sig_batch=(2, 2))),
        SignatureError,
        "is for batch 2/2",
    ),
    (
        "28 eleven signature infos",
        lambda: zip_of(*export_parts(KEYS, KEY, infos=[("310", "v1", "1.2.840.10045.4.3.2")] * 11)),
        SignatureError,
        "at most 10",
    ),
    (
        "31 signed garbage protobuf",
        lambda: _signed_bin(EXPORT_HEADER + b"\x0a\xff\xff\xff\xff\x0f"),
        ExportFileError,
        "export.bin is not a valid protobuf",
    ),
    (
        "31 garbage export.sig",
        lambda: zip_of(BIN, b"\x0a\x05\x01"),
        SignatureError,
        "export.sig is not a valid protobuf",
    ),
]


@pytest.mark.parametrize(
    ("builder", "error", "message"),
    [pytest.param(b, e, m, id=i) for i, b, e, m in FILE_CASES],
)
@pytest.mark.parametrize("reader", [read_verified_export, read_verified_export_arrays])
def test_broken_file_is_rejected_with_a_clear_reason(
    reader: Callable[[bytes, PublicKeyRing], object],
    builder: Builder,
    error: type[Exception],
    message: str,
) -> None:
    with pytest.raises(error, match=message) as caught:
        reader(builder(), RING)
    assert "\n" not in str(caught.value)  # one line


def test_non_allow_listed_algorithm_is_rejected() -> None:
    export_bin, _ = export_parts(KEYS, KEY, infos=[("310", "v1", "1.2.840.113549.1.1.11")])
    message = pb.TEKSignatureList()
    message.ParseFromString(build_export_sig(export_bin, [(KEY, "310", "v1")]))
    message.signatures[0].signature_info.signature_algorithm = "1.2.840.113549.1.1.11"
    data = zip_of(export_bin, message.SerializeToString())
    with pytest.raises(SignatureError, match=r"algorithm '1\.2\.840\.113549\.1\.1\.11'"):
        read_verified_export(data, RING)


def test_empty_key_ring_verifies_nothing() -> None:
    with pytest.raises(SignatureError, match="no public keys are pinned"):
        read_verified_export(GOOD, PublicKeyRing())


def test_file_over_the_size_cap_is_rejected_before_parsing() -> None:
    with pytest.raises(ExportFileError, match=f"{len(GOOD)} bytes, over the cap of 100"):
        read_verified_export(GOOD, RING, max_bytes=100)


def test_the_good_file_passes() -> None:  # the control for all of the above
    assert len(read_verified_export(GOOD, RING).keys) == len(KEYS)


# --- key level: drop the key, keep the file ------------------------------------------------
def _raw_key(**fields: object) -> pb.TemporaryExposureKey:
    values: dict[str, object] = {
        "key_data": os.urandom(16),
        "rolling_start_interval_number": TODAY,
        "transmission_risk_level": 3,
    }
    values.update(fields)
    return pb.TemporaryExposureKey(**values)  # type: ignore[arg-type]


PARSE_DROPS = [
    ("33 key of 15 bytes", {"key_data": os.urandom(15)}, "key_length"),
    ("33 key of 17 bytes", {"key_data": os.urandom(17)}, "key_length"),
    ("33 key missing", {"key_data": b""}, "key_length"),
    ("34 rolling period 0", {"rolling_period": 0}, "rolling_period"),
    ("34 rolling period 145", {"rolling_period": 145}, "rolling_period"),
    ("34 rolling period negative", {"rolling_period": -1}, "rolling_period"),
    ("35 negative start", {"rolling_start_interval_number": -144}, "rolling_start_negative"),
]


@pytest.mark.parametrize(
    ("fields", "reason"), [pytest.param(f, r, id=i) for i, f, r in PARSE_DROPS]
)
def test_unrepresentable_key_is_dropped_and_the_file_kept(
    fields: dict[str, object], reason: str
) -> None:
    good = _raw_key()
    export_bin = EXPORT_HEADER + _raw_export(good, _raw_key(**fields)).SerializeToString()
    data = _signed_bin(export_bin)
    export = read_verified_export(data, RING)
    assert [k.key_data for k in export.keys] == [good.key_data]
    assert dict(export.dropped) == {reason: 1}
    arrays = read_verified_export_arrays(data, RING, now_interval=NOW_INTERVAL)
    assert arrays.keys.key_data == good.key_data and arrays.dropped[reason] == 1


VALIDATION_DROPS = [
    (
        "35 start in the future",
        {"rolling_start_interval_number": NOW_INTERVAL + 1},
        "rolling_start_in_future",
    ),
    (
        "35 start next day",
        {"rolling_start_interval_number": TODAY + 144},
        "rolling_start_in_future",
    ),
    (
        "35 start 16 days ago",
        {"rolling_start_interval_number": TODAY - 16 * 144},
        "rolling_start_too_old",
    ),
    ("37 onset +15 days", {"days_since_onset_of_symptoms": 15}, "days_since_onset"),
    ("37 onset -15 days", {"days_since_onset_of_symptoms": -15}, "days_since_onset"),
]


@pytest.mark.parametrize(
    ("fields", "reason"), [pytest.param(f, r, id=i) for i, f, r in VALIDATION_DROPS]
)
def test_invalid_key_is_dropped_with_a_counted_reason(
    fields: dict[str, object], reason: str
) -> None:
    good = _raw_key(days_since_onset_of_symptoms=14)
    data = _signed_bin(EXPORT_HEADER + _raw_export(good, _raw_key(**fields)).SerializeToString())
    export = read_verified_export(data, RING)
    kept, dropped = validate_keys(export.keys, NOW_INTERVAL)
    assert [k.key_data for k in kept] == [good.key_data]
    assert dict(dropped) == {reason: 1}
    arrays = read_verified_export_arrays(data, RING, now_interval=NOW_INTERVAL)
    assert arrays.valid_keys() == kept and dict(arrays.dropped) == {reason: 1}


def test_boundaries_are_kept() -> None:
    keys = [
        TemporaryExposureKey(os.urandom(16), NOW_INTERVAL),  # starts now
        TemporaryExposureKey(os.urandom(16), NOW_INTERVAL - 15 * 144),  # exactly 15 days
        TemporaryExposureKey(os.urandom(16), TODAY, days_since_onset_of_symptoms=-14),
        TemporaryExposureKey(os.urandom(16), TODAY, days_since_onset_of_symptoms=14),
    ]
    kept, dropped = validate_keys(keys, NOW_INTERVAL)
    assert kept == keys and not dropped


@pytest.mark.parametrize("tr", [-1, 9, 1000])
def test_36_transmission_risk_out_of_range_is_unknown(tr: int) -> None:
    data = _signed_bin(
        EXPORT_HEADER + _raw_export(_raw_key(transmission_risk_level=tr)).SerializeToString()
    )
    export = read_verified_export(data, RING)
    assert [k.transmission_risk_level for k in export.keys] == [0]


def test_38_duplicates_within_a_file_are_matched_once() -> None:
    key = TemporaryExposureKey(os.urandom(16), TODAY)
    clone_other_day = TemporaryExposureKey(key.key_data, TODAY - 144)
    data = signed_export([key, key, key, clone_other_day], KEY)
    kept, dropped = validate_keys(read_verified_export(data, RING).keys, NOW_INTERVAL)
    assert sorted(k.rolling_start_interval_number for k in kept) == [TODAY - 144, TODAY]
    assert dropped == {"duplicate": 2}


def test_unknown_report_type_value_reads_as_unknown() -> None:
    raw = _raw_export(_raw_key()).SerializeToString()
    # Append report_type = 9 (not in the enum) to the key: field 5, varint.
    message = pb.TemporaryExposureKeyExport()
    message.ParseFromString(raw)
    key_bytes = message.keys[0].SerializeToString() + b"\x28\x09"
    message.ClearField("keys")
    raw = message.SerializeToString() + b"\x3a" + bytes([len(key_bytes)]) + key_bytes
    export = read_verified_export(_signed_bin(EXPORT_HEADER + raw), RING)
    assert export.keys[0].report_type == 0
