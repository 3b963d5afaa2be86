"""Fuzzing the sightings importer (agent.interchange, ``import sightings``; F12).

Any file gives either every sighting it holds (all valid, and the same after a round trip
through the writer) or one MalformedInputError naming a line -- never another error,
never a partial result, within CPU and memory bounds.
"""

from __future__ import annotations

import io
import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.errors import MalformedInputError
from agent.interchange import (
    SIGHTING_FIELDS,
    RecordWriter,
    guess_format,
    parse_sightings,
    sighting_record,
)
from agent.models import Sighting
from tests.fuzz.bounds import FUZZ, bounded

DECLARED = (MalformedInputError,)
FORMATS = st.sampled_from(["jsonl", "csv"])

SIGHTINGS = st.lists(
    st.builds(
        Sighting,
        st.one_of(st.integers(0, 2**33), st.floats(0, 2**33, allow_nan=False)),
        st.binary(min_size=16, max_size=16),
        st.binary(min_size=4, max_size=4),
        st.integers(-127, 126),
    ),
    min_size=1,
    max_size=8,
)


def written(sightings: list[Sighting], fmt: str) -> bytes:
    out = io.StringIO()
    writer = RecordWriter(out, fmt, SIGHTING_FIELDS)
    for s in sightings:
        writer.write(sighting_record(s))
    return out.getvalue().encode()


@st.composite
def mutated(draw: st.DrawFn) -> tuple[bytes, str]:
    fmt = draw(FORMATS)
    data = bytearray(written(draw(SIGHTINGS), fmt))
    for _ in range(draw(st.integers(1, 6))):
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        action = draw(st.sampled_from(["flip", "insert", "delete", "cut"]))
        if action == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif action == "insert":
            data[pos:pos] = draw(st.sampled_from([b'"', b",", b"\n", b"{", b"\xff", b"\r"]))
        elif action == "delete":
            del data[pos : pos + draw(st.integers(1, 8))]
        else:
            del data[pos:]
    return bytes(data), fmt


def check(data: bytes, fmt: str) -> None:
    outcome = bounded(lambda: parse_sightings(data, fmt), DECLARED)
    if outcome.error is not None:
        assert str(outcome.error).startswith("line ")  # names the line
        return
    sightings = outcome.value
    assert isinstance(sightings, list)
    for s in sightings:
        assert len(s.rpi) == 16 and len(s.aem) == 4
        assert math.isfinite(s.time) and s.time >= 0 and -127 <= s.rssi <= 126
    assert parse_sightings(written(sightings, fmt), fmt) == sightings


@pytest.mark.slow
@FUZZ
@given(st.binary(max_size=2048), FORMATS)
def test_random_bytes(data: bytes, fmt: str) -> None:
    check(data, fmt)


@pytest.mark.slow
@FUZZ
@given(mutated())
def test_mutated_files(case: tuple[bytes, str]) -> None:
    check(*case)


JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), st.floats(), st.integers(), st.text(max_size=40)),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)


@pytest.mark.slow
@FUZZ
@given(
    st.lists(
        st.one_of(
            JSON,
            st.fixed_dictionaries({f: JSON for f in SIGHTING_FIELDS}),
            st.fixed_dictionaries(
                {
                    "time": st.one_of(st.floats(), st.integers()),
                    "rpi": st.text("0123456789abcdefABCDEF ", min_size=30, max_size=34),
                    "aem": st.text("0123456789abcdef", min_size=7, max_size=9),
                    "rssi": st.one_of(st.integers(-200, 200), st.floats(), st.booleans()),
                }
            ),
        ),
        max_size=6,
    )
)
def test_json_lines_of_any_shape(records: list[object]) -> None:
    check("\n".join(json.dumps(r) for r in records).encode(), "jsonl")


def test_deep_nesting_and_huge_numbers_are_bad_lines_not_crashes() -> None:
    for line in (b"[" * 100_000 + b"]" * 100_000, b'{"time": 1e999999}', b"9" * 5_000):
        check(line + b"\n", "jsonl")


@FUZZ
@given(st.text(max_size=40), st.binary(max_size=64))
def test_format_guess_never_raises(name: str, data: bytes) -> None:
    assert bounded(lambda: guess_format(name, data), ()).value in ("jsonl", "csv")
