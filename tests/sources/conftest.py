"""A real aiohttp key server on 127.0.0.1 whose routes each test sets up."""

from __future__ import annotations

import email.utils
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives.asymmetric import ec

from agent.export import generate_signing_key

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class KeyServer:
    """Static files with ETags, plus per-path handlers that misbehave on purpose."""

    server: TestServer
    files: dict[str, bytes] = field(default_factory=dict)
    handlers: dict[str, Handler] = field(default_factory=dict)
    log: list[tuple[str, int]] = field(default_factory=list)
    """(path, status) of every answered request."""
    date: float | None = None
    """When set, every response carries this time as its Date header."""

    def url(self, path: str) -> str:
        return str(self.server.make_url(path))

    def requests(self, path: str) -> list[int]:
        return [status for p, status in self.log if p == path]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        handler = self.handlers.get(path)
        if handler is not None:
            response = await handler(request)
        elif path in self.files:
            body = self.files[path]
            etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
            if request.headers.get("If-None-Match") == etag:
                response = web.Response(status=304, headers={"ETag": etag})
            else:
                response = web.Response(body=body, headers={"ETag": etag})
        else:
            response = web.Response(status=404, text="not found")
        if self.date is not None:
            response.headers["Date"] = email.utils.formatdate(self.date, usegmt=True)
        self.log.append((path, response.status))
        return response


@pytest.fixture
async def key_server() -> AsyncIterator[KeyServer]:
    app = web.Application()
    server = TestServer(app, host="127.0.0.1")
    state = KeyServer(server)
    app.router.add_route("GET", "/{tail:.*}", state.handle)
    await server.start_server()
    try:
        yield state
    finally:
        await server.close()


@pytest.fixture(scope="session")
def signing_key() -> ec.EllipticCurvePrivateKey:
    return generate_signing_key()
