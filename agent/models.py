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
    """Diagnosis report type (field 5 of ``TemporaryExposureKey`` in
    ``agent/export/export.proto``)."""

    UNKNOWN = 0
    CONFIRMED_TEST = 1
    CONFIRMED_CLINICAL_DIAGNOSIS = 2
    SELF_REPORT = 3
    RECURSIVE = 4
    REVOKED = 5


@dataclass(frozen=True, slots=True)
class TemporaryExposureKey:
    """A TEK with its validity, as published in diagnosis-key exports (export.proto)."""

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

    No address is kept: the RPI is the only identifier GAEN needs (as in Google's
    contact_record.proto).
    """

    time: float
    """Unix seconds (UTC) of reception."""
    rpi: bytes
    aem: bytes
    """As received, still encrypted."""
    rssi: int
    """Calibrated RSSI: raw + the receiver's correction, clamped to [-127, 126]."""
    scan_start: float | None = None
    """Start of the scan instance it was received in (None: unknown, e.g. imported)."""
    relay: int = 0
    """Relay guard reasons (:class:`agent.relayguard.Reason` bits); 0: nothing noticed."""

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


@dataclass(frozen=True, slots=True)
class ObservedScan:
    """All sightings of one RPI within one scan instance, as aggregated by the store.

    This is what the matcher reads: attenuation needs the TX power inside the AEM, which
    can only be decrypted once a diagnosis key matches, so the store keeps RSSI figures.
    """

    rpi: bytes
    aem: bytes
    first_seen: float
    last_seen: float
    count: int
    rssi_min: int
    rssi_max: int
    rssi_mean: float
    previous_scan_end: float | None
    """End of the scan before this one (None: unknown -> 120 s is assumed, Google's
    ExposureWindowUtils)."""
    scan_start: float | None = None
    """Start of the scan instance these sightings belong to (None: unknown, e.g. imported)."""
    previous_scan_start: float | None = None
    """Start of the scan before this one. Start-to-start is the time a scan stands for,
    right both for GAEN's 4 s duty scans and for back-to-back slots of continuous scanning."""
    relay: int = 0
    """Relay guard reasons of its sightings, OR-ed (:class:`agent.relayguard.Reason`)."""

    def __repr__(self) -> str:
        return f"ObservedScan(first_seen={self.first_seen}, count={self.count}, <rpi>)"


@dataclass(frozen=True, slots=True)
class ScanInstance:
    """One scan of an exposure window (Google's ExposureWindowUtils)."""

    typical_attenuation_db: int
    min_attenuation_db: int
    seconds_since_last_scan: int


@dataclass(frozen=True, slots=True)
class ExposureWindow:
    """Up to 30 minutes of matched sightings of one diagnosis key (Google's ExposureWindowUtils)."""

    start: int
    """Unix seconds of the first matched sighting."""
    duration_seconds: int
    report_type: ReportType
    infectiousness: int
    """0 NONE, 1 STANDARD, 2 HIGH."""
    calibration_confidence: int
    scan_instances: tuple[ScanInstance, ...]
    key_data: bytes
    """The (public) diagnosis key that matched; lets a later revocation remove the window."""
    score: float = 0.0
    weighted_duration_seconds: float = 0.0
    relay: int = 0
    """Relay guard reasons of its scans, OR-ed (:class:`agent.relayguard.Reason`)."""

    @property
    def day(self) -> int:
        """Unix seconds of the UTC midnight of the window."""
        return self.start - self.start % 86_400

    @property
    def min_attenuation_db(self) -> int:
        return min(s.min_attenuation_db for s in self.scan_instances)

    @property
    def typical_attenuation_db(self) -> int:
        values = [s.typical_attenuation_db for s in self.scan_instances]
        return round(sum(values) / len(values))

    def __repr__(self) -> str:
        return (
            f"ExposureWindow(start={self.start}, duration={self.duration_seconds}, "
            f"scans={len(self.scan_instances)}, score={self.score})"
        )


@dataclass(frozen=True, slots=True)
class DailySummary:
    """Scores of one UTC day (Google's DailySummaryUtils)."""

    day: int
    """Unix seconds of the UTC midnight."""
    score_sum: float
    maximum_score: float
    weighted_duration_sum: float
