"""Wire formats of the EN advertisement: metadata (4 B) and service data (RPI || AEM, 20 B).

Frozen value objects with ``from_bytes`` and ``__bytes__``; parsing checks lengths and
ranges and raises :class:`~agent.errors.MalformedInputError` with a readable message
(EN Bluetooth Specification v1.2: advertising payload and metadata).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from agent.constants import (
    AEM_LENGTH,
    EN_SERVICE_UUID16,
    METADATA_CONFIDENCE_MASK,
    METADATA_CONFIDENCE_SHIFT,
    METADATA_LENGTH,
    METADATA_MAJOR_1,
    METADATA_MAJOR_MASK,
    METADATA_VERSION_1_0,
    METADATA_VERSION_1_1,
    RPI_LENGTH,
    SERVICE_DATA_LENGTH,
)
from agent.errors import MalformedInputError

_AD_FLAGS = 0x01
_AD_UUID16_COMPLETE = 0x03
_AD_SERVICE_DATA16 = 0x16


def _as_bytes(name: str, data: object) -> bytes:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise MalformedInputError(f"{name} must be bytes, got {type(data).__name__}")
    return bytes(data)


@dataclass(frozen=True, slots=True)
class Metadata:
    """The 4 plaintext bytes inside an AEM (Bluetooth spec v1.2)."""

    tx_power_dbm: int
    """Calibrated TX power, signed int8, dBm."""
    version: int = METADATA_VERSION_1_0
    """Byte 0 without the confidence bits: 0x40 (v1.0) or 0x50 (v1.1)."""
    calibration_confidence: int = 0
    """0..3 (LOWEST..HIGH); carried only by v1.1."""

    def __post_init__(self) -> None:
        if isinstance(self.tx_power_dbm, bool) or not isinstance(self.tx_power_dbm, int):
            raise MalformedInputError("TX power must be an integer number of dBm")
        if not -128 <= self.tx_power_dbm <= 127:
            raise MalformedInputError(f"TX power must be in -128..127 dBm, got {self.tx_power_dbm}")
        if not 0 <= self.calibration_confidence <= 3:
            raise MalformedInputError(
                f"calibration confidence must be 0..3, got {self.calibration_confidence}"
            )
        if not 0 <= self.version <= 0xFF or self.version & 0x0F:
            raise MalformedInputError(f"bad metadata version byte 0x{self.version:02x}")
        if self.calibration_confidence and self.version != METADATA_VERSION_1_1:
            raise MalformedInputError("calibration confidence needs metadata version 1.1")

    @property
    def major_version_supported(self) -> bool:
        """True when the major version is 1 (bits 7:6 = 01), the only one defined."""
        return self.version & METADATA_MAJOR_MASK == METADATA_MAJOR_1

    @classmethod
    def from_bytes(cls, data: bytes) -> Metadata:
        raw = _as_bytes("metadata", data)
        if len(raw) != METADATA_LENGTH:
            raise MalformedInputError(f"metadata must be {METADATA_LENGTH} bytes, got {len(raw)}")
        version = raw[0] & 0xF0
        confidence = (raw[0] & METADATA_CONFIDENCE_MASK) >> METADATA_CONFIDENCE_SHIFT
        if version != METADATA_VERSION_1_1:
            confidence = 0
        (tx_power,) = struct.unpack("b", raw[1:2])
        return cls(tx_power_dbm=tx_power, version=version, calibration_confidence=confidence)

    def __bytes__(self) -> bytes:
        byte0 = self.version | (self.calibration_confidence << METADATA_CONFIDENCE_SHIFT)
        return struct.pack("Bbxx", byte0, self.tx_power_dbm)


@dataclass(frozen=True, slots=True)
class ServiceData:
    """Service data of UUID 0xFD6F: RPI (16 B) || AEM (4 B) (Bluetooth spec v1.2)."""

    rpi: bytes
    aem: bytes

    def __post_init__(self) -> None:
        rpi = _as_bytes("RPI", self.rpi)
        aem = _as_bytes("AEM", self.aem)
        if len(rpi) != RPI_LENGTH:
            raise MalformedInputError(f"RPI must be {RPI_LENGTH} bytes, got {len(rpi)}")
        if len(aem) != AEM_LENGTH:
            raise MalformedInputError(f"AEM must be {AEM_LENGTH} bytes, got {len(aem)}")
        object.__setattr__(self, "rpi", rpi)
        object.__setattr__(self, "aem", aem)

    @classmethod
    def from_bytes(cls, data: bytes) -> ServiceData:
        raw = _as_bytes("service data", data)
        if len(raw) != SERVICE_DATA_LENGTH:
            raise MalformedInputError(
                f"EN service data must be {SERVICE_DATA_LENGTH} bytes, got {len(raw)}"
            )
        return cls(rpi=raw[:RPI_LENGTH], aem=raw[RPI_LENGTH:])

    def __bytes__(self) -> bytes:
        return self.rpi + self.aem

    def __repr__(self) -> str:  # never print identifiers by accident
        return "ServiceData(<20 bytes>)"


def advertising_data(service_data: ServiceData, flags: int | None = None) -> bytes:
    """The legacy AD structures of an EN advertisement (Bluetooth spec v1.2).

    ``flags=None`` gives what BlueZ builds for a broadcast advertisement (UUID list and
    service data, 28 bytes); ``flags=0x1A`` gives the 31-byte form of the reference code.
    """
    uuid = struct.pack("<H", EN_SERVICE_UUID16)
    parts = []
    if flags is not None:
        parts.append(bytes([2, _AD_FLAGS, flags & 0xFF]))
    parts.append(bytes([3, _AD_UUID16_COMPLETE]) + uuid)
    body = bytes(service_data)
    parts.append(bytes([1 + 2 + len(body), _AD_SERVICE_DATA16]) + uuid + body)
    return b"".join(parts)
