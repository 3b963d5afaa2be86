"""systemd's notify protocol (sd_notify(3)) and a watchdog fed by real liveness.

The daemon tells systemd ``READY=1`` once the store is open and BlueZ was reached,
``STATUS=...`` lines a person can read in ``systemctl status``, ``WATCHDOG=1`` at half of
``WATCHDOG_USEC`` but only while every registered loop has reported a heartbeat recently
(a hung event loop stops the pings and systemd restarts it), and ``STOPPING=1`` on shutdown.
Outside systemd (no ``NOTIFY_SOCKET``) every call is a no-op, so the same code runs under tests
and by hand.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Mapping

_LOGGER = logging.getLogger(__name__)


def _socket_address(raw: str) -> str | None:
    if raw.startswith("@"):
        return "\0" + raw[1:]  # abstract namespace
    if raw.startswith("/"):
        return raw
    return None  # vsock and other transports are not used on a Pi


class SdNotifier:
    """Sends datagrams to ``$NOTIFY_SOCKET``; silent when it is not set."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self._address = _socket_address(env.get("NOTIFY_SOCKET", ""))
        self._watchdog_usec = _watchdog_usec(env)
        self._last_status = ""
        self._socket: socket.socket | None = None
        if self._address is not None:
            self._open()

    def _open(self) -> socket.socket | None:
        """The one datagram socket every message goes through (opened once, at start).

        Opening a socket per message failed with EMFILE exactly when a flood of
        connections had used up the descriptors, and a watchdog ping was lost.
        """
        if self._socket is None:
            try:
                sock = socket.socket(
                    socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK
                )
            except OSError as exc:
                _LOGGER.debug("sd_notify socket: %s", exc)
                return None
            self._socket = sock
        return self._socket

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    @property
    def enabled(self) -> bool:
        return self._address is not None

    @property
    def last_status(self) -> str:
        return self._last_status

    @property
    def watchdog_seconds(self) -> float | None:
        """The watchdog period systemd expects (``WatchdogSec``), or None when off."""
        return None if self._watchdog_usec is None else self._watchdog_usec / 1e6

    def send(self, *fields: str) -> bool:
        """Send ``KEY=value`` lines in one datagram; False when not under systemd.

        Never blocks: a receiver whose queue is full (a stalled manager) loses this
        message instead of freezing the event loop. The socket is not connected, so a
        manager that re-created its socket (``daemon-reexec``) still gets the next one.
        """
        if self._address is None:
            return False
        sock = self._open()
        if sock is None:
            return False
        message = "\n".join(fields).encode("utf-8")
        try:
            sock.sendto(message, self._address)
        except OSError as exc:
            _LOGGER.debug("sd_notify failed: %s", exc)
            return False
        return True

    def ready(self, status: str) -> None:
        self._last_status = status
        self.send("READY=1", f"STATUS={status}", f"MAINPID={os.getpid()}")

    def status(self, text: str) -> None:
        """Update the status line; repeated identical lines are not resent."""
        if text != self._last_status:
            self._last_status = text
            self.send(f"STATUS={text}")

    def reloading(self) -> None:
        self.send("RELOADING=1")

    def reloaded(self) -> None:
        self.send("READY=1")

    def stopping(self, status: str = "stopping") -> None:
        self.send("STOPPING=1", f"STATUS={status}")

    def watchdog(self) -> None:
        self.send("WATCHDOG=1")

    def extend_timeout(self, seconds: float) -> None:
        self.send(f"EXTEND_TIMEOUT_USEC={int(seconds * 1e6)}")


def _watchdog_usec(env: Mapping[str, str]) -> int | None:
    try:
        usec = int(env.get("WATCHDOG_USEC", "0"))
    except ValueError:
        return None
    pid = env.get("WATCHDOG_PID")
    if usec <= 0 or (pid is not None and pid != str(os.getpid())):
        return None
    return usec


class Heartbeats:
    """Liveness of the daemon's loops: each loop beats; the watchdog checks them all.

    Times come from an injected monotonic function, so an accelerated clock works too.
    """

    def __init__(self, monotonic: Callable[[], float]) -> None:
        self._monotonic = monotonic
        self._last: dict[str, float] = {}
        self._max_age: dict[str, float] = {}

    def register(self, name: str, max_age: float) -> None:
        """Expect a beat from ``name`` at least every ``max_age`` seconds from now."""
        self._max_age[name] = max_age
        self._last[name] = self._monotonic()

    def unregister(self, name: str) -> None:
        self._max_age.pop(name, None)
        self._last.pop(name, None)

    def beat(self, name: str) -> None:
        if name in self._max_age:
            self._last[name] = self._monotonic()

    def stale(self) -> list[str]:
        """Names of loops that missed their deadline (empty: all alive)."""
        now = self._monotonic()
        return sorted(n for n, age in self._max_age.items() if now - self._last[n] > age)

    def ages(self) -> dict[str, float]:
        now = self._monotonic()
        return {n: round(now - t, 3) for n, t in sorted(self._last.items())}
