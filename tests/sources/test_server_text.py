"""Server-supplied text reaches messages only sanitised: printable, short, no identifier runs.

Found by hand: error messages quoted up to 64 characters of what a server sent, so a
hostile key or verification server could put a 32-hex run into the journal.
"""

from __future__ import annotations

import base64
import random
import re
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from agent.config import KeySource
from agent.errors import NetworkError
from agent.report.errors import RequestRefusedError
from agent.report.padding import BodyKind
from agent.report.transport import post_json
from agent.servertext import ELIDED, server_text
from agent.sources import Candidate, make_session
from tests.sources.conftest import KeyServer
from tests.sources.util import FAST, client

PLANTED = bytes(range(0xA0, 0xB0))
"""16 bytes standing for a key or an identifier."""
HEX_RUN = re.compile(r"[0-9a-fA-F]{16,}")
FORMS = (
    PLANTED.hex(),
    PLANTED.hex().upper(),
    base64.b64encode(PLANTED).decode(),
    base64.urlsafe_b64encode(PLANTED).decode().rstrip("="),
)


def _assert_clean(text: str) -> None:
    for form in FORMS:
        assert form not in text
        assert form[:20] not in text
    assert not HEX_RUN.search(text)
    assert all(c.isprintable() for c in text)


def test_identifier_runs_are_elided_and_plain_text_kept() -> None:
    for form in FORMS:
        assert server_text(f"bad key {form} here") == f"bad key {ELIDED} here"
    assert server_text("id 0123abcd-4567-89ef-0123-456789abcdef ok") == f"id {ELIDED} ok"
    assert server_text("a\x1b[2J\nb\u202ec\x00d") == "a[2J bcd"
    long = server_text("x " * 200)
    assert len(long) == 60 and long.endswith(ELIDED)
    for kept in (
        "the verification code has expired; ask for a new code",
        "https://keys.example.org/v1/exposureKeyExport-US/1593432000-1593446400-00001.zip",
        "DE/date/2020-07-01/hour/5: ClientConnectorError Cannot connect to host 127.0.0.1:443",
        "HTTP/1.1 503 Service Unavailable",
    ):
        assert server_text(kept, 240) == kept


def test_random_base64_identifiers_are_caught() -> None:
    """2,000 random 16-byte values (fixed seed) in base64, padded and URL-safe."""
    rng = random.Random(15)
    missed = 0
    for _ in range(1000):
        raw = rng.randbytes(16)
        for text in (base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode()):
            missed += server_text(f"x {text} y") != f"x {ELIDED} y"
    assert missed <= 10  # about 0.1 % by design (a run that looks like a word)


async def test_a_key_server_reason_phrase_is_sanitised(key_server: KeyServer) -> None:
    async def teapot(request: web.Request) -> web.StreamResponse:
        return web.Response(status=418, reason=f"bad {PLANTED.hex()} {FORMS[2]}", text="x")

    key_server.handlers["/f.zip"] = teapot
    async with make_session(FAST) as session:
        c = client(KeySource(kind="index", url=key_server.url("/index.txt")), session, {})
        with pytest.raises(NetworkError) as caught:
            await c.download(Candidate(key_server.url("/f.zip"), "f.zip"))
    assert "HTTP 418" in str(caught.value)
    _assert_clean(str(caught.value))


@pytest.fixture
async def refusing_server() -> AsyncIterator[str]:
    async def refuse(request: web.Request) -> web.StreamResponse:
        error = f"code {PLANTED.hex()} / {FORMS[2]} is \x1b[31mwrong" + " padding" * 40
        return web.json_response({"error": error, "errorCode": PLANTED.hex()}, status=400)

    app = web.Application()
    app.router.add_post("/api/verify", refuse)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("/api/verify"))
    finally:
        await server.close()


async def test_a_verification_server_error_text_is_sanitised(refusing_server: str) -> None:
    async with aiohttp.ClientSession() as session:
        with pytest.raises(RequestRefusedError) as caught:
            await post_json(
                session,
                refusing_server,
                {"code": "12345678"},
                kind=BodyKind.VERIFY,
                server="verification server",
                padding_bytes=0,
            )
    message = str(caught.value)
    assert "HTTP 400" in message and "wrong" in message
    _assert_clean(message)
    _assert_clean(caught.value.error_code or "")
    assert len(message) < 160
