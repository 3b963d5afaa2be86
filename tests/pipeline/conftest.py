"""End-to-end fixtures: a real store with real sightings, signed exports, a real HTTP server."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from agent import crypto
from agent.clock import FakeClock, en_interval_number
from agent.config import Config, KeysConfig, KeySource, PublicKeyConfig, RiskConfig
from agent.export import generate_signing_key, public_key_pem, write_export
from agent.models import ReportType, ScanPeriod, Sighting, TemporaryExposureKey
from agent.payload import Metadata
from agent.pipeline import QualifyingExposure
from agent.store import Store
from tests.sources.conftest import KeyServer, key_server  # noqa: F401 (a fixture)

NOW = 1_700_100_000.0  # 2023-11-16 02:00 UTC
TODAY = en_interval_number(NOW) // 144 * 144
YESTERDAY = TODAY - 144
CONTACT = YESTERDAY * 600 + 10 * 3600  # yesterday 10:00 UTC, a whole minute


def new_key(
    report_type: ReportType = ReportType.CONFIRMED_TEST, *, day: int = YESTERDAY, **fields: object
) -> TemporaryExposureKey:
    return TemporaryExposureKey(
        os.urandom(16),
        day,
        report_type=report_type,
        **fields,  # type: ignore[arg-type]
    )


@dataclass
class Radio:
    """What the scanner would have stored: sightings and scan periods."""

    sightings: list[Sighting] = field(default_factory=list)
    scans: set[tuple[int, int]] = field(default_factory=set)

    def heard(
        self,
        tek: bytes,
        start: int,
        *,
        scans: int = 4,
        every: int = 300,
        rssi: int = -60,
        tx_power: int = -8,
        drift: int = 0,
    ) -> None:
        """``tek``'s owner near us: one sighting per scan, scans ``every`` s from ``start``.

        ``drift`` shifts the interval the sender used for its RPI (its clock error). A
        scan before the first one is recorded too, so every instance has 300 s since
        the last scan.
        """
        rpik, aemk = crypto.derive_rpik(tek), crypto.derive_aemk(tek)
        metadata = bytes(Metadata(tx_power_dbm=tx_power))
        self.scans.add((start - every, start - every + 4))
        for i in range(scans):
            t = start + i * every
            rpi = crypto.rpi(rpik, en_interval_number(t) + drift)
            aem = crypto.encrypt_aem(aemk, rpi, metadata)
            self.sightings.append(Sighting(time=t + 1, rpi=rpi, aem=aem, rssi=rssi, scan_start=t))
            self.scans.add((t, t + 4))

    async def store_into(self, store: Store) -> None:
        await store.add_sightings(self.sightings)
        for start, end in sorted(self.scans):
            await store.record_scan(ScanPeriod(start, end))


@dataclass
class Authority:
    """A health authority: a signing key pinned as 310-v1 in the config."""

    signing_key: ec.EllipticCurvePrivateKey
    pem_file: Path

    def export(
        self,
        keys: Sequence[TemporaryExposureKey],
        revised: Sequence[TemporaryExposureKey] = (),
        *,
        batch_start: float = NOW - 3600,
    ) -> bytes:
        return write_export(
            keys,
            self.signing_key,
            key_id="310",
            key_version="v1",
            start_timestamp=int(batch_start),
            end_timestamp=int(batch_start) + 3600,
            revised_keys=revised,
        )

    def config(self, *sources: KeySource, risk: RiskConfig | None = None) -> Config:
        return Config(
            keys=KeysConfig(
                sources=sources,
                public_keys=(PublicKeyConfig("310", "v1", str(self.pem_file)),),
            ),
            risk=risk or RiskConfig(),
        )


@pytest.fixture(scope="session")
def _signing_key() -> ec.EllipticCurvePrivateKey:
    return generate_signing_key()


@pytest.fixture
def authority(_signing_key: ec.EllipticCurvePrivateKey, tmp_path: Path) -> Authority:
    pem = tmp_path / "authority.pem"
    pem.write_bytes(public_key_pem(_signing_key))
    return Authority(_signing_key, pem)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(wall=NOW)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await Store.open(tmp_path / "data")
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
def server(request: pytest.FixtureRequest) -> KeyServer:
    """The key-source tests' static server (``key_server``), its Date pinned to :data:`NOW`."""
    started: KeyServer = request.getfixturevalue("key_server")
    started.date = NOW
    return started


async def heard_key(store: Store, *, scans: int = 4, **fields: object) -> TemporaryExposureKey:
    """A new key of yesterday whose owner we heard ``scans`` times from :data:`CONTACT`."""
    key = new_key(**fields)  # type: ignore[arg-type]
    radio = Radio()
    radio.heard(key.key_data, CONTACT, scans=scans)
    await radio.store_into(store)
    return key


class Notifications:
    """A notifier that records what it was told."""

    def __init__(self) -> None:
        self.calls: list[list[QualifyingExposure]] = []

    async def __call__(self, exposures: Sequence[QualifyingExposure]) -> None:
        self.calls.append(list(exposures))


@pytest.fixture
def notifications() -> Notifications:
    return Notifications()
