"""Checks of ``POST /v1/publish`` (gaen-spec §5.1 server validation), pure functions.

1..30 keys; each 16 bytes; rolling start at most 15 days old (360 h) and not in the
future; rolling period 1..144; at most 3 keys sharing a start interval (same-day
release); TR 0..8; no key twice. The TEK HMAC must match the certificate's ``tekmac``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from agent.constants import (
    KEY_MAX_AGE_DAYS,
    MAX_TEKS_PER_START_INTERVAL,
    TEK_ROLLING_PERIOD,
)
from agent.errors import MalformedInputError
from agent.keyserver.refusal import ApiRefusal
from agent.keyserver.verification import Certificate
from agent.models import TemporaryExposureKey
from agent.report.hmac import tek_hmac_matches
from agent.report.wire import b64decode, key_from_json

MAX_KEYS_ON_PUBLISH = 30
MAX_DAYS_SINCE_ONSET = 14


@dataclass(frozen=True, slots=True)
class PublishRequest:
    """A parsed publish body."""

    keys: tuple[TemporaryExposureKey, ...]
    health_authority_id: str
    certificate: str
    hmac_key: bytes
    revision_token: str


def parse_publish(body: Mapping[str, object]) -> PublishRequest:
    """Parse the JSON body; a 400 ``bad_request`` with the first problem found."""
    try:
        raw_keys = body.get("temporaryExposureKeys")
        if not isinstance(raw_keys, list):
            raise MalformedInputError("temporaryExposureKeys must be a list")
        if not 1 <= len(raw_keys) <= MAX_KEYS_ON_PUBLISH:
            raise MalformedInputError(
                f"publish must carry 1..{MAX_KEYS_ON_PUBLISH} keys, got {len(raw_keys)}"
            )
        keys = tuple(
            key_from_json(entry, f"temporaryExposureKeys[{i}]") for i, entry in enumerate(raw_keys)
        )
        hmac_key = b64decode("hmacKey", body.get("hmacKey"))
    except MalformedInputError as exc:
        raise ApiRefusal(400, "bad_request", str(exc)) from None
    authority = body.get("healthAuthorityID")
    certificate = body.get("verificationPayload")
    revision = body.get("revisionToken", "")
    if not isinstance(authority, str) or not authority:
        raise ApiRefusal(400, "unknown_health_authority_id", "healthAuthorityID is missing")
    if not isinstance(certificate, str) or not certificate:
        raise ApiRefusal(400, "certificate_invalid", "verificationPayload is missing")
    if not hmac_key:
        raise ApiRefusal(400, "bad_request", "hmacKey is empty")
    return PublishRequest(
        keys=keys,
        health_authority_id=authority,
        certificate=certificate,
        hmac_key=hmac_key,
        revision_token=revision if isinstance(revision, str) else "",
    )


def validate_keys(keys: Sequence[TemporaryExposureKey], now_interval: int) -> None:
    """The per-publish key rules that need the current time."""
    oldest = now_interval - KEY_MAX_AGE_DAYS * TEK_ROLLING_PERIOD
    for i, key in enumerate(keys):
        start = key.rolling_start_interval_number
        if start < oldest:
            raise ApiRefusal(
                400, "bad_request", f"key {i} starts more than {KEY_MAX_AGE_DAYS} days ago"
            )
        if start > now_interval:
            raise ApiRefusal(400, "bad_request", f"key {i} starts in the future")
    per_start = Counter(key.rolling_start_interval_number for key in keys)
    if per_start and max(per_start.values()) > MAX_TEKS_PER_START_INTERVAL:
        raise ApiRefusal(
            400,
            "bad_request",
            f"more than {MAX_TEKS_PER_START_INTERVAL} keys share one rolling start interval",
        )
    if len({key.key_data for key in keys}) != len(keys):
        raise ApiRefusal(400, "bad_request", "the same key appears twice")


def check_hmac(request: PublishRequest, certificate: Certificate) -> None:
    """Recompute the TEK HMAC from the posted keys and ``hmacKey``; compare with ``tekmac``."""
    if not tek_hmac_matches(request.hmac_key, request.keys, certificate.tekmac):
        raise ApiRefusal(
            400,
            "hmac_mismatch",
            "the keys do not match the verification certificate (HMAC mismatch)",
        )


def apply_certificate(
    keys: Sequence[TemporaryExposureKey], certificate: Certificate
) -> list[TemporaryExposureKey]:
    """Report type (and days since onset, when known) come from the certificate only."""
    result = []
    for key in keys:
        dso = None
        if certificate.symptom_onset_interval is not None:
            days = (
                key.rolling_start_interval_number - certificate.symptom_onset_interval
            ) // TEK_ROLLING_PERIOD
            dso = days if abs(days) <= MAX_DAYS_SINCE_ONSET else None
        result.append(
            replace(key, report_type=certificate.report_type, days_since_onset_of_symptoms=dso)
        )
    return result
