"""Discovery in the fake bluetoothd: sessions, filters, monitors and Device1 objects.

Follows what ``src/adapter.c`` and ``src/device.c`` do with an LE advertising report
(read in the bluez/bluez source):

- Discovery is *filtered* when some session set UUIDs, RSSI, Pathloss, Pattern,
  DuplicateData=true, or a Transport other than the adapter's scan type (``le`` on an
  LE-only adapter, else ``auto``).
- Unfiltered discovery creates no Device1 for a non-connectable advert without the
  LE General/Limited Discoverable flags.
- Filtered discovery re-announces RSSI on every report; unfiltered only when it moved by
  8 dB or more. ``DuplicateData=true`` re-announces the service data too.
- Passive scanning: ``or_patterns`` monitors match the AD structures.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from dbus_fast import Message, MessageFlag, Variant, unpack_variants

from agent.lab.sim.addata import AD_FLAGS, matches_or_patterns, normalize_uuid
from agent.lab.sim.air import Air, Transmitter
from agent.lab.sim.dbusobj import PROPERTIES, DBusFailure, ObjectTree, bluez_error

ADAPTER = "org.bluez.Adapter1"
DEVICE = "org.bluez.Device1"
ADVERT = "org.bluez.LEAdvertisement1"
ADV_MANAGER = "org.bluez.LEAdvertisingManager1"
GATT_MANAGER = "org.bluez.GattManager1"
MONITOR_MANAGER = "org.bluez.AdvertisementMonitorManager1"
MONITOR = "org.bluez.AdvertisementMonitor1"

FILTER_KEYS = ("UUIDs", "RSSI", "Pathloss", "Transport", "DuplicateData", "Discoverable", "Pattern")
RSSI_THRESHOLD_UNFILTERED = 8
"""device.c: without a filter, RSSI is only re-announced when it moved this much."""

METHODS: Mapping[str, Mapping[str, tuple[str, str]]] = {
    ADAPTER: {
        "StartDiscovery": ("", ""),
        "StopDiscovery": ("", ""),
        "SetDiscoveryFilter": ("a{sv}", ""),
        "GetDiscoveryFilters": ("", "as"),
        "RemoveDevice": ("o", ""),
    },
    ADV_MANAGER: {"RegisterAdvertisement": ("oa{sv}", ""), "UnregisterAdvertisement": ("o", "")},
    MONITOR_MANAGER: {"RegisterMonitor": ("o", ""), "UnregisterMonitor": ("o", "")},
}

ClientCall = Callable[..., Awaitable[list[Any]]]
Pattern = tuple[int, int, bytes]


class Discovery:
    """Per-adapter discovery state and the Device1 objects it produces."""

    def __init__(
        self,
        tree: ObjectTree,
        air: Air,
        send: Callable[[Message], None],
        *,
        le_only: bool = False,
        stale_timeout: float | None = None,
    ) -> None:
        self._tree = tree
        self._air = air
        self._send = send
        self._scan_type = "le" if le_only else "auto"
        self._stale_timeout = stale_timeout
        self.sessions: dict[str, dict[str, dict[str, Any]]] = {}
        self.filters: dict[str, dict[str, dict[str, Any]]] = {}
        self.monitors: dict[str, dict[tuple[str, str], list[Pattern] | None]] = {}
        self.beacons: dict[str, Transmitter] = {}
        self.stalled: set[str] = set()
        self._last_seen: dict[str, float] = {}
        self._found: set[tuple[str, str, str]] = set()

    # ---- adapter and client lifecycle -------------------------------------------------
    def add_adapter(self, apath: str) -> None:
        self.sessions[apath], self.filters[apath], self.monitors[apath] = {}, {}, {}

    def forget_adapter(self, apath: str) -> None:
        self._remove_devices(apath)
        for table in (self.sessions, self.filters, self.monitors):
            table.pop(apath, None)
        self.stalled.discard(apath)

    def reset(self) -> None:
        """bluetoothd exited: all state is gone (beacons stay, they are outside)."""
        for table in (self.sessions, self.filters, self.monitors):
            table.clear()
        self.stalled.clear()
        self._last_seen.clear()
        self._found.clear()

    def power_off(self, apath: str) -> None:
        self.drop_sessions(apath)
        self._remove_devices(apath)

    def drop_sessions(self, apath: str) -> None:
        if self.sessions.get(apath):
            self.sessions[apath].clear()
            self._tree.update(apath, ADAPTER, {"Discovering": Variant("b", False)})
        self.stalled.discard(apath)

    def client_gone(self, name: str) -> None:
        for apath, sessions in self.sessions.items():
            if sessions.pop(name, None) is not None and not sessions:
                self._tree.update(apath, ADAPTER, {"Discovering": Variant("b", False)})
            self.filters[apath].pop(name, None)
            for key in [k for k in self.monitors[apath] if k[0] == name]:
                del self.monitors[apath][key]

    # ---- Adapter1 discovery ----------------------------------------------------------
    def set_filter(self, apath: str, sender: str, flt: dict[str, Any]) -> None:
        if set(flt) - set(FILTER_KEYS) or flt.get("Transport", "auto") not in (
            "auto",
            "le",
            "bredr",
        ):
            raise bluez_error("InvalidArguments", "Invalid arguments in method call")
        self.filters[apath][sender] = flt
        if sender in self.sessions[apath]:
            self.sessions[apath][sender] = flt

    def start(self, apath: str, sender: str) -> None:
        if sender in self.sessions[apath]:
            raise bluez_error("InProgress", "Operation already in progress")
        self.sessions[apath][sender] = self.filters[apath].get(sender, {})
        self.stalled.discard(apath)
        self._tree.update(apath, ADAPTER, {"Discovering": Variant("b", True)})

    def stop(self, apath: str, sender: str) -> None:
        if self.sessions[apath].pop(sender, None) is None:
            raise bluez_error("Failed", "No discovery started")
        if not self.sessions[apath]:
            self._tree.update(apath, ADAPTER, {"Discovering": Variant("b", False)})

    def remove_device(self, dpath: str) -> None:
        self._last_seen.pop(dpath, None)
        self._tree.remove(dpath)

    def _remove_devices(self, apath: str) -> None:
        for dpath in [p for p in self._tree.objects if p.startswith(apath + "/")]:
            self.remove_device(dpath)

    # ---- monitors (passive scanning) ---------------------------------------------------
    def register_monitor(self, apath: str, sender: str, path: str) -> None:
        self.monitors[apath][(sender, path)] = None  # read once the client exported it

    def unregister_monitor(self, apath: str, sender: str, path: str) -> bool:
        return self.monitors[apath].pop((sender, path), 0) != 0

    async def load_monitors(self, call: ClientCall) -> None:
        """Read the patterns of newly registered monitors, then Activate them."""
        for monitors in self.monitors.values():
            for (owner, path), patterns in list(monitors.items()):
                if patterns is not None:
                    continue
                try:
                    (props,) = await call(owner, path, PROPERTIES, "GetAll", "s", [MONITOR])
                    plain = unpack_variants(props)
                    if plain.get("Type") != "or_patterns":
                        continue
                    monitors[(owner, path)] = [(s, t, bytes(c)) for s, t, c in plain["Patterns"]]
                    await call(owner, path, MONITOR, "Activate")
                except DBusFailure:
                    continue  # not exported yet; try again next tick

    # ---- the radio ------------------------------------------------------------------------
    def filtered(self, apath: str) -> bool:
        return any(
            f.get("UUIDs")
            or "RSSI" in f
            or "Pathloss" in f
            or f.get("Pattern")
            or f.get("DuplicateData")
            or f.get("Transport", self._scan_type) != self._scan_type
            for f in self.sessions[apath].values()
        )

    def _admit_active(self, apath: str, tx: Transmitter, rssi: int, dpath: str) -> bool:
        assert tx.advert is not None
        filters = list(self.sessions[apath].values())
        thresholds = [f.get("RSSI") for f in filters]
        if None not in thresholds and rssi < min(t for t in thresholds if t is not None):
            return False
        flags = next((d[0] for t, d in tx.advert.ad if t == AD_FLAGS and d), 0)
        if (
            not self.filtered(apath)
            and not flags & 0x03
            and tx.advert.type != "peripheral"
            and dpath not in self._tree.objects
        ):
            return False
        wanted = [f.get("UUIDs") for f in filters]
        if any(not w for w in wanted):
            return True
        union = {normalize_uuid(u) for w in wanted if w for u in w}
        return any(u in union for u in tx.advert.service_uuids)

    def _matching_monitors(self, apath: str, tx: Transmitter) -> list[tuple[str, str]]:
        assert tx.advert is not None
        return [
            key
            for key, patterns in self.monitors[apath].items()
            if patterns and matches_or_patterns(tx.advert.ad, patterns)
        ]

    def relay(self, adapters: Iterable[str], transmitters: Iterable[Transmitter]) -> None:
        """One report of every transmitter on every listening adapter."""
        senders = [*transmitters, *self.beacons.values()]
        now = time.monotonic()
        for name in adapters:
            apath = f"/org/bluez/{name}"
            if apath not in self._tree.objects or not self._tree.value(apath, ADAPTER, "Powered"):
                continue
            if apath not in self.stalled:
                self._hear(apath, name, senders)
            self._expire(apath, now)

    def _hear(self, apath: str, name: str, senders: list[Transmitter]) -> None:
        active = bool(self.sessions[apath])
        for tx in senders:
            if tx.adapter == name or tx.advert is None:
                continue
            rssi = self._air.rssi(tx.source, name)
            if rssi is None:
                continue
            dpath = f"{apath}/dev_{tx.address.replace(':', '_')}"
            monitors = self._matching_monitors(apath, tx)
            if not (active and self._admit_active(apath, tx, rssi, dpath)) and not monitors:
                continue
            self._upsert(apath, dpath, tx, rssi, every_report=bool(monitors))
            for owner, mpath in monitors:
                if (owner, mpath, dpath) not in self._found:
                    self._found.add((owner, mpath, dpath))
                    self._send(
                        Message(
                            destination=owner,
                            path=mpath,
                            interface=MONITOR,
                            member="DeviceFound",
                            signature="o",
                            body=[dpath],
                            flags=MessageFlag.NO_REPLY_EXPECTED,
                        )
                    )

    def _expire(self, apath: str, now: float) -> None:
        if self._stale_timeout is None:
            return
        for dpath, seen in list(self._last_seen.items()):
            if dpath.startswith(apath + "/") and now - seen > self._stale_timeout:
                self.remove_device(dpath)

    def _upsert(
        self, apath: str, dpath: str, tx: Transmitter, rssi: int, *, every_report: bool
    ) -> None:
        """Create or update the Device1; ``every_report`` announces RSSI every time."""
        assert tx.advert is not None
        advert = tx.advert
        props: dict[str, Variant] = {
            "Address": Variant("s", tx.address),
            "AddressType": Variant("s", "random"),
            "Alias": Variant("s", tx.address.replace(":", "-")),
            "Adapter": Variant("o", apath),
            "Paired": Variant("b", False),
            "Bonded": Variant("b", False),
            "Trusted": Variant("b", False),
            "Blocked": Variant("b", False),
            "LegacyPairing": Variant("b", False),
            "Connected": Variant("b", False),
            "ServicesResolved": Variant("b", False),
            "UUIDs": Variant("as", list(advert.service_uuids)),
            "RSSI": Variant("n", rssi),
        }
        if advert.service_data or tx.raw_service_data is not None:
            props["ServiceData"] = tx.raw_service_data or Variant(
                "a{sv}", {u: Variant("ay", d) for u, d in advert.service_data.items()}
            )
        if advert.manufacturer_data:
            props["ManufacturerData"] = Variant(
                "a{qv}", {c: Variant("ay", d) for c, d in advert.manufacturer_data.items()}
            )
        self._last_seen[dpath] = time.monotonic()
        if dpath not in self._tree.objects:
            self._tree.add(dpath, {DEVICE: props})
            return
        filtered = every_report or self.filtered(apath)
        old = self._tree.value(dpath, DEVICE, "RSSI", rssi)
        if not filtered and abs(old - rssi) < RSSI_THRESHOLD_UNFILTERED:
            props["RSSI"] = Variant("n", old)
        force = ["RSSI"] if filtered else []
        if any(f.get("DuplicateData") for f in self.sessions[apath].values()):
            force += [k for k in ("ServiceData", "ManufacturerData") if k in props]
        self._tree.update(dpath, DEVICE, props, force=force)
