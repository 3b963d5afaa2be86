"""POST a padded JSON body to a verification or key server and map every failure.

Real and decoy (chaff) requests go through :func:`post_json` alike: same headers (the
``X-Chaff`` header of a decoy is matched by an equally long filler header on real
requests), same padded body size, no cookies, one generic User-Agent.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from urllib.parse import urlsplit

import aiohttp

from agent import netlog
from agent.config import ReportConfig
from agent.report.errors import (
    RequestRefusedError,
    ServerFailureError,
    ServerUnreachableError,
    VerificationCodeError,
)
from agent.report.padding import BodyKind, body_size, padded_json
from agent.servertext import server_text

_LOGGER = logging.getLogger(__name__)

VERIFICATION_SERVER = "verification server"
KEY_SERVER = "key server"
REQUEST_TIMEOUT_SECONDS = 30.0
USER_AGENT = "contact-agent"
CHAFF_HEADER = ("X-Chaff", "1")
FILLER_HEADER = ("X-Pad", "000")
"""Sent on real requests so that they are exactly as long as decoys with ``X-Chaff: 1``."""
MAX_RESPONSE_BYTES = 256 * 1024

MISSING_REVISION_TOKEN = "missing_revision_token"  # noqa: S105 (an error code)
"""HTTP 400 with this ``code``: the server already holds some of the keys and wants the
revision token of the upload that published them."""

_REFUSALS: Mapping[str, tuple[type[RequestRefusedError], str]] = {
    "code_invalid": (
        VerificationCodeError,
        "the verification code is not valid or was already used; ask for a new code",
    ),
    "code_expired": (
        VerificationCodeError,
        "the verification code has expired; ask for a new code",
    ),
    "code_not_found": (
        VerificationCodeError,
        "the verification code is unknown; check it or ask for a new code",
    ),
    "unsupported_test_type": (
        VerificationCodeError,
        "the verification code is for a test type this agent cannot publish",
    ),
    "token_invalid": (
        RequestRefusedError,
        "the verification server refused the token; start again with a new code",
    ),
    "token_expired": (
        RequestRefusedError,
        "the verification token has expired; start again with a new code",
    ),
    "hmac_invalid": (RequestRefusedError, "the verification server refused the key HMAC"),
    "hmac_mismatch": (
        RequestRefusedError,
        "the key server refused the upload: the keys do not match the verification "
        "certificate (HMAC mismatch); nothing was published",
    ),
    "certificate_invalid": (
        RequestRefusedError,
        "the key server refused the verification certificate (invalid or expired); "
        "start again with a new code",
    ),
    # Google's key server (pkg/api/v1/exposure_types.go): HTTP 401 for an invalid or
    # expired certificate and for keys that do not match its HMAC alike.
    "health_authority_verification_certificate_invalid": (
        RequestRefusedError,
        "the key server refused the verification certificate: it is invalid or expired, "
        "or the keys do not match it (HMAC mismatch); nothing was published; start again "
        "with a new code",
    ),
    "unknown_health_authority_id": (
        RequestRefusedError,
        "the key server does not know this health authority: check report.health_authority_id",
    ),
    MISSING_REVISION_TOKEN: (
        RequestRefusedError,
        "the key server already holds some of these keys and needs the revision token of "
        "the earlier upload, which this device does not have",
    ),
    "invalid_revision_token": (
        RequestRefusedError,
        "the key server refused the saved revision token; nothing was published",
    ),
}

PARTIAL_FAILURE = "partial_failure"
"""HTTP 200 with this ``code``: some keys were dropped, the others were inserted
(google/exposure-notifications-server ``pkg/api/v1/exposure_types.go``). A success."""


_PURPOSES: Mapping[BodyKind, str] = {
    BodyKind.VERIFY: netlog.VERIFICATION,
    BodyKind.CERTIFICATE: netlog.CERTIFICATE,
    BodyKind.PUBLISH: netlog.PUBLISH,
}
"""What each request is for, in the transparency log."""


def new_session() -> aiohttp.ClientSession:
    """A client session with a request timeout, no cookie jar and a generic User-Agent."""
    return aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_SECONDS),
        cookie_jar=aiohttp.DummyCookieJar(),
        headers={"User-Agent": USER_AGENT},
    )


def request_headers(*, api_key: str, chaff: bool) -> dict[str, str]:
    """Headers of one request; decoys differ from real requests only in one equal-size header."""
    name, value = CHAFF_HEADER if chaff else FILLER_HEADER
    headers = {
        "Content-Type": "application/json",
        "Accept": "application/json",
        name: value,
    }
    if api_key:
        headers["X-API-Key"] = api_key
    return headers


def _refusal(server: str, status: int, answer: Mapping[str, object]) -> RequestRefusedError:
    code = server_text(answer.get("errorCode") or answer.get("code") or "")
    reason = server_text(answer.get("error") or "")
    if code in _REFUSALS:
        cls, message = _REFUSALS[code]
        return cls(message, error_code=code, status=status)
    detail = reason or code or "no reason given"
    return RequestRefusedError(
        f"the {server} refused the request (HTTP {status}): {detail}",
        error_code=code,
        status=status,
    )


def _parse(raw: bytes) -> Mapping[str, object] | None:
    try:
        value = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    return value if isinstance(value, dict) else None


async def post_json(
    session: aiohttp.ClientSession,
    url: str,
    body: Mapping[str, object],
    *,
    kind: BodyKind,
    server: str,
    api_key: str = "",
    padding_bytes: int,
    chaff: bool = False,
) -> Mapping[str, object]:
    """POST ``body`` padded to the fixed size of ``kind``; return the JSON answer.

    Raises:
        ServerUnreachableError: no connection, or it broke before an answer arrived.
        ServerFailureError: HTTP 5xx or 429, or an answer that is not a JSON object.
        RequestRefusedError: HTTP 4xx (a :class:`VerificationCodeError` for bad codes).
    """
    data = padded_json(body, body_size(kind, padding_bytes))
    host = urlsplit(url).netloc or url
    try:
        async with netlog.logged(
            session.post(url, data=data, headers=request_headers(api_key=api_key, chaff=chaff)),
            url,
            netlog.DECOY if chaff else _PURPOSES[kind],
            sent=len(data),
        ) as response:
            raw = await response.content.read(MAX_RESPONSE_BYTES)
            status = response.status
            wait = response.headers.get("Retry-After")
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        reason = server_text(exc) or type(exc).__name__
        raise ServerUnreachableError(f"cannot reach the {server} at {host}: {reason}") from exc
    answer = _parse(raw)
    if status >= 500 or status == 429:
        raise ServerFailureError(
            f"the {server} at {host} failed (HTTP {status}); try again later",
            status=status,
            retry_after=wait,
        )
    if status >= 400:
        raise _refusal(server, status, answer or {})
    if chaff:
        return answer or {}
    if answer is None:
        raise ServerFailureError(f"the {server} at {host} sent an answer that is not JSON")
    if answer.get("error") and answer.get("code") != PARTIAL_FAILURE:
        raise _refusal(server, status, answer)
    _LOGGER.debug("%s answered HTTP %d", server, status)
    return answer


def endpoint(settings: ReportConfig, kind: BodyKind) -> tuple[str, str]:
    """URL and server name of one request of the report flow."""
    base = settings.verification_url.rstrip("/")
    if kind is BodyKind.VERIFY:
        return f"{base}/api/verify", VERIFICATION_SERVER
    if kind is BodyKind.CERTIFICATE:
        return f"{base}/api/certificate", VERIFICATION_SERVER
    return settings.publish_url, KEY_SERVER


async def post_step(
    session: aiohttp.ClientSession,
    settings: ReportConfig,
    kind: BodyKind,
    body: Mapping[str, object],
    *,
    chaff: bool = False,
) -> dict[str, object]:
    """One request of a real or decoy report: its endpoint, API key (verification server
    only) and padded size all follow from ``kind``, so decoys cannot differ from real ones.
    """
    url, server = endpoint(settings, kind)
    answer = await post_json(
        session,
        url,
        body,
        kind=kind,
        server=server,
        api_key=settings.api_key if server == VERIFICATION_SERVER else "",
        padding_bytes=settings.padding_bytes,
        chaff=chaff,
    )
    return dict(answer)
