"""What bluetoothd does with a client's ``org.bluez.LEAdvertisement1``: check, then build AD.

Pure functions over the property dictionary that bluetoothd reads back with
``Properties.GetAll`` (``src/advertising.c: parse_advertisement``). The rules kept here
are the ones that matter for an EN advertiser (BlueZ ``doc/org.bluez.LEAdvertisement.rst``):

- ``Type`` must be ``broadcast`` or ``peripheral``; a broadcast cannot set flags.
- Every known property must have its D-Bus type; ``ServiceData`` values must be ``ay``.
- ``MinInterval``/``MaxInterval`` in 20 ms .. 10485.759 s and min <= max; TxPower -127..20.
- The raw ``Data`` property refuses the AD types bluetoothd manages itself.
- Legacy advertising data and the scan response are at most 31 bytes each.
- ``LocalName`` (non-empty) goes into the scan response, not the advertising data.

Everything that breaks a rule raises :class:`AdvertisementRejected`, which the fake turns
into ``org.bluez.Error.Failed: Failed to parse advertisement.`` like bluetoothd.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from dbus_fast import Variant

from agent.constants import LEGACY_ADV_MAX_BYTES

BASE_UUID_SUFFIX = "-0000-1000-8000-00805f9b34fb"

AD_FLAGS = 0x01
AD_UUID16_ALL = 0x03
AD_UUID32_ALL = 0x05
AD_UUID128_ALL = 0x07
AD_NAME_COMPLETE = 0x09
AD_TX_POWER = 0x0A
AD_SERVICE_DATA16 = 0x16
AD_SERVICE_DATA32 = 0x20
AD_SERVICE_DATA128 = 0x21
AD_MANUFACTURER = 0xFF

MIN_INTERVAL_MS = 20
MAX_INTERVAL_MS = 10_485_759
"""Advertising interval limits in ms (0x20..0xFFFFFF units of 0.625 ms)."""

PROPERTY_SIGNATURES: Mapping[str, str] = {
    "Type": "s",
    "ServiceUUIDs": "as",
    "ServiceData": "a{sv}",
    "ManufacturerData": "a{qv}",
    "SolicitUUIDs": "as",
    "Data": "a{yv}",
    "Discoverable": "b",
    "DiscoverableTimeout": "q",
    "Includes": "as",
    "LocalName": "s",
    "Appearance": "q",
    "Duration": "q",
    "Timeout": "q",
    "SecondaryChannel": "s",
    "MinInterval": "u",
    "MaxInterval": "u",
    "TxPower": "n",
}
"""Properties bluetoothd knows, with the D-Bus type it insists on; others are ignored."""

_DATA_TYPES_REFUSED = frozenset(
    {*range(0x01, 0x0B), 0x14, 0x15, 0x16, 0x19, 0x1F, 0x20, 0x21, 0xFF}
)
"""AD types bluetoothd manages itself and refuses in the raw ``Data`` property."""

_UUID_LIST_TYPE = {2: AD_UUID16_ALL, 4: AD_UUID32_ALL, 16: AD_UUID128_ALL}
_SERVICE_DATA_TYPE = {2: AD_SERVICE_DATA16, 4: AD_SERVICE_DATA32, 16: AD_SERVICE_DATA128}


class AdvertisementRejected(ValueError):
    """bluetoothd would refuse this advertisement; the message says why."""


def uuid_ad_bytes(uuid: str) -> bytes:
    """Little-endian AD encoding of a UUID string: 2, 4 or 16 bytes."""
    text = uuid.lower()
    try:
        if len(text) <= 8:
            value = int(text, 16)
            return value.to_bytes(2 if value <= 0xFFFF else 4, "little")
        if len(text) == 36 and text.endswith(BASE_UUID_SUFFIX):
            value = int(text[:8], 16)
            return value.to_bytes(2 if value <= 0xFFFF else 4, "little")
        raw = bytes.fromhex(text.replace("-", ""))
    except ValueError as exc:
        raise AdvertisementRejected(f"bad UUID {uuid!r}") from exc
    if len(raw) != 16:
        raise AdvertisementRejected(f"bad UUID {uuid!r}")
    return raw[::-1]


def uuid_from_ad_bytes(raw: bytes) -> str:
    """The 128-bit lowercase string of an AD-encoded UUID (as bleak reports it)."""
    if len(raw) in (2, 4):
        return f"{int.from_bytes(raw, 'little'):08x}{BASE_UUID_SUFFIX}"
    h = raw[::-1].hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def normalize_uuid(uuid: str) -> str:
    """Canonical 128-bit lowercase form of a UUID string."""
    return uuid_from_ad_bytes(uuid_ad_bytes(uuid))


@dataclass(frozen=True, slots=True)
class ParsedAdvertisement:
    """An advertisement as bluetoothd would put it on air."""

    type: str
    """``broadcast`` (ADV_NONCONN_IND) or ``peripheral`` (connectable)."""
    properties: dict[str, Any]
    """The plain (unpacked) properties read from the client."""
    ad: tuple[tuple[int, bytes], ...]
    """Advertising data as (AD type, payload) structures, in on-air order."""
    scan_response: tuple[tuple[int, bytes], ...] = ()
    service_uuids: tuple[str, ...] = ()
    """Normalised 128-bit UUID strings."""
    service_data: dict[str, bytes] = field(default_factory=dict)
    """Normalised UUID -> bytes."""
    manufacturer_data: dict[int, bytes] = field(default_factory=dict)

    @property
    def ad_length(self) -> int:
        """Bytes of advertising data on air (each structure: length, type, payload)."""
        return structures_length(self.ad)

    @property
    def scan_response_length(self) -> int:
        return structures_length(self.scan_response)

    def ad_bytes(self) -> bytes:
        """The advertising data as it goes into HCI LE Set Advertising Data."""
        return b"".join(bytes([1 + len(d), t]) + d for t, d in self.ad)


def structures_length(structures: Iterable[tuple[int, bytes]]) -> int:
    return sum(2 + len(d) for _, d in structures)


def _check_signatures(props: Mapping[str, Variant]) -> None:
    for name, value in props.items():
        expected = PROPERTY_SIGNATURES.get(name)
        if expected is None:
            continue
        if not isinstance(value, Variant) or value.signature != expected:
            got = value.signature if isinstance(value, Variant) else type(value).__name__
            raise AdvertisementRejected(f"{name} must be of D-Bus type {expected}, got {got}")
    for name in ("ServiceData", "ManufacturerData", "Data"):
        if name in props:
            for key, inner in props[name].value.items():
                if not isinstance(inner, Variant) or inner.signature != "ay":
                    raise AdvertisementRejected(f"{name}[{key}] must be a byte array (ay)")


def _check_ranges(p: Mapping[str, Any]) -> None:
    for key in ("MinInterval", "MaxInterval"):
        if key in p and not MIN_INTERVAL_MS <= p[key] <= MAX_INTERVAL_MS:
            raise AdvertisementRejected(f"{key} {p[key]} ms out of range")
    if p.get("MinInterval", 0) > p.get("MaxInterval", MAX_INTERVAL_MS):
        raise AdvertisementRejected("MinInterval is larger than MaxInterval")
    if "TxPower" in p and not -127 <= p["TxPower"] <= 20:
        raise AdvertisementRejected(f"TxPower {p['TxPower']} dBm out of range")


def parse_advertisement(
    props: Mapping[str, Variant],
    *,
    adapter_discoverable: bool = False,
    max_length: int = LEGACY_ADV_MAX_BYTES,
) -> ParsedAdvertisement:
    """Check an advertisement like bluetoothd and build its AD structures.

    Args:
        props: the ``GetAll("org.bluez.LEAdvertisement1")`` reply.
        adapter_discoverable: a peripheral advert gets flags when the adapter is.
        max_length: the controller's limit for each of AD and scan response.
    """
    _check_signatures(props)
    p = {k: _plain(v.value) for k, v in props.items() if k in PROPERTY_SIGNATURES}
    adv_type = p.get("Type")
    if adv_type not in ("broadcast", "peripheral"):
        raise AdvertisementRejected(f"bad advertisement Type {adv_type!r}")
    if p.get("Discoverable") and adv_type == "broadcast":
        raise AdvertisementRejected("Broadcast cannot set flags")
    _check_ranges(p)

    ad: list[tuple[int, bytes]] = []
    if p.get("Discoverable") or (adv_type == "peripheral" and adapter_discoverable):
        ad.append((AD_FLAGS, b"\x06"))
    uuids = [uuid_ad_bytes(u) for u in p.get("ServiceUUIDs", [])]
    for size, ad_type in _UUID_LIST_TYPE.items():
        same = [u for u in uuids if len(u) == size]
        if same:
            ad.append((ad_type, b"".join(same)))
    service_data: dict[str, bytes] = {}
    for uuid, data in p.get("ServiceData", {}).items():
        raw = uuid_ad_bytes(uuid)
        ad.append((_SERVICE_DATA_TYPE[len(raw)], raw + bytes(data)))
        service_data[uuid_from_ad_bytes(raw)] = bytes(data)
    manufacturer: dict[int, bytes] = {}
    for company, data in p.get("ManufacturerData", {}).items():
        ad.append((AD_MANUFACTURER, int(company).to_bytes(2, "little") + bytes(data)))
        manufacturer[int(company)] = bytes(data)
    for ad_type, data in p.get("Data", {}).items():
        if ad_type in _DATA_TYPES_REFUSED:
            raise AdvertisementRejected(f"AD type 0x{ad_type:02x} not allowed in Data")
        ad.append((ad_type, bytes(data)))
    if "tx-power" in p.get("Includes", []):
        ad.append((AD_TX_POWER, (p.get("TxPower", 0) & 0xFF).to_bytes(1, "little")))
    scan_response: list[tuple[int, bytes]] = []
    if p.get("LocalName"):
        scan_response.append((AD_NAME_COMPLETE, str(p["LocalName"]).encode()))
    if structures_length(ad) > max_length or structures_length(scan_response) > max_length:
        raise AdvertisementRejected("Advertising data too long")
    return ParsedAdvertisement(
        type=adv_type,
        properties=p,
        ad=tuple(ad),
        scan_response=tuple(scan_response),
        service_uuids=tuple(uuid_from_ad_bytes(u) for u in uuids),
        service_data=service_data,
        manufacturer_data=manufacturer,
    )


def _plain(value: Any) -> Any:
    if isinstance(value, Variant):
        return _plain(value.value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def matches_or_patterns(
    ad: Iterable[tuple[int, bytes]], patterns: Iterable[tuple[int, int, bytes]]
) -> bool:
    """AdvertisementMonitor1 ``or_patterns``: any (start, AD type, content) matches."""
    structures = list(ad)
    return any(
        ad_type == pattern_type and data[start : start + len(content)] == content
        for start, pattern_type, content in patterns
        for ad_type, data in structures
    )
