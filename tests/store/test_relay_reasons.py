"""The relay guard's reason bitmask in the store: per sighting, OR-ed per scan and window."""

from __future__ import annotations

from dataclasses import replace

from agent.models import ExposureWindow, ReportType, ScanInstance
from agent.relayguard import Reason
from agent.store import Store
from tests.store.conftest import T0, sighting

X = bytes.fromhex("33" * 16)
Y = bytes.fromhex("44" * 16)


async def test_reasons_are_or_ed_per_scan_instance_and_kept_on_windows(store: Store) -> None:
    await store.add_sightings(
        [
            replace(sighting(T0 + 1, X, -60, T0), relay=int(Reason.MULTI_RPI)),
            replace(sighting(T0 + 2, X, -60, T0), relay=int(Reason.AEM_CHANGED)),
            sighting(T0 + 3, X, -60, T0),
            sighting(T0 + 61, X, -60, T0 + 60),
            replace(sighting(T0 + 5, Y, -60), relay=int(Reason.OVERLONG)),  # no scan start
        ]
    )
    scans = {(s.rpi, s.first_seen): s.relay for s in await store.observed_scans(T0 - 1)}
    assert scans[(X, T0 + 1)] == Reason.MULTI_RPI | Reason.AEM_CHANGED
    assert scans[(X, T0 + 61)] == 0
    assert scans[(Y, T0 + 5)] == Reason.OVERLONG
    assert {s.relay async for s in store.iter_sightings()} == {0, 2, 4, 8}

    window = ExposureWindow(
        start=int(T0),
        duration_seconds=300,
        report_type=ReportType.CONFIRMED_TEST,
        infectiousness=1,
        calibration_confidence=0,
        scan_instances=(ScanInstance(40, 38, 300),),
        key_data=bytes(16),
        relay=int(Reason.TIME_SHIFTED),
    )
    await store.save_exposure_windows([window, replace(window, key_data=b"\x01" * 16, relay=0)])
    assert sorted(w.relay for w in await store.exposure_windows()) == [0, Reason.TIME_SHIFTED]
