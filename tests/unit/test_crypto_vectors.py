"""The 144 official EN v1.2 vectors: RPIK, AEMK, every RPI and AEM, and AEM decryption."""

from __future__ import annotations

import json

import pytest

from agent import crypto
from agent.payload import Metadata
from tests.shared import shared_path
from tests.vectors import en_v1_2 as v

TEK = bytes.fromhex(v.TEK)
META = bytes.fromhex(v.METADATA)


def test_start_interval_is_the_key_generation_time() -> None:
    assert v.KEY_GENERATION_SECONDS // 600 == v.START_INTERVAL
    assert v.START_INTERVAL % 144 == 0


def test_rpik_and_aemk() -> None:
    assert crypto.derive_rpik(TEK).hex() == v.RPIK
    assert crypto.derive_aemk(TEK).hex() == v.AEMK


def test_padded_data_of_first_interval() -> None:
    assert crypto.padded_data(v.START_INTERVAL).hex() == "454e2d52504900000000000020542800"


@pytest.mark.parametrize(("i", "rpi_hex", "aem_hex"), v.ADVERTISED, ids=lambda x: str(x))
def test_every_rpi_and_aem(i: int, rpi_hex: str, aem_hex: str) -> None:
    rpik = bytes.fromhex(v.RPIK)
    aemk = bytes.fromhex(v.AEMK)
    rpi = crypto.rpi(rpik, v.START_INTERVAL + i)
    assert rpi.hex() == rpi_hex
    aem = crypto.encrypt_aem(aemk, rpi, META)
    assert aem.hex() == aem_hex
    assert crypto.decrypt_aem(aemk, rpi, bytes.fromhex(aem_hex)) == META


def test_batch_form_reproduces_the_whole_table() -> None:
    rpis = crypto.rpis(crypto.derive_rpik(TEK), v.START_INTERVAL, 144)
    assert [r.hex() for r in rpis] == [rpi for _, rpi, _ in v.ADVERTISED]


def test_metadata_of_the_vectors() -> None:
    meta = Metadata.from_bytes(META)
    assert meta.tx_power_dbm == 8
    assert meta.version == 0x40
    assert bytes(meta) == META


def test_vectors_match_the_shared_file() -> None:
    """The literals above are the published ones (fails in CI if the file differs)."""
    data = json.loads(shared_path("gaen/test-vectors.json").read_text())
    assert data["TEK"] == v.TEK
    assert data["RPIK"] == v.RPIK
    assert data["AEMK"] == v.AEMK
    assert data["BLE_METADATA"] == v.METADATA
    assert data["CTINTERVAL_NUMBER_OF_GENERATED_KEY"] == v.START_INTERVAL
    rows = [(r["i"], r["rpi"], r["aem"]) for r in data["advertised"]]
    assert rows == v.ADVERTISED
    assert len(rows) == 144


def test_shared_file_reproduced_by_the_code() -> None:
    """Recompute every value of the shared file directly (not only via the literals)."""
    data = json.loads(shared_path("gaen/test-vectors.json").read_text())
    tek = bytes.fromhex(data["TEK"])
    meta = bytes.fromhex(data["BLE_METADATA"])
    rpik, aemk = crypto.derive_rpik(tek), crypto.derive_aemk(tek)
    assert rpik.hex() == data["RPIK"]
    assert aemk.hex() == data["AEMK"]
    start = data["CTINTERVAL_NUMBER_OF_GENERATED_KEY"]
    for row in data["advertised"]:
        rpi = crypto.rpi(rpik, start + row["i"])
        assert rpi.hex() == row["rpi"]
        assert crypto.encrypt_aem(aemk, rpi, meta).hex() == row["aem"]
        assert crypto.decrypt_aem(aemk, rpi, bytes.fromhex(row["aem"])) == meta
