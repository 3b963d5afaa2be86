"""Compact JWTs signed ES256 (P-256 + SHA-256), as the verification server issues them.

The verification server's tokens and certificates are JWTs with ``alg ES256``, ``kid``
and ``typ JWT`` (google/exposure-notifications-verification-server signs them with
``jwt.SigningMethodES256``). Encoding and signature checks are PyJWT's (which uses
cryptography); the claims' times are checked by the caller against its own clock, so a
simulated clock works, and only ES256 is ever accepted.
"""

from __future__ import annotations

from collections.abc import Mapping

import jwt
from cryptography.hazmat.primitives.asymmetric import ec

from agent.errors import AgentError

ALGORITHM = "ES256"
_NO_TIME_CHECKS = {
    "verify_exp": False,
    "verify_nbf": False,
    "verify_iat": False,
    "verify_aud": False,
    "verify_iss": False,
}


class JwtError(AgentError):
    """A token that is malformed, signed by another key or not ES256."""


def sign_jwt(key: ec.EllipticCurvePrivateKey, claims: Mapping[str, object], *, kid: str) -> str:
    """``header.claims.signature`` signed with ES256 (the signature is raw ``r || s``)."""
    return jwt.encode(dict(claims), key, algorithm=ALGORITHM, headers={"kid": kid, "typ": "JWT"})


def verify_jwt(key: ec.EllipticCurvePublicKey, token: str) -> dict[str, object]:
    """The claims of a token whose ES256 signature checks out with ``key``."""
    if not isinstance(token, str) or token.count(".") != 2:
        raise JwtError("not a JWT")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise JwtError("JWT header is not JSON") from None
    if header.get("alg") != ALGORITHM:
        raise JwtError("JWT is not ES256")
    try:
        claims = jwt.decode(token, key, algorithms=[ALGORITHM], options=_NO_TIME_CHECKS)  # type: ignore[arg-type]
    except jwt.InvalidSignatureError:
        raise JwtError("JWT signature is invalid") from None
    except jwt.PyJWTError as exc:
        raise JwtError(f"JWT is malformed ({type(exc).__name__})") from None
    if not isinstance(claims, dict):
        raise JwtError("JWT claims are not an object")
    return claims
