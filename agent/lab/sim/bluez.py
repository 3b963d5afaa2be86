"""A fake bluetoothd (bus name ``org.bluez``) serving several adapters on one bus.

Enough of the BlueZ D-Bus API for the real bleak (scanning) and bless (advertising)
code: ``Adapter1`` with discovery sessions and filters, ``LEAdvertisingManager1`` that
reads each advertisement back and checks it like bluetoothd, ``GattManager1`` (bless
looks for it), ``AdvertisementMonitorManager1`` (passive scanning) and ``Device1``
objects for what each adapter hears. Every tick the :class:`~agent.lab.sim.air.Air` relays
each adapter's advertisements to the other adapters (see :mod:`agent.lab.sim.discovery`).

Faults for tests: :meth:`FakeBluez.restart` (bluetoothd restarts), :meth:`set_powered`,
:meth:`remove_adapter`, :meth:`deny_access` (D-Bus ``AccessDenied``), beacons with bad
data, and stalled or dropped discovery sessions.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from dbus_fast import Message, MessageFlag, Variant, unpack_variants

from agent.clock import Clock, SystemClock
from agent.lab.sim.addata import AdvertisementRejected, parse_advertisement
from agent.lab.sim.air import Air, Frame, Transmitter, random_nrpa
from agent.lab.sim.dbusobj import PROPERTIES, DBusFailure, MethodTable, bluez_error
from agent.lab.sim.discovery import (
    ADAPTER,
    ADV_MANAGER,
    ADVERT,
    FILTER_KEYS,
    GATT_MANAGER,
    METHODS,
    MONITOR,
    MONITOR_MANAGER,
    Discovery,
)
from agent.lab.sim.pathloss import PathLossModel
from agent.lab.sim.service import ACCESS_DENIED, BusService, Call

_LOGGER = logging.getLogger(__name__)

BLUEZ_NAME = "org.bluez"
_PARSE_FAILED = "Failed to parse advertisement."
_WRITABLE = {"Alias": "s", "Powered": "b", "Discoverable": "b", "Pairable": "b"}


class FakeBluez(BusService):
    """The fake daemon; use ``await FakeBluez([...]).start()`` on a private bus."""

    name = BLUEZ_NAME

    def __init__(
        self,
        adapters: Sequence[str] = ("hci0", "hci1"),
        *,
        clock: Clock | None = None,
        tick: float = 0.1,
        stale_timeout: float | None = None,
        default_rssi: int | None = -60,
        model: PathLossModel | None = None,
        seed: int = 0,
        max_adv_length: int = 31,
        max_instances: int = 5,
        le_only: bool = False,
        monitor_methods: bool = True,
        bus_address: str | None = None,
    ) -> None:
        super().__init__(bus_address=bus_address)
        self.clock: Clock = clock or SystemClock()
        self.tick = tick
        self.air = Air(model=model, seed=seed, default_rssi=default_rssi)
        self.max_adv_length = max_adv_length
        self.max_instances = max_instances
        self.monitor_methods = monitor_methods
        self._adapter_names = list(adapters)
        self._addresses = {name: f"00:AA:00:00:00:{i:02X}" for i, name in enumerate(adapters)}
        self._task: asyncio.Task[None] | None = None
        self._disc = Discovery(
            self._tree, self.air, self._send, le_only=le_only, stale_timeout=stale_timeout
        )
        self._adverts: dict[tuple[str, str], Transmitter] = {}

    # ---- lifecycle ------------------------------------------------------------------
    async def start(self) -> FakeBluez:
        """Connect, take the name ``org.bluez``, add the adapters, start the radio."""
        await self.start_bluetoothd()
        self._task = asyncio.create_task(self._radio_loop())
        return self

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.stop_bluetoothd(graceful=False)

    async def start_bluetoothd(self) -> None:
        """(Re)start the daemon: fresh state, adapters powered (AutoEnable)."""
        if self._bus is not None:
            return
        await self._connect(
            [
                "type='signal',sender='org.freedesktop.DBus',member='NameOwnerChanged'",
                f"type='signal',interface='{PROPERTIES}',member='PropertiesChanged'",
            ]
        )
        for name in self._adapter_names:
            self._add_adapter_objects(name)

    async def stop_bluetoothd(self, *, graceful: bool = True) -> None:
        """The daemon exits; ``graceful`` removes its objects with signals first."""
        if self._bus is None:
            return
        if graceful:
            for path in sorted(self._tree.objects, key=len, reverse=True):
                self._tree.remove(path)
        self._tree.clear()
        self._disc.reset()
        self._adverts.clear()
        await self._disconnect()

    async def restart(self, downtime: float = 0.2, *, graceful: bool = True) -> None:
        """bluetoothd restarts: registrations and discovery sessions are lost."""
        await self.stop_bluetoothd(graceful=graceful)
        await asyncio.sleep(downtime)
        await self.start_bluetoothd()

    @property
    def running(self) -> bool:
        return self._bus is not None

    # ---- test hooks ------------------------------------------------------------------
    def set_link(self, src: str, dst: str, rssi: int | None) -> None:
        """Adapter ``dst`` hears ``src`` (adapter or beacon id) at ``rssi`` (None: not)."""
        self.air.set_link(src, dst, rssi)

    def set_distance(self, src: str, dst: str, metres: float, walls: int = 0) -> None:
        """Both directions follow the path-loss model at this distance."""
        self.air.set_distance(src, dst, metres, walls)

    def add_beacon(
        self,
        beacon_id: str,
        *,
        rssi: int | None = None,
        address: str | None = None,
        raw_service_data: Variant | None = None,
        **props: Variant,
    ) -> Transmitter:
        """An outside transmitter; ``props`` are LEAdvertisement1 properties as Variants.

        ``raw_service_data`` replaces the Device1 ``ServiceData`` as is, to send types
        bluetoothd would never produce (malformed input for the scanner).
        """
        advert = parse_advertisement({"Type": Variant("s", "broadcast"), **props}, max_length=255)
        tx = Transmitter(
            address=address or random_nrpa(self.air.rng),
            advert=advert,
            path=beacon_id,
            raw_service_data=raw_service_data,
        )
        self._disc.beacons[beacon_id] = tx
        if rssi is not None:
            for name in self._adapter_names:
                self.air.set_link(beacon_id, name, rssi)
        return tx

    def remove_beacon(self, beacon_id: str) -> None:
        self._disc.beacons.pop(beacon_id, None)

    def set_powered(self, adapter: str, powered: bool) -> None:
        """The adapter is switched on or off (rfkill, ``bluetoothctl power off``)."""
        self._set_powered(f"/org/bluez/{adapter}", powered)

    def remove_adapter(self, adapter: str) -> None:
        """The adapter disappears (USB dongle unplugged); its clients get Release."""
        apath = f"/org/bluez/{adapter}"
        for key, tx in list(self._adverts.items()):
            if tx.adapter == adapter:
                self._drop_advert(key, release=True)
        self._disc.forget_adapter(apath)
        self._tree.remove(apath)
        self._adapter_names.remove(adapter)

    def add_adapter(self, adapter: str) -> None:
        """An adapter appears (dongle plugged in), powered."""
        if adapter not in self._adapter_names:
            self._adapter_names.append(adapter)
            self._addresses.setdefault(adapter, f"00:AA:00:00:01:{len(self._addresses):02X}")
            if self._bus is not None:
                self._add_adapter_objects(adapter)

    def stall_discovery(self, adapter: str) -> None:
        """Discovery looks on but hears nothing until the next StartDiscovery."""
        self._disc.stalled.add(f"/org/bluez/{adapter}")

    def drop_discovery(self, adapter: str) -> None:
        """bluetoothd forgets every discovery session of the adapter (Discovering=false)."""
        self._disc.drop_sessions(f"/org/bluez/{adapter}")

    def advertisements(self, adapter: str | None = None) -> list[Transmitter]:
        """Registered advertisements, optionally of one adapter, oldest first."""
        return [t for t in self._adverts.values() if adapter is None or t.adapter == adapter]

    def frames(self, adapter: str) -> list[Frame]:
        """Frames the adapter put on air: (time, address, service data)."""
        return list(self.air.frames(adapter))

    def adapter_property(self, adapter: str, name: str) -> Any:
        return self._tree.value(f"/org/bluez/{adapter}", ADAPTER, name)

    def discovery_sessions(self, adapter: str) -> dict[str, dict[str, Any]]:
        """Client unique name -> discovery filter of the running sessions."""
        return dict(self._disc.sessions.get(f"/org/bluez/{adapter}", {}))

    async def relay_now(self) -> None:
        """One radio tick: log frames, relay adverts to listening adapters."""
        if self._bus is None:
            return
        now = self.clock.wall()
        for tx in self._adverts.values():
            if tx.advert is not None and self._on_air(tx):
                self.air.log(tx.source, now, tx)
        await self._disc.load_monitors(self._bus_call)
        transmitters = [t for t in self._adverts.values() if self._on_air(t)]
        self._disc.relay(self._adapter_names, transmitters)

    async def _radio_loop(self) -> None:
        while True:
            await asyncio.sleep(self.tick)
            try:
                await self.relay_now()
            except Exception:  # the fake must survive anything a client does
                _LOGGER.exception("fake bluetoothd: radio tick failed")

    def _on_air(self, tx: Transmitter) -> bool:
        return tx.adapter is not None and bool(self.adapter_property(tx.adapter, "Powered"))

    def _add_adapter_objects(self, name: str) -> None:
        path = f"/org/bluez/{name}"
        self._disc.add_adapter(path)
        monitor_props = {
            "SupportedMonitorTypes": Variant("as", ["or_patterns"]),
            "SupportedFeatures": Variant("as", []),
        }
        self._tree.add(
            path,
            {
                ADAPTER: {
                    "Address": Variant("s", self._addresses[name]),
                    "AddressType": Variant("s", "public"),
                    "Name": Variant("s", name),
                    "Alias": Variant("s", name),
                    "Class": Variant("u", 0),
                    "Powered": Variant("b", True),
                    "PowerState": Variant("s", "on"),
                    "Discoverable": Variant("b", False),
                    "DiscoverableTimeout": Variant("u", 180),
                    "Pairable": Variant("b", False),
                    "Discovering": Variant("b", False),
                    "UUIDs": Variant("as", []),
                    "Roles": Variant("as", ["central", "peripheral"]),
                },
                ADV_MANAGER: {
                    "ActiveInstances": Variant("y", 0),
                    "SupportedInstances": Variant("y", self.max_instances),
                    "SupportedIncludes": Variant("as", ["tx-power", "appearance", "local-name"]),
                },
                GATT_MANAGER: {},
                MONITOR_MANAGER: monitor_props,
            },
        )

    def _set_powered(self, apath: str, powered: bool) -> None:
        if apath not in self._tree.objects:
            return
        if not powered:
            self._disc.power_off(apath)
        self._tree.update(
            apath,
            ADAPTER,
            {
                "Powered": Variant("b", powered),
                "PowerState": Variant("s", "on" if powered else "off"),
            },
        )

    # ---- BusService hooks -----------------------------------------------------------------
    def _methods(self) -> MethodTable:
        if self.monitor_methods:
            return METHODS
        return {k: v for k, v in METHODS.items() if k != MONITOR_MANAGER}

    def _writable(self) -> Mapping[str, str]:
        return _WRITABLE

    def _on_signal(self, msg: Message) -> None:
        if msg.member == "NameOwnerChanged" and len(msg.body) == 3 and msg.body[2] == "":
            self._client_gone(msg.body[0])
        elif msg.member == "PropertiesChanged" and msg.body and msg.body[0] == ADVERT:
            tx = self._adverts.get((msg.sender or "", msg.path or ""))
            if tx is not None:
                self._spawn(self._refresh(tx, strict=False))

    def _client_gone(self, name: str) -> None:
        for key in [k for k in self._adverts if k[0] == name]:
            self._drop_advert(key, release=False)
        self._disc.client_gone(name)

    def _m_props_set(self, msg: Message, iface: str, name: str, value: Variant) -> None:
        if iface != ADAPTER or _WRITABLE.get(name) != value.signature:
            raise bluez_error("InvalidArguments", "Invalid arguments in method call")
        if name == "Powered":
            self._set_powered(msg.path or "", bool(value.value))
        else:
            self._tree.update(msg.path or "", ADAPTER, {name: value})

    # ---- Adapter1 ---------------------------------------------------------------------------
    def _m_Adapter1_SetDiscoveryFilter(self, msg: Message, flt: dict[str, Variant]) -> None:
        self._disc.set_filter(msg.path or "", msg.sender or "", unpack_variants(flt))

    def _m_Adapter1_GetDiscoveryFilters(self, msg: Message) -> tuple[str, list[Any]]:
        return "as", [list(FILTER_KEYS)]

    def _m_Adapter1_StartDiscovery(self, msg: Message) -> None:
        apath = msg.path or ""
        if not self._tree.value(apath, ADAPTER, "Powered"):
            raise bluez_error("NotReady", "Resource Not Ready")
        self._disc.start(apath, msg.sender or "")

    def _m_Adapter1_StopDiscovery(self, msg: Message) -> None:
        apath = msg.path or ""
        if not self._tree.value(apath, ADAPTER, "Powered"):
            raise bluez_error("NotReady", "Resource Not Ready")
        self._disc.stop(apath, msg.sender or "")

    def _m_Adapter1_RemoveDevice(self, msg: Message, device: str) -> None:
        if device not in self._tree.objects:
            raise bluez_error("DoesNotExist", "Does Not Exist")
        self._disc.remove_device(device)

    # ---- LEAdvertisingManager1 --------------------------------------------------------------
    async def _m_LEAdvertisingManager1_RegisterAdvertisement(
        self, msg: Message, path: str, options: dict[str, Variant]
    ) -> None:
        apath, sender = msg.path or "", msg.sender or ""
        key = (sender, path)
        if key in self._adverts:
            raise bluez_error("AlreadyExists", "Already Exists")
        if len(self.advertisements(apath.rsplit("/", 1)[-1])) >= self.max_instances:
            raise bluez_error("NotPermitted", "Maximum advertisements reached")
        tx = Transmitter(
            address=random_nrpa(self.air.rng),
            advert=None,
            adapter=apath.rsplit("/", 1)[-1],
            owner=sender,
            path=path,
            registered_at=self.clock.wall(),
        )
        await self._refresh(tx, strict=True)
        if key in self._adverts or apath not in self._tree.objects:
            raise bluez_error("Failed", "Failed to register advertisement")
        self._adverts[key] = tx
        self._count_instances(apath)
        if self._on_air(tx):
            self.air.log(tx.source, self.clock.wall(), tx)

    def _m_LEAdvertisingManager1_UnregisterAdvertisement(self, msg: Message, path: str) -> None:
        key = (msg.sender or "", path)
        tx = self._adverts.get(key)
        if tx is None or f"/org/bluez/{tx.adapter}" != msg.path:
            raise bluez_error("DoesNotExist", "Does Not Exist")
        self._drop_advert(key, release=False)

    def _drop_advert(self, key: tuple[str, str], *, release: bool) -> None:
        tx = self._adverts.pop(key)
        if self._on_air(tx):
            self.air.log(tx.source, self.clock.wall(), tx)
        apath = f"/org/bluez/{tx.adapter}"
        if apath in self._tree.objects:
            self._count_instances(apath)
        if release:
            self._send(
                Message(
                    destination=tx.owner,
                    path=tx.path,
                    interface=ADVERT,
                    member="Release",
                    flags=MessageFlag.NO_REPLY_EXPECTED,
                )
            )

    def _count_instances(self, apath: str) -> None:
        n = len(self.advertisements(apath.rsplit("/", 1)[-1]))
        self._tree.update(
            apath,
            ADV_MANAGER,
            {
                "ActiveInstances": Variant("y", n),
                "SupportedInstances": Variant("y", max(0, self.max_instances - n)),
            },
        )

    async def _refresh(self, tx: Transmitter, *, strict: bool) -> None:
        """Read the client's advertisement object, like bluetoothd on register/change."""
        try:
            (props,) = await self._bus_call(tx.owner, tx.path, PROPERTIES, "GetAll", "s", [ADVERT])
            advert = parse_advertisement(
                props,
                adapter_discoverable=bool(self.adapter_property(tx.adapter or "", "Discoverable")),
                max_length=self.max_adv_length,
            )
        except (DBusFailure, AdvertisementRejected) as exc:
            _LOGGER.debug("fake bluetoothd: advertisement rejected: %s", exc)
            if strict:
                raise bluez_error("Failed", _PARSE_FAILED) from exc
            return  # bluetoothd keeps the old data when an update does not parse
        tx.advert = advert
        tx.updates += 1
        if not strict and self._on_air(tx):
            self.air.log(tx.source, self.clock.wall(), tx)

    # ---- AdvertisementMonitorManager1 -------------------------------------------------------
    def _m_AdvertisementMonitorManager1_RegisterMonitor(self, msg: Message, path: str) -> None:
        self._disc.register_monitor(msg.path or "", msg.sender or "", path)

    def _m_AdvertisementMonitorManager1_UnregisterMonitor(self, msg: Message, path: str) -> None:
        if not self._disc.unregister_monitor(msg.path or "", msg.sender or "", path):
            raise bluez_error("DoesNotExist", "Does Not Exist")


__all__ = ["ACCESS_DENIED", "BLUEZ_NAME", "MONITOR", "Call", "FakeBluez"]
