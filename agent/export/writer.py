"""Writing signed exports the way Google's reference server does
(``internal/export/exportfile.go``).

Used by the tests, the local test key server, ``keys export-own`` and field tests:
keys sorted by key bytes, transmission risk always written, ``rolling_period`` omitted
when it is 144, batch 1/1, ECDSA P-256 over all of ``export.bin``. The lower-level
builders (:func:`build_export_bin`, :func:`build_export_sig`, :func:`zip_entries`) let
tests make deliberately broken files from the same parts.
"""

from __future__ import annotations

import io
import os
import warnings
import zipfile
from collections.abc import Sequence
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from agent.constants import (
    EXPORT_BIN_NAME,
    EXPORT_HEADER,
    EXPORT_SIG_NAME,
    SIGNATURE_ALGORITHM_P256_SHA256,
    TEK_ROLLING_PERIOD,
)
from agent.errors import MalformedInputError
from agent.export import export_pb2 as pb
from agent.export.signature import HASH_BY_ALGORITHM, sign
from agent.models import ReportType, TemporaryExposureKey

Signer = tuple[ec.EllipticCurvePrivateKey, str, str]
"""(private key, key id, key version)."""

_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


def _key_message(key: TemporaryExposureKey) -> pb.TemporaryExposureKey:
    message = pb.TemporaryExposureKey(
        key_data=key.key_data, transmission_risk_level=key.transmission_risk_level
    )
    if key.rolling_start_interval_number:
        message.rolling_start_interval_number = key.rolling_start_interval_number
    if key.rolling_period != TEK_ROLLING_PERIOD:
        message.rolling_period = key.rolling_period
    if key.report_type != ReportType.UNKNOWN:
        message.report_type = int(key.report_type)  # type: ignore[assignment]
    if key.days_since_onset_of_symptoms is not None:
        message.days_since_onset_of_symptoms = key.days_since_onset_of_symptoms
    return message


def _sorted(keys: Sequence[TemporaryExposureKey]) -> list[TemporaryExposureKey]:
    return sorted(keys, key=lambda k: (k.key_data, k.rolling_start_interval_number))


def _info(key_id: str, key_version: str, algorithm: str) -> pb.SignatureInfo:
    return pb.SignatureInfo(
        verification_key_id=key_id,
        verification_key_version=key_version,
        signature_algorithm=algorithm,
    )


def build_export_bin(
    keys: Sequence[TemporaryExposureKey],
    *,
    signature_infos: Sequence[tuple[str, str, str]],
    region: str,
    start_timestamp: int,
    end_timestamp: int,
    revised_keys: Sequence[TemporaryExposureKey] = (),
    batch_num: int = 1,
    batch_size: int = 1,
) -> bytes:
    """Header + ``TemporaryExposureKeyExport``; ``signature_infos`` are (id, version, oid)."""
    message = pb.TemporaryExposureKeyExport(
        start_timestamp=start_timestamp,
        end_timestamp=end_timestamp,
        region=region,
        batch_num=batch_num,
        batch_size=batch_size,
        signature_infos=[_info(*i) for i in signature_infos],
        keys=[_key_message(k) for k in _sorted(keys)],
        revised_keys=[_key_message(k) for k in _sorted(revised_keys)],
    )
    return EXPORT_HEADER + message.SerializeToString()


def build_export_sig(
    export_bin: bytes,
    signers: Sequence[Signer],
    *,
    algorithm: str = SIGNATURE_ALGORITHM_P256_SHA256,
    batch_num: int = 1,
    batch_size: int = 1,
) -> bytes:
    """``TEKSignatureList`` with one signature per signer over all of ``export_bin``."""
    if algorithm not in HASH_BY_ALGORITHM:
        raise MalformedInputError(f"unsupported signature algorithm {algorithm!r}")
    signatures = [
        pb.TEKSignature(
            signature_info=_info(key_id, key_version, algorithm),
            batch_num=batch_num,
            batch_size=batch_size,
            signature=sign(export_bin, private_key, algorithm),
        )
        for private_key, key_id, key_version in signers
    ]
    return pb.TEKSignatureList(signatures=signatures).SerializeToString()


def zip_entries(
    entries: Sequence[tuple[str, bytes]], *, compression: int = zipfile.ZIP_DEFLATED
) -> bytes:
    """A ZIP of the given (name, data) entries, in order; names may repeat (for tests)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in entries:
            info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
            info.compress_type = compression
            info.external_attr = 0o644 << 16
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", "Duplicate name", UserWarning)
                archive.writestr(info, data)
    return buffer.getvalue()


def write_export(
    keys: Sequence[TemporaryExposureKey],
    signing_key: ec.EllipticCurvePrivateKey,
    *,
    key_id: str = "310",
    key_version: str = "v1",
    region: str = "ZZ",
    start_timestamp: int,
    end_timestamp: int,
    revised_keys: Sequence[TemporaryExposureKey] = (),
    extra_signers: Sequence[Signer] = (),
) -> bytes:
    """A complete signed export ZIP, batch 1/1; extra signers co-sign (newest first)."""
    signers: list[Signer] = [(signing_key, key_id, key_version), *extra_signers]
    infos = [(kid, ver, SIGNATURE_ALGORITHM_P256_SHA256) for _, kid, ver in signers]
    export_bin = build_export_bin(
        keys,
        signature_infos=infos,
        region=region,
        start_timestamp=start_timestamp,
        end_timestamp=end_timestamp,
        revised_keys=revised_keys,
    )
    export_sig = build_export_sig(export_bin, signers)
    return zip_entries([(EXPORT_BIN_NAME, export_bin), (EXPORT_SIG_NAME, export_sig)])


def generate_signing_key() -> ec.EllipticCurvePrivateKey:
    """A fresh ECDSA P-256 export-signing key."""
    return ec.generate_private_key(ec.SECP256R1())


def public_key_pem(key: ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) -> bytes:
    """SubjectPublicKeyInfo PEM of a key (what ``[keys] public_keys`` pins)."""
    public = key.public_key() if isinstance(key, ec.EllipticCurvePrivateKey) else key
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def private_key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    """Unencrypted PKCS#8 PEM of a signing key."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def load_signing_key(data: bytes) -> ec.EllipticCurvePrivateKey:
    """A P-256 private key from (unencrypted) PEM."""
    try:
        key = serialization.load_pem_private_key(bytes(data), password=None)
    except (ValueError, TypeError) as exc:
        raise MalformedInputError(
            f"signing key is not an unencrypted PEM private key: {exc}"
        ) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise MalformedInputError("signing key must be an ECDSA P-256 (secp256r1) key")
    return key


def write_key_files(key: ec.EllipticCurvePrivateKey, private_path: Path, public_path: Path) -> None:
    """Write a signing key pair as PEM files; the private one with mode 0600."""
    public_path.write_bytes(public_key_pem(key))
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as stream:
        stream.write(private_key_pem(key))
    os.chmod(private_path, 0o600)
