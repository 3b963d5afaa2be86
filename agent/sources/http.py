"""HTTP GET with the protections every key-server download needs (threats doc 12-19, F11).

TLS verification is always on (the session is made here with a default SSL context and
nothing turns it off). Each request has connect, per-read and total timeouts plus a
minimum throughput; bodies are streamed and abandoned at the size cap whatever
Content-Length says. 5xx, 408, 429, resets and connect failures are retried with
exponential backoff and jitter, honouring Retry-After. Every response's ``Date`` is
compared with the local clock and the skew is reported.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp

from agent import __version__, netlog
from agent.clock import Clock
from agent.errors import NetworkError
from agent.servertext import server_text
from agent.sources.base import FetchLimits

_LOGGER = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]

_RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


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


@dataclass(frozen=True, slots=True)
class Response:
    """A complete 200 body, or a 304 (``not_modified``) with an empty body."""

    url: str
    body: bytes
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


def _parse_http_date(value: str | None) -> float | None:
    if not value:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed.tzinfo is None:
        return None
    return parsed.timestamp()


def _retry_after(value: str | None, now: float) -> float | None:
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    when = _parse_http_date(text)
    return None if when is None else max(0.0, when - now)


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
        self.last_clock_skew_seconds: float | None = None

    def _delay(self, attempt: int) -> float:
        limits = self._limits
        base = min(limits.backoff_max, limits.backoff_initial * 2.0**attempt)
        return base * random.uniform(1 - limits.backoff_jitter, 1 + limits.backoff_jitter)

    async def get(self, url: str, *, max_bytes: int, etag: str | None = None) -> Response:
        """Fetch ``url`` completely (or learn it is unchanged, when ``etag`` is given).

        Raises:
            NetworkError: refused, unreachable, too slow, too big or retries exhausted.
            ServerBusyError: Retry-After longer than :attr:`FetchLimits.max_retry_after`.
        """
        limits = self._limits
        for attempt in range(limits.retries + 1):
            try:
                return await self._get_once(url, max_bytes=max_bytes, etag=etag)
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
                delay = exc.retry_after if exc.retry_after is not None else self._delay(attempt)
                _LOGGER.debug("GET %s failed (%s); retry in %.1f s", url, exc.message, delay)
                await self._sleep(delay)
        raise NetworkError(
            f"{url}: {last.message} (gave up after {limits.retries + 1} attempts)"
        ) from None

    async def _get_once(self, url: str, *, max_bytes: int, etag: str | None) -> Response:
        headers = {"If-None-Match": etag} if etag else {}
        try:
            async with netlog.logged(
                self._session.get(
                    url,
                    headers=headers,
                    timeout=_timeout(self._limits),
                    max_redirects=self._limits.max_redirects,
                ),
                url,
                netlog.KEY_DOWNLOAD,
            ) as response:
                return await self._read(url, response, max_bytes=max_bytes, etag=etag)
        except (_Retryable, NetworkError):
            raise
        except aiohttp.ClientConnectorCertificateError as exc:
            raise NetworkError(
                f"{url}: TLS certificate not accepted ({exc.certificate_error}); "
                "is the system clock right?"
            ) from None
        except aiohttp.ClientSSLError as exc:
            raise NetworkError(f"{url}: TLS failed: {server_text(exc)}") from None
        except aiohttp.TooManyRedirects:
            raise NetworkError(f"{url}: too many redirects") from None
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
        except TimeoutError:
            raise _Retryable("timed out") from None

    async def _read(
        self,
        url: str,
        response: aiohttp.ClientResponse,
        *,
        max_bytes: int,
        etag: str | None,
    ) -> Response:
        now = self._clock.wall()
        server_date = _parse_http_date(response.headers.get("Date"))
        skew = None if server_date is None else server_date - now
        self.last_clock_skew_seconds = skew
        status = response.status
        if status == 304 and etag:
            return Response(url, b"", True, etag, server_date, skew)
        if status in _RETRY_STATUSES:
            raise _Retryable(
                f"server answered HTTP {status}",
                _retry_after(response.headers.get("Retry-After"), now),
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
        started = self._clock.monotonic()
        limits = self._limits
        async for chunk in response.content.iter_chunked(64 * 1024):
            body += chunk
            if len(body) > max_bytes:
                raise NetworkError(
                    f"{url}: body exceeds the cap of {max_bytes} bytes; download aborted"
                )
            elapsed = self._clock.monotonic() - started
            if (
                elapsed > limits.throughput_grace_seconds
                and len(body) / elapsed < limits.min_bytes_per_second
            ):
                raise NetworkError(
                    f"{url}: too slow ({len(body) / elapsed:.0f} B/s after {elapsed:.0f} s); "
                    "download aborted"
                )
        return Response(url, bytes(body), False, response.headers.get("ETag"), server_date, skew)
