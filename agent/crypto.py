"""Exposure Notification cryptography, byte-exact with the v1.2 specification.

Pure functions: bytes and interval numbers in, bytes out; nothing reads a clock. Each
function names the spec section (``docs/gaen-spec.md`` §1) it implements. Verified
against the 144 official vectors in ``tests/unit/test_crypto_vectors.py``.
"""

from __future__ import annotations

import os
import struct

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from agent.constants import (
    AEM_LENGTH,
    AEMK_INFO,
    RPI_LENGTH,
    RPI_PADDING_PREFIX,
    RPIK_INFO,
    TEK_LENGTH,
    TEK_ROLLING_PERIOD,
)
from agent.errors import MalformedInputError

_UINT32_MAX = 0xFFFF_FFFF


def _require_length(name: str, value: bytes, length: int) -> None:
    if not isinstance(value, bytes | bytearray | memoryview):
        raise MalformedInputError(f"{name} must be bytes, got {type(value).__name__}")
    if len(value) != length:
        raise MalformedInputError(f"{name} must be {length} bytes, got {len(value)}")


def _require_interval(en_interval: int) -> None:
    if isinstance(en_interval, bool) or not isinstance(en_interval, int):
        raise MalformedInputError(f"interval number must be an integer, got {en_interval!r}")
    if not 0 <= en_interval <= _UINT32_MAX:
        raise MalformedInputError(f"interval number must be in 0..2^32-1, got {en_interval}")


def new_tek() -> bytes:
    """A fresh Temporary Exposure Key: 16 bytes from the OS CSPRNG (§1.1)."""
    return os.urandom(TEK_LENGTH)


def _hkdf16(tek: bytes, info: bytes) -> bytes:
    _require_length("TEK", tek, TEK_LENGTH)
    return HKDF(algorithm=hashes.SHA256(), length=16, salt=None, info=info).derive(bytes(tek))


def derive_rpik(tek: bytes) -> bytes:
    """RPIK = HKDF-SHA256(TEK, salt=None, info="EN-RPIK", 16) (§1.1)."""
    return _hkdf16(tek, RPIK_INFO)


def derive_aemk(tek: bytes) -> bytes:
    """AEMK = HKDF-SHA256(TEK, salt=None, info="EN-AEMK", 16) (§1.1)."""
    return _hkdf16(tek, AEMK_INFO)


def padded_data(en_interval: int) -> bytes:
    """PaddedData_j = "EN-RPI" || 0x00 x 6 || uint32_le(ENIN_j) (§1.1)."""
    _require_interval(en_interval)
    return RPI_PADDING_PREFIX + struct.pack("<I", en_interval)


def padded_data_blocks(start_interval: int, count: int) -> bytes:
    """PaddedData for ``count`` consecutive intervals, concatenated (one AES call's input)."""
    _require_interval(start_interval)
    if count < 0:
        raise MalformedInputError(f"count must not be negative, got {count}")
    if count:
        _require_interval(start_interval + count - 1)
    return b"".join(
        RPI_PADDING_PREFIX + struct.pack("<I", start_interval + j) for j in range(count)
    )


def _ecb(key: bytes, data: bytes) -> bytes:
    encryptor = Cipher(algorithms.AES(bytes(key)), modes.ECB()).encryptor()  # noqa: S305
    return encryptor.update(data) + encryptor.finalize()


def rpi(rpik: bytes, en_interval: int) -> bytes:
    """RPI_j = AES-128-ECB(RPIK, PaddedData_j) (§1.1)."""
    _require_length("RPIK", rpik, 16)
    return _ecb(rpik, padded_data(en_interval))


def rpis(rpik: bytes, start_interval: int, count: int = TEK_ROLLING_PERIOD) -> list[bytes]:
    """All RPIs of ``count`` intervals from ``start_interval``, in one AES call.

    Equal to ``[rpi(rpik, start_interval + j) for j in range(count)]``.
    """
    _require_length("RPIK", rpik, 16)
    blob = _ecb(rpik, padded_data_blocks(start_interval, count))
    return [blob[i : i + RPI_LENGTH] for i in range(0, len(blob), RPI_LENGTH)]


def aem_crypt(aemk: bytes, rpi_value: bytes, data: bytes) -> bytes:
    """AES-128-CTR(AEMK, counter block = RPI, data): encrypts metadata or decrypts an AEM.

    CTR is symmetric, so the same call turns metadata into the AEM and back (§1.1).
    """
    _require_length("AEMK", aemk, 16)
    _require_length("RPI", rpi_value, RPI_LENGTH)
    _require_length("AEM/metadata", data, AEM_LENGTH)
    encryptor = Cipher(algorithms.AES(bytes(aemk)), modes.CTR(bytes(rpi_value))).encryptor()
    return encryptor.update(bytes(data)) + encryptor.finalize()


def encrypt_aem(aemk: bytes, rpi_value: bytes, metadata: bytes) -> bytes:
    """AEM_j from the 4 metadata bytes (§1.1)."""
    return aem_crypt(aemk, rpi_value, metadata)


def decrypt_aem(aemk: bytes, rpi_value: bytes, aem: bytes) -> bytes:
    """The 4 metadata bytes from an AEM (§1.1)."""
    return aem_crypt(aemk, rpi_value, aem)
