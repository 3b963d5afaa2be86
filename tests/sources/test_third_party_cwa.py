"""The Corona-Warn-App server's published download tree, served as it is on 127.0.0.1,
fetched, verified and matched by the agent end to end.

The tree (corona-warn-app/cwa-server ``services/distribution/src/test/resources/
master-index-test/testout/``) stays in ``../shared``; the test skips without it. Its
facts: the date list names twelve days of which only 2020-05-11 and 2020-05-12 have
files (7,056 and 23,901 keys), signature infos with an empty key id and version, every
file signed by ``docker-test-public.pem``.
"""

from __future__ import annotations

import datetime as dt
import zipfile
from pathlib import Path

from agent.clock import ClockTrust, FakeClock, TrustDecision
from agent.config import Config, KeysConfig, KeySource, PublicKeyConfig
from agent.export import export_pb2 as pb
from agent.pipeline import config_ring, fetch_and_match
from agent.sources import make_session
from agent.store import Store
from tests.pipeline.conftest import Radio
from tests.shared import shared_path
from tests.sources.conftest import KeyServer

CWA = "testdata/third-party/cwa-server-distribution"
DAY_KEYS = {"DE/date/2020-05-11": 7056, "DE/date/2020-05-12": 23901}
LISTED_DAYS = 12
NOW = dt.datetime(2020, 5, 13, 12, tzinfo=dt.UTC).timestamp()
TRUSTED = TrustDecision(ClockTrust.SYNCED, "test: synchronised")


def serve_tree(server: KeyServer, testout: Path) -> None:
    """Every ``.../index`` file at the URL of its folder, as the CWA CDN serves them."""
    for path in testout.rglob("index"):
        server.files["/" + str(path.parent.relative_to(testout))] = path.read_bytes()


def a_key_of(file: Path, now_interval: int) -> tuple[bytes, int]:
    """A key of a published file still within 14 days of ``now_interval``."""
    with zipfile.ZipFile(file) as archive:
        message = pb.TemporaryExposureKeyExport()
        message.ParseFromString(archive.read("export.bin")[16:])
    for key in sorted(message.keys, key=lambda k: k.key_data):
        if now_interval - 13 * 144 <= key.rolling_start_interval_number <= now_interval - 144:
            return key.key_data, key.rolling_start_interval_number
    raise AssertionError("no recent key in the published file")


async def test_the_cwa_tree_is_fetched_verified_and_matched_as_published(
    key_server: KeyServer, tmp_path: Path
) -> None:
    folder = shared_path(CWA)
    testout = folder / "testout"
    serve_tree(key_server, testout)
    key_server.date = NOW
    now_interval = int(NOW // 600)
    day_file = testout / "version/v1/diagnosis-keys/country/DE/date/2020-05-12/index"
    key_data, start = a_key_of(day_file, now_interval)
    radio = Radio()
    radio.heard(key_data, start * 600 + 3600, scans=4)  # 20 minutes near its owner
    config = Config(
        keys=KeysConfig(
            sources=(KeySource(kind="cwa", url=key_server.url("/"), country="DE"),),
            # exactly what the server signs with: an empty key id and version
            public_keys=(PublicKeyConfig("", "", str(folder / "docker-test-public.pem")),),
        )
    )
    store = await Store.open(tmp_path / "data")
    try:
        await radio.store_into(store)
        async with make_session() as session:
            report = await fetch_and_match(
                store,
                config,
                session,
                clock=FakeClock(wall=NOW),
                trust=TRUSTED,
                ring=config_ring(config, None),
                workers=1,
            )
    finally:
        await store.close()
    assert sorted(report.downloaded) == sorted(DAY_KEYS)
    # the ten listed days without a file are 404s on this tree, reported, not fatal
    assert len(report.failed) == LISTED_DAYS - len(DAY_KEYS)
    cycle = report.cycle
    assert cycle is not None
    assert len(cycle.files_processed) == 2 and cycle.files_rejected == []
    # every published key is read; the ones older than 14 days on 2020-05-13 are dropped
    assert cycle.keys + cycle.counters["rolling_start_too_old"] == sum(DAY_KEYS.values())
    assert cycle.matched_keys >= 1
    assert key_data in {w.key_data for w in cycle.windows}
