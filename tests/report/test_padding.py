"""Fixed-size bodies: every body of one kind has the same size, whatever it carries."""

from __future__ import annotations

import base64
import json
import secrets

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.report.padding import (
    BASE_BODY_BYTES,
    OVERFLOW_STEP,
    BodyKind,
    body_size,
    padded_json,
)


@given(
    text=st.text(min_size=0, max_size=120),
    numbers=st.lists(st.integers(-(2**31), 2**31), max_size=20),
    size=st.integers(min_value=1024, max_value=9000),
)
@settings(max_examples=200, deadline=None)
def test_body_is_exactly_the_size_and_valid_json(text: str, numbers: list[int], size: int) -> None:
    body = {"text": text, "numbers": numbers}
    data = padded_json(body, size)
    assert len(data) == size
    parsed = json.loads(data)
    assert parsed["text"] == text and parsed["numbers"] == numbers
    base64.b64decode(parsed["padding"], validate=True)  # real base64, not filler


def test_padding_is_random() -> None:
    first = json.loads(padded_json({"a": 1}, 2048))["padding"]
    second = json.loads(padded_json({"a": 1}, 2048))["padding"]
    assert first != second
    assert len(first) >= 1900


def test_a_body_too_big_for_its_size_grows_in_whole_steps() -> None:
    body = {"blob": secrets.token_hex(1500)}  # 3000 characters
    data = padded_json(body, 1024)
    assert len(data) == 1024 + 2 * OVERFLOW_STEP
    assert json.loads(data)["blob"] == body["blob"]


def test_sizes_per_kind_leave_room_for_the_largest_real_body() -> None:
    assert body_size(BodyKind.PUBLISH, 2048) == BASE_BODY_BYTES[BodyKind.PUBLISH] + 2048
    assert body_size(BodyKind.VERIFY, 0) == BASE_BODY_BYTES[BodyKind.VERIFY]
    # 30 keys with large interval numbers, an 800-byte certificate and a 300-byte revision
    # token still fit the publish base size, so the key count never shows in the size.
    key = {
        "key": base64.b64encode(bytes(16)).decode(),
        "rollingStartNumber": 2**31 - 1,
        "rollingPeriod": 144,
        "transmissionRisk": 8,
    }
    body = {
        "temporaryExposureKeys": [key] * 30,
        "healthAuthorityID": "x" * 40,
        "verificationPayload": "c" * 800,
        "hmacKey": base64.b64encode(bytes(32)).decode(),
        "revisionToken": "r" * 300,
        "traveler": False,
    }
    size = body_size(BodyKind.PUBLISH, 0)
    assert len(padded_json(body, size)) == size
    assert len(padded_json({**body, "temporaryExposureKeys": [key]}, size)) == size
