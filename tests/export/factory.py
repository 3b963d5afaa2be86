"""Building blocks for export tests: keys, signed exports and deliberately broken ones."""

from __future__ import annotations

import os
from collections.abc import Sequence

from cryptography.hazmat.primitives.asymmetric import ec

from agent.constants import EXPORT_BIN_NAME, EXPORT_SIG_NAME, SIGNATURE_ALGORITHM_P256_SHA256
from agent.export import (
    PublicKeyRing,
    build_export_bin,
    build_export_sig,
    public_key_pem,
    write_export,
    zip_entries,
)
from agent.models import ReportType, TemporaryExposureKey

NOW_INTERVAL = 2_700_000 - 2_700_000 % 144 + 100
"""A fixed 'now' (an interval in the afternoon of a UTC day) for validation tests."""
TODAY = NOW_INTERVAL - NOW_INTERVAL % 144
START_TS = TODAY * 600
END_TS = START_TS + 3600


def make_keys(count: int, *, day: int = TODAY, days: int = 14) -> list[TemporaryExposureKey]:
    """``count`` random keys spread over the ``days`` days before ``day``."""
    return [
        TemporaryExposureKey(
            key_data=os.urandom(16),
            rolling_start_interval_number=day - 144 * (i % days),
            transmission_risk_level=i % 9,
            report_type=ReportType.CONFIRMED_TEST,
            days_since_onset_of_symptoms=(i % 29) - 14,
        )
        for i in range(count)
    ]


def signed_export(
    keys: Sequence[TemporaryExposureKey],
    signing_key: ec.EllipticCurvePrivateKey,
    **kwargs: object,
) -> bytes:
    return write_export(
        keys,
        signing_key,
        start_timestamp=START_TS,
        end_timestamp=END_TS,
        **kwargs,  # type: ignore[arg-type]
    )


def ring_for(
    key: ec.EllipticCurvePrivateKey, key_id: str = "310", version: str = "v1"
) -> PublicKeyRing:
    return PublicKeyRing.from_pem(public_key_pem(key), key_id, version)


def export_parts(
    keys: Sequence[TemporaryExposureKey],
    signing_key: ec.EllipticCurvePrivateKey,
    *,
    key_id: str = "310",
    version: str = "v1",
    algorithm: str = SIGNATURE_ALGORITHM_P256_SHA256,
    batch: tuple[int, int] = (1, 1),
    sig_batch: tuple[int, int] | None = None,
    infos: Sequence[tuple[str, str, str]] | None = None,
    signers: Sequence[tuple[ec.EllipticCurvePrivateKey, str, str]] | None = None,
) -> tuple[bytes, bytes]:
    """(export.bin, export.sig) with every knob exposed, for broken variants."""
    export_bin = build_export_bin(
        keys,
        signature_infos=infos if infos is not None else [(key_id, version, algorithm)],
        region="ZZ",
        start_timestamp=START_TS,
        end_timestamp=END_TS,
        batch_num=batch[0],
        batch_size=batch[1],
    )
    sb = sig_batch or batch
    export_sig = build_export_sig(
        export_bin,
        signers if signers is not None else [(signing_key, key_id, version)],
        algorithm=algorithm,
        batch_num=sb[0],
        batch_size=sb[1],
    )
    return export_bin, export_sig


def zip_of(export_bin: bytes, export_sig: bytes) -> bytes:
    return zip_entries([(EXPORT_BIN_NAME, export_bin), (EXPORT_SIG_NAME, export_sig)])
