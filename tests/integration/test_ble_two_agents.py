"""Two agents on two adapters of the fake bluetoothd hear each other, through the real
bless advertiser and bleak scanner, and what they hear ends up in the real store."""

from __future__ import annotations

import asyncio
import itertools
import statistics
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from agent.lab.sim import FakeBluez
from agent.models import ScanPeriod, Sighting
from agent.store import SightingWriter, Store
from tests.integration.conftest import FAST, eventually, expected_service_data

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.mark.slow
async def test_each_agent_stores_the_others_exact_rpi_aem_and_link_rssi(
    fake: FakeBluez, make_agent: Any, tmp_path: Path
) -> None:
    fake.set_link("hci0", "hci1", -55)  # hci1 hears hci0 at -55 dBm
    fake.set_link("hci1", "hci0", -71)
    queue_a: asyncio.Queue[Sighting | ScanPeriod] = asyncio.Queue()
    queue_b: asyncio.Queue[Sighting | ScanPeriod] = asyncio.Queue()
    tuning = replace(FAST, scan_instance_seconds=1.0)  # the store keeps whole seconds
    a = make_agent("hci0", queue=queue_a, tuning=tuning)
    b = make_agent("hci1", queue=queue_b, tuning=tuning)
    store_a = await Store.open(tmp_path / "a")
    store_b = await Store.open(tmp_path / "b")
    writer_a = SightingWriter(store_a, queue_a, flush_interval=0.1)
    writer_b = SightingWriter(store_b, queue_b, flush_interval=0.1)
    writer_a.start()
    writer_b.start()
    try:

        async def both_stored() -> bool:
            return bool(await store_a.observed_scans(0)) and bool(await store_b.observed_scans(0))

        for _ in range(100):
            if await both_stored():
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(2.2)  # more than two scan instances
        for agent in (a, b):
            agent.radio.set_scanning_allowed(False)
        await eventually(lambda: not a.radio.scanner.scanning and not b.radio.scanner.scanning)
        await writer_a.close()
        await writer_b.close()
        scans_a = await store_a.observed_scans(0)
        scans_b = await store_b.observed_scans(0)
    finally:
        await store_a.close()
        await store_b.close()

    payload_a = expected_service_data(a.schedule, a.metadata)
    payload_b = expected_service_data(b.schedule, b.metadata)
    assert payload_a != payload_b
    assert {(s.rpi, s.aem) for s in scans_a} == {(payload_b[:16], payload_b[16:])}
    assert {(s.rpi, s.aem) for s in scans_b} == {(payload_a[:16], payload_a[16:])}
    assert {(s.rssi_min, s.rssi_max) for s in scans_a} == {(-71, -71)}
    assert {(s.rssi_min, s.rssi_max) for s in scans_b} == {(-55, -55)}
    # several scan instances, each knowing when the scan before it ended
    assert len(scans_a) >= 2
    assert any(s.previous_scan_end is not None for s in scans_a)
    assert sum(s.count for s in scans_a) == a.radio.scanner.counters.accepted


@pytest.mark.slow
async def test_sightings_carry_clock_time_and_scan_instance(
    fake: FakeBluez, make_agent: Any
) -> None:
    fake.set_link("hci1", "hci0", -63)
    a = make_agent("hci0", rssi_correction_db=5)
    make_agent("hci1")
    await eventually(lambda: len(a.periods()) >= 2 and a.heard() >= 5)
    sightings, periods = a.sightings(), a.periods()
    assert {s.rssi for s in sightings} == {-58}  # raw -63 + correction 5
    starts = [p.start for p in periods]
    assert all(p.end > p.start for p in periods)
    assert all(later.start >= earlier.end for earlier, later in itertools.pairwise(periods))
    for s in sightings:
        assert s.scan_start is not None and s.scan_start <= s.time
    # every sighting is stamped with the instance it was heard in
    closed = [s for s in sightings if s.time < periods[-1].end]
    assert closed and all(s.scan_start in starts for s in closed)


async def test_passive_scanning_with_or_patterns(fake: FakeBluez, make_agent: Any) -> None:
    fake.set_link("hci1", "hci0", -60)
    fake.add_beacon("not-en", rssi=-50, ServiceUUIDs=_variant_as(["180f"]))
    a = make_agent("hci0", passive=True)
    b = make_agent("hci1", passive=True)
    await eventually(lambda: a.heard() >= 3 and b.heard() >= 3)
    assert a.radio.status()["scan_mode"] == "passive"
    assert {s.rpi + s.aem for s in a.sightings()} == {expected_service_data(b.schedule, b.metadata)}
    assert a.radio.scanner.counters.foreign == 0  # the monitor never matched the other beacon
    assert all(c.member != "StartDiscovery" for c in fake.calls if c.path == "/org/bluez/hci0")


async def test_passive_falls_back_to_active_without_monitor_methods(
    make_fake: Any, make_agent: Any
) -> None:
    fake = await make_fake(monitor_methods=False)  # like BlueZ without -E
    fake.set_link("hci1", "hci0", -60)
    a = make_agent("hci0", passive=True)
    make_agent("hci1")
    await eventually(lambda: a.heard() >= 3)
    status = a.radio.status()
    assert status["scan_mode"] == "active"
    assert status["last_error"]["scanning"] is None  # a fallback, not a failure
    sessions = fake.discovery_sessions("hci0")
    assert [f.get("UUIDs") for f in sessions.values()] == [["0000fd6f-0000-1000-8000-00805f9b34fb"]]


@pytest.mark.slow
async def test_duty_cycle_scans_briefly_and_records_each_scan(
    fake: FakeBluez, make_agent: Any
) -> None:
    fake.set_link("hci1", "hci0", -60)
    a = make_agent("hci0", scan_mode="duty", duty_scan_seconds=0.3, duty_period_seconds=0.8)
    make_agent("hci1")
    await eventually(lambda: len(a.periods()) >= 3, timeout=8)
    periods = a.periods()
    for p in periods:
        assert 0.25 <= p.end - p.start < 0.8
    gaps = [later.start - earlier.end for earlier, later in itertools.pairwise(periods)]
    assert all(gap > 0.1 for gap in gaps)  # the radio rests between scans
    heard = [s for s in a.sightings() if s.time <= periods[-1].end]
    assert heard
    for s in heard:  # each sighting falls in the scan it is stamped with
        (scan,) = [p for p in periods if p.start == s.scan_start]
        assert scan.start <= s.time <= scan.end + 0.05


def _variant_as(uuids: list[str]) -> Any:
    from dbus_fast import Variant

    return Variant("as", uuids)


@pytest.mark.slow
async def test_path_loss_links_give_noisy_rssi_around_the_model(
    make_fake: Any, make_agent: Any
) -> None:
    fake: FakeBluez = await make_fake()
    fake.set_distance("hci0", "hci1", 3.0, walls=1)  # both directions
    a = make_agent("hci0")
    b = make_agent("hci1")
    await eventually(lambda: a.heard() >= 25 and b.heard() >= 25)
    expected = fake.air.model.mean_rssi(3.0, walls=1)  # -59 - 20 log10(3) - 5 = -73.5
    for agent in (a, b):
        values = [s.rssi for s in agent.sightings()]
        assert abs(statistics.mean(values) - expected) < 3.0
        assert len(set(values)) > 1  # noise on every report
