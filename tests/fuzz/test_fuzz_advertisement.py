"""Fuzzing the advertisement parsers (F12): agent.payload and agent.ble.detection.

Whatever bluetoothd (or a malformed D-Bus variant, bad-input case 10) hands over, parsing
never raises out of the scanner callback, accepts exactly the 20-byte EN service data
with a plausible RSSI (bad-input cases 1, 2, 6), and stays within CPU and memory bounds.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.ble.detection import Verdict, parse_report
from agent.constants import (
    CALIBRATED_RSSI_MAX,
    CALIBRATED_RSSI_MIN,
    EN_SERVICE_UUID,
    RSSI_MAX_DBM,
    RSSI_MIN_DBM,
)
from agent.errors import MalformedInputError
from agent.models import Sighting
from agent.payload import Metadata, ServiceData, advertising_data
from agent.store.sightings import sighting_row
from tests.fuzz.bounds import FUZZ, bounded

DECLARED = (MalformedInputError,)
EN_KEYS = [EN_SERVICE_UUID, EN_SERVICE_UUID.upper(), "fd6f", "FD6F"]
ANYTHING = st.one_of(
    st.binary(max_size=64),
    st.binary(min_size=20, max_size=20),
    st.text(max_size=30),
    st.integers(),
    st.none(),
    st.floats(),
    st.lists(st.integers(0, 255), max_size=25),
    st.builds(bytearray, st.binary(max_size=25)),
    st.builds(memoryview, st.binary(min_size=20, max_size=20)),
)
RSSI = st.one_of(
    st.none(),
    st.integers(-(2**40), 2**40),
    st.integers(-130, 25),
    st.floats(),
    st.booleans(),
    st.text(max_size=4),
)


@pytest.mark.slow
@FUZZ
@given(ANYTHING)
def test_service_data_parser(data: object) -> None:
    outcome = bounded(lambda: ServiceData.from_bytes(data), DECLARED)  # type: ignore[arg-type]
    raw = bytes(data) if isinstance(data, bytes | bytearray | memoryview) else None
    if outcome.error is None:
        assert raw is not None and len(raw) == 20
        parsed = outcome.value
        assert isinstance(parsed, ServiceData) and bytes(parsed) == raw
        assert advertising_data(parsed).endswith(raw)  # the AD structure carries it as is
        assert raw.hex() not in repr(parsed)
    else:
        assert raw is None or len(raw) != 20


@FUZZ
@given(ANYTHING)
def test_metadata_parser(data: object) -> None:
    outcome = bounded(lambda: Metadata.from_bytes(data), DECLARED)  # type: ignore[arg-type]
    if outcome.error is None:
        parsed = outcome.value
        assert isinstance(parsed, Metadata)
        assert -128 <= parsed.tx_power_dbm <= 127
        assert Metadata.from_bytes(bytes(parsed)) == parsed  # stable once parsed


@pytest.mark.slow
@FUZZ
@given(
    st.dictionaries(
        st.one_of(st.sampled_from(EN_KEYS), st.text(max_size=40), st.integers(), st.none()),
        ANYTHING,
        max_size=4,
    ),
    RSSI,
    st.integers(-60, 60),
    st.one_of(st.none(), st.floats(0, 2e9)),
)
def test_report_parser_never_raises(
    service_data: dict[object, object], rssi: object, correction: int, scan_start: float | None
) -> None:
    outcome = bounded(
        lambda: parse_report(
            service_data,  # type: ignore[arg-type]
            rssi,  # type: ignore[arg-type]
            time=1_700_000_000.5,
            scan_start=scan_start,
            rssi_correction=correction,
        ),
        (),
    )
    verdict, sighting = outcome.value  # type: ignore[misc]
    if verdict is not Verdict.ACCEPTED:
        assert sighting is None
        return
    assert isinstance(sighting, Sighting)
    assert len(sighting.rpi) == 16 and len(sighting.aem) == 4
    assert isinstance(rssi, int) and not isinstance(rssi, bool)
    assert RSSI_MIN_DBM <= rssi <= RSSI_MAX_DBM
    assert CALIBRATED_RSSI_MIN <= sighting.rssi <= CALIBRATED_RSSI_MAX
    assert sighting_row(sighting)[1] == sighting.rpi  # the store takes what was accepted


@FUZZ
@given(
    st.one_of(st.floats(), st.integers(-(2**70), 2**70)),
    st.one_of(st.integers(-(2**40), 2**40), st.floats(), st.booleans()),
    st.one_of(st.none(), st.floats(), st.integers(-(2**70), 2**70)),
)
def test_the_store_rejects_impossible_sightings_with_a_clear_error(
    time: float, rssi: object, scan_start: float | None
) -> None:
    sighting = Sighting(time, bytes(16), bytes(4), rssi, scan_start)  # type: ignore[arg-type]
    outcome = bounded(lambda: sighting_row(sighting), DECLARED)
    if outcome.error is None:
        t, _, _, stored_rssi, offset, relay = outcome.value  # type: ignore[misc]
        assert relay == 0
        assert math.isfinite(time) and 0 <= t == math.floor(time)
        assert CALIBRATED_RSSI_MIN <= stored_rssi <= CALIBRATED_RSSI_MAX
        assert offset is None or isinstance(offset, int)
