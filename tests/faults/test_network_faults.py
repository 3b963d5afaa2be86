"""Key-server faults seen by the running daemon (``docs/reliability.md`` F11, bad-input cases
12-16).

tests/sources proves each fault at the HTTP client (retries, Retry-After, caps, aborts).
Here the same faults reach the daemon's fetch schedule (in-process service, real store,
real control socket, a real key server on 127.0.0.1): every faulty cycle is answered with
a clear reason, stores nothing and leaves the sources' state as it was, counts a failure
and backs off -- never sooner than a Retry-After the server sent -- and the daemon goes
on; once the server behaves, the next cycle processes the file.

The HTTP client's limits are shortened (tests/sources' FAST: 2 retries from 0.5 s,
throughput checked after 0.3 s) so the faults cost seconds, not minutes.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec

import agent.pipeline.fetch
from agent.config import KeysConfig, KeySource, PublicKeyConfig
from agent.control import request
from agent.export import public_key_pem
from agent.pipeline.fetch import SOURCES_STATE_KEY
from agent.store import DB_FILENAME
from tests.daemon.fakes import RadioFactory
from tests.daemon.test_service import FAST as FAST_DAEMON
from tests.daemon.test_service import TRUSTED, make, running
from tests.sources.conftest import KeyServer
from tests.sources.conftest import key_server as key_server
from tests.sources.conftest import signing_key as signing_key
from tests.sources.util import FAST, export_bytes

INDEX = "/exp/index.txt"
NAME = "exp/1-2-00001.zip"
FILE = "/" + NAME


def _status(answer: int, body: bytes = b"busy", **headers: str) -> Any:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(status=answer, body=body, headers=headers)

    return handler


async def _trickle(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse()
    response.content_length = 100_000
    await response.prepare(request)
    for _ in range(40):
        await response.write(b"PK")
        await asyncio.sleep(0.05)
    return response


async def _reset(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse()
    response.content_length = 100_000
    await response.prepare(request)
    await response.write(b"PK\x03\x04" + bytes(1000))
    assert request.transport is not None
    request.transport.close()
    return response


FAULTS = [
    ("HTTP 500", _status(500), "server answered HTTP 500", 54),
    ("429 + Retry-After 2 h", _status(429, **{"Retry-After": "7200"}), "retry after 7200", 7200),
    (
        "HTML with 200",
        _status(200, b"<!DOCTYPE html><html>Wi-Fi login</html>"),
        "not a ZIP file",
        54,
    ),
    ("slow body", _trickle, "too slow", 54),
    ("reset mid-body", _reset, "connection broke off mid-body", 54),
]


def _db(data: Path, sql: str) -> list[Any]:
    conn = sqlite3.connect(str(data / DB_FILENAME), timeout=10)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


async def ask(data: Path, cmd: str) -> dict[str, Any]:
    return await asyncio.to_thread(request, [data / "control.sock"], cmd, timeout=60)


@pytest.mark.slow
@pytest.mark.timeout(90)
async def test_key_server_faults_through_the_daemon_schedule(
    short_dir: Path,
    key_server: KeyServer,
    signing_key: ec.EllipticCurvePrivateKey,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(agent.pipeline.fetch, "FetchLimits", lambda: FAST)
    pem = short_dir / "ha.pem"
    pem.write_bytes(public_key_pem(signing_key))
    keys = KeysConfig(
        sources=(KeySource(kind="index", url=key_server.url(INDEX)),),
        public_keys=(PublicKeyConfig("310", "v1", str(pem)),),
    )
    data = short_dir / "data"
    key_server.files[INDEX] = f"{NAME}\n".encode()
    timing = replace(FAST_DAEMON, first_fetch_delay=3600)  # only the cycles asked for here
    service = make(data, RadioFactory(), replace(TRUSTED, keys=keys), timing=timing)
    async with running(service):
        await service.set_consent(True)
        for failures, (what, handler, reason, at_least) in enumerate(FAULTS, start=1):
            key_server.handlers[FILE] = handler
            result = await ask(data, "fetch")
            assert result["ok"] is False, what
            assert any(reason in f for f in result["failed"]), (what, result["failed"])
            assert result["files_processed"] == 0, what
            # nothing stored, the file not marked done, the failure counted and shown
            assert _db(data, "SELECT count(*) FROM processed_file") == [(0,)], what
            assert NAME not in _done(data), what
            status = await ask(data, "status")
            assert status["metrics"]["key_fetch_failures_total"] == failures
            assert status["last_fetch"]["ok"] is False
            assert status["fetch"]["consecutive_failures"] == failures
            # backoff: 1 min doubling (+-10 %), and never before the server's Retry-After
            assert status["fetch"]["next_in_seconds"] >= at_least, (what, status["fetch"])
            assert status["daemon"]["running"]
        del key_server.handlers[FILE]
        key_server.files[FILE] = export_bytes(signing_key)
        result = await ask(data, "fetch")
        assert result["ok"] is True and result["files_processed"] == 1, result
        status = await ask(data, "status")
        assert status["fetch"]["consecutive_failures"] == 0
        assert status["fetch"]["next_in_seconds"] > 3 * 3600  # the 4 h schedule again
        assert NAME in _done(data)


def _done(data: Path) -> str:
    """The files the key sources' saved state marks as delivered."""
    rows = _db(data, f"SELECT value FROM state WHERE key = '{SOURCES_STATE_KEY}'")
    state = json.loads(rows[0][0]) if rows else {}
    return " ".join(v for k, v in state.items() if k.endswith("|done"))
