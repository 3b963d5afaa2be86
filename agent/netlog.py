"""The transparency log: every network contact the agent makes, for the device's owner.

Each HTTP request to a key, verification or key-publishing server -- downloads, the two
verification steps, the upload, and decoy (chaff) uploads -- becomes one
:class:`NetworkContact`: when, which host, why, how many body bytes went each way and
how it ended. Never an identifier, key, token, code or path: the host is the URL's host
and port only (passed through :func:`~agent.servertext.server_text`), the result is made
of our own words and the HTTP status.

The HTTP clients wrap each request in :func:`logged`; whoever owns the store installs a
:class:`Recorder` for the current task and the tasks it starts (:func:`install`), which
writes the contacts to the store's ``network_log`` table (kept 14 days, emptied by
``forget``). Without a recorder (a lab tool, a test) contacts are not kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

from agent.clock import Clock, SystemClock
from agent.servertext import server_text

if TYPE_CHECKING:
    import aiohttp

_LOGGER = logging.getLogger(__name__)

KEY_DOWNLOAD: Final = "key download"
VERIFICATION: Final = "verification"
CERTIFICATE: Final = "certificate"
PUBLISH: Final = "publish"
DECOY: Final = "decoy"
PURPOSES: Final = (KEY_DOWNLOAD, VERIFICATION, CERTIFICATE, PUBLISH, DECOY)
MAX_PENDING: Final = 1000
"""Contacts held for the store at most (a store that cannot be written loses the rest)."""


@dataclass(frozen=True, slots=True)
class NetworkContact:
    """One HTTP request the agent made (no identifier in any field)."""

    time: float
    """Unix seconds when the request started."""
    host: str
    """``host`` or ``host:port`` (and ``-> other`` after a redirect to another host)."""
    purpose: str
    """One of :data:`PURPOSES`."""
    bytes_sent: int
    """Request body bytes (headers, a few hundred bytes, are not counted)."""
    bytes_received: int
    """Response body bytes read."""
    result: str
    """``HTTP 200``, ``HTTP 404``, ``HTTP 200, aborted``, ``timed out``, ``no connection``..."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


Sink = Callable[[Sequence[NetworkContact]], Awaitable[None]]


class Recorder:
    """Collects contacts and hands them to ``sink`` (the store)."""

    def __init__(self, sink: Sink, clock: Clock) -> None:
        self.clock = clock
        self._sink = sink
        self._pending: list[NetworkContact] = []

    def add(self, contact: NetworkContact) -> None:
        if len(self._pending) < MAX_PENDING:
            self._pending.append(contact)

    async def flush(self) -> None:
        """Write what is pending; a failing store is logged, never raised."""
        pending, self._pending = self._pending, []
        if not pending:
            return
        try:
            await self._sink(pending)
        except Exception as exc:  # noqa: BLE001 -- the log must never break a download
            _LOGGER.warning("network log: %d contacts not saved (%s)", len(pending), exc)


_CURRENT: contextvars.ContextVar[Recorder | None] = contextvars.ContextVar(
    "contact_agent_netlog", default=None
)


class Installed:
    """A recorder installed by :func:`install`; :meth:`close` flushes and removes it."""

    def __init__(self, recorder: Recorder, token: contextvars.Token[Recorder | None]) -> None:
        self.recorder = recorder
        self._token = token

    async def close(self) -> None:
        with contextlib.suppress(ValueError, RuntimeError):  # another context: just flush
            _CURRENT.reset(self._token)
        await self.recorder.flush()


def install(sink: Sink, clock: Clock | None = None) -> Installed:
    """Record the contacts of this task and of every task it starts from now on."""
    recorder = Recorder(sink, clock or SystemClock())
    return Installed(recorder, _CURRENT.set(recorder))


def host_of(url: str) -> str:
    """``host`` or ``host:port`` of ``url``: never a path, query or user name."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname or "", parts.port
    except ValueError:
        return "?"
    if ":" in host:
        host = f"[{host}]"
    return server_text(f"{host}:{port}" if port else host or "?", 80)


def _failure(exc: BaseException) -> str:
    name = type(exc).__name__
    if isinstance(exc, TimeoutError) or "Timeout" in name:
        return "timed out"
    if "SSL" in name or "Certificate" in name:
        return "TLS failed"
    if "Connector" in name or isinstance(exc, ConnectionError):
        return "no connection"
    if "Redirect" in name:
        return "too many redirects"
    return "failed"


def _result(status: int | None, exc: BaseException | None) -> str:
    if status is None:
        return "failed" if exc is None else _failure(exc)
    if exc is None or not 200 <= status < 300:
        return f"HTTP {status}"
    if isinstance(exc, asyncio.CancelledError):
        return f"HTTP {status}, cancelled"
    return f"HTTP {status}, aborted"  # e.g. over the size cap, too slow, not a ZIP


@contextlib.asynccontextmanager
async def logged(
    request: AbstractAsyncContextManager[aiohttp.ClientResponse],
    url: str,
    purpose: str,
    *,
    sent: int = 0,
) -> AsyncIterator[aiohttp.ClientResponse]:
    """``async with logged(session.get(url), url, KEY_DOWNLOAD) as response:`` -- the
    request as usual, recorded in the transparency log when the block ends."""
    recorder = _CURRENT.get()
    if recorder is None:
        async with request as unlogged:
            yield unlogged
        return
    started = recorder.clock.wall()
    response: aiohttp.ClientResponse | None = None
    error: BaseException | None = None
    try:
        async with request as answer:
            response = answer
            yield answer
    except BaseException as exc:
        error = exc
        raise
    finally:
        hosts = [host_of(url)]
        if response is not None:
            for hop in (*response.history, response):
                hop_host = host_of(str(hop.url))
                if hop_host != hosts[-1]:
                    hosts.append(hop_host)
        received = 0
        if response is not None:
            with contextlib.suppress(AttributeError):
                received = int(response.content.total_bytes)
        recorder.add(
            NetworkContact(
                time=started,
                host=" -> ".join(hosts),
                purpose=purpose,
                bytes_sent=sent,
                bytes_received=received,
                result=_result(None if response is None else response.status, error),
            )
        )
        if not isinstance(error, asyncio.CancelledError):
            await recorder.flush()
