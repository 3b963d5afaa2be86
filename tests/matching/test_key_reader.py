"""Verified exports as flat keys for the matcher: valid keys, revisions last, picklable."""

from __future__ import annotations

import functools
import os
import pickle

import pytest

from agent.constants import EXPORT_BIN_NAME, EXPORT_HEADER, EXPORT_SIG_NAME
from agent.errors import SignatureError
from agent.export import (
    PublicKeyRing,
    build_export_sig,
    generate_signing_key,
    public_key_pem,
    read_export_keys,
    zip_entries,
)
from agent.export import export_pb2 as pb
from agent.models import ReportType
from tests.shared import shared_path

NOW = 2_833_344 + 100  # an afternoon interval
TODAY = NOW - NOW % 144


def _key(**fields: object) -> pb.TemporaryExposureKey:
    values: dict[str, object] = {
        "key_data": os.urandom(16),
        "rolling_start_interval_number": TODAY - 144,
        "transmission_risk_level": 4,
        "report_type": 1,
    }
    values.update(fields)
    return pb.TemporaryExposureKey(**values)  # type: ignore[arg-type]


def _odd_export(signing_key: object) -> bytes:
    twin = os.urandom(16)
    keys = [
        _key(),
        _key(key_data=os.urandom(15)),  # dropped: length
        _key(rolling_period=0),  # dropped: period
        _key(rolling_period=200),  # dropped: period
        _key(rolling_start_interval_number=-5),  # dropped: negative start
        _key(transmission_risk_level=12),  # kept, TR -> 0
        _key(days_since_onset_of_symptoms=20),  # invalid: dso
        _key(days_since_onset_of_symptoms=-3, rolling_period=30),
        _key(rolling_start_interval_number=TODAY + 144),  # invalid: future
        _key(rolling_start_interval_number=TODAY - 16 * 144),  # invalid: too old
        _key(key_data=twin),
        _key(key_data=twin),  # invalid: duplicate
    ]
    revised = [_key(report_type=int(ReportType.REVOKED)), _key(rolling_period=0)]
    message = pb.TemporaryExposureKeyExport(
        start_timestamp=TODAY * 600,
        end_timestamp=TODAY * 600 + 3600,
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
        keys=keys,
        revised_keys=revised,
    )
    export_bin = EXPORT_HEADER + message.SerializeToString()
    export_sig = build_export_sig(export_bin, [(signing_key, "310", "v1")])  # type: ignore[list-item]
    return zip_entries([(EXPORT_BIN_NAME, export_bin), (EXPORT_SIG_NAME, export_sig)])


def test_parsed_export_keeps_valid_keys_then_revisions_and_pickles() -> None:
    signing_key = generate_signing_key()
    ring = functools.partial(PublicKeyRing.from_pem, public_key_pem(signing_key), "310", "v1")
    parsed = read_export_keys(_odd_export(signing_key), ring, NOW)
    parsed = pickle.loads(pickle.dumps(parsed))
    assert len(parsed.keys) == 5
    assert parsed.keys[4].report_type == ReportType.REVOKED
    assert parsed.key_count == 8 + 1  # parsed keys and revised keys
    assert parsed.dropped["rolling_period"] == 3  # two keys, one revised key


def test_foreign_signature_returns_no_key() -> None:
    content = _odd_export(generate_signing_key())
    ring = PublicKeyRing.from_pem(public_key_pem(generate_signing_key()), "310", "v1")
    with pytest.raises(SignatureError):
        read_export_keys(content, ring, NOW)


def test_google_sample_through_the_flat_reader() -> None:
    sample = shared_path("testdata/google-sample-diagnosis-key-file.zip").read_bytes()
    ring = PublicKeyRing.from_pem(
        b"MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE49JY6kekDgxj3Crm4y6kEHdfoKQFSNDM4mV9cgDb+e5nOAw0"
        b"GeRoRThCu9/wX5wDT2QloFoOjl2pGZHI0f3C3w==",
        "310",
        "v1",
    )
    parsed = read_export_keys(sample, ring, 2653920 + 144)  # the day after the keys' day
    assert parsed.key_count == 140
    first = parsed.keys[0]
    assert first.key_data.hex() == "0003d60b188f19856e8b3dd29a0c463b"
    assert (first.rolling_start_interval_number, first.transmission_risk_level) == (2653920, 3)
    assert {parsed.keys[i].rolling_period for i in range(len(parsed.keys))} == {144}
