"""A running test key server on 127.0.0.1 and small protocol helpers for the tests."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest

from agent.clock import FakeClock, en_interval_number, rolling_start_interval_number
from agent.config import ReportConfig
from agent.export import PublicKeyRing, read_verified_export
from agent.keyschedule import KeySchedule
from agent.lab.keyserver import LocalKeyServer
from agent.models import TemporaryExposureKey
from agent.payload import Metadata
from agent.report.client import Reporter
from agent.report.hmac import tek_hmac_b64
from agent.report.release import StoreKeyRelease
from agent.report.wire import key_to_json
from agent.store import Store

API_KEY = "device-key"
NOW = 1_599_955_200.0 + 13 * 3600  # 2020-09-13 13:00 UTC
TODAY = rolling_start_interval_number(en_interval_number(NOW))
META = Metadata(tx_power_dbm=-8)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(wall=NOW)


@pytest.fixture
async def server(clock: FakeClock) -> AsyncIterator[LocalKeyServer]:
    srv = LocalKeyServer(clock=clock, api_key=API_KEY, embargo=False)
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def post(
    http: aiohttp.ClientSession,
    url: str,
    body: object,
    *,
    api_key: str = API_KEY,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, object]]:
    """POST JSON (``Content-Type: application/json``, as every real client sends it); the
    status and the JSON answer."""
    all_headers = {"X-API-Key": api_key, "Content-Type": "application/json", **(headers or {})}
    async with http.post(url, data=json.dumps(body), headers=all_headers) as response:
        raw = await response.read()
        return response.status, json.loads(raw) if raw.strip() else {}


def day_keys(count: int, *, last_start: int = TODAY) -> list[TemporaryExposureKey]:
    """One distinct key per day, the newest starting at ``last_start``."""
    return [
        TemporaryExposureKey(bytes([i + 1]) * 16, last_start - i * 144, 144) for i in range(count)
    ]


async def certificate_for(
    http: aiohttp.ClientSession,
    server: LocalKeyServer,
    keys: Sequence[TemporaryExposureKey],
    secret: bytes,
    *,
    test_type: str = "confirmed",
    code: str | None = None,
    accept: Sequence[str] | None = ("confirmed", "likely"),
) -> str:
    """Verify a code (a new one of ``test_type`` unless given; ``accept`` None sends no
    accept list) and get the certificate for ``keys``."""
    body: dict[str, object] = {"code": code or server.issue_code(test_type)}
    if accept is not None:
        body["accept"] = list(accept)
    status, answer = await post(http, f"{server.url}/api/verify", body)
    assert status == 200, answer
    status, answer = await post(
        http,
        f"{server.url}/api/certificate",
        {"token": answer["token"], "ekeyhmac": tek_hmac_b64(secret, keys)},
    )
    assert status == 200, answer
    certificate = answer["certificate"]
    assert isinstance(certificate, str)
    return certificate


def publish_body(
    keys: Sequence[TemporaryExposureKey], secret: bytes, certificate: str, **extra: object
) -> dict[str, object]:
    return {
        "temporaryExposureKeys": [key_to_json(k) for k in keys],
        "healthAuthorityID": "contact-agent-test",
        "verificationPayload": certificate,
        "hmacKey": base64.b64encode(secret).decode(),
        **extra,
    }


async def served_exports(
    http: aiohttp.ClientSession, server: LocalKeyServer
) -> list[list[TemporaryExposureKey]]:
    """Every export listed in index.txt, verified with the server's public key."""
    ring = PublicKeyRing.from_pem(server.public_key_pem, server.key_id, server.key_version)
    async with http.get(server.index_url) as response:
        assert response.status == 200
        lines = (await response.text()).split()
    exports = []
    for line in lines:
        async with http.get(f"{server.url}/{line}") as response:
            assert response.status == 200
            export = read_verified_export(await response.read(), ring)
        exports.append(list(export.keys))
    return exports


# --- an agent with 15 days of broadcasts ---------------------------------------------------

NOW_INTERVAL = en_interval_number(NOW)


def broadcast_history(now_interval: int = NOW_INTERVAL, days: int = 15) -> KeySchedule:
    """Own keys as a daemon leaves them: one per day, each broadcast for a while.

    Today's key is on air now (its high-water mark is ``now_interval``).
    """
    today = rolling_start_interval_number(now_interval)
    schedule = KeySchedule()
    for day in range(days - 1, 0, -1):
        for offset in (60, 61, 62):
            schedule.broadcast(today - day * 144 + offset, META)
    schedule.broadcast(now_interval, META)
    return schedule


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    """A real store in tmp_path with consent on and 15 days of own keys."""
    st = await Store.open(tmp_path / "agent")
    await st.save_own_teks(broadcast_history().pop_dirty())
    await st.set_consent(True, 0.0)
    try:
        yield st
    finally:
        await st.close()


def report_settings(server: LocalKeyServer, **changes: object) -> ReportConfig:
    settings = ReportConfig(
        verification_url=server.verification_url,
        publish_url=server.publish_url,
        api_key=API_KEY,
        health_authority_id=server.health_authority_id,
    )
    return replace(settings, **changes)  # type: ignore[arg-type]


def reporter(server: LocalKeyServer, store: Store, clock: FakeClock, **changes: object) -> Reporter:
    """A reporter whose waits between tries pass on ``clock`` at once."""

    async def sleep(seconds: float) -> None:
        clock.advance(seconds)

    return Reporter(report_settings(server, **changes), store, clock, sleep=sleep)


def release(store: Store, clock: FakeClock) -> StoreKeyRelease:
    return StoreKeyRelease(store, store.data_dir, clock)
