"""Clock offset between two field-test devices: a tiny NTP-style UDP exchange.

One device runs ``contact-agent field time-server``; the other asks it a few times
(``field preflight --peer HOST``). Each exchange has the four NTP timestamps

    t1 client sends, t2 server receives, t3 server replies, t4 client receives

and gives ``offset = ((t2 - t1) + (t3 - t4)) / 2`` (peer clock minus local clock) and
``delay = (t4 - t1) - (t3 - t2)``. The sample with the smallest delay wins, as in NTP's
clock filter; its offset is off by at most ``delay / 2``.

The request is as long as the reply, so the responder cannot amplify traffic; it only
answers well-formed requests and never keeps state.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import struct
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from agent.errors import MalformedInputError, NetworkError

_LOGGER = logging.getLogger(__name__)

DEFAULT_PORT = 47_610
_MAGIC = b"CATX"
_REQUEST = 1
_REPLY = 2
_PACKET = struct.Struct("!4sB8sddd")
"""magic, kind, nonce, t1, t2, t3 (zero in a request)."""

Now = Callable[[], float]


@dataclass(frozen=True, slots=True)
class OffsetSample:
    offset: float
    delay: float


@dataclass(frozen=True, slots=True)
class OffsetEstimate:
    """The best of several exchanges with one peer."""

    offset_seconds: float
    """Peer clock minus local clock: positive when the peer is ahead."""
    delay_seconds: float
    """Round-trip time of the chosen sample; the offset is good to +-delay/2."""
    samples: int
    """Replies received."""
    peer: str

    @property
    def error_bound_seconds(self) -> float:
        return self.delay_seconds / 2


def offset_and_delay(t1: float, t2: float, t3: float, t4: float) -> OffsetSample:
    """The NTP offset and round-trip delay of one exchange (RFC 5905 §8)."""
    return OffsetSample(offset=((t2 - t1) + (t3 - t4)) / 2, delay=(t4 - t1) - (t3 - t2))


def best_sample(samples: Sequence[OffsetSample]) -> OffsetSample:
    """The sample with the smallest (non-negative) delay."""
    usable = [s for s in samples if s.delay >= 0 and math.isfinite(s.offset)]
    if not usable:
        raise NetworkError("no usable time sample (every round trip had a negative delay)")
    return min(usable, key=lambda s: s.delay)


def parse_peer(text: str, default_port: int = DEFAULT_PORT) -> tuple[str, int]:
    """``HOST``, ``HOST:PORT`` or ``[V6]:PORT`` as (host, port)."""
    cleaned = text.strip()
    host, port_text = cleaned, ""
    if cleaned.startswith("["):
        end = cleaned.find("]")
        if end < 0:
            raise MalformedInputError(f"peer {text!r}: missing ']' after the IPv6 address")
        host, rest = cleaned[1:end], cleaned[end + 1 :]
        if rest and not rest.startswith(":"):
            raise MalformedInputError(f"peer {text!r}: expected [ADDRESS]:PORT")
        port_text = rest[1:]
    elif cleaned.count(":") == 1:
        host, port_text = cleaned.split(":")
    if not host:
        raise MalformedInputError("peer: the host is missing")
    if not port_text:
        return host, default_port
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65_535:
        raise MalformedInputError(f"peer {text!r}: the port must be 1..65535")
    return host, int(port_text)


class TimeServer:
    """Answers time requests on a UDP socket, with an injectable clock (tests).

    ``now`` is this device's wall clock; a test passes ``lambda: time.time() + 3.0`` to
    simulate a peer three seconds ahead.
    """

    def __init__(self, host: str = "0.0.0.0", port: int = DEFAULT_PORT, now: Now = time.time):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            self._sock.bind((host, port))
        except OSError as exc:
            self._sock.close()
            raise NetworkError(f"cannot listen on {host} port {port}: {exc.strerror}") from exc
        self._now = now
        self._stop = threading.Event()
        self.answered = 0

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._sock.getsockname()[:2]
        return str(host), int(port)

    def handle(self, data: bytes) -> bytes | None:
        """The reply to one datagram, or None when it is not a valid request."""
        received = self._now()
        if len(data) != _PACKET.size:
            return None
        magic, kind, nonce, t1, _t2, _t3 = _PACKET.unpack(data)
        if magic != _MAGIC or kind != _REQUEST:
            return None
        return _PACKET.pack(_MAGIC, _REPLY, nonce, t1, received, self._now())

    def serve(self, duration: float | None = None) -> None:
        """Answer requests until :meth:`stop` or until ``duration`` seconds passed."""
        deadline = None if duration is None else time.monotonic() + duration
        self._sock.settimeout(0.2)
        while not self._stop.is_set():
            if deadline is not None and time.monotonic() >= deadline:
                break
            try:
                data, sender = self._sock.recvfrom(256)
            except TimeoutError:
                continue
            except OSError:
                if self._stop.is_set():
                    break
                raise
            reply = self.handle(data)
            if reply is not None:
                self._sock.sendto(reply, sender)
                self.answered += 1
                _LOGGER.debug("answered a time request from %s", sender[0])

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        self.stop()
        self._sock.close()

    def __enter__(self) -> TimeServer:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def measure_offset(
    host: str,
    port: int = DEFAULT_PORT,
    *,
    samples: int = 8,
    timeout: float = 1.0,
    now: Now = time.time,
) -> OffsetEstimate:
    """Ask the peer's :class:`TimeServer` ``samples`` times and keep the best exchange.

    Raises :class:`NetworkError` when the peer cannot be resolved or never answers.
    """
    if samples < 1:
        raise MalformedInputError("samples must be at least 1")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except socket.gaierror as exc:
        raise NetworkError(f"cannot resolve peer {host!r}: {exc.strerror}") from exc
    family, _, _, _, address = infos[0]
    results: list[OffsetSample] = []
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        for _ in range(samples):
            nonce = os.urandom(8)
            t1 = now()
            try:
                sock.sendto(_PACKET.pack(_MAGIC, _REQUEST, nonce, t1, 0.0, 0.0), address)
                sample = _await_reply(sock, nonce, t1, now)
            except OSError as exc:
                raise NetworkError(f"time exchange with {host} failed: {exc.strerror}") from exc
            if sample is not None:
                results.append(sample)
    if not results:
        raise NetworkError(
            f"no answer from {host} port {port}: is `contact-agent field time-server` "
            "running there, and is UDP allowed through its firewall?"
        )
    best = best_sample(results)
    return OffsetEstimate(best.offset, best.delay, len(results), f"{host}:{port}")


def _await_reply(sock: socket.socket, nonce: bytes, t1: float, now: Now) -> OffsetSample | None:
    while True:
        try:
            data = sock.recv(256)
        except TimeoutError:
            return None
        t4 = now()
        if len(data) != _PACKET.size:
            continue
        magic, kind, got_nonce, echoed, t2, t3 = _PACKET.unpack(data)
        if magic == _MAGIC and kind == _REPLY and got_nonce == nonce and echoed == t1:
            return offset_and_delay(t1, t2, t3, t4)
