"""Writer -> verifying reader round trips, the flat path, co-signing and key rings."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from agent.config import PublicKeyConfig
from agent.errors import ConfigError, MalformedInputError, SignatureError
from agent.export import (
    PublicKeyRing,
    build_export_bin,
    generate_signing_key,
    inspect_export,
    load_signing_key,
    private_key_pem,
    public_key_pem,
    read_verified_export,
    read_verified_export_arrays,
    validate_keys,
    write_key_files,
    zip_entries,
)
from agent.export import export_pb2 as pb
from agent.models import ReportType, TemporaryExposureKey
from tests.export.factory import (
    END_TS,
    NOW_INTERVAL,
    START_TS,
    TODAY,
    export_parts,
    make_keys,
    ring_for,
    signed_export,
    zip_of,
)

SIGNATURE_ALGORITHM_P256_SHA512 = "1.2.840.10045.4.3.4"


def test_round_trip_keeps_every_field(signing_key: ec.EllipticCurvePrivateKey) -> None:
    keys = make_keys(40)
    keys.append(
        TemporaryExposureKey(
            os.urandom(16), TODAY, rolling_period=70, report_type=ReportType.REVOKED
        )
    )
    revised = [TemporaryExposureKey(os.urandom(16), TODAY - 144, report_type=ReportType.REVOKED)]
    data = signed_export(keys, signing_key, region="DE", revised_keys=revised)
    export = read_verified_export(data, ring_for(signing_key))
    assert export.verified and export.region == "DE"
    assert (export.start_timestamp, export.end_timestamp) == (START_TS, END_TS)
    assert set(export.keys) == set(keys)
    assert [k.key_data for k in export.keys] == sorted(k.key_data for k in keys)
    assert export.revised_keys == tuple(revised)
    assert export.signature_count == 1 and export.dropped == {}


def test_writer_omits_rolling_period_144_like_googles_server(
    signing_key: ec.EllipticCurvePrivateKey,
) -> None:
    keys = [
        TemporaryExposureKey(bytes(range(16)), TODAY),
        TemporaryExposureKey(bytes(16), TODAY, 7),
    ]
    export_bin = build_export_bin(
        keys, signature_infos=[("310", "v1", "x")], region="ZZ", start_timestamp=1, end_timestamp=2
    )
    message = pb.TemporaryExposureKeyExport()
    message.ParseFromString(export_bin[16:])
    by_data = {k.key_data: k for k in message.keys}
    assert not by_data[bytes(range(16))].HasField("rolling_period")
    assert by_data[bytes(16)].HasField("rolling_period")
    assert all(k.HasField("transmission_risk_level") for k in message.keys)


def test_flat_arrays_equal_the_object_path(signing_key: ec.EllipticCurvePrivateKey) -> None:
    keys = make_keys(300, days=17)  # some are older than 15 days
    keys += keys[:10]  # duplicates
    keys.append(TemporaryExposureKey(os.urandom(16), TODAY + 144))  # future
    keys.append(TemporaryExposureKey(os.urandom(16), TODAY, days_since_onset_of_symptoms=20))
    keys.append(TemporaryExposureKey(os.urandom(16), TODAY, transmission_risk_level=42))
    data = signed_export(keys, signing_key)
    ring = ring_for(signing_key)
    export = read_verified_export(data, ring)
    kept, dropped = validate_keys(export.keys, NOW_INTERVAL)
    arrays = read_verified_export_arrays(data, ring, now_interval=NOW_INTERVAL)
    assert arrays.valid_keys() == kept
    assert dict(arrays.dropped) == dict(dropped)
    assert dropped["duplicate"] == 10 and dropped["rolling_start_in_future"] == 1
    assert dropped["rolling_start_too_old"] > 0 and dropped["days_since_onset"] >= 1
    assert len(arrays) == len(export.keys)
    assert arrays.keys.key_data == b"".join(k.key_data for k in export.keys)
    assert arrays.keys.rolling_start.dtype == np.int32
    assert arrays.sha256 == export.sha256
    # Without a time, only the time-independent rules apply.
    timeless = read_verified_export_arrays(data, ring)
    assert "rolling_start_too_old" not in timeless.dropped
    assert timeless.dropped["duplicate"] == 10


def test_transmission_risk_out_of_range_becomes_unknown(
    signing_key: ec.EllipticCurvePrivateKey,
) -> None:
    key = TemporaryExposureKey(os.urandom(16), TODAY, transmission_risk_level=9)
    export = read_verified_export(signed_export([key], signing_key), ring_for(signing_key))
    assert export.keys[0].transmission_risk_level == 0
    kept, _ = validate_keys([key], NOW_INTERVAL)
    assert kept[0].transmission_risk_level == 0


def test_co_signed_export_verifies_with_either_pinned_key(
    signing_key: ec.EllipticCurvePrivateKey, other_key: ec.EllipticCurvePrivateKey
) -> None:
    data = signed_export(make_keys(3), signing_key, extra_signers=[(other_key, "262", "v2")])
    assert len(read_verified_export(data, ring_for(signing_key)).keys) == 3
    assert len(read_verified_export(data, ring_for(other_key, "262", "v2")).keys) == 3
    with pytest.raises(SignatureError, match="signed by 310-v1, 262-v2"):
        read_verified_export(data, ring_for(generate_signing_key(), "999", "v1"))


def test_sha512_signature_algorithm_is_accepted(signing_key: ec.EllipticCurvePrivateKey) -> None:
    parts = export_parts(make_keys(2), signing_key, algorithm=SIGNATURE_ALGORITHM_P256_SHA512)
    assert len(read_verified_export(zip_of(*parts), ring_for(signing_key)).keys) == 2


def test_ring_from_config_reads_pem_files(
    tmp_path: Path, signing_key: ec.EllipticCurvePrivateKey
) -> None:
    write_key_files(signing_key, tmp_path / "sign.pem", tmp_path / "pub.pem")
    assert (tmp_path / "sign.pem").stat().st_mode & 0o777 == 0o600
    assert load_signing_key((tmp_path / "sign.pem").read_bytes()).private_numbers() == (
        signing_key.private_numbers()
    )
    ring = PublicKeyRing.from_config([PublicKeyConfig("310", "v1", "pub.pem")], base_dir=tmp_path)
    assert len(read_verified_export(signed_export(make_keys(1), signing_key), ring).keys) == 1
    with pytest.raises(ConfigError, match="cannot read"):
        PublicKeyRing.from_config([PublicKeyConfig("310", "v1", "missing.pem")], base_dir=tmp_path)
    (tmp_path / "junk.pem").write_text("hello")
    with pytest.raises(ConfigError, match="neither a PEM public key nor base64"):
        PublicKeyRing.from_config([PublicKeyConfig("310", "v1", "junk.pem")], base_dir=tmp_path)


def test_public_key_must_be_p256() -> None:
    p384 = ec.generate_private_key(ec.SECP384R1())
    with pytest.raises(MalformedInputError, match="P-256"):
        PublicKeyRing.from_pem(public_key_pem(p384))
    with pytest.raises(MalformedInputError, match="neither a PEM"):
        PublicKeyRing.from_pem(private_key_pem(generate_signing_key()))


def test_inspect_tolerates_a_missing_signature(signing_key: ec.EllipticCurvePrivateKey) -> None:
    export_bin, _ = export_parts(make_keys(4), signing_key)
    shown = inspect_export(zip_entries([("export.bin", export_bin)]))
    assert not shown.verified and shown.signature_count == 0 and len(shown.keys) == 4
