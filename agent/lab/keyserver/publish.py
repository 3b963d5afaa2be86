"""Checks of ``POST /v1/publish`` as Google's key server makes them, pure functions.

Source of each rule (google/exposure-notifications-server):

- request and response shapes, error codes: ``pkg/api/v1/exposure_types.go``
  (``Publish``, ``PublishResponse``, ``ExposureKey``; ``bad_request``,
  ``health_authority_verification_certificate_invalid``, ``missing_revision_token``,
  ``invalid_revision_token``, ``partial_failure``);
- body decoding: ``internal/jsonutil/unmarshal.go`` (Content-Type must start with
  ``application/json`` or 415, unknown fields refused, at most 64,000 bytes);
- the per-key rules and partial success: ``internal/publish/model/exposure_model.go``
  (``AdjustAndValidate``: 16 bytes after base64 in any of the four RFC 4648 forms,
  rolling period 1..144, the key must still be valid after the maximum age, so
  start + period > now - 15 days, not starting in the future, TR 0..8; a bad key is
  dropped and the others are inserted, with ``code: partial_failure``; only when no key
  is left is the request a 400; 1..30 keys and at most 3 per start interval apply to the
  whole request; the transmission risk of a key sent without one is 2 for confirmed,
  4 for likely, 6 for negative (``ReportTypeTransmissionRisk``); without a symptom onset
  the onset defaults to 4 days ago);
- certificate and HMAC failures: ``internal/publish/publish.go`` answers HTTP 401 with
  ``health_authority_verification_certificate_invalid`` for both.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac as std_hmac
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from agent.constants import (
    KEY_MAX_AGE_DAYS,
    MAX_TEKS_PER_START_INTERVAL,
    TEK_LENGTH,
    TEK_ROLLING_PERIOD,
)
from agent.lab.keyserver.refusal import ApiRefusal
from agent.lab.keyserver.verification import CERTIFICATE_INVALID, Certificate
from agent.models import ReportType, TemporaryExposureKey

MAX_KEYS_ON_PUBLISH = 30
MAX_DAYS_SINCE_ONSET = 14
DEFAULT_SYMPTOM_ONSET_DAYS_AGO = 4
MAX_TRANSMISSION_RISK = 8

BAD_REQUEST = "bad_request"

UNKNOWN_HEALTH_AUTHORITY = "unknown_health_authority_id"
MISSING_REVISION_TOKEN = "missing_revision_token"  # noqa: S105 (an error code)
INVALID_REVISION_TOKEN = "invalid_revision_token"  # noqa: S105 (an error code)
PARTIAL_FAILURE = "partial_failure"

PUBLISH_FIELDS = frozenset(
    {
        "temporaryExposureKeys",
        "healthAuthorityID",
        "verificationPayload",
        "hmacKey",
        "symptomOnsetInterval",
        "traveler",
        "revisionToken",
        "padding",
    }
)
KEY_FIELDS = frozenset({"key", "rollingStartNumber", "rollingPeriod", "transmissionRisk"})

TRANSMISSION_RISK_BY_REPORT_TYPE = {
    ReportType.CONFIRMED_TEST: 2,
    ReportType.CONFIRMED_CLINICAL_DIAGNOSIS: 4,
    ReportType.REVOKED: 6,
}


@dataclass(frozen=True, slots=True)
class PostedKey:
    """One ``temporaryExposureKeys`` entry exactly as posted (the HMAC covers these)."""

    key: str
    rolling_start: int
    rolling_period: int
    transmission_risk: int


@dataclass(frozen=True, slots=True)
class PublishRequest:
    """A parsed publish body."""

    keys: tuple[PostedKey, ...]
    health_authority_id: str
    certificate: str
    hmac_key: bytes
    revision_token: str
    symptom_onset_interval: int


def decode_base64(text: str) -> bytes | None:
    """Standard or URL-safe base64, padded or not (the server's ``base64util``)."""
    if not text.isascii():
        return None
    bare = text.rstrip("=")
    for alphabet in (b"+/", b"-_"):
        try:
            return base64.b64decode(bare + "=" * (-len(bare) % 4), altchars=alphabet, validate=True)
        except (binascii.Error, ValueError):
            continue
    return None


def _int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not -(2**31) <= value < 2**31:
        raise ApiRefusal(400, BAD_REQUEST, f'invalid value "{name}": must be a 32-bit integer')
    return value


def _unknown(fields: Mapping[str, object], allowed: frozenset[str], where: str) -> None:
    unknown = sorted(set(fields) - allowed)
    if unknown:
        raise ApiRefusal(400, BAD_REQUEST, f'unknown field "{unknown[0][:40]}" in {where}')


def _posted_key(entry: object) -> PostedKey:
    if not isinstance(entry, Mapping):
        raise ApiRefusal(400, BAD_REQUEST, "temporaryExposureKeys entries must be objects")
    _unknown(entry, KEY_FIELDS, "temporaryExposureKeys")
    key = entry.get("key", "")
    if not isinstance(key, str):
        raise ApiRefusal(400, BAD_REQUEST, 'invalid value "key": must be a string')
    return PostedKey(
        key=key,
        rolling_start=_int(entry.get("rollingStartNumber", 0), "rollingStartNumber"),
        rolling_period=_int(entry.get("rollingPeriod", 0), "rollingPeriod"),
        transmission_risk=_int(entry.get("transmissionRisk", 0), "transmissionRisk"),
    )


def parse_publish(body: Mapping[str, object]) -> PublishRequest:
    """The JSON body's shape; 400 ``bad_request`` for unknown fields or wrong types."""
    _unknown(body, PUBLISH_FIELDS, "the publish request")
    raw_keys = body.get("temporaryExposureKeys", [])
    if not isinstance(raw_keys, list):
        raise ApiRefusal(400, BAD_REQUEST, "temporaryExposureKeys must be a list")
    if not 1 <= len(raw_keys) <= MAX_KEYS_ON_PUBLISH:
        raise ApiRefusal(
            400,
            BAD_REQUEST,
            f"publish must carry 1..{MAX_KEYS_ON_PUBLISH} keys, got {len(raw_keys)}",
        )
    keys = tuple(_posted_key(entry) for entry in raw_keys)
    strings = {}
    for name in ("healthAuthorityID", "verificationPayload", "hmacKey", "revisionToken"):
        value = body.get(name, "")
        if not isinstance(value, str):
            raise ApiRefusal(400, BAD_REQUEST, f'invalid value "{name}": must be a string')
        strings[name] = value
    if not isinstance(body.get("traveler", False), bool):
        raise ApiRefusal(400, BAD_REQUEST, 'invalid value "traveler": must be a boolean')
    onset = _int(body.get("symptomOnsetInterval", 0), "symptomOnsetInterval")
    if not strings["healthAuthorityID"]:
        raise ApiRefusal(401, UNKNOWN_HEALTH_AUTHORITY, "healthAuthorityID is missing")
    hmac_key = decode_base64(strings["hmacKey"]) or b""
    return PublishRequest(
        keys=keys,
        health_authority_id=strings["healthAuthorityID"],
        certificate=strings["verificationPayload"],
        hmac_key=hmac_key,
        revision_token=strings["revisionToken"],
        symptom_onset_interval=onset,
    )


def _hmac_cleartext(keys: Sequence[PostedKey], *, include_tr: bool) -> bytes:
    segments = []
    for key in keys:
        text = f"{key.key}.{key.rolling_start}.{key.rolling_period}"
        if include_tr:
            text += f".{key.transmission_risk}"
        segments.append(text)
    return ",".join(sorted(segments)).encode("utf-8")


def check_hmac(request: PublishRequest, certificate: Certificate) -> None:
    """Recompute the TEK HMAC over the keys as posted; a mismatch is a bad certificate.

    With every transmission risk 0 the form without ``.TR`` is accepted as well
    (``CalculateAllAllowedExposureKeyHMAC``).
    """
    forms = [True]
    if all(k.transmission_risk == 0 for k in request.keys):
        forms.append(False)
    found = False
    for include_tr in forms:
        mac = std_hmac.new(
            request.hmac_key, _hmac_cleartext(request.keys, include_tr=include_tr), hashlib.sha256
        ).digest()
        found |= std_hmac.compare_digest(mac, certificate.tekmac)
    if not request.hmac_key or not found:
        raise ApiRefusal(
            401,
            CERTIFICATE_INVALID,
            "unable to validate diagnosis verification: HMAC mismatch (the keys do not "
            "match the verification certificate)",
        )


@dataclass(frozen=True, slots=True)
class Transformed:
    """The keys that passed, and why each dropped one did not."""

    keys: tuple[TemporaryExposureKey, ...]
    errors: tuple[str, ...]


def _one_key(i: int, posted: PostedKey, now_interval: int) -> TemporaryExposureKey | str:
    key_data = decode_base64(posted.key)
    if key_data is None or len(key_data) != TEK_LENGTH:
        return f"key {i}: invalid key, must be {TEK_LENGTH} bytes of base64"
    period = posted.rolling_period
    if not 1 <= period <= TEK_ROLLING_PERIOD:
        return f"key {i}: invalid interval count {period}, must be 1..{TEK_ROLLING_PERIOD}"
    oldest = now_interval - KEY_MAX_AGE_DAYS * TEK_ROLLING_PERIOD
    if posted.rolling_start + period <= oldest:
        return f"key {i}: expired more than {KEY_MAX_AGE_DAYS} days ago (too old)"
    if posted.rolling_start > now_interval:
        return f"key {i}: starts in the future"
    if not 0 <= posted.transmission_risk <= MAX_TRANSMISSION_RISK:
        return f"key {i}: invalid transmission risk {posted.transmission_risk}, must be 0..8"
    return TemporaryExposureKey(
        key_data=key_data,
        rolling_start_interval_number=posted.rolling_start,
        rolling_period=period,
        transmission_risk_level=posted.transmission_risk,
    )


def transform_keys(request: PublishRequest, now_interval: int) -> Transformed:
    """Per-key checks: bad keys are dropped with a reason; request-wide rules refuse all.

    Raises:
        ApiRefusal: 400 ``bad_request`` when no key is left, more than 3 share a start
            interval, or a key appears twice.
    """
    keys: list[TemporaryExposureKey] = []
    errors: list[str] = []
    for i, posted in enumerate(request.keys):
        result = _one_key(i, posted, now_interval)
        if isinstance(result, str):
            errors.append(result)
        else:
            keys.append(result)
    if not keys:
        raise ApiRefusal(400, BAD_REQUEST, "unable to read request data: " + "; ".join(errors))
    per_start = Counter(key.rolling_start_interval_number for key in keys)
    if max(per_start.values()) > MAX_TEKS_PER_START_INTERVAL:
        raise ApiRefusal(
            400,
            BAD_REQUEST,
            f"more than {MAX_TEKS_PER_START_INTERVAL} keys share one rolling start interval",
        )
    if len({key.key_data for key in keys}) != len(keys):
        raise ApiRefusal(400, BAD_REQUEST, "the same key appears twice")
    return Transformed(tuple(keys), tuple(errors))


def onset_interval(request: PublishRequest, certificate: Certificate, now_interval: int) -> int:
    """Symptom onset: the request's, else the certificate's, else 4 days ago (UTC day)."""
    oldest = now_interval - MAX_DAYS_SINCE_ONSET * TEK_ROLLING_PERIOD
    for candidate in (request.symptom_onset_interval, certificate.symptom_onset_interval):
        if candidate and oldest <= candidate < now_interval:
            return candidate - candidate % TEK_ROLLING_PERIOD
    default = now_interval - DEFAULT_SYMPTOM_ONSET_DAYS_AGO * TEK_ROLLING_PERIOD
    return default - default % TEK_ROLLING_PERIOD


def apply_certificate(
    keys: Sequence[TemporaryExposureKey], certificate: Certificate, onset: int
) -> list[TemporaryExposureKey]:
    """Report type from the certificate; TR backfilled from it when 0; days since onset."""
    result = []
    for key in keys:
        start_day = key.rolling_start_interval_number - (
            key.rolling_start_interval_number % TEK_ROLLING_PERIOD
        )
        days = (start_day - onset) // TEK_ROLLING_PERIOD
        tr = key.transmission_risk_level or TRANSMISSION_RISK_BY_REPORT_TYPE.get(
            certificate.report_type, 0
        )
        result.append(
            replace(
                key,
                report_type=certificate.report_type,
                transmission_risk_level=tr,
                days_since_onset_of_symptoms=days if abs(days) <= MAX_DAYS_SINCE_ONSET else None,
            )
        )
    return result
