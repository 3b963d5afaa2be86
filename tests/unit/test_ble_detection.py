"""Validation of one advertisement report (``docs/bad-input-coverage.md``, cases 1, 2, 6)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from agent.ble.detection import Verdict, calibrated_rssi, parse_report
from agent.constants import EN_SERVICE_UUID

DATA = bytes(range(20))


def _parse(data: dict[str, bytes], rssi: int | None, correction: int = 0) -> tuple[Verdict, object]:
    return parse_report(data, rssi, time=1000.5, scan_start=990.0, rssi_correction=correction)


def test_valid_report_becomes_a_sighting() -> None:
    verdict, sighting = parse_report(
        {EN_SERVICE_UUID: DATA, "0000180f-0000-1000-8000-00805f9b34fb": b"\x64"},
        -61,
        time=1000.5,
        scan_start=990.0,
        rssi_correction=3,
    )
    assert verdict is Verdict.ACCEPTED and sighting is not None
    assert sighting.rpi == DATA[:16] and sighting.aem == DATA[16:]
    assert (sighting.time, sighting.scan_start, sighting.rssi) == (1000.5, 990.0, -58)


def test_uuid_key_case_and_short_form_are_accepted() -> None:
    assert _parse({EN_SERVICE_UUID.upper(): DATA}, -60)[0] is Verdict.ACCEPTED
    assert _parse({"FD6F": DATA}, -60)[0] is Verdict.ACCEPTED


def test_reports_without_en_service_data_are_foreign() -> None:
    assert _parse({}, -60) == (Verdict.FOREIGN, None)
    assert _parse({"0000feaa-0000-1000-8000-00805f9b34fb": DATA}, -60) == (Verdict.FOREIGN, None)


def test_wrong_lengths_are_rejected() -> None:
    for n in (0, 16, 19, 21, 31):
        assert _parse({EN_SERVICE_UUID: bytes(n)}, -60) == (Verdict.BAD_LENGTH, None)


def test_impossible_rssi_is_rejected() -> None:
    for rssi in (None, 127, 21, -128, 0.5, True):
        assert _parse({EN_SERVICE_UUID: DATA}, rssi) == (Verdict.BAD_RSSI, None)  # type: ignore[arg-type]
    assert _parse({EN_SERVICE_UUID: DATA}, 20)[0] is Verdict.ACCEPTED
    assert _parse({EN_SERVICE_UUID: DATA}, -127)[0] is Verdict.ACCEPTED


def test_calibration_is_clamped_to_the_spec_range() -> None:
    assert calibrated_rssi(-120, -20) == -127
    assert calibrated_rssi(20, 120) == 126
    assert calibrated_rssi(-70, 5) == -65


@given(st.binary(max_size=40).filter(lambda b: len(b) != 20), st.integers(-127, 20))
def test_any_length_but_20_is_rejected(data: bytes, rssi: int) -> None:
    assert _parse({EN_SERVICE_UUID: data}, rssi) == (Verdict.BAD_LENGTH, None)


@given(st.binary(min_size=20, max_size=20), st.integers(-127, 20), st.integers(-60, 60))
def test_any_valid_report_keeps_bytes_and_clamps_rssi(data: bytes, rssi: int, corr: int) -> None:
    verdict, sighting = parse_report(
        {EN_SERVICE_UUID: data}, rssi, time=5.0, scan_start=None, rssi_correction=corr
    )
    assert verdict is Verdict.ACCEPTED and sighting is not None
    assert sighting.rpi + sighting.aem == data
    assert sighting.rssi == max(-127, min(126, rssi + corr))
