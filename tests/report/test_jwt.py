"""ES256 JWTs of the test verification server."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from agent.lab.keyserver.jwt import JwtError, sign_jwt, verify_jwt


def test_round_trip_and_header() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    token = sign_jwt(key, {"tekmac": "abc", "exp": 5}, kid="v1")
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert header == {"alg": "ES256", "kid": "v1", "typ": "JWT"}
    assert len(base64.urlsafe_b64decode(token.split(".")[2] + "==")) == 64  # raw r||s
    assert verify_jwt(key.public_key(), token) == {"tekmac": "abc", "exp": 5}


def test_tampered_foreign_or_malformed_tokens_are_refused() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    token = sign_jwt(key, {"reportType": "likely"}, kid="v1")
    head, _, sig = token.split(".")
    forged = base64.urlsafe_b64encode(b'{"reportType":"confirmed"}').rstrip(b"=").decode()
    with pytest.raises(JwtError, match="invalid"):
        verify_jwt(key.public_key(), f"{head}.{forged}.{sig}")
    with pytest.raises(JwtError, match="invalid"):
        verify_jwt(ec.generate_private_key(ec.SECP256R1()).public_key(), token)
    none_alg = base64.urlsafe_b64encode(b'{"alg":"none"}').rstrip(b"=").decode()
    with pytest.raises(JwtError, match="ES256"):
        verify_jwt(key.public_key(), f"{none_alg}.{token.split('.')[1]}.{sig}")
    for bad in ("", "a.b", "a.b.c.d", "!!.??.**"):
        with pytest.raises(JwtError):
            verify_jwt(key.public_key(), bad)
