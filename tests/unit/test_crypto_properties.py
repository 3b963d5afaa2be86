"""Properties of the crypto core on random keys, and its answers to malformed input."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent import crypto
from agent.errors import MalformedInputError

keys16 = st.binary(min_size=16, max_size=16)
intervals = st.integers(min_value=0, max_value=2**32 - 200)


@settings(max_examples=60, deadline=None)
@given(tek=keys16, start=intervals, count=st.integers(min_value=0, max_value=160))
def test_batch_equals_single(tek: bytes, start: int, count: int) -> None:
    rpik = crypto.derive_rpik(tek)
    assert crypto.rpis(rpik, start, count) == [crypto.rpi(rpik, start + j) for j in range(count)]


@settings(max_examples=60, deadline=None)
@given(tek=keys16, interval=intervals, meta=st.binary(min_size=4, max_size=4))
def test_aem_round_trip(tek: bytes, interval: int, meta: bytes) -> None:
    rpi = crypto.rpi(crypto.derive_rpik(tek), interval)
    aemk = crypto.derive_aemk(tek)
    aem = crypto.encrypt_aem(aemk, rpi, meta)
    assert len(aem) == 4
    assert crypto.decrypt_aem(aemk, rpi, aem) == meta


def test_new_tek_is_random_and_16_bytes() -> None:
    keys = {crypto.new_tek() for _ in range(100)}
    assert len(keys) == 100
    assert all(len(k) == 16 for k in keys)


def test_rpik_and_aemk_differ() -> None:
    tek = crypto.new_tek()
    assert crypto.derive_rpik(tek) != crypto.derive_aemk(tek)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: crypto.derive_rpik(b"short"), "TEK must be 16 bytes, got 5"),
        (lambda: crypto.derive_aemk(b"x" * 17), "TEK must be 16 bytes, got 17"),
        (lambda: crypto.derive_rpik("not bytes"), "TEK must be bytes"),  # type: ignore[arg-type]
        (lambda: crypto.rpi(b"k" * 15, 1), "RPIK must be 16 bytes"),
        (lambda: crypto.rpi(b"k" * 16, -1), "interval number must be in 0..2^32-1"),
        (lambda: crypto.rpi(b"k" * 16, 2**32), "interval number must be in 0..2^32-1"),
        (lambda: crypto.rpi(b"k" * 16, 1.5), "interval number must be an integer"),  # type: ignore[arg-type]
        (lambda: crypto.rpis(b"k" * 16, 10, -1), "count must not be negative"),
        (lambda: crypto.rpis(b"k" * 16, 2**32 - 1, 2), "interval number must be in 0..2^32-1"),
        (lambda: crypto.encrypt_aem(b"k" * 16, b"r" * 16, b"123"), "AEM/metadata must be 4"),
        (lambda: crypto.decrypt_aem(b"k" * 16, b"r" * 15, b"1234"), "RPI must be 16 bytes"),
        (lambda: crypto.decrypt_aem(b"k" * 3, b"r" * 16, b"1234"), "AEMK must be 16 bytes"),
    ],
)
def test_malformed_input_is_a_clear_error(call: object, message: str) -> None:
    with pytest.raises(MalformedInputError, match=message.replace("^", r"\^").replace(".", r"\.")):
        call()  # type: ignore[operator]
