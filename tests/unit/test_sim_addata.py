"""The fake bluetoothd's advertisement checks and AD building (pure)."""

from __future__ import annotations

import pytest
from dbus_fast import Variant

from agent.constants import EN_SERVICE_UUID
from agent.lab.sim.addata import (
    AdvertisementRejected,
    matches_or_patterns,
    normalize_uuid,
    parse_advertisement,
    uuid_ad_bytes,
)
from agent.payload import ServiceData, advertising_data

PAYLOAD = bytes.fromhex("8be6cd371c5c891604bfbe49df84509672033874")  # EN v1.2 vector j=0


def _gaen(**extra: Variant) -> dict[str, Variant]:
    return {
        "Type": Variant("s", "broadcast"),
        "ServiceUUIDs": Variant("as", [EN_SERVICE_UUID]),
        "ServiceData": Variant("a{sv}", {EN_SERVICE_UUID: Variant("ay", PAYLOAD)}),
        "MinInterval": Variant("u", 200),
        "MaxInterval": Variant("u", 270),
        **extra,
    }


def test_gaen_broadcast_is_the_28_byte_advertising_data_of_the_spec() -> None:
    adv = parse_advertisement(_gaen())
    assert adv.ad_bytes() == advertising_data(ServiceData.from_bytes(PAYLOAD))
    assert adv.ad_bytes().hex() == "03036ffd17166ffd" + PAYLOAD.hex()
    assert adv.ad_length == 28 and adv.scan_response == ()
    assert adv.service_data == {EN_SERVICE_UUID: PAYLOAD}
    assert adv.service_uuids == (EN_SERVICE_UUID,)


def test_local_name_goes_into_the_scan_response() -> None:
    adv = parse_advertisement(_gaen(LocalName=Variant("s", "pi")))
    assert adv.scan_response == ((0x09, b"pi"),)
    assert parse_advertisement(_gaen(LocalName=Variant("s", ""))).scan_response == ()


def test_flags_and_tx_power_make_the_gaen_advert_overflow_31_bytes() -> None:
    peripheral = _gaen(
        Type=Variant("s", "peripheral"),
        Includes=Variant("as", ["tx-power"]),
        TxPower=Variant("n", -8),
    )
    with pytest.raises(AdvertisementRejected, match="too long"):
        parse_advertisement(peripheral, adapter_discoverable=True)  # 3 + 28 + 3 = 34
    assert parse_advertisement(peripheral).ad_length == 31


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"Type": Variant("s", "beacon")}, "Type"),
        ({"Discoverable": Variant("b", True)}, "cannot set flags"),
        ({"MinInterval": Variant("i", 200)}, "D-Bus type u"),
        ({"ServiceData": Variant("a{sv}", {EN_SERVICE_UUID: Variant("s", "x")})}, "byte array"),
        ({"MinInterval": Variant("u", 19)}, "out of range"),
        ({"MaxInterval": Variant("u", 10_485_760)}, "out of range"),
        ({"MinInterval": Variant("u", 300)}, "larger than MaxInterval"),
        ({"TxPower": Variant("n", 21)}, "TxPower"),
        ({"Data": Variant("a{yv}", {0x16: Variant("ay", b"\x6f\xfd")})}, "not allowed"),
        ({"ManufacturerData": Variant("a{qv}", {0xFFFF: Variant("ay", bytes(8))})}, "too long"),
        ({"ServiceUUIDs": Variant("as", ["not-a-uuid"])}, "bad UUID"),
    ],
)
def test_what_bluetoothd_refuses(change: dict[str, Variant], why: str) -> None:
    with pytest.raises(AdvertisementRejected, match=why):
        parse_advertisement(_gaen(**change))


def test_unknown_properties_are_ignored_like_bluetoothd() -> None:
    adv = parse_advertisement(_gaen(Frobnicate=Variant("s", "x")))
    assert "Frobnicate" not in adv.properties


def test_uuid_encodings() -> None:
    assert uuid_ad_bytes("fd6f") == b"\x6f\xfd"
    assert uuid_ad_bytes(EN_SERVICE_UUID) == b"\x6f\xfd"
    assert uuid_ad_bytes("12345678-0000-1000-8000-00805f9b34fb") == bytes.fromhex("78563412")
    custom = "6e400001-b5a3-f393-e0a9-e50e24dcca9e"
    assert uuid_ad_bytes(custom) == bytes.fromhex(custom.replace("-", ""))[::-1]
    assert normalize_uuid("FD6F") == EN_SERVICE_UUID
    assert normalize_uuid(custom.upper()) == custom


def test_or_patterns_match_service_data_of_fd6f_only() -> None:
    adv = parse_advertisement(_gaen())
    assert matches_or_patterns(adv.ad, [(0, 0x16, b"\x6f\xfd")])
    assert not matches_or_patterns(adv.ad, [(0, 0x16, b"\xaa\xfe")])
    assert not matches_or_patterns(adv.ad, [(0, 0xFF, b"\x6f\xfd")])
    assert matches_or_patterns(adv.ad, [(2, 0x16, PAYLOAD[:4])])
