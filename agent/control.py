"""The daemon's control socket: a Unix stream socket speaking one JSON line each way.

Request ``{"cmd": "status"}`` (plus arguments), answer ``{"ok": true, "result": {...}}``
or ``{"ok": false, "error": "one line"}``. The socket lives in ``$RUNTIME_DIRECTORY`` under
systemd (mode 0660, group of the service, so members of that group may use the CLI) and
in the data directory otherwise (mode 0600). Commands that change state are accepted only
from root, the daemon's own user, or members of its group (``SO_PEERCRED``).

A flood cannot take the socket from the daemon or its users: at most
:data:`MAX_CONNECTIONS` are open at once (past that the connection that has waited longest
without sending a request is closed with a ``busy`` answer, and the CLI tries again; one
younger than half a second is not closed, the newcomer is refused instead), a
connection has :data:`IDLE_TIMEOUT_SECONDS` to send its request, a request is at most
:data:`MAX_REQUEST_BYTES` long and :data:`MAX_NESTING` deep, and every input gets a
one-line answer, never a traceback. Closed and refused connections are logged at most once
a minute, as a count.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import grp
import itertools
import json
import logging
import os
import pwd
import socket
import struct
import termios
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.errors import AgentError
from agent.jsonout import dumps
from agent.paths import SYSTEM_DATA_DIR

RELEASE_COMMAND = "release_keys"
"""Control-socket command: end the key on air, rotate, persist; answers when done.

A daemon without it answers "unknown command"; then only the keys that already ended
are published (the original, pre-v1.5 behaviour) and today's key is left out."""

_LOGGER = logging.getLogger(__name__)

SOCKET_NAME = "control.sock"
SYSTEM_RUNTIME_DIR = Path("/run/contact-agent")
MAX_REQUEST_BYTES = 64 * 1024
REQUEST_TIMEOUT_SECONDS = 5.0
"""How long the CLI waits for an answer (retrying while the daemon says it is busy)."""
IDLE_TIMEOUT_SECONDS = 5.0
"""How long a connection may take to send its request line."""
MAX_CONNECTIONS = 32
"""Connections open at once; idle ones beyond this are closed, oldest first."""
BACKLOG = 32
"""Connections the kernel queues for accept; asyncio accepts up to this many at once,
so at most about cap + 2 x backlog sockets are open during a flood."""
EVICT_AFTER_SECONDS = 0.5
"""An idle connection is closed for a newer one only after this long."""
CLOSE_WAIT_SECONDS = 1.0
"""How long a connection's task waits for its closed connection to be gone (an answer
of a few hundred bytes leaves at once unless the client stopped reading)."""
MAX_NESTING = 16
"""Deepest nesting of JSON arrays and objects in a request."""
LOG_INTERVAL_SECONDS = 60.0
"""At most one log line per this long about closed or refused connections."""
MAX_SUN_PATH = 107
BUSY = "the daemon is busy (too many control connections); try again"


class DaemonNotRunningError(AgentError):
    """No daemon answers on the control socket."""


class ControlError(AgentError):
    """The daemon answered with an error, or the socket could not be set up."""


@dataclass(frozen=True, slots=True)
class Peer:
    """Credentials of the process on the other end (``SO_PEERCRED``)."""

    pid: int
    uid: int
    gid: int


Handler = Callable[[Mapping[str, Any], Peer], Awaitable[Mapping[str, Any]]]


def daemon_socket_path(data_dir: Path, environ: Mapping[str, str] | None = None) -> Path:
    """Where the daemon listens: ``$RUNTIME_DIRECTORY`` (systemd) or the data dir."""
    env = os.environ if environ is None else environ
    runtime = env.get("RUNTIME_DIRECTORY", "").split(":")[0]
    return Path(runtime) / SOCKET_NAME if runtime else data_dir / SOCKET_NAME


def client_socket_paths(
    data_dir: Path, environ: Mapping[str, str] | None = None, *, prefer_system: bool = False
) -> list[Path]:
    """Where a CLI looks for the daemon, most specific first.

    With ``prefer_system`` (no data directory was given), the system daemon's socket
    comes before the per-user paths for whoever may use it: root and members of the
    service's group (the socket is 0660).
    """
    env = os.environ if environ is None else environ
    paths = []
    if env.get("CONTACT_AGENT_SOCKET"):
        paths.append(Path(env["CONTACT_AGENT_SOCKET"]))
    system = SYSTEM_RUNTIME_DIR / SOCKET_NAME
    if prefer_system and os.access(system, os.R_OK | os.W_OK):
        paths.append(system)
    paths.append(daemon_socket_path(data_dir, env))
    paths.append(data_dir / SOCKET_NAME)
    if data_dir.resolve() == SYSTEM_DATA_DIR:
        paths.append(SYSTEM_RUNTIME_DIR / SOCKET_NAME)
    unique: list[Path] = []
    for path in paths:
        if path not in unique:
            unique.append(path)
    return unique


def in_group(peer: Peer, gid: int) -> bool:
    """The peer's primary group is ``gid``, or its user is listed in that group.

    SO_PEERCRED carries only the primary group, and the sandbox hides other users'
    /proc entries, so supplementary membership is looked up in the group database.
    """
    if peer.gid == gid:
        return True
    try:
        user = pwd.getpwuid(peer.uid).pw_name
        return user in grp.getgrgid(gid).gr_mem
    except KeyError:
        return False


def _peer(writer: asyncio.StreamWriter) -> Peer:
    sock = writer.get_extra_info("socket")
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except (OSError, AttributeError):
        return Peer(-1, -1, -1)
    pid, uid, gid = struct.unpack("3i", raw)
    return Peer(pid, uid, gid)


class _ConnectionLog:
    """Counts closed and refused connections; logs a summary at most once a minute."""

    def __init__(self, interval: float = LOG_INTERVAL_SECONDS) -> None:
        self._interval = interval
        self._counts: dict[str, int] = {}
        self._last = -interval

    def count(self, reason: str) -> None:
        self._counts[reason] = self._counts.get(reason, 0) + 1
        now = time.monotonic()
        if now - self._last >= self._interval:
            self._last = now
            summary = ", ".join(f"{n} {why}" for why, n in sorted(self._counts.items()))
            self._counts.clear()
            _LOGGER.warning(
                "control socket: %s (at most %d connections, %.0f s each to send a request)",
                summary,
                MAX_CONNECTIONS,
                IDLE_TIMEOUT_SECONDS,
            )


class _Connection:
    __slots__ = ("evicted", "since", "writer")

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.evicted = False
        self.since = time.monotonic()


def nesting_too_deep(line: bytes, limit: int = MAX_NESTING) -> bool:
    """True when JSON arrays/objects in ``line`` nest deeper than ``limit``.

    Checked before parsing: the parser recurses once per level and a deep enough request
    raised RecursionError (a traceback and no answer).
    """
    if line.count(b"[") + line.count(b"{") <= limit:
        return False
    depth = 0
    in_string = escaped = False
    for byte in line:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > limit:
                return True
        elif byte in (0x5D, 0x7D):  # ] }
            depth -= 1
    return False


class ControlServer:
    """Serves the handlers on a Unix socket until :meth:`close`."""

    def __init__(
        self,
        path: Path,
        handlers: Mapping[str, Handler],
        *,
        privileged: Iterable[str] = (),
        group_access: bool = False,
        max_connections: int = MAX_CONNECTIONS,
        idle_timeout: float = IDLE_TIMEOUT_SECONDS,
    ) -> None:
        self.path = path
        self._handlers = dict(handlers)
        self._privileged = frozenset(privileged)
        self._group_access = group_access
        self._max_connections = max_connections
        self._idle_timeout = idle_timeout
        self._server: asyncio.AbstractServer | None = None
        self._open = 0
        self._idle: OrderedDict[int, _Connection] = OrderedDict()
        self._ids = itertools.count()
        self.log = _ConnectionLog()

    @property
    def open_connections(self) -> int:
        return self._open

    async def start(self) -> None:
        if len(os.fsencode(self.path)) > MAX_SUN_PATH:
            raise ControlError(
                f"control socket path is too long for a Unix socket: {self.path} "
                "(use a shorter --data-dir)"
            )
        if self.path.exists() or self.path.is_symlink():
            if await _answers(self.path):
                raise ControlError(
                    f"another contact-agent is already running (control socket {self.path})"
                )
            self.path.unlink()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        old_umask = os.umask(0o117 if self._group_access else 0o177)
        try:
            self._server = await asyncio.start_unix_server(
                self._serve, path=str(self.path), limit=MAX_REQUEST_BYTES, backlog=BACKLOG
            )
        finally:
            os.umask(old_umask)
        os.chmod(self.path, 0o660 if self._group_access else 0o600)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def _allowed(self, cmd: str, peer: Peer) -> bool:
        if cmd not in self._privileged:
            return True
        if peer.uid in (0, os.getuid()):
            return True
        return self._group_access and in_group(peer, os.getgid())

    def _admit(self, writer: asyncio.StreamWriter) -> tuple[int, _Connection] | None:
        """Register a new connection; at the cap, close the longest idle one first.

        A newcomer that has already sent bytes (a CLI sends its request right after
        connecting) always gets a slot if any connection is idle. A silent one takes the
        slot of an idle connection only when that one has waited
        :data:`EVICT_AFTER_SECONDS`; else the newcomer is refused.
        """
        if self._open >= self._max_connections:
            oldest_key = next(iter(self._idle), None)
            if oldest_key is None:
                return None  # every slot is answering a request
            young = time.monotonic() - self._idle[oldest_key].since < EVICT_AFTER_SECONDS
            if young and not _has_input(writer):
                return None
            oldest = self._idle.pop(oldest_key)
            oldest.evicted = True
            self._open -= 1  # its socket closes now; its task ends on its own
            _send_and_close(oldest.writer, {"ok": False, "error": BUSY, "busy": True})
            self.log.count("idle connections closed for newer ones")
        key = next(self._ids)
        connection = _Connection(writer)
        self._idle[key] = connection
        self._open += 1
        return key, connection

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        admitted = self._admit(writer)
        if admitted is None:
            _send_and_close(writer, {"ok": False, "error": BUSY, "busy": True})
            self.log.count("connections refused while busy")
            await _gone(writer)
            return
        key, connection = admitted
        try:
            await self._converse(reader, writer, key, connection)
        except (ConnectionError, OSError):
            pass  # the client went away
        except Exception as exc:  # noqa: BLE001 -- a bug must not end in a traceback
            self.log.count(f"requests failed with an internal error ({type(exc).__name__})")
            _send_and_close(writer, {"ok": False, "error": "internal error in the daemon"})
        finally:
            self._idle.pop(key, None)
            if not connection.evicted:
                self._open -= 1
            writer.close()
            await _gone(writer)

    async def _converse(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        key: int,
        connection: _Connection,
    ) -> None:
        answer: dict[str, Any] | None
        try:
            line = await asyncio.wait_for(reader.readline(), self._idle_timeout)
        except TimeoutError:
            line, answer = b"", {"ok": False, "error": "no request within the time limit"}
            self.log.count("idle connections timed out")
        except (ValueError, asyncio.LimitOverrunError):
            line = b""
            answer = {
                "ok": False,
                "error": f"request too large (at most {MAX_REQUEST_BYTES} bytes)",
            }
            self.log.count("oversized requests")
        else:
            answer = None
        self._idle.pop(key, None)
        if connection.evicted or (answer is None and not line):
            return  # closed for a newer connection, or the client hung up
        if answer is None:
            answer = await self._answer(line, _peer(writer))
        writer.write(_encode(answer))
        await asyncio.wait_for(writer.drain(), self._idle_timeout)

    async def _answer(self, line: bytes, peer: Peer) -> dict[str, Any]:
        if nesting_too_deep(line):
            return {"ok": False, "error": f"request nested too deeply (at most {MAX_NESTING})"}
        try:
            request = json.loads(line)
        except (ValueError, UnicodeDecodeError, RecursionError):
            return {"ok": False, "error": "request is not JSON"}
        if not isinstance(request, dict) or not isinstance(request.get("cmd"), str):
            return {"ok": False, "error": "request needs a 'cmd' string"}
        cmd = request["cmd"]
        handler = self._handlers.get(cmd)
        if handler is None:
            return {"ok": False, "error": f"unknown command {cmd[:40]!r}"}
        if not self._allowed(cmd, peer):
            self.log.count(f"privileged commands refused (last: {cmd!r} from uid {peer.uid})")
            return {"ok": False, "error": f"permission denied for {cmd!r}"}
        try:
            result = await handler(request, peer)
        except AgentError as exc:
            return {"ok": False, "error": str(exc)}
        return {"ok": True, "result": dict(result)}


def _has_input(writer: asyncio.StreamWriter) -> bool:
    """Bytes wait to be read on the connection (``FIONREAD``; no descriptor needed)."""
    sock = writer.get_extra_info("socket")
    try:
        raw = fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0" * 4)
    except (OSError, AttributeError, ValueError):
        return False
    return bool(struct.unpack("i", raw)[0])


def _send_and_close(writer: asyncio.StreamWriter, answer: Mapping[str, Any]) -> None:
    """A last answer without waiting for the client to read it (never blocks)."""
    with contextlib.suppress(ConnectionError, OSError, RuntimeError):
        if not writer.is_closing():
            writer.write(_encode(answer))
    writer.close()


async def _gone(writer: asyncio.StreamWriter) -> None:
    """Wait until a closed connection is gone (at most :data:`CLOSE_WAIT_SECONDS`) and
    take its outcome. A client that left before its answer was written leaves a
    BrokenPipeError there; left untaken, asyncio may report it as a "Future exception was
    never retrieved" traceback in the journal when the connection is collected (it did
    once in a flood of 3,000 connections)."""
    with contextlib.suppress(ConnectionError, OSError, TimeoutError):
        await asyncio.wait_for(writer.wait_closed(), CLOSE_WAIT_SECONDS)


def _encode(answer: Mapping[str, Any]) -> bytes:
    """One answer line; a NaN or infinity that slipped in is never sent as non-JSON."""
    try:
        text = dumps(answer)
    except ValueError:
        _LOGGER.error("control: the answer held a non-finite number; not sent")
        text = dumps({"ok": False, "error": "internal: non-finite number in the answer"})
    return text.encode("utf-8") + b"\n"


async def _answers(path: Path) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(path)), 1.0)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


class _Busy(Exception):
    """Internal: the daemon asked us to try again (a flood holds its connections)."""


def request(
    paths: Iterable[Path],
    cmd: str,
    *,
    timeout: float = REQUEST_TIMEOUT_SECONDS,
    **args: Any,
) -> dict[str, Any]:
    """Send one command to the first daemon that answers (blocking; for the CLI).

    A daemon whose listen queue is full (EAGAIN) or that answers ``busy`` is asked again,
    with short pauses, until ``timeout`` runs out. Raises DaemonNotRunningError when no
    socket answers and ControlError when the daemon refuses the command.
    """
    return request_at(paths, cmd, timeout=timeout, **args)[1]


def request_at(
    paths: Iterable[Path],
    cmd: str,
    *,
    timeout: float = REQUEST_TIMEOUT_SECONDS,
    **args: Any,
) -> tuple[Path, dict[str, Any]]:
    """:func:`request`, also saying which socket answered."""
    message = dumps({"cmd": cmd, **args}).encode("utf-8") + b"\n"
    refused: OSError | None = None
    for path in paths:
        if len(os.fsencode(path)) > MAX_SUN_PATH:
            continue
        deadline = time.monotonic() + timeout
        pause = 0.02
        while True:
            try:
                return path, _decode(_exchange(path, message, deadline), path)
            except _Busy:
                if time.monotonic() + pause >= deadline:
                    raise ControlError(
                        f"the daemon at {path} stayed busy for {timeout:.0f} s "
                        "(too many connections to its control socket)"
                    ) from None
                time.sleep(pause)
                pause = min(0.5, pause * 2)
            except FileNotFoundError:
                break
            except TimeoutError:
                raise ControlError(
                    f"the daemon at {path} did not answer within {timeout:.0f} s"
                ) from None
            except OSError as exc:
                if exc.errno not in (errno.ECONNREFUSED, errno.ENOTSOCK):
                    refused = exc
                break
    if refused is not None and refused.errno in (errno.EACCES, errno.EPERM):
        raise ControlError(
            "permission denied on the daemon's control socket "
            "(run as root or as a member of the contact-agent group)"
        )
    raise DaemonNotRunningError("no contact-agent daemon is running")


def _exchange(path: Path, message: bytes, deadline: float) -> bytes:
    """One connection: send ``message``, read the answer line (``_Busy``: try again)."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(remaining)
        try:
            sock.connect(str(path))
        except BlockingIOError:  # EAGAIN: the listen queue is full
            raise _Busy from None
        try:
            sock.sendall(message)
            data = _read_line(sock)
        except (BrokenPipeError, ConnectionResetError):
            raise _Busy from None  # closed for a newer connection before we were read
    if not data:
        raise _Busy  # closed without an answer: evicted, or the daemon is stopping
    with contextlib.suppress(ValueError, UnicodeDecodeError):
        answer = json.loads(data)
        if isinstance(answer, dict) and answer.get("busy"):
            raise _Busy
    return data


def _read_line(sock: socket.socket) -> bytes:
    chunks: list[bytes] = []
    total = 0
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
        if chunk.endswith(b"\n") or total > 16 * MAX_REQUEST_BYTES:
            break
    return b"".join(chunks)


def _decode(data: bytes, path: Path) -> dict[str, Any]:
    try:
        answer = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise ControlError(f"the daemon at {path} sent a malformed answer") from None
    if not isinstance(answer, dict):
        raise ControlError(f"the daemon at {path} sent a malformed answer")
    if not answer.get("ok"):
        raise ControlError(str(answer.get("error", "the daemon refused the command")))
    result = answer.get("result", {})
    return result if isinstance(result, dict) else {}
