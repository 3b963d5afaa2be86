"""TEK HMAC against the vectors of Google's key server (``pkg/verification/utils_test.go``)."""

from __future__ import annotations

import base64

import pytest

from agent.errors import MalformedInputError
from agent.models import TemporaryExposureKey
from agent.report.hmac import (
    allowed_tek_hmacs,
    hmac_cleartext,
    new_hmac_secret,
    tek_hmac,
    tek_hmac_b64,
    tek_hmac_matches,
)

# google/exposure-notifications-server pkg/verification/utils_test.go: secret 1..16 and two
# keys given as base64; the expected MACs are recorded there.
SECRET = bytes(range(1, 17))
KEY_A = base64.b64decode("z2Cx9hdz2SlxZ8GEgqTYpA==")
KEY_B = base64.b64decode("dPCphLzfG4uzXneNimkPRQ==")


def keys(tr_a: int, tr_b: int) -> list[TemporaryExposureKey]:
    return [
        TemporaryExposureKey(KEY_A, 1, 144, transmission_risk_level=tr_a),
        TemporaryExposureKey(KEY_B, 144, 144, transmission_risk_level=tr_b),
    ]


def test_google_vector_with_transmission_risk() -> None:
    assert tek_hmac_b64(SECRET, keys(3, 5)) == "2u1nHt5WWurJytFLF3xitNzM99oNrad2y4YGOL53AeY="


def test_google_dual_vectors_when_all_risks_are_zero() -> None:
    macs = [base64.b64encode(m).decode() for m in allowed_tek_hmacs(SECRET, keys(0, 0))]
    assert macs == [
        "mFNI9zhTA17n4ndd1Vu5tsn4XQX0gPrIKyjeh/9noUE=",
        "J9S7xVebH/66dm14wGsIcAnSUR3PHD4NtDQEOGZbDUo=",
    ]


def test_cleartext_is_sorted_by_base64_key_whatever_the_input_order() -> None:
    text = hmac_cleartext(list(reversed(keys(3, 5))))
    assert text == "dPCphLzfG4uzXneNimkPRQ==.144.144.5,z2Cx9hdz2SlxZ8GEgqTYpA==.1.144.3"
    assert tek_hmac(SECRET, keys(3, 5)) == tek_hmac(SECRET, list(reversed(keys(3, 5))))


def test_matches_accepts_both_forms_and_nothing_else() -> None:
    zero = keys(0, 0)
    with_tr, without_tr = allowed_tek_hmacs(SECRET, zero)
    assert tek_hmac_matches(SECRET, zero, with_tr)
    assert tek_hmac_matches(SECRET, zero, without_tr)
    # the short form is only allowed when every risk is 0
    assert not tek_hmac_matches(SECRET, keys(3, 5), tek_hmac(SECRET, keys(3, 5), include_tr=False))
    # one changed field, another secret, or one key fewer: no match
    changed = [zero[0], TemporaryExposureKey(KEY_B, 144, 143)]
    assert not tek_hmac_matches(SECRET, changed, with_tr)
    assert not tek_hmac_matches(bytes(16), zero, with_tr)
    assert not tek_hmac_matches(SECRET, zero[:1], with_tr)


def test_no_keys_or_empty_secret_is_a_clear_error() -> None:
    with pytest.raises(MalformedInputError, match="no keys"):
        hmac_cleartext([])
    with pytest.raises(MalformedInputError, match="secret"):
        tek_hmac(b"", keys(0, 0))


def test_fresh_secrets_are_32_random_bytes() -> None:
    secrets = {new_hmac_secret() for _ in range(50)}
    assert len(secrets) == 50
    assert {len(s) for s in secrets} == {32}


def test_the_published_vector_file_agrees_with_the_facts_above_and_both_sides() -> None:
    """Google's vectors as published in ../shared (skips without it): the agent computes
    them, and the test key server accepts each one as the real key server does."""
    import json

    from agent.lab.keyserver.publish import PostedKey, PublishRequest, check_hmac
    from agent.lab.keyserver.verification import Certificate
    from agent.models import ReportType
    from tests.shared import shared_path

    vectors = json.loads(
        shared_path("testdata/third-party/google-hmac/google-hmac-vectors.json").read_text()
    )
    secret = bytes.fromhex(vectors["secret_hex"])
    assert secret == SECRET
    for case in vectors["cases"]:
        entries = case["keys"]
        teks = [
            TemporaryExposureKey(
                base64.b64decode(e["key"]),
                e["rollingStartNumber"],
                e["rollingPeriod"],
                transmission_risk_level=e["transmissionRisk"],
            )
            for e in entries
        ]
        assert [base64.b64encode(m).decode() for m in allowed_tek_hmacs(secret, teks)] == case[
            "want_all"
        ]
        posted = tuple(
            PostedKey(e["key"], e["rollingStartNumber"], e["rollingPeriod"], e["transmissionRisk"])
            for e in entries
        )
        request = PublishRequest(posted, "ha", "cert", secret, "", 0)
        for mac in case["want_all"]:
            check_hmac(
                request, Certificate("jti", base64.b64decode(mac), ReportType.CONFIRMED_TEST, None)
            )
