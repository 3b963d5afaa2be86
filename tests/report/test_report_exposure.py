"""Acceptance: after ``report``, a second agent that heard the reporter gets one exposure.

The reporter publishes through the real HTTP flow; the second agent downloads the next
export through its configured index source, verifies it with the pinned key and matches
it against sightings of the reporter's RPIs (agent.pipeline).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from agent import crypto
from agent.clock import ClockTrust, FakeClock, TrustDecision, en_interval_number
from agent.config import Config, KeysConfig, KeySource, PublicKeyConfig
from agent.lab.keyserver import LocalKeyServer
from agent.models import ScanPeriod, Sighting
from agent.pipeline import config_ring, fetch_and_match
from agent.store import Store
from tests.report.conftest import API_KEY, META, broadcast_history, release, reporter


@pytest.fixture
def real_clock() -> FakeClock:
    """A fake clock at the real time: the key server's HTTP Date must agree with it."""
    return FakeClock(wall=time.time())


@pytest.fixture
async def live_server(real_clock: FakeClock) -> AsyncIterator[LocalKeyServer]:
    async with LocalKeyServer(clock=real_clock, api_key=API_KEY, embargo=False) as server:
        yield server


async def test_a_contact_of_the_reporter_gets_exactly_one_exposure(
    live_server: LocalKeyServer, real_clock: FakeClock, tmp_path: Path
) -> None:
    now_interval = en_interval_number(real_clock.wall())
    history = broadcast_history(now_interval)
    teks = history.pop_dirty()
    yesterday = max(
        (t for t in teks if t.rolling_start_interval_number < now_interval - now_interval % 144),
        key=lambda t: t.rolling_start_interval_number,
    )
    # The contact heard yesterday's key from 10:00 to 10:30 UTC, once a minute, at 1-2 m.
    contact_start = (yesterday.rolling_start_interval_number + 60) * 600
    rpik, aemk = crypto.derive_rpik(yesterday.key_data), crypto.derive_aemk(yesterday.key_data)
    sightings, scans = [], []
    for minute in range(30):
        t = contact_start + minute * 60
        rpi = crypto.rpi(rpik, en_interval_number(t))
        aem = crypto.encrypt_aem(aemk, rpi, bytes(META))
        sightings.append(Sighting(t + 1, rpi, aem, -60, scan_start=t))
        scans.append(ScanPeriod(t, t + 4))

    async with await Store.open(tmp_path / "reporter") as reporter_store:
        await reporter_store.save_own_teks(teks)
        await reporter_store.set_consent(True, real_clock.wall())
        result = await reporter(live_server, reporter_store, real_clock).run(
            live_server.issue_code(), release(reporter_store, real_clock)
        )
    assert result.keys_published == 15

    pem = live_server.write_public_key(tmp_path / "server.pem")
    contact_config = Config(
        keys=KeysConfig(
            sources=(KeySource(kind="index", url=live_server.index_url),),
            public_keys=(PublicKeyConfig(id="test", version="v1", pem_file=str(pem)),),
        )
    )
    async with await Store.open(tmp_path / "contact") as contact, aiohttp.ClientSession() as http:
        await contact.add_sightings(sightings)
        for scan in scans:
            await contact.record_scan(scan)
        report = await fetch_and_match(
            contact,
            contact_config,
            http,
            clock=real_clock,
            trust=TrustDecision(ClockTrust.SYNCED, "test"),
            ring=config_ring(contact_config, None),
        )
    assert report.failed == [] and report.refused is None, report
    assert report.cycle is not None
    assert report.cycle.matched_keys == 1
    [exposure] = report.cycle.new_exposures
    assert exposure.day == yesterday.rolling_start_interval_number * 600
    assert exposure.minutes >= 15
