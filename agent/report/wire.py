"""JSON shapes of the publish protocol (google/exposure-notifications-server
``pkg/api/v1/exposure_types.go``), shared by client and test server."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping

from agent.constants import TEK_LENGTH, TEK_ROLLING_PERIOD
from agent.errors import MalformedInputError
from agent.models import TemporaryExposureKey

MAX_TRANSMISSION_RISK = 8


def b64encode(data: bytes) -> str:
    """Standard base64 with padding, as the protocol uses everywhere."""
    return base64.b64encode(data).decode("ascii")


def b64decode(name: str, text: object, length: int | None = None) -> bytes:
    """Strict standard base64; a clear error naming the field otherwise."""
    if not isinstance(text, str):
        raise MalformedInputError(f"{name} must be a base64 string")
    try:
        data = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise MalformedInputError(f"{name} is not valid base64") from None
    if length is not None and len(data) != length:
        raise MalformedInputError(f"{name} must be {length} bytes, got {len(data)}")
    return data


def key_to_json(key: TemporaryExposureKey) -> dict[str, object]:
    """One entry of ``temporaryExposureKeys``."""
    return {
        "key": b64encode(key.key_data),
        "rollingStartNumber": key.rolling_start_interval_number,
        "rollingPeriod": key.rolling_period,
        "transmissionRisk": key.transmission_risk_level,
    }


def _int_field(entry: Mapping[str, object], name: str, where: str, default: int | None) -> int:
    value = entry.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise MalformedInputError(f"{where}.{name} must be an integer")
    return value


def key_from_json(entry: object, where: str = "key") -> TemporaryExposureKey:
    """Parse one ``temporaryExposureKeys`` entry, checking the per-key rules of Google's key
    server's publish API."""
    if not isinstance(entry, Mapping):
        raise MalformedInputError(f"{where} must be an object")
    key_data = b64decode(f"{where}.key", entry.get("key"), TEK_LENGTH)
    start = _int_field(entry, "rollingStartNumber", where, None)
    period = _int_field(entry, "rollingPeriod", where, TEK_ROLLING_PERIOD)
    risk = _int_field(entry, "transmissionRisk", where, 0)
    if start < 0:
        raise MalformedInputError(f"{where}.rollingStartNumber must not be negative")
    if not 1 <= period <= TEK_ROLLING_PERIOD:
        raise MalformedInputError(f"{where}.rollingPeriod must be 1..144, got {period}")
    if not 0 <= risk <= MAX_TRANSMISSION_RISK:
        raise MalformedInputError(f"{where}.transmissionRisk must be 0..8, got {risk}")
    return TemporaryExposureKey(
        key_data=key_data,
        rolling_start_interval_number=start,
        rolling_period=period,
        transmission_risk_level=risk,
    )
