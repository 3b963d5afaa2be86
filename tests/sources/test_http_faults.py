"""Server-level bad input and faults (bad-input cases 12-19, ``docs/reliability.md`` F11) against a
real local server.

Each case ends in a clear NetworkError/ExportFileError (message asserted), no download
is returned and the persisted state is unchanged.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import ssl
import time
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from agent.config import KeySource
from agent.errors import ExportFileError, NetworkError
from agent.sources import Candidate, ServerBusyError, make_session
from tests.sources.conftest import Handler, KeyServer
from tests.sources.util import FAST, Sleeps, client, export_bytes, verified_count

FILE = "/exposureKeyExport-ZZ/1-2-00001.zip"
INDEX = "/exposureKeyExport-ZZ/index.txt"


def _source(server: KeyServer) -> KeySource:
    return KeySource(kind="index", url=server.url(INDEX))


async def _download(
    server: KeyServer, state: dict[str, str], sleeps: Sleeps | None = None, **kw: object
) -> None:
    async with make_session(FAST) as session:
        c = client(_source(server), session, state, sleeps=sleeps, **kw)  # type: ignore[arg-type]
        await c.download(Candidate(server.url(FILE), FILE.lstrip("/")))


def _flaky(statuses: list[int], body: bytes, headers: dict[str, str] | None = None) -> Handler:
    """Answer with the given error statuses first, then the body."""

    async def handler(request: web.Request) -> web.StreamResponse:
        if statuses:
            return web.Response(status=statuses.pop(0), text="busy", headers=headers or {})
        return web.Response(body=body)

    return handler


async def test_500_is_retried_with_exponential_backoff_and_jitter(
    key_server: KeyServer, signing_key: ec.EllipticCurvePrivateKey
) -> None:
    key_server.handlers[FILE] = _flaky([500, 502], export_bytes(signing_key))
    sleeps, state = Sleeps(), {}
    async with make_session(FAST) as session:
        c = client(_source(key_server), session, state, sleeps=sleeps)
        download = await c.download(Candidate(key_server.url(FILE), "f.zip"))
    assert verified_count(download, signing_key) == 3
    assert key_server.requests(FILE) == [500, 502, 200]
    assert len(sleeps.delays) == 2
    assert 0.4 <= sleeps.delays[0] <= 0.6 and 0.8 <= sleeps.delays[1] <= 1.2  # 0.5, 1.0 +-20 %


async def test_persistent_500_gives_up_and_stores_nothing(key_server: KeyServer) -> None:
    key_server.handlers[FILE] = _flaky([500] * 10, b"")
    state = {"index:x|done": "kept"}
    with pytest.raises(
        NetworkError, match=r"server answered HTTP 500 \(gave up after 3 attempts\)"
    ):
        await _download(key_server, state)
    assert key_server.requests(FILE) == [500, 500, 500]
    assert state == {"index:x|done": "kept"}


async def test_429_retry_after_is_honoured(
    key_server: KeyServer, signing_key: ec.EllipticCurvePrivateKey
) -> None:
    key_server.handlers[FILE] = _flaky([429], export_bytes(signing_key), {"Retry-After": "7"})
    sleeps = Sleeps()
    await _download(key_server, {}, sleeps)
    assert sleeps.delays == [7.0]


async def test_503_retry_after_as_http_date(
    key_server: KeyServer, signing_key: ec.EllipticCurvePrivateKey
) -> None:
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    key_server.handlers[FILE] = _flaky([503], export_bytes(signing_key), {"Retry-After": when})
    sleeps = Sleeps()
    await _download(key_server, {}, sleeps)
    assert len(sleeps.delays) == 1 and 25 <= sleeps.delays[0] <= 31


async def test_long_retry_after_ends_the_cycle(key_server: KeyServer) -> None:
    key_server.handlers[FILE] = _flaky([429] * 3, b"", {"Retry-After": "7200"})
    sleeps, state = Sleeps(), {}
    with pytest.raises(ServerBusyError, match="retry after 7200 s") as caught:
        await _download(key_server, state, sleeps)
    assert caught.value.retry_after == 7200 and sleeps.delays == [] and state == {}


async def test_html_with_200_is_not_a_zip(key_server: KeyServer) -> None:
    key_server.files[FILE] = b"<!DOCTYPE html><html>Please log in to the Wi-Fi</html>"
    state: dict[str, str] = {}
    with pytest.raises(ExportFileError, match="not a ZIP file"):
        await _download(key_server, state)
    assert state == {}


async def test_html_index_is_rejected(key_server: KeyServer) -> None:
    key_server.files[INDEX] = b"<html><body>captive portal</body></html>"
    state: dict[str, str] = {}
    async with make_session(FAST) as session:
        with pytest.raises(NetworkError, match=r"index line 1 is not a relative \.zip path"):
            await client(_source(key_server), session, state).candidates()
    assert state == {}


@pytest.mark.parametrize(
    ("index", "message"),
    [
        (b"../../etc/passwd.zip\n", "not a relative .zip path"),
        (b"https://evil.example/a.zip\n", "not a relative .zip path"),
        (b"/abs/a.zip\n", "not a relative .zip path"),
        (b"a.zip\na.zip\n", "more than once"),
        ("caf\u00e9.zip".encode(), "not US-ASCII"),
        (b"".join(b"f%05d.zip\n" % i for i in range(6000)), "over the cap of 5000"),
    ],
)
async def test_malformed_index_is_rejected(
    key_server: KeyServer, index: bytes, message: str
) -> None:
    key_server.files[INDEX] = index
    state = {"before": "x"}
    async with make_session(FAST) as session:
        with pytest.raises(NetworkError, match=message):
            await client(_source(key_server), session, state).candidates()
    assert state == {"before": "x"}


async def test_oversized_index_is_aborted(key_server: KeyServer) -> None:
    key_server.files[INDEX] = b"a.zip\n" * 200_000  # 1.2 MB > 1 MiB listing cap
    async with make_session(FAST) as session:
        with pytest.raises(NetworkError, match="over the cap of 1048576"):
            await client(_source(key_server), session, {}).candidates()


async def test_body_over_the_cap_is_aborted_whatever_the_length_header(
    key_server: KeyServer,
) -> None:
    async def chunked(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()  # no Content-Length to trust
        await response.prepare(request)
        for _ in range(50):
            await response.write(b"PK\x03\x04" + bytes(10_000))
        await response.write_eof()
        return response

    key_server.handlers[FILE] = chunked
    with pytest.raises(NetworkError, match="exceeds the cap of 100000 bytes; download aborted"):
        await _download(key_server, {}, max_bytes=100_000)
    key_server.files["/big.zip"] = bytes(200_000)
    async with make_session(FAST) as session:
        c = client(_source(key_server), session, {}, max_bytes=100_000)
        with pytest.raises(NetworkError, match="200000 bytes announced, over the cap"):
            await c.download(Candidate(key_server.url("/big.zip"), "big.zip"))


@pytest.mark.slow
async def test_slow_body_is_aborted(key_server: KeyServer) -> None:
    async def trickle(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.content_length = 10_000
        await response.prepare(request)
        for _ in range(40):
            await response.write(b"PK")
            await asyncio.sleep(0.05)
        return response

    key_server.handlers[FILE] = trickle
    state: dict[str, str] = {}
    with pytest.raises(NetworkError, match=r"too slow \(\d+ B/s"):
        await _download(key_server, state)
    assert state == {}


@pytest.mark.slow
async def test_stalled_body_times_out(key_server: KeyServer) -> None:
    async def stall(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.content_length = 10_000
        await response.prepare(request)
        await response.write(b"PK\x03\x04")
        await asyncio.sleep(2)
        return response

    key_server.handlers[FILE] = stall
    with pytest.raises(NetworkError, match="gave up after 3 attempts"):
        await _download(key_server, {})


async def test_connection_reset_mid_body(key_server: KeyServer) -> None:
    async def reset(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.content_length = 100_000
        await response.prepare(request)
        await response.write(b"PK\x03\x04" + bytes(1000))
        assert request.transport is not None
        request.transport.close()
        return response

    key_server.handlers[FILE] = reset
    state: dict[str, str] = {}
    with pytest.raises(NetworkError, match="connection broke off mid-body"):
        await _download(key_server, state)
    assert state == {} and len(key_server.requests(FILE)) == 3


async def test_404_is_not_retried(key_server: KeyServer) -> None:
    with pytest.raises(NetworkError, match=r"not found \(HTTP 404\)"):
        await _download(key_server, {})
    assert key_server.requests(FILE) == [404]


async def test_unreachable_server(key_server: KeyServer) -> None:
    url, source = key_server.url(FILE), _source(key_server)
    await key_server.server.close()
    async with make_session(FAST) as session:
        c = client(source, session, {})
        with pytest.raises(NetworkError, match="connection failed"):
            await c.download(Candidate(url, "f.zip"))


async def test_server_clock_ten_minutes_off_is_flagged(
    key_server: KeyServer, signing_key: ec.EllipticCurvePrivateKey
) -> None:
    key_server.files[FILE] = export_bytes(signing_key)
    key_server.files[INDEX] = FILE.split("/", 2)[2].encode()
    state: dict[str, str] = {}
    async with make_session(FAST) as session:
        c = client(_source(key_server), session, state)
        key_server.date = time.time() - 1300  # server says it is 21+ minutes earlier
        (candidate,) = await c.candidates()
        assert c.clock_skewed and c.clock_skew_seconds is not None
        download = await c.download(candidate)
        assert download.clock_skewed and download.clock_skew_seconds < -1200
        # Not recorded as done: offered again once the clocks agree.
        key_server.date = time.time() + 60
        (again,) = await c.candidates()
        download = await c.download(again)
        assert not download.clock_skewed and not c.clock_skewed
        assert await c.candidates() == []


def _self_signed(tmp_path: Path) -> ssl.SSLContext:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    return context


async def test_tls_certificates_are_verified(tmp_path: Path) -> None:
    app = web.Application()

    async def index(request: web.Request) -> web.Response:
        return web.Response(text="a.zip\n")

    app.router.add_get("/index.txt", index)
    server = TestServer(app, host="127.0.0.1", scheme="https")
    await server.start_server(ssl=_self_signed(tmp_path))
    try:
        source = KeySource(kind="index", url=str(server.make_url("/index.txt")))
        assert source.url.startswith("https://")
        async with make_session(FAST) as session:
            with pytest.raises(NetworkError, match="TLS certificate not accepted"):
                await client(source, session, {}).candidates()
    finally:
        await server.close()
