"""HTTP GET with the protections every key-server download needs (bad-input cases 12-19;
``docs/reliability.md``).

TLS verification is always on (the session is made here with a default SSL context and
nothing turns it off). Each request has connect, per-read and total timeouts plus a
minimum throughput; bodies are streamed and abandoned at the size cap whatever
Content-Length says. 5xx, 408, 429, resets and connect failures are retried with
exponential backoff and jitter (:class:`agent.backoff.Backoff`), honouring a Retry-After
capped at ``FetchLimits.retry_after_cap``. Redirects are followed by hand, at most
``max_redirects`` hops and only to https (http only from loopback to loopback): any other
target fails that one request with a clear reason. Every response's ``Date`` is compared
with the local clock and the skew is reported.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import BinaryIO
from urllib.parse import urljoin, urlsplit

import aiohttp

from agent import __version__, netlog
from agent.backoff import Backoff, http_date, retry_after
from agent.clock import Clock
from agent.errors import NetworkError
from agent.servertext import server_text
from agent.sources.base import FetchLimits

_LOGGER = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]

_RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_CHUNK = 64 * 1024

BytesProgress = Callable[[int], None]
"""Called with the bytes of the body received so far."""


class ServerBusyError(NetworkError):
    """The server asked us to come back later than this cycle can wait."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class NotFoundError(NetworkError):
    """HTTP 404 or 410: the resource does not exist (yet)."""


class _Retryable(Exception):
    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


class RedirectRefusedError(NetworkError):
    """A redirect to a scheme or host this agent does not follow."""


@dataclass(frozen=True, slots=True)
class Response:
    """A complete 200 body (in ``body``, or written to the caller's sink), or a 304
    (``not_modified``) with an empty body."""

    url: str
    body: bytes
    size: int
    not_modified: bool
    etag: str | None
    server_date: float | None
    clock_skew_seconds: float | None


def _timeout(limits: FetchLimits) -> aiohttp.ClientTimeout:
    return aiohttp.ClientTimeout(
        total=limits.total_timeout,
        connect=limits.connect_timeout,
        sock_connect=limits.connect_timeout,
        sock_read=limits.read_timeout,
    )


def make_session(limits: FetchLimits | None = None) -> aiohttp.ClientSession:
    """A client session for key servers: TLS verified, timeouts, no cookies, plain UA.

    Call it inside a running event loop and close it (``async with`` or ``await close()``).
    """
    context = ssl.create_default_context()  # verifies certificates and host names
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=context, limit=4),
        timeout=_timeout(limits or FetchLimits()),
        cookie_jar=aiohttp.DummyCookieJar(),
        headers={"User-Agent": f"contact-agent/{__version__}"},
        trust_env=False,
    )


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def redirect_target(current: str, location: str | None) -> str:
    """The URL a redirect from ``current`` leads to, when this agent may follow it.

    Raises:
        RedirectRefusedError: no Location, or a target that is not https (http only from
            a loopback host to a loopback host): ``file:``, ``ftp:``, plain http to the
            internet.
    """
    if not location:
        raise RedirectRefusedError(f"{current}: redirect without a Location")
    try:
        target = urljoin(current, location.strip())
        parts = urlsplit(target)
        host = parts.hostname
    except ValueError:
        raise RedirectRefusedError(f"{current}: redirect to a malformed URL") from None
    scheme = parts.scheme.lower()
    shown = target[:100]
    if scheme == "https" and host:
        return target
    if scheme == "http" and _is_loopback(host) and _is_loopback(urlsplit(current).hostname):
        return target
    raise RedirectRefusedError(
        f"{current}: redirect to {shown!r} refused (only https, or http within loopback)"
    )


class HttpFetcher:
    """GETs for one source, sharing its session, clock, limits and sleep function."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        clock: Clock,
        limits: FetchLimits,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._session = session
        self._clock = clock
        self._limits = limits
        self._sleep = sleep
        self._backoff = Backoff(limits.backoff_initial, limits.backoff_max, limits.backoff_jitter)
        self.last_clock_skew_seconds: float | None = None

    async def get(
        self,
        url: str,
        *,
        max_bytes: int,
        etag: str | None = None,
        sink: BinaryIO | None = None,
        progress: BytesProgress | None = None,
    ) -> Response:
        """Fetch ``url`` completely (or learn it is unchanged, when ``etag`` is given).

        With ``sink`` the body is written there (truncated before every attempt) instead
        of being kept in memory; ``progress`` hears the bytes received so far.

        Raises:
            NetworkError: refused, unreachable, too slow, too big, a refused redirect or
                retries exhausted.
            ServerBusyError: Retry-After longer than :attr:`FetchLimits.max_retry_after`.
        """
        limits = self._limits
        for attempt in range(limits.retries + 1):
            if sink is not None:
                sink.seek(0)
                sink.truncate()
            try:
                return await self._get_once(
                    url, max_bytes=max_bytes, etag=etag, sink=sink, progress=progress
                )
            except _Retryable as exc:
                last = exc
                if exc.retry_after is not None and exc.retry_after > limits.max_retry_after:
                    raise ServerBusyError(
                        f"{url}: server busy ({exc.message}); it asks to retry after "
                        f"{exc.retry_after:.0f} s",
                        exc.retry_after,
                    ) from None
                if attempt == limits.retries:
                    break
                delay = exc.retry_after
                if delay is None:
                    delay = self._backoff.delay(attempt)
                _LOGGER.debug("GET %s failed (%s); retry in %.1f s", url, exc.message, delay)
                await self._sleep(delay)
        raise NetworkError(
            f"{url}: {last.message} (gave up after {limits.retries + 1} attempts)"
        ) from None

    async def _get_once(
        self,
        url: str,
        *,
        max_bytes: int,
        etag: str | None,
        sink: BinaryIO | None,
        progress: BytesProgress | None,
    ) -> Response:
        headers = {"If-None-Match": etag} if etag else {}
        target = url
        for _hop in range(self._limits.max_redirects + 1):
            try:
                async with netlog.logged(
                    self._session.get(
                        target,
                        headers=headers,
                        timeout=_timeout(self._limits),
                        allow_redirects=False,
                    ),
                    target,
                    netlog.KEY_DOWNLOAD,
                ) as response:
                    if response.status in _REDIRECT_STATUSES:
                        target = redirect_target(target, response.headers.get("Location"))
                        continue
                    return await self._read(
                        url, response, max_bytes=max_bytes, etag=etag, sink=sink, progress=progress
                    )
            except (_Retryable, NetworkError):
                raise
            except aiohttp.ClientConnectorCertificateError as exc:
                raise NetworkError(
                    f"{url}: TLS certificate not accepted ({exc.certificate_error}); "
                    "is the system clock right?"
                ) from None
            except aiohttp.ClientSSLError as exc:
                raise NetworkError(f"{url}: TLS failed: {server_text(exc)}") from None
            except aiohttp.InvalidURL:
                raise NetworkError(f"{url}: not a valid URL") from None
            except aiohttp.ClientPayloadError as exc:
                raise _Retryable(f"connection broke off mid-body ({type(exc).__name__})") from None
            except aiohttp.ClientResponseError as exc:
                raise NetworkError(
                    f"{url}: bad HTTP response ({exc.status} {server_text(exc.message)})"
                ) from None
            except aiohttp.ClientConnectionError as exc:
                raise _Retryable(
                    f"connection failed ({type(exc).__name__}: {server_text(exc)})"
                ) from None
            except aiohttp.ClientError as exc:  # anything else aiohttp refuses: this URL only
                raise NetworkError(f"{url}: request failed ({type(exc).__name__})") from None
            except TimeoutError:
                raise _Retryable("timed out") from None
        raise NetworkError(f"{url}: more than {self._limits.max_redirects} redirects")

    async def _read(
        self,
        url: str,
        response: aiohttp.ClientResponse,
        *,
        max_bytes: int,
        etag: str | None,
        sink: BinaryIO | None,
        progress: BytesProgress | None,
    ) -> Response:
        now = self._clock.wall()
        server_date = http_date(response.headers.get("Date"))
        skew = None if server_date is None else server_date - now
        self.last_clock_skew_seconds = skew
        status = response.status
        if status == 304 and etag:
            return Response(url, b"", 0, True, etag, server_date, skew)
        if status in _RETRY_STATUSES:
            raise _Retryable(
                f"server answered HTTP {status}",
                retry_after(response.headers.get("Retry-After"), now, self._limits.retry_after_cap),
            )
        if status in (404, 410):
            raise NotFoundError(f"{url}: not found (HTTP {status})")
        if status != 200:
            raise NetworkError(
                f"{url}: server answered HTTP {status} {server_text(response.reason or '')}"
            )
        declared = response.content_length
        if declared is not None and declared > max_bytes:
            raise NetworkError(f"{url}: {declared} bytes announced, over the cap of {max_bytes}")
        body = bytearray()
        size = 0
        started = self._clock.monotonic()
        limits = self._limits
        async for chunk in response.content.iter_chunked(_CHUNK):
            size += len(chunk)
            if size > max_bytes:
                raise NetworkError(
                    f"{url}: body exceeds the cap of {max_bytes} bytes; download aborted"
                )
            if sink is None:
                body += chunk
            else:
                sink.write(chunk)
            if progress is not None:
                progress(size)
            elapsed = self._clock.monotonic() - started
            if (
                elapsed > limits.throughput_grace_seconds
                and size / elapsed < limits.min_bytes_per_second
            ):
                raise NetworkError(
                    f"{url}: too slow ({size / elapsed:.0f} B/s after {elapsed:.0f} s); "
                    "download aborted"
                )
        etag_out = response.headers.get("ETag")
        return Response(url, bytes(body), size, False, etag_out, server_date, skew)
