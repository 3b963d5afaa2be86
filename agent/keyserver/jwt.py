"""Compact JWTs signed ES256 (P-256 + SHA-256), as the verification server issues them.

The verification server's tokens and certificates are JWTs with ``alg ES256``, ``kid``
and ``typ JWT`` (gaen-spec §5.2). The signature is the raw 64-byte ``r || s``, not DER.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from agent.errors import AgentError

_P256_COORDINATE_BYTES = 32


class JwtError(AgentError):
    """A token that is malformed, signed by another key or not ES256."""


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64url(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise JwtError("token part is not base64url") from None


def sign_jwt(key: ec.EllipticCurvePrivateKey, claims: Mapping[str, object], *, kid: str) -> str:
    """``header.claims.signature`` signed with ES256."""
    header = {"alg": "ES256", "kid": kid, "typ": "JWT"}
    signing_input = (
        _b64url(json.dumps(header, separators=(",", ":")).encode())
        + "."
        + _b64url(json.dumps(dict(claims), separators=(",", ":")).encode())
    )
    r, s = decode_dss_signature(key.sign(signing_input.encode("ascii"), ec.ECDSA(hashes.SHA256())))
    raw = r.to_bytes(_P256_COORDINATE_BYTES, "big") + s.to_bytes(_P256_COORDINATE_BYTES, "big")
    return signing_input + "." + _b64url(raw)


def verify_jwt(key: ec.EllipticCurvePublicKey, token: str) -> dict[str, object]:
    """The claims of a token whose ES256 signature checks out with ``key``."""
    parts = token.split(".") if isinstance(token, str) else []
    if len(parts) != 3:
        raise JwtError("not a JWT")
    try:
        header = json.loads(_unb64url(parts[0]))
        claims = json.loads(_unb64url(parts[1]))
    except (UnicodeDecodeError, ValueError):
        raise JwtError("JWT header or claims are not JSON") from None
    if not isinstance(header, dict) or header.get("alg") != "ES256":
        raise JwtError("JWT is not ES256")
    if not isinstance(claims, dict):
        raise JwtError("JWT claims are not an object")
    raw = _unb64url(parts[2])
    if len(raw) != 2 * _P256_COORDINATE_BYTES:
        raise JwtError("JWT signature has the wrong length")
    der = encode_dss_signature(
        int.from_bytes(raw[:_P256_COORDINATE_BYTES], "big"),
        int.from_bytes(raw[_P256_COORDINATE_BYTES:], "big"),
    )
    try:
        key.verify(der, f"{parts[0]}.{parts[1]}".encode("ascii"), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise JwtError("JWT signature is invalid") from None
    return claims
