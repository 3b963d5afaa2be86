"""The bless advertiser against the fake bluetoothd: what bluetoothd reads back, and
two simulated hours of rotations in which address and RPI always change together."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
from collections import defaultdict
from typing import Any

import pytest
from dbus_fast import Variant

from agent import crypto
from agent.ble.advertiser import BlessAdvertiser
from agent.ble.rotation import RotationLoop
from agent.clock import FakeClock, en_interval_number
from agent.constants import EN_SERVICE_UUID, LEGACY_ADV_MAX_BYTES, MAX_RPI_AIRTIME_SECONDS
from agent.errors import MalformedInputError
from agent.keyschedule import KeySchedule, OwnTek, RotationPlanner
from agent.lab.sim import FakeBluez
from agent.payload import Metadata, ServiceData, advertising_data
from tests.integration.conftest import eventually, expected_service_data

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FD6F = EN_SERVICE_UUID
MIDNIGHT = 1_600_041_600  # 2020-09-14 00:00 UTC, a multiple of 86 400


async def test_bluetoothd_receives_a_broadcast_of_our_current_rpi_and_aem(
    fake: FakeBluez, make_agent: Any
) -> None:
    a = make_agent("hci0", tx_power=-12)
    await eventually(lambda: any(t.advert for t in fake.advertisements("hci0")))
    (tx,) = fake.advertisements("hci0")
    advert = tx.advert
    assert advert is not None
    payload = expected_service_data(a.schedule, a.metadata)

    assert advert.type == "broadcast"  # ADV_NONCONN_IND: not connectable, not scannable
    assert advert.service_uuids == (FD6F,)
    assert advert.service_data == {FD6F: payload}
    assert len(payload) == 20
    assert advert.properties["MinInterval"] == 200
    assert advert.properties["MaxInterval"] == 270
    for absent in ("LocalName", "TxPower", "Includes", "Appearance", "Discoverable", "Data"):
        assert absent not in advert.properties
    assert advert.manufacturer_data == {}
    assert advert.scan_response == ()  # no name: nothing to scan for
    assert advert.ad_bytes() == advertising_data(ServiceData.from_bytes(payload))
    assert advert.ad_length == 28 <= LEGACY_ADV_MAX_BYTES
    # the AEM carries our metadata: decrypting it with our own key gives it back
    (tek,) = a.schedule.teks
    aem = crypto.decrypt_aem(crypto.derive_aemk(tek.key_data), payload[:16], payload[16:])
    assert aem == bytes(Metadata(tx_power_dbm=-12))
    # and the key was handed over for saving
    assert [t.key_data for t in a.persisted] == [tek.key_data]


async def test_two_simulated_hours_rotate_address_and_rpi_together(make_fake: Any) -> None:
    clock = FakeClock(wall=MIDNIGHT + 86_400 - 30 * 60)  # 23:30 UTC: the TEK changes at 00:00
    fake: FakeBluez = await make_fake(("hci0",), clock=clock)
    end = clock.wall() + 2 * 3600
    finished = asyncio.Event()

    async def sleep(seconds: float) -> None:
        """Simulated time: advances the clock at once; time stands still after 2 h."""
        if clock.wall() + seconds > end:
            finished.set()
            await asyncio.Event().wait()
        clock.advance(seconds)
        await asyncio.sleep(0)

    schedule = KeySchedule()
    persisted: list[tuple[float, OwnTek]] = []

    async def persist(teks: list[OwnTek]) -> None:
        persisted.extend((clock.wall(), tek) for tek in teks)

    advertiser = BlessAdvertiser("hci0", sleep=sleep)
    loop = RotationLoop(
        advertiser,
        schedule,
        Metadata(tx_power_dbm=-8),
        clock,
        sleep=sleep,
        planner=RotationPlanner(random.Random(3)),
        persist=persist,
        check_interval=30.0,
    )
    task = asyncio.create_task(loop.run())
    await asyncio.wait_for(finished.wait(), 60)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert fake.advertisements() == []  # cancelling took it off air

    frames = fake.frames("hci0")
    by_address: dict[str, set[bytes | None]] = defaultdict(set)
    by_rpi: dict[bytes, set[str]] = defaultdict(set)
    times: dict[bytes, list[float]] = defaultdict(list)
    for f in frames:
        assert f.service_data is not None and len(f.service_data) == 20
        rpi = f.service_data[:16]
        by_address[f.address].add(rpi)
        by_rpi[rpi].add(f.address)
        times[rpi].append(f.time)
    # 0 frames with a new RPI on an old address, 0 with an old RPI on a new address
    assert all(len(rpis) == 1 for rpis in by_address.values())
    assert all(len(addresses) == 1 for addresses in by_rpi.values())
    assert len(by_rpi) >= 7 and loop.rotations == len(by_rpi)  # >= 2 h / 20 min, + the first
    # no RPI on air for 20 minutes or more, and never less than 10 minutes (but the last)
    airtimes = sorted((min(t), max(t) - min(t)) for t in times.values())
    assert all(airtime < MAX_RPI_AIRTIME_SECONDS for _, airtime in airtimes)
    assert all(airtime > 600 - 2 for _, airtime in airtimes[:-1])
    # between the last frame of one RPI and the first of the next, nothing is on air
    ordered = sorted(frames, key=lambda f: f.time)
    for before, after in itertools.pairwise(ordered):
        if before.service_data != after.service_data:
            assert after.time - before.time >= 1.0  # the rotation gap
    # each RPI is our key's RPI of the interval in which it went on air, and the key with
    # that interval as its broadcast high-water mark was saved before
    intervals: dict[bytes, tuple[OwnTek, int]] = {}
    for tek in schedule.teks:
        rpik = crypto.derive_rpik(tek.key_data)
        for i in range(tek.rolling_start_interval_number, tek.end_interval_number):
            intervals[crypto.rpi(rpik, i)] = (tek, i)
    for rpi, first in ((rpi, min(t)) for rpi, t in times.items()):
        tek, interval = intervals[rpi]
        assert en_interval_number(first) - interval in (0, 1)
        saved = [
            when
            for when, t in persisted
            if t.key_data == tek.key_data and (t.max_broadcast_interval or -1) >= interval
        ]
        assert saved and min(saved) <= first
    assert len(schedule.teks) == 2  # crossed midnight: the next day's key


async def test_a_payload_that_is_not_20_bytes_never_reaches_bluetoothd(fake: FakeBluez) -> None:
    advertiser = BlessAdvertiser("hci0")
    for bad in (bytes(19), bytes(21), bytes(25)):
        with pytest.raises(MalformedInputError, match="20 bytes"):
            await advertiser.start(bad)
    await advertiser.stop()
    assert not any(c.member == "RegisterAdvertisement" for c in fake.calls)


async def test_an_advertisement_bluetoothd_rejects_is_reported_and_scanning_goes_on(
    make_fake: Any, make_agent: Any
) -> None:
    fake = await make_fake(max_adv_length=27)  # a controller with less room than 31 bytes
    phone = bytes(range(20))
    fake.add_beacon(
        "phone",
        rssi=-61,
        ServiceUUIDs=Variant("as", [FD6F]),
        ServiceData=Variant("a{sv}", {FD6F: Variant("ay", phone)}),
    )
    a = make_agent("hci0")
    await eventually(
        lambda: sum(c.member == "RegisterAdvertisement" for c in fake.calls) >= 3 and a.heard() >= 3
    )
    status = a.radio.status()
    assert status["advertising"] is False
    assert "advertisement_rejected" in status["last_error"]["advertising"]
    assert status["scanning"] is True
    assert {s.rpi + s.aem for s in a.sightings()} == {phone}
    assert fake.advertisements() == []
    assert a.task is not None and not a.task.done()
    # retrying the same interval reuses the broadcast: no key was burnt on failures
    assert len(a.schedule.teks) == 1


async def test_exact_adapter_name_is_used_not_a_prefix_match(
    make_fake: Any, make_agent: Any
) -> None:
    fake = await make_fake(("hci10", "hci1"))  # bless alone would pick hci10 for "hci1"
    make_agent("hci1")
    await eventually(lambda: bool(fake.advertisements()))
    assert [t.adapter for t in fake.advertisements()] == ["hci1"]
