"""A small verification server: codes -> tokens -> certificates.

Request and response shapes, test types and error codes are those of
google/exposure-notifications-verification-server ``pkg/api/api.go``
(``VerifyCodeRequest``: ``accept`` missing or empty accepts every test type, ``likely``
implies ``confirmed``, ``negative`` implies both; ``user-report`` must be named;
``unsupported_test_type`` with HTTP 412). Codes are 10 digits, expire and are single-use. Tokens and
certificates are ES256 JWTs signed with the server's own P-256 key; a certificate carries
the device's ``tekmac`` and the ``reportType`` that the code was issued for, and the key
server checks it with :meth:`VerificationAuthority.check_certificate`.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import secrets
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import ec

from agent.clock import Clock, en_interval_number
from agent.lab.keyserver.jwt import JwtError, sign_jwt, verify_jwt
from agent.lab.keyserver.refusal import ApiRefusal
from agent.models import ReportType

CODE_DIGITS = 10
CODE_TTL_SECONDS = 3600.0
TOKEN_TTL_SECONDS = 24 * 3600.0
CERTIFICATE_TTL_SECONDS = 15 * 60.0
TEST_TYPES = ("confirmed", "likely", "negative", "user-report")
REPORT_TYPES = {
    "confirmed": ReportType.CONFIRMED_TEST,
    "likely": ReportType.CONFIRMED_CLINICAL_DIAGNOSIS,
    "negative": ReportType.REVOKED,
    "user-report": ReportType.SELF_REPORT,
}
"""How the key server turns a certificate's ``reportType`` into the export's report type."""
ISSUER = "contact-agent-test-verification"
AUDIENCE = "contact-agent-test-keyserver"
KEY_ID = "v1"


@dataclass
class IssuedCode:
    """A verification code as the health authority handed it out."""

    code: str
    test_type: str
    expires_at: float
    symptom_onset_interval: int | None = None
    used: bool = False


@dataclass(frozen=True, slots=True)
class Certificate:
    """What the key server learns from a valid certificate."""

    jti: str
    tekmac: bytes
    report_type: ReportType
    symptom_onset_interval: int | None


CERTIFICATE_INVALID = "health_authority_verification_certificate_invalid"
"""The key server's code for a certificate it cannot accept (HTTP 401)."""


def _accepted(accept: object) -> set[str]:
    """Missing or empty: everything; ``likely`` implies ``confirmed``; ``negative`` both."""
    if accept is None or accept == []:
        return set(TEST_TYPES)
    if not isinstance(accept, list) or not all(isinstance(a, str) for a in accept):
        raise ApiRefusal(400, "unparsable_request", "accept must be a list of test types")
    unknown = set(accept) - set(TEST_TYPES)
    if unknown:
        raise ApiRefusal(400, "invalid_test_type", f"unknown test type(s): {sorted(unknown)}")
    accepted = {"confirmed"} | (set(accept) & {"user-report"})
    if "likely" in accept or "negative" in accept:
        accepted.add("likely")
    if "negative" in accept:
        accepted.add("negative")
    return accepted


class VerificationAuthority:
    """Issues codes and turns them into tokens and certificates; checks certificates."""

    def __init__(
        self,
        clock: Clock,
        *,
        key: ec.EllipticCurvePrivateKey | None = None,
        code_ttl: float = CODE_TTL_SECONDS,
        certificate_ttl: float = CERTIFICATE_TTL_SECONDS,
    ) -> None:
        self._clock = clock
        self.key = key or ec.generate_private_key(ec.SECP256R1())
        self._code_ttl = code_ttl
        self._certificate_ttl = certificate_ttl
        self._codes: dict[str, IssuedCode] = {}
        self._used_tokens: set[str] = set()

    def issue_code(
        self, test_type: str = "confirmed", *, symptom_onset_interval: int | None = None
    ) -> IssuedCode:
        """A fresh single-use code, valid for ``code_ttl`` seconds."""
        if test_type not in TEST_TYPES:
            raise ApiRefusal(400, "invalid_test_type", f"testType must be one of {TEST_TYPES}")
        while True:
            code = f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"
            if code not in self._codes:
                break
        issued = IssuedCode(
            code, test_type, self._clock.wall() + self._code_ttl, symptom_onset_interval
        )
        self._codes[code] = issued
        return issued

    def expire_code(self, code: str) -> None:
        """Make a code expire now (tests, and the admin who revokes a code)."""
        self._codes[code].expires_at = self._clock.wall() - 1

    def verify(self, code: object, accept: object, *, burn: bool = False) -> dict[str, object]:
        """``/api/verify``: exchange a code for a token (the code is used up).

        With ``burn`` (the client guessed wrong several times first) a valid code is used
        up without a token: a code found by guessing is worth nothing.
        """
        if not isinstance(code, str) or not code:
            raise ApiRefusal(400, "unparsable_request", "code is missing")
        accepted = _accepted(accept)
        issued = self._codes.get(code)
        now = self._clock.wall()
        if issued is None:
            raise ApiRefusal(400, "code_not_found", "verification code not found")
        if issued.used:
            raise ApiRefusal(400, "code_invalid", "verification code invalid or already used")
        if now >= issued.expires_at:
            raise ApiRefusal(400, "code_expired", "verification code expired")
        if burn:
            issued.used = True
            raise ApiRefusal(400, "code_invalid", "verification code invalid or already used")
        if issued.test_type not in accepted:
            raise ApiRefusal(412, "unsupported_test_type", "the code's test type is not accepted")
        issued.used = True
        claims: dict[str, object] = {
            "iss": ISSUER,
            "aud": ISSUER,
            "iat": int(now),
            "exp": int(now + TOKEN_TTL_SECONDS),
            "jti": secrets.token_urlsafe(16),
            "tt": issued.test_type,
        }
        if issued.symptom_onset_interval is not None:
            claims["soi"] = issued.symptom_onset_interval
        answer: dict[str, object] = {
            "token": sign_jwt(self.key, claims, kid=KEY_ID),
            "testtype": issued.test_type,
        }
        if issued.symptom_onset_interval is not None:
            day = dt.datetime.fromtimestamp(issued.symptom_onset_interval * 600, dt.UTC)
            answer["symptomDate"] = day.date().isoformat()
        return answer

    def certificate(self, token: object, ekeyhmac: object) -> str:
        """``/api/certificate``: exchange a token and the device's TEK HMAC for a certificate."""
        if not isinstance(token, str):
            raise ApiRefusal(400, "token_invalid", "token is missing")
        try:
            claims = verify_jwt(self.key.public_key(), token)
        except JwtError:
            raise ApiRefusal(400, "token_invalid", "token invalid") from None
        now = self._clock.wall()
        jti = claims.get("jti")
        if claims.get("aud") != ISSUER or not isinstance(jti, str):
            raise ApiRefusal(400, "token_invalid", "token invalid")
        exp = claims.get("exp")
        if not isinstance(exp, int) or now >= exp:
            raise ApiRefusal(400, "token_expired", "token expired")
        if jti in self._used_tokens:
            raise ApiRefusal(400, "token_invalid", "token already used")
        try:
            mac = base64.b64decode(str(ekeyhmac), validate=True)
        except (binascii.Error, ValueError):
            mac = b""
        if not isinstance(ekeyhmac, str) or len(mac) != 32:
            raise ApiRefusal(400, "hmac_invalid", "ekeyhmac must be 32 bytes in base64")
        self._used_tokens.add(jti)
        cert: dict[str, object] = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "iat": int(now),
            "nbf": int(now) - 60,
            "exp": int(now + self._certificate_ttl),
            "jti": secrets.token_urlsafe(16),
            "tekmac": ekeyhmac,
            "reportType": claims.get("tt", "confirmed"),
        }
        if "soi" in claims:
            cert["symptomOnsetInterval"] = claims["soi"]
        return sign_jwt(self.key, cert, kid=KEY_ID)

    def check_certificate(self, certificate: object) -> Certificate:
        """The key server's check of ``verificationPayload``: signature, audience, time."""
        refused = ApiRefusal(
            401,
            CERTIFICATE_INVALID,
            "unable to validate diagnosis verification: certificate invalid or expired",
        )
        if not isinstance(certificate, str):
            raise refused
        try:
            claims = verify_jwt(self.key.public_key(), certificate)
        except JwtError:
            raise refused from None
        now = self._clock.wall()
        exp, nbf = claims.get("exp"), claims.get("nbf")
        if (
            claims.get("aud") != AUDIENCE
            or not isinstance(exp, int)
            or not isinstance(nbf, int)
            or not nbf <= now < exp
        ):
            raise refused
        report_type = REPORT_TYPES.get(str(claims.get("reportType")))
        tekmac = claims.get("tekmac")
        jti = claims.get("jti")
        if report_type is None or not isinstance(tekmac, str) or not isinstance(jti, str):
            raise refused
        soi = claims.get("symptomOnsetInterval")
        return Certificate(
            jti=jti,
            tekmac=base64.b64decode(tekmac),
            report_type=report_type,
            symptom_onset_interval=soi if isinstance(soi, int) else None,
        )


def symptom_onset_interval(day: str) -> int:
    """``YYYY-MM-DD`` -> ENIN of that UTC midnight."""
    try:
        date = dt.date.fromisoformat(day)
    except ValueError:
        raise ApiRefusal(400, "unparsable_request", "symptomDate must be YYYY-MM-DD") from None
    midnight = dt.datetime(date.year, date.month, date.day, tzinfo=dt.UTC)
    return en_interval_number(midnight.timestamp())
