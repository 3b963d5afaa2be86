"""TEK HMAC (``tekmac`` / ``ekeyhmac``) of the verification protocol.

The device picks a fresh random secret, computes HMAC-SHA256 over a canonical text of the
keys it is about to publish and gives only the HMAC to the verification server, which
signs it into the certificate. The key server later recomputes the HMAC from the
published keys and the secret (``hmacKey``) and compares it with the certificate: the
verification server never sees the keys and the key server cannot accept other keys.

Canonical text: for each key ``base64(key_data) "." rolling_start_interval_number "."
rolling_period "." transmission_risk_level``, sorted by the base64 string, joined with
``","``. When every transmission risk is 0 the ``".TR"`` segment may be left out; a key
server accepts either form (Google's ``CalculateAllAllowedExposureKeyHMAC``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac as std_hmac
import secrets
from collections.abc import Sequence

from agent.errors import MalformedInputError
from agent.models import TemporaryExposureKey

HMAC_SECRET_BYTES = 32
"""Fresh secret per upload; the protocol asks for at least 128 bits."""
HMAC_BYTES = 32
"""HMAC-SHA256 output length."""


def new_hmac_secret() -> bytes:
    """A fresh random HMAC secret for one upload."""
    return secrets.token_bytes(HMAC_SECRET_BYTES)


def hmac_cleartext(keys: Sequence[TemporaryExposureKey], *, include_tr: bool = True) -> str:
    """The canonical text the HMAC is computed over."""
    if not keys:
        raise MalformedInputError("cannot compute a TEK HMAC over no keys")
    segments = []
    for key in keys:
        text = (
            f"{base64.b64encode(key.key_data).decode('ascii')}."
            f"{key.rolling_start_interval_number}.{key.rolling_period}"
        )
        if include_tr:
            text += f".{key.transmission_risk_level}"
        segments.append(text)
    # Sorting whole segments orders by the base64 key first: base64 strings of 16 bytes all
    # have the same length, so the '.' after them never decides between two keys.
    return ",".join(sorted(segments))


def tek_hmac(
    secret: bytes, keys: Sequence[TemporaryExposureKey], *, include_tr: bool = True
) -> bytes:
    """HMAC-SHA256(secret, cleartext) over the keys (32 raw bytes)."""
    if not secret:
        raise MalformedInputError("the TEK HMAC secret must not be empty")
    text = hmac_cleartext(keys, include_tr=include_tr).encode("utf-8")
    return std_hmac.new(secret, text, hashlib.sha256).digest()


def tek_hmac_b64(secret: bytes, keys: Sequence[TemporaryExposureKey]) -> str:
    """The HMAC as the client sends it (``ekeyhmac``): standard base64 with padding."""
    return base64.b64encode(tek_hmac(secret, keys)).decode("ascii")


def allowed_tek_hmacs(secret: bytes, keys: Sequence[TemporaryExposureKey]) -> list[bytes]:
    """Every HMAC a key server accepts for these keys (with TR, and without when all are 0)."""
    macs = [tek_hmac(secret, keys)]
    if all(key.transmission_risk_level == 0 for key in keys):
        macs.append(tek_hmac(secret, keys, include_tr=False))
    return macs


def tek_hmac_matches(secret: bytes, keys: Sequence[TemporaryExposureKey], tekmac: bytes) -> bool:
    """Constant-time check of a certificate's ``tekmac`` against the published keys."""
    found = False
    for mac in allowed_tek_hmacs(secret, keys):
        found |= std_hmac.compare_digest(mac, tekmac)
    return found
