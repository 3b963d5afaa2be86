"""Plain value types shared by the core and the adapters."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from agent.constants import (
    AEM_LENGTH,
    RPI_LENGTH,
    TEK_LENGTH,
    TEK_ROLLING_PERIOD,
)
from agent.errors import MalformedInputError


class ReportType(enum.IntEnum):
    """Diagnosis report type (export proto field 5, ``docs/gaen-spec.md`` §4.4)."""

    UNKNOWN = 0
    CONFIRMED_TEST = 1
    CONFIRMED_CLINICAL_DIAGNOSIS = 2
    SELF_REPORT = 3
    RECURSIVE = 4
    REVOKED = 5


@dataclass(frozen=True, slots=True)
class TemporaryExposureKey:
    """A TEK with its validity, as published in diagnosis-key exports (§4.4)."""

    key_data: bytes
    rolling_start_interval_number: int
    rolling_period: int = TEK_ROLLING_PERIOD
    transmission_risk_level: int = 0
    report_type: ReportType = ReportType.UNKNOWN
    days_since_onset_of_symptoms: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.key_data, bytes) or len(self.key_data) != TEK_LENGTH:
            raise MalformedInputError(f"key_data must be {TEK_LENGTH} bytes")
        if not 1 <= self.rolling_period <= TEK_ROLLING_PERIOD:
            raise MalformedInputError(f"rolling_period must be 1..144, got {self.rolling_period}")
        if self.rolling_start_interval_number < 0:
            raise MalformedInputError("rolling_start_interval_number must not be negative")

    @property
    def end_interval_number(self) -> int:
        """First interval after the key's validity."""
        return self.rolling_start_interval_number + self.rolling_period

    def __repr__(self) -> str:  # never print key material by accident
        return (
            f"TemporaryExposureKey(<16 bytes>, start={self.rolling_start_interval_number}, "
            f"period={self.rolling_period}, report_type={self.report_type.name})"
        )


@dataclass(frozen=True, slots=True)
class Sighting:
    """One received EN advertisement, as the scanner hands it to the store.

    No address is kept: the RPI is the only identifier GAEN needs (§3.5).
    """

    time: float
    """Unix seconds (UTC) of reception."""
    rpi: bytes
    aem: bytes
    """As received, still encrypted."""
    rssi: int
    """Calibrated RSSI: raw + the receiver's correction, clamped to [-127, 126]."""

    def __post_init__(self) -> None:
        if not isinstance(self.rpi, bytes) or len(self.rpi) != RPI_LENGTH:
            raise MalformedInputError(f"rpi must be {RPI_LENGTH} bytes")
        if not isinstance(self.aem, bytes) or len(self.aem) != AEM_LENGTH:
            raise MalformedInputError(f"aem must be {AEM_LENGTH} bytes")

    def __repr__(self) -> str:
        return f"Sighting(time={self.time}, rssi={self.rssi}, <rpi>, <aem>)"


@dataclass(frozen=True, slots=True)
class ScanPeriod:
    """A scan's start and end (Unix seconds): the basis of seconds-since-last-scan."""

    start: float
    end: float
