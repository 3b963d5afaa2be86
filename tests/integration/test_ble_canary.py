"""Conformance canary: the bless and bleak internals agent/ble relies on.

If an upgrade of bless, bleak or dbus-fast changes one of these, this file fails with a
message that says which assumption broke (each assumption is stated in its test).
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import bless.backends.bluezdbus.server
import pytest
from bleak import BleakScanner
from bleak.args.bluez import OrPattern
from bleak.assigned_numbers import AdvertisementDataType
from bleak.backends.bluezdbus import manager as bleak_manager
from bleak.backends.bluezdbus.scanner import BleakScannerBlueZDBus
from bleak.exc import BleakDBusError
from bless.backends.bluezdbus.dbus import utils as bless_utils
from bless.backends.bluezdbus.dbus.advertisement import BlueZLEAdvertisement, Type
from bless.backends.bluezdbus.server import BlessServerBlueZDBus

from agent.ble.advertiser import GaenAdvertisement, _Owner
from agent.ble.busutil import close_bus
from agent.ble.errors import Reason, classify
from agent.ble.scanner import EN_OR_PATTERN
from agent.constants import EN_SERVICE_UUID
from agent.lab.sim import FakeBluez
from tests.integration.conftest import eventually

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_bless_advertisement_object_we_subclass() -> None:
    owner = _Owner("/org/contactagent/hci0", "contact_agent_hci0")
    base = BlueZLEAdvertisement(Type.BROADCAST, 3, owner)
    # the constructor reads only base_path and app_name from its "application"
    assert base.path == "/org/contactagent/hci0/advertisement3"
    for attr in ("_type", "_service_uuids", "_service_data", "_min_interval", "_max_interval"):
        assert hasattr(base, attr), f"bless renamed BlueZLEAdvertisement.{attr}"
    assert Type.BROADCAST.value == "broadcast"
    assert base.interface_name == "org.bluez.LEAdvertisement1"

    ours = GaenAdvertisement(owner, 1, bytes(range(20)))
    intro = ours.introspect()
    props = {p.name: p.signature for p in intro.properties}
    # disabled=True must still hide LocalName and TxPower from bluetoothd
    assert "LocalName" not in props and "TxPower" not in props
    assert props["Type"] == "s" and props["ServiceUUIDs"] == "as"
    assert props["ServiceData"] == "a{sv}"
    assert props["MinInterval"] == "u" and props["MaxInterval"] == "u"
    assert "Release" in {m.name for m in intro.methods}


def test_bless_server_plumbing_we_use() -> None:
    assert "setup_task" in inspect.getsource(BlessServerBlueZDBus.__init__)
    setup = inspect.getsource(BlessServerBlueZDBus.setup)
    assert "self.bus" in setup and "self.adapter" in setup
    # bless finds adapters among objects with GattManager1, by substring (we fix that up)
    assert "GATT_MANAGER_INTERFACE" in inspect.getsource(bless_utils.list_adapters)
    assert "No adapter named" in inspect.getsource(bless_utils.find_adapter)
    assert classify(Exception("No adapter named hci0 found")).reason is Reason.NO_ADAPTER


def test_bleak_api_we_use() -> None:
    params = inspect.signature(BleakScanner.__init__).parameters
    assert {"detection_callback", "service_uuids", "scanning_mode", "bluez"} <= set(params)
    assert AdvertisementDataType.SERVICE_DATA_UUID16 == 0x16
    assert OrPattern(0, 0x16, b"\x6f\xfd") == EN_OR_PATTERN
    err = BleakDBusError("org.bluez.Error.NotReady", ["Resource Not Ready"])
    assert (err.dbus_error, err.dbus_error_details) == (
        "org.bluez.Error.NotReady",
        "Resource Not Ready",
    )
    # the texts of bleak errors our table matches on
    passive = inspect.getsource(bleak_manager.BlueZManager.passive_scan)
    assert "passive scanning on Linux requires" in passive
    check = inspect.getsource(bleak_manager.BlueZManager._check_adapter)
    assert "adapter '" in check
    # one BlueZManager per event loop (why every test gets a fresh bus and loop)
    assert "_global_instances" in inspect.getsource(bleak_manager.get_global_bluez_manager)
    # active scans filter on service_uuids both in BlueZ (UUIDs) and client side
    init = inspect.getsource(BleakScannerBlueZDBus.__init__)
    assert '"UUIDs"' in init and '"Transport"' in init


async def test_bleak_reports_bluez_props_as_platform_data(fake: FakeBluez) -> None:
    """Our scanner reads the raw Device1 RSSI from AdvertisementData.platform_data."""
    fake.add_beacon("b", rssi=-77, ServiceUUIDs=_v("as", [EN_SERVICE_UUID]))
    seen: list[Any] = []
    scanner = BleakScanner(
        lambda _d, adv: seen.append(adv), [EN_SERVICE_UUID], bluez={"adapter": "hci0"}
    )
    await scanner.start()
    try:
        await eventually(lambda: bool(seen))
    finally:
        await scanner.stop()
    path, props = seen[0].platform_data
    assert path.startswith("/org/bluez/hci0/dev_")
    assert props["RSSI"] == -77 and seen[0].rssi == -77


async def test_bless_server_connects_to_the_adapter_we_name(fake: FakeBluez) -> None:
    server = BlessServerBlueZDBus(name="canary", adapter="hci1")
    try:
        await asyncio.wait_for(server.setup_task, 5)
        assert server.adapter.path == "/org/bluez/hci1"
        assert server.adapter.get_interface("org.bluez.LEAdvertisingManager1") is not None
    finally:
        await close_bus(server.bus)


def test_bless_exports_with_dbus_next_variants() -> None:
    """bless serves D-Bus through dbus_next: its Variant, not dbus-fast's, must be used."""
    from dbus_next.signature import Variant as NextVariant

    owner = _Owner("/org/contactagent/hci0", "x")
    data = GaenAdvertisement(owner, 1, bytes(20))._service_data[EN_SERVICE_UUID]
    assert isinstance(data, NextVariant) and data.signature == "ay"
    assert "dbus_next" in inspect.getsource(bless.backends.bluezdbus.server)


def _v(sig: str, value: Any) -> Any:
    from dbus_fast import Variant

    return Variant(sig, value)
