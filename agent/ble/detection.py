"""Validating one advertisement report: pure, no bleak types.

A report becomes a :class:`~agent.models.Sighting` only with exactly 20 bytes of 0xFD6F
service data and a real RSSI (bad-input cases 1, 2, 6). The UUID list and flags
are not required (Android sends no flags). The address is never looked at.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

from agent.constants import (
    CALIBRATED_RSSI_MAX,
    CALIBRATED_RSSI_MIN,
    EN_SERVICE_UUID,
    RPI_LENGTH,
    RSSI_MAX_DBM,
    RSSI_MIN_DBM,
    SERVICE_DATA_LENGTH,
)
from agent.models import Sighting


class Verdict(enum.Enum):
    ACCEPTED = "accepted"
    FOREIGN = "foreign"
    BAD_LENGTH = "bad_length"
    BAD_RSSI = "bad_rssi"


def calibrated_rssi(raw: int, correction: int) -> int:
    """``raw + correction`` clamped to [-127, 126] (Google's contact_record.proto)."""
    return max(CALIBRATED_RSSI_MIN, min(CALIBRATED_RSSI_MAX, raw + correction))


def en_service_data(service_data: Mapping[str, bytes]) -> bytes | None:
    """The 0xFD6F service data of a report, whatever the case of the UUID key."""
    for uuid, data in service_data.items():
        if isinstance(uuid, str) and uuid.lower() in (EN_SERVICE_UUID, "fd6f"):
            return data
    return None


def parse_report(
    service_data: Mapping[str, bytes],
    rssi: int | None,
    *,
    time: float,
    scan_start: float | None,
    rssi_correction: int = 0,
) -> tuple[Verdict, Sighting | None]:
    """Check one report and build its sighting.

    Args:
        service_data: UUID string -> bytes, as bleak reports it.
        rssi: raw RSSI in dBm, or None when BlueZ gave none.
        time: Unix time of reception (from the injected clock).
        scan_start: start of the current scan instance.
        rssi_correction: the receiver's calibration, added to the raw RSSI.
    """
    data = en_service_data(service_data)
    if data is None:
        return Verdict.FOREIGN, None
    if not isinstance(data, bytes | bytearray) or len(data) != SERVICE_DATA_LENGTH:
        return Verdict.BAD_LENGTH, None
    if (
        rssi is None
        or isinstance(rssi, bool)
        or not isinstance(rssi, int)
        or not RSSI_MIN_DBM <= rssi <= RSSI_MAX_DBM
    ):
        return Verdict.BAD_RSSI, None
    raw = bytes(data)
    sighting = Sighting(
        time=time,
        rpi=raw[:RPI_LENGTH],
        aem=raw[RPI_LENGTH:],
        rssi=calibrated_rssi(rssi, rssi_correction),
        scan_start=scan_start,
    )
    return Verdict.ACCEPTED, sighting
