"""Metadata and service-data value objects, and the AD structures of the advertisement."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.errors import MalformedInputError
from agent.payload import Metadata, ServiceData, advertising_data
from tests.vectors import en_v1_2 as v


def test_service_data_round_trip() -> None:
    raw = bytes(range(20))
    sd = ServiceData.from_bytes(raw)
    assert sd.rpi == raw[:16]
    assert sd.aem == raw[16:]
    assert bytes(sd) == raw


@pytest.mark.parametrize("length", [0, 16, 19, 21, 31])
def test_service_data_wrong_length_is_rejected(length: int) -> None:
    with pytest.raises(MalformedInputError, match=f"must be 20 bytes, got {length}"):
        ServiceData.from_bytes(bytes(length))


def test_service_data_type_check() -> None:
    with pytest.raises(MalformedInputError, match="service data must be bytes"):
        ServiceData.from_bytes("x" * 20)  # type: ignore[arg-type]
    with pytest.raises(MalformedInputError, match="RPI must be 16 bytes"):
        ServiceData(rpi=b"1", aem=b"1234")


def test_service_data_is_frozen_and_does_not_print_identifiers() -> None:
    sd = ServiceData(rpi=b"\xaa" * 16, aem=b"\xbb" * 4)
    with pytest.raises(AttributeError):
        sd.rpi = b"x" * 16  # type: ignore[misc]
    assert "aa" not in repr(sd)


@given(st.integers(-128, 127))
def test_metadata_v1_0_round_trip(tx: int) -> None:
    meta = Metadata(tx_power_dbm=tx)
    raw = bytes(meta)
    assert len(raw) == 4
    assert raw[0] == 0x40
    assert raw[2:] == b"\x00\x00"
    assert Metadata.from_bytes(raw) == meta


@given(st.integers(-128, 127), st.integers(0, 3))
def test_metadata_v1_1_carries_confidence(tx: int, confidence: int) -> None:
    meta = Metadata(tx_power_dbm=tx, version=0x50, calibration_confidence=confidence)
    raw = bytes(meta)
    assert raw[0] == 0x50 | (confidence << 2)
    assert Metadata.from_bytes(raw) == meta


def test_metadata_negative_tx_power_is_signed() -> None:
    assert bytes(Metadata(tx_power_dbm=-8))[1] == 0xF8
    assert Metadata.from_bytes(bytes([0x40, 0xF8, 0, 0])).tx_power_dbm == -8


def test_metadata_unknown_major_version_is_reported() -> None:
    meta = Metadata.from_bytes(bytes([0x80, 0x08, 0, 0]))
    assert not meta.major_version_supported
    assert Metadata.from_bytes(bytes.fromhex(v.METADATA)).major_version_supported


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tx_power_dbm": 128}, "TX power must be in -128..127"),
        ({"tx_power_dbm": -129}, "TX power must be in -128..127"),
        ({"tx_power_dbm": 1, "calibration_confidence": 4}, "confidence must be 0..3"),
        ({"tx_power_dbm": 1, "calibration_confidence": 1}, "needs metadata version 1.1"),
        ({"tx_power_dbm": 1, "version": 0x41}, "bad metadata version byte"),
    ],
)
def test_metadata_bad_values(kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(MalformedInputError, match=message):
        Metadata(**kwargs)


def test_metadata_wrong_length() -> None:
    with pytest.raises(MalformedInputError, match="metadata must be 4 bytes, got 3"):
        Metadata.from_bytes(b"\x40\x08\x00")


def test_advertising_data_matches_the_spec_example() -> None:
    """The 31-byte advertisement of the EN Bluetooth Specification v1.2, built from vector j=0."""
    _, rpi, aem = v.ADVERTISED[0]
    sd = ServiceData(bytes.fromhex(rpi), bytes.fromhex(aem))
    expected = "02011a" "03036ffd" "17166ffd" + rpi + aem
    assert advertising_data(sd, flags=0x1A).hex() == expected
    assert len(advertising_data(sd, flags=0x1A)) == 31
    # what BlueZ builds for a broadcast advertisement: no flags, 28 bytes
    assert advertising_data(sd).hex() == expected[6:]
    assert len(advertising_data(sd)) == 28
