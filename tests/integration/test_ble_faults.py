"""Faults, through the real bleak and bless code: bluetoothd restarts, adapters going off
or away, D-Bus AccessDenied, malformed beacons and a scan that went silent. The radio
recovers (or, for AccessDenied, stops with exit status 78) and never crashes."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import pytest
from dbus_fast import Variant

from agent.ble.advertiser import BlessAdvertiser
from agent.ble.scanner import BleakEnScanner
from agent.clock import SystemClock
from agent.constants import BLUEZ_RECOVERY_SECONDS, EN_SERVICE_UUID
from agent.errors import EXIT_CONFIG, BluetoothAccessDeniedError
from agent.keyschedule import KeySchedule
from agent.lab.sim import FakeBluez, PrivateBus
from agent.lab.sim.bus import SYSTEM_BUS_ENV
from agent.models import Sighting
from tests.integration.conftest import (
    FAST,
    Agent,
    eventually,
    expected_service_data,
    require_dbus_daemon,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FD6F = EN_SERVICE_UUID


def _pair(fake: FakeBluez, make_agent: Any) -> tuple[Agent, Agent]:
    fake.set_link("hci0", "hci1", -55)
    fake.set_link("hci1", "hci0", -66)
    return make_agent("hci0"), make_agent("hci1")


def _hear_each_other(a: Agent, b: Agent) -> bool:
    return a.heard() > 0 and b.heard() > 0


def _addresses(fake: FakeBluez) -> set[str]:
    return {t.address for t in fake.advertisements()}


@pytest.mark.parametrize("graceful", [True, False], ids=["graceful", "crash"])
async def test_bluetoothd_restart_is_recovered_within_10_s(
    fake: FakeBluez, make_agent: Any, graceful: bool
) -> None:
    a, b = _pair(fake, make_agent)
    await eventually(lambda: _hear_each_other(a, b) and len(fake.advertisements()) == 2)
    before = _addresses(fake)
    await fake.restart(downtime=0.3, graceful=graceful)
    assert fake.advertisements() == []  # registrations died with the daemon
    a.clear()
    b.clear()
    await eventually(
        lambda: _hear_each_other(a, b) and len(fake.advertisements()) == 2,
        timeout=BLUEZ_RECOVERY_SECONDS,
    )
    assert not _addresses(fake) & before  # new registrations, new addresses
    for agent in (a, b):
        assert agent.task is not None and not agent.task.done()
        status = agent.radio.status()
        assert status["advertising"] and status["scanning"]
    assert {s.rssi for s in a.sightings()} == {-66}
    assert {s.rssi for s in b.sightings()} == {-55}
    # errors seen while bluetoothd was away are not reported once all works again
    await eventually(lambda: set(a.radio.status()["last_error"].values()) == {None})


@pytest.mark.slow
async def test_adapter_powered_off_and_on(fake: FakeBluez, make_agent: Any) -> None:
    a, b = _pair(fake, make_agent)
    await eventually(lambda: _hear_each_other(a, b))
    fake.set_powered("hci0", False)
    await eventually(
        lambda: not a.radio.status()["advertising"] and not a.radio.status()["scanning"]
    )
    assert a.radio.status()["adapter_state"] == "powered off"
    await asyncio.sleep(0.3)
    a.clear()
    b.clear()
    await asyncio.sleep(0.3)
    assert a.heard() == 0 and b.heard() == 0  # off means off, both ways
    fake.set_powered("hci0", True)
    await eventually(lambda: _hear_each_other(a, b), timeout=BLUEZ_RECOVERY_SECONDS)
    assert a.radio.status()["advertising"] and a.radio.status()["scanning"]
    assert a.task is not None and not a.task.done()


async def test_adapter_unplugged_and_plugged_back(fake: FakeBluez, make_agent: Any) -> None:
    a, b = _pair(fake, make_agent)
    await eventually(lambda: _hear_each_other(a, b))
    fake.remove_adapter("hci0")
    await eventually(lambda: a.radio.status()["adapter_state"] == "no adapter hci0")
    await eventually(lambda: not a.radio.status()["advertising"])
    fake.add_adapter("hci0")
    a.clear()
    b.clear()
    await eventually(lambda: _hear_each_other(a, b), timeout=BLUEZ_RECOVERY_SECONDS)
    assert a.task is not None and not a.task.done()


async def test_access_denied_by_bluetoothd_ends_run_with_exit_78(
    fake: FakeBluez, make_agent: Any
) -> None:
    fake.deny_access()
    a = make_agent("hci0")
    assert a.task is not None
    with pytest.raises(BluetoothAccessDeniedError) as info:
        await asyncio.wait_for(a.task, 5)
    assert info.value.exit_code == EXIT_CONFIG == 78
    message = str(info.value)
    assert "bluetooth" in message and "group" in message and "policy" in message
    assert "\n" not in message


async def test_access_denied_after_a_restart_also_ends_run(
    fake: FakeBluez, make_agent: Any
) -> None:
    a = make_agent("hci0")
    await eventually(lambda: a.radio.status()["advertising"])
    fake.deny_access()
    await fake.restart(downtime=0.1)
    assert a.task is not None
    with pytest.raises(BluetoothAccessDeniedError):
        await asyncio.wait_for(a.task, 5)


async def test_access_denied_by_the_dbus_policy(
    monkeypatch: pytest.MonkeyPatch, make_agent: Any
) -> None:
    """A real dbus-daemon policy that refuses sending to org.bluez, as distributions do."""
    require_dbus_daemon()
    with PrivateBus(deny_send_to=["org.bluez"]) as bus:
        monkeypatch.setenv(SYSTEM_BUS_ENV, bus.address)
        fake = await FakeBluez(["hci0"], tick=0.05).start()
        try:
            a = make_agent("hci0")
            assert a.task is not None
            with pytest.raises(BluetoothAccessDeniedError, match="bluetooth"):
                await asyncio.wait_for(a.task, 5)
            denied = [c for c in fake.calls if c.sender != fake.unique_name]
            assert denied == []  # dbus-daemon refused them: they never reached bluetoothd
        finally:
            await fake.stop()


async def test_advertiser_and_scanner_report_access_denied(fake: FakeBluez) -> None:
    fake.deny_access()
    with pytest.raises(BluetoothAccessDeniedError):
        await BlessAdvertiser("hci0").start(bytes(20))
    queue: asyncio.Queue[Sighting] = asyncio.Queue()
    scanner = BleakEnScanner("hci0", SystemClock(), queue, passive=False)
    with pytest.raises(BluetoothAccessDeniedError):
        await scanner.start()
    assert not scanner.scanning


def _service_data(data: bytes) -> Variant:
    return Variant("a{sv}", {FD6F: Variant("ay", data)})


async def test_malformed_beacons_are_counted_and_dropped(fake: FakeBluez, make_agent: Any) -> None:
    good = bytes(range(100, 120))
    uuids = Variant("as", [FD6F])
    fake.add_beacon("good", rssi=-70, ServiceUUIDs=uuids, ServiceData=_service_data(good))
    fake.add_beacon("short", rssi=-70, ServiceUUIDs=uuids, ServiceData=_service_data(bytes(19)))
    fake.add_beacon("long", rssi=-70, ServiceUUIDs=uuids, ServiceData=_service_data(bytes(21)))
    fake.add_beacon("no-data", rssi=-70, ServiceUUIDs=uuids)
    fake.add_beacon("rssi-127", rssi=127, ServiceUUIDs=uuids, ServiceData=_service_data(bytes(20)))
    fake.add_beacon(  # a ServiceData variant of the wrong D-Bus type (bad-input case 10)
        "wrong-type",
        rssi=-70,
        ServiceUUIDs=uuids,
        raw_service_data=Variant("a{sv}", {FD6F: Variant("s", "not bytes")}),
    )
    a = make_agent("hci0")
    await eventually(
        lambda: (
            (c := a.radio.scanner.counters).bad_length >= 4
            and c.foreign >= 2
            and c.bad_rssi >= 2
            and c.accepted >= 2
        )
    )
    sightings = a.sightings()
    assert {s.rpi + s.aem for s in sightings} == {good}
    assert {s.rssi for s in sightings} == {-70}
    assert a.task is not None and not a.task.done()
    status = a.radio.status()
    assert status["scanning"] and status["last_error"]["scanning"] is None


@pytest.mark.slow
async def test_watchdog_restarts_a_scan_that_went_silent(fake: FakeBluez, make_agent: Any) -> None:
    a, _ = _pair(fake, make_agent)
    await eventually(lambda: a.heard() > 0)
    fake.stall_discovery("hci0")  # looks on, hears nothing (stuck controller)
    await eventually(lambda: a.radio.status()["counters"]["watchdog_restarts"] >= 1, timeout=5)
    a.clear()
    await eventually(lambda: a.heard() > 0)


async def test_watchdog_restarts_discovery_bluetoothd_dropped(
    fake: FakeBluez, make_agent: Any
) -> None:
    a, _ = _pair(fake, make_agent)
    await eventually(lambda: a.heard() > 0)
    fake.drop_discovery("hci0")  # Discovering=false: bluez#807-style lost session
    await eventually(lambda: a.radio.status()["counters"]["watchdog_restarts"] >= 1, timeout=2)
    a.clear()
    await eventually(lambda: a.heard() > 0)
    assert len(fake.discovery_sessions("hci0")) == 1


async def test_consent_off_stops_advertising_and_scanning_at_once(
    fake: FakeBluez, make_agent: Any
) -> None:
    a, b = _pair(fake, make_agent)
    await eventually(lambda: _hear_each_other(a, b) and len(fake.advertisements()) == 2)
    a.radio.set_advertising_allowed(False)
    a.radio.set_scanning_allowed(False)
    await eventually(lambda: fake.advertisements("hci0") == [], timeout=2)
    await eventually(lambda: fake.discovery_sessions("hci0") == {}, timeout=2)
    status = a.radio.status()
    assert not status["advertising"] and not status["scanning"]
    assert len(fake.advertisements("hci1")) == 1
    a.radio.set_advertising_allowed(True)
    await eventually(lambda: len(fake.advertisements("hci0")) == 1, timeout=2)
    assert fake.discovery_sessions("hci0") == {}  # scanning stays off until allowed


async def test_losing_the_system_bus_the_radio_keeps_trying_to_reconnect(
    private_bus: PrivateBus, fake: FakeBluez, make_agent: Any
) -> None:
    a = make_agent("hci0")
    await eventually(lambda: a.radio.status()["advertising"])
    assert a.radio.heartbeat is not None
    private_bus.stop()  # the system dbus-daemon went away
    # the radio itself starts over: parts stopped, reconnecting on its back-off (the
    # daemon does not restart it); it does not end, and gives no exit 78
    await eventually(
        lambda: a.radio.heartbeat is None and not a.radio.status()["advertising"], timeout=15
    )
    await asyncio.sleep(5 * FAST.backoff_max)  # several tries to reconnect
    assert a.task is not None and not a.task.done()
    assert a.radio.heartbeat is None and not a.radio.ready


async def test_restart_starts_over_on_a_new_adapter_and_key_schedule(
    fake: FakeBluez, make_agent: Any
) -> None:
    """``reload`` with a new ``[radio]`` and ``forget`` (a new, empty key schedule): the
    same radio stops the old parts, then starts new ones; what is allowed is kept."""
    a = make_agent("hci0")
    await eventually(lambda: len(fake.advertisements("hci0")) == 1)
    old_keys = {t.key_data for t in a.schedule.teks}
    schedule = KeySchedule()
    a.radio.restart(replace(a.radio.config, adapter="hci1"), schedule, a.metadata)
    await eventually(
        lambda: len(fake.advertisements("hci1")) == 1 and a.radio.heartbeat is not None
    )
    assert fake.advertisements("hci0") == []  # the old advertisement went off air
    assert a.radio.status()["adapter"] == "hci1"
    (tek,) = schedule.teks  # the new key went on air, from the new schedule
    assert tek.key_data not in old_keys
    (on_air,) = fake.advertisements("hci1")
    assert on_air.advert is not None
    assert on_air.advert.service_data[FD6F] == expected_service_data(schedule, a.metadata)
    a.radio.set_scanning_allowed(False)
    before = a.radio.rotation
    a.radio.restart(a.radio.config, schedule, a.metadata)
    await eventually(
        lambda: (
            a.radio.rotation is not before
            and len(fake.advertisements("hci1")) == 1
            and a.radio.heartbeat is not None
        )
    )
    assert fake.discovery_sessions("hci1") == {}  # still not allowed after the restart
    assert a.task is not None and not a.task.done()
