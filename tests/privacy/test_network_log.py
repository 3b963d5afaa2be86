"""The transparency log: what left the device, readable by its owner, without identifiers.

A report and a fetch against the test key server on 127.0.0.1, run as a user runs them;
then ``network-log``, ``status --json``, the stored rows, ``forget`` and the retention purge.
"""

from __future__ import annotations

import base64
import json
import re
import sqlite3
import time
from pathlib import Path

import pytest

from agent import netlog
from agent.clock import SystemClock, en_interval_number
from agent.config import ReportConfig
from agent.lab.keyserver import LocalKeyServer
from agent.lab.sim import FakeBluez, PrivateBus
from agent.netlog import KEY_DOWNLOAD, NetworkContact, host_of
from agent.report.chaff import send_chaff
from agent.report.padding import BodyKind, body_size
from agent.store import DB_FILENAME, Store
from tests.daemon.test_daemon_process import _radio_config, daemon_setup
from tests.daemon.test_daemon_process import buses as buses  # a fixture
from tests.daemon.test_daemon_process import fake as fake  # a fixture
from tests.pipeline.test_cli import _run
from tests.report.conftest import API_KEY, broadcast_history

HEX_RUN = re.compile(r"[0-9a-fA-F]{16,}")


def _forms(secret: bytes) -> list[str]:
    return [
        secret.hex(),
        secret.hex().upper(),
        base64.b64encode(secret).decode().rstrip("="),
        base64.urlsafe_b64encode(secret).decode().rstrip("="),
    ]


@pytest.mark.slow
async def test_a_report_and_a_fetch_appear_in_the_network_log_without_identifiers(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    async with await Store.open(data) as store:
        await store.save_own_teks(broadcast_history(en_interval_number(time.time())).pop_dirty())
        await store.set_consent(True, 0.0)
        own = [t.key_data for t in await store.load_own_teks()]
    server = LocalKeyServer(api_key=API_KEY, embargo=False)
    await server.start()
    try:
        (tmp_path / "ha.pem").write_bytes(server.public_key_pem)
        config = tmp_path / "config.toml"
        config.write_text(
            "[clock]\nrequire_sync = false\n"
            "[report]\n"
            f'verification_url = "{server.verification_url}"\n'
            f'publish_url = "{server.publish_url}"\n'
            f'api_key = "{API_KEY}"\n'
            f'health_authority_id = "{server.health_authority_id}"\n'
            "[keys]\n"
            f'sources = [{{ kind = "index", url = "{server.index_url}" }}]\n'
            f'public_keys = [{{ id = "{server.key_id}", version = "{server.key_version}", '
            'pem_file = "ha.pem" }]\n'
        )
        base = ("--data-dir", str(data), "--config", str(config))
        code = server.issue_code()
        status, out, err = await _run(*base, "report", "--code", code, "--yes")
        assert status == 0, err
        status, out, err = await _run(*base, "fetch")
        assert status == 0, err
        assert "downloaded 1 files" in out
        status, log_json, err = await _run(*base, "network-log", "--json")
        assert status == 0, err
        status, log_text, err = await _run(*base, "network-log")
        assert status == 0, err
        status, status_json, err = await _run(*base, "status", "--json")
        assert status == 0, err
    finally:
        await server.stop()

    contacts = json.loads(log_json)["contacts"]
    host = host_of(server.url)
    assert host.startswith("127.0.0.1:")
    assert [c["purpose"] for c in contacts] == [
        "verification",
        "certificate",
        "publish",
        KEY_DOWNLOAD,  # the index
        KEY_DOWNLOAD,  # the export with the published keys
    ]
    padding = ReportConfig().padding_bytes
    for contact, kind in zip(contacts, BodyKind, strict=False):
        assert contact["bytes_sent"] == body_size(kind, padding)
    for contact in contacts:
        assert contact["host"] == host
        assert contact["result"] == "HTTP 200"
        assert contact["bytes_received"] > 0
        assert abs(contact["time"] - time.time()) < 3600
    assert contacts[-1]["bytes_received"] > 500  # a signed export
    assert contacts[3]["bytes_sent"] == 0
    assert len(log_text.strip().splitlines()) == 5 and "publish" in log_text
    summary = json.loads(status_json)["network_log"]
    assert summary["contacts_14_days"] == 5
    assert summary["bytes_sent_14_days"] == sum(c["bytes_sent"] for c in contacts)
    assert summary["latest"]["purpose"] == KEY_DOWNLOAD

    with sqlite3.connect(data / DB_FILENAME) as db:
        rows = db.execute("SELECT * FROM network_log").fetchall()
    assert len(rows) == 5
    stored = " ".join(str(v) for row in rows for v in row)
    for text in (stored, log_json, log_text, json.dumps(summary)):
        assert code not in text
        assert not HEX_RUN.search(text)
        for key in own:
            for form in _forms(key):
                assert form not in text
        for path in ("/api/", "/v1/publish", "/exports", "index.txt", ".zip", API_KEY):
            assert path not in text

    status, out, err = await _run(*base, "forget", "--yes")
    assert status == 0, err
    status, out, err = await _run(*base, "network-log")
    assert out.strip() == "no network contact in the last 14 days"


def test_the_host_never_carries_a_path_a_user_or_an_identifier() -> None:
    secret = bytes(range(16))
    url = f"https://user:pw@keys.example.org:8443/v1/{secret.hex()}.zip?k={secret.hex()}"
    assert host_of(url) == "keys.example.org:8443"
    assert host_of("http://[::1]:9000/x") == "[::1]:9000"
    assert host_of(f"https://{secret.hex()}.example.org/") == "….example.org"
    assert host_of("not a url") == "?"


async def test_kept_fourteen_days_and_bounded(tmp_path: Path) -> None:
    now = time.time()
    old = NetworkContact(now - 15 * 86_400, "a.example", KEY_DOWNLOAD, 0, 10, "HTTP 200")
    new = NetworkContact(now, "b.example", KEY_DOWNLOAD, 0, 20, "HTTP 200")
    async with await Store.open(tmp_path / "data") as store:
        await store.add_network_contacts([old, new])
        assert await store.network_contacts() == [old, new]
        result = await store.purge(now - 14 * 86_400)
        assert result.network_contacts == 1
        assert await store.network_contacts() == [new]
        await store.add_network_contacts([new] * 25_000)
        assert len(await store.network_contacts()) == 20_000


async def test_decoy_uploads_are_logged_as_decoys(tmp_path: Path) -> None:
    server = LocalKeyServer(api_key=API_KEY, embargo=False)
    await server.start()
    try:
        settings = ReportConfig(
            verification_url=server.verification_url,
            publish_url=server.publish_url,
            api_key=API_KEY,
            health_authority_id=server.health_authority_id,
            chaff=True,
        )
        async with await Store.open(tmp_path / "data") as store:
            installed = netlog.install(store.add_network_contacts, SystemClock())
            try:
                answered = await send_chaff(settings, SystemClock(), sleep=_no_wait)
            finally:
                await installed.close()
            contacts = await store.network_contacts()
    finally:
        await server.stop()
    assert answered == 3
    assert [c.purpose for c in contacts] == ["decoy"] * 3
    padding = ReportConfig().padding_bytes
    assert [c.bytes_sent for c in contacts] == [body_size(k, padding) for k in BodyKind]


async def _no_wait(seconds: float) -> None:
    return None


@pytest.mark.slow
@pytest.mark.integration
async def test_the_daemon_logs_its_fetches_and_serves_the_log(
    short_dir: Path, buses: tuple[PrivateBus, PrivateBus], fake: FakeBluez
) -> None:
    system, session = buses
    server = LocalKeyServer(api_key=API_KEY, embargo=False)
    await server.start()
    try:
        (short_dir / "ha.pem").write_bytes(server.public_key_pem)
        config = _radio_config(
            "[clock]\nrequire_sync = false\n"
            "[keys]\n"
            f"sources = [{{ kind = 'index', url = '{server.index_url}' }}]\n"
            f"public_keys = [{{ id = '{server.key_id}', version = '{server.key_version}', "
            "pem_file = 'ha.pem' }]\n"
        )
        async with daemon_setup(short_dir, system, session, config) as daemon:
            code, _, err = await daemon.cli("enable")
            assert code == 0, err
            await daemon.start()
            await daemon.wait_for(daemon.ready, 60, "READY=1")
            fetched = await daemon.control("fetch")
            code, out, err = await daemon.cli("network-log", "--json")
            assert code == 0, err
            assert json.loads(out)["contacts"], (fetched, daemon.log.read_text())
            assert code == 0, err
            contacts = json.loads(out)["contacts"]
            assert contacts and {c["purpose"] for c in contacts} == {KEY_DOWNLOAD}
            assert {c["host"] for c in contacts} == {host_of(server.url)}
            status = await daemon.status()
            assert status["network_log"]["contacts_14_days"] == len(contacts)
            assert await daemon.stop() == 0
    finally:
        await server.stop()
