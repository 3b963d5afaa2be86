"""Consent gates every network contact (security review).

Before, ``contact-agent fetch`` with consent never given still contacted the key server
and matched. Now, while consent is off (never given, or withdrawn):

* ``fetch`` (no daemon) contacts no server: one line naming consent, exit 1;
* ``fetch`` through a running daemon: the daemon skips, nothing is requested;
* ``report`` sends nothing (one line, exit 1);
* the daemon's decoy traffic (``report.chaff``) sends nothing when decoys fall due;
* ``match`` of a local export still works: it contacts nobody.

Every server here is a real HTTP server on 127.0.0.1 that counts what reaches it.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType

import pytest
from aiohttp import web

from agent.clock import SystemClock
from agent.config import ReportConfig
from agent.report.chaff import run_chaff
from tests.faults.scripts import base as base
from tests.faults.scripts import harness as harness
from tests.faults.scripts import require_dbus_daemon
from tests.pipeline.conftest import Authority, new_key
from tests.pipeline.conftest import _signing_key as _signing_key
from tests.pipeline.conftest import authority as authority

REPO = Path(__file__).resolve().parents[2]


class CountingServer:
    """Answers every request with 200 and an empty body, and remembers its path."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def _any(self, request: web.Request) -> web.Response:
        self.requests.append(f"{request.method} {request.path}")
        return web.Response(body=b"")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._any)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture
async def counting() -> AsyncIterator[CountingServer]:
    server = CountingServer()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def config_text(server: CountingServer, authority: Authority) -> str:
    return (
        "[clock]\nrequire_sync = false\n[notify]\ndesktop = false\n"
        f"[keys]\nsources = [{{ kind = 'index', url = '{server.url('/keys/index.txt')}' }}]\n"
        f"public_keys = [{{ id = '310', version = 'v1', pem_file = '{authority.pem_file}' }}]\n"
        "[report]\n"
        f"verification_url = '{server.url('/verify')}'\n"
        f"publish_url = '{server.url('/publish')}'\n"
        "api_key = 'test-api-key'\nhealth_authority_id = 'contact-agent-test'\n"
    )


async def run_cli(base: Path, config: str, *args: str) -> tuple[int, str, str]:
    (base / "config.toml").write_text(config)
    env = {
        **os.environ,
        "CONTACT_AGENT_DATA_DIR": str(base / "data"),
        "CONTACT_AGENT_CONFIG": str(base / "config.toml"),
        "CONTACT_AGENT_SYNC_MARKER": "/nonexistent",
        "DBUS_SYSTEM_BUS_ADDRESS": "unix:path=/nonexistent",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agent", *args,
        cwd=REPO, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def one_line_about_consent(err: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "consent" in lines[0], err


@pytest.mark.slow
@pytest.mark.parametrize("withdrawn", [False, True])
async def test_fetch_without_consent_contacts_no_server(
    tmp_path: Path, authority: Authority, counting: CountingServer, withdrawn: bool
) -> None:
    config = config_text(counting, authority)
    if withdrawn:
        assert (await run_cli(tmp_path, config, "enable"))[0] == 0
        assert (await run_cli(tmp_path, config, "disable"))[0] == 0
    for args in (["fetch"], ["fetch", "--json"]):
        code, out, err = await run_cli(tmp_path, config, *args)
        assert code == 1 and out == ""
        one_line_about_consent(err)
    assert counting.requests == []


async def test_report_without_consent_sends_nothing(
    tmp_path: Path, authority: Authority, counting: CountingServer
) -> None:
    code, _, err = await run_cli(
        tmp_path, config_text(counting, authority), "report", "--code", "12345678", "--yes"
    )
    assert code == 1
    one_line_about_consent(err)
    assert counting.requests == []


async def test_decoys_fall_due_but_are_not_sent_without_consent(counting: CountingServer) -> None:
    settings = ReportConfig(
        verification_url=counting.url("/verify"),
        publish_url=counting.url("/publish"),
        api_key="test-api-key",
        health_authority_id="contact-agent-test",
        chaff=True,
    )
    consent = False
    waits = 0

    async def sleep(seconds: float) -> None:
        nonlocal waits, consent
        waits += 1
        if waits == 20:
            assert counting.requests == []  # 19 decoys fell due, none was sent
            consent = True  # given now: the next decoy goes out
        if counting.requests:
            raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await run_chaff(settings, SystemClock(), sleep=sleep, consent=lambda: consent)
    assert waits >= 20 and counting.requests


async def test_match_of_a_local_file_needs_no_consent(
    tmp_path: Path, authority: Authority, counting: CountingServer
) -> None:
    export = tmp_path / "keys.zip"
    export.write_bytes(authority.export([new_key()], batch_start=time.time() - 3600))
    code, out, err = await run_cli(
        tmp_path, config_text(counting, authority),
        "match", str(export), "--public-key", str(authority.pem_file),
    )  # fmt: skip
    assert code == 0, err
    assert "files: 1 processed" in out
    assert counting.requests == []


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_the_daemon_contacts_no_server_without_consent(
    harness: ModuleType, base: Path, authority: Authority, counting: CountingServer
) -> None:
    require_dbus_daemon()
    config = config_text(counting, authority).replace("[clock]\nrequire_sync = false\n", "")
    config = config.replace("[notify]\ndesktop = false\n", "")
    config += "chaff = true\n"
    async with harness.simulated_air() as (bus, _fake):
        daemon = harness.DaemonProcess(base, bus.address, harness.radio_config(config))
        try:
            await daemon.start()
            await daemon.wait_ready()
            answer = await daemon.control("fetch")
            assert "consent" in str(answer.get("skipped")), answer
            code, _, err = await daemon.cli("fetch")
            assert code == 1 and "consent" in err, err
            status = await daemon.control("status")
            assert status["consent"] == "not given"
            assert await daemon.stop() == 0
        finally:
            daemon.close()
    assert counting.requests == []
