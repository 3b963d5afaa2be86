"""Exposure time is right for both scan modes, through the real store and matcher.

Continuous scanning rolls back-to-back 60 s scan instances; GAEN-style duty scanning
scans 4 s every 5 min. Each instance stands for the time since the previous scan's start,
so 20 minutes together count as 20 minutes in both modes.
"""

from __future__ import annotations

from pathlib import Path

from agent import crypto
from agent.clock import en_interval_number, rolling_start_interval_number
from agent.config import RiskConfig
from agent.matching.core import SightingIndex, match_keys
from agent.models import ExposureWindow, ScanPeriod, Sighting, TemporaryExposureKey
from agent.payload import Metadata
from agent.risk import exposure_windows
from agent.store import Store

T0 = 1_700_000_400.0  # 22:20 UTC; the contact stays inside one UTC day
TX = -8
RSSI = -60  # attenuation 52 dB: the IMMEDIATE bucket (<= 55), weight 1.0


def payload_at(tek: bytes, rotation_time: float) -> tuple[bytes, bytes]:
    interval = en_interval_number(rotation_time)
    rpi = crypto.rpi(crypto.derive_rpik(tek), interval)
    aem = crypto.encrypt_aem(crypto.derive_aemk(tek), rpi, bytes(Metadata(tx_power_dbm=TX)))
    return rpi, aem


def heard(tek: bytes, t: float, scan_start: float) -> Sighting:
    rotation = T0 if t < T0 + 900 else T0 + 900  # address and RPI rotate after 15 min
    rpi, aem = payload_at(tek, rotation)
    return Sighting(time=t, rpi=rpi, aem=aem, rssi=RSSI, scan_start=scan_start)


async def windows_for(
    tmp_path: Path, tek: bytes, sightings: list[Sighting], scans: list[ScanPeriod]
) -> list[ExposureWindow]:
    store = await Store.open(tmp_path / "data")
    try:
        await store.add_sightings(sightings)
        for period in scans:
            await store.record_scan(period)
        observed = await store.observed_scans(0)
    finally:
        await store.close()
    key = TemporaryExposureKey(tek, rolling_start_interval_number(en_interval_number(T0)))
    result = match_keys([key], SightingIndex(observed))
    assert result.matched_keys == 1
    return exposure_windows(key, result.matches[0].scans, RiskConfig())


async def test_continuous_scanning_counts_every_minute(tmp_path: Path) -> None:
    tek = crypto.new_tek()
    slots = [T0 - 60 + 60 * i for i in range(21)]  # one slot before the contact
    sightings = [
        heard(tek, start + offset, start)
        for start in slots[1:]
        for offset in range(0, 60, 2)
    ]
    scans = [ScanPeriod(start, start + 60) for start in slots]
    windows = await windows_for(tmp_path, tek, sightings, scans)
    assert len(windows) == 1
    window = windows[0]
    assert len(window.scan_instances) == 20
    assert {s.seconds_since_last_scan for s in window.scan_instances} == {60}
    assert window.duration_seconds == 20 * 60
    assert window.weighted_duration_seconds == 20 * 60
    assert window.min_attenuation_db == 52


async def test_duty_scanning_counts_five_minutes_per_scan(tmp_path: Path) -> None:
    tek = crypto.new_tek()
    starts = [T0 - 300 + 300 * i for i in range(5)]  # 4 s scans every 5 minutes
    sightings = [heard(tek, start + offset, start) for start in starts[1:] for offset in (0, 1, 3)]
    scans = [ScanPeriod(start, start + 4) for start in starts]
    windows = await windows_for(tmp_path, tek, sightings, scans)
    assert len(windows) == 1
    assert [s.seconds_since_last_scan for s in windows[0].scan_instances] == [300] * 4
    assert windows[0].duration_seconds == 1200


async def test_unknown_previous_scan_falls_back_to_120_seconds(tmp_path: Path) -> None:
    tek = crypto.new_tek()
    sightings = [heard(tek, T0 + offset, T0) for offset in (0, 5, 10)]
    windows = await windows_for(tmp_path, tek, sightings, [ScanPeriod(T0, T0 + 60)])
    assert [s.seconds_since_last_scan for s in windows[0].scan_instances] == [120]
