"""The daemon's control socket: a Unix stream socket speaking one JSON line each way.

Request ``{"cmd": "status"}`` (plus arguments), answer ``{"ok": true, "result": {...}}``
or ``{"ok": false, "error": "one line"}``. The socket lives in ``$RUNTIME_DIRECTORY`` under
systemd (mode 0660, group of the service, so members of that group may use the CLI) and
in the data directory otherwise (mode 0600). Commands that change state are accepted only
from root, the daemon's own user, or members of its group (``SO_PEERCRED``).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import grp
import json
import logging
import os
import pwd
import socket
import struct
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.errors import AgentError
from agent.jsonout import dumps
from agent.paths import SYSTEM_DATA_DIR

_LOGGER = logging.getLogger(__name__)

SOCKET_NAME = "control.sock"
SYSTEM_RUNTIME_DIR = Path("/run/contact-agent")
MAX_REQUEST_BYTES = 64 * 1024
REQUEST_TIMEOUT_SECONDS = 5.0
MAX_SUN_PATH = 107


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


def client_socket_paths(data_dir: Path, environ: Mapping[str, str] | None = None) -> list[Path]:
    """Where a CLI looks for the daemon, most specific first."""
    env = os.environ if environ is None else environ
    paths = []
    if env.get("CONTACT_AGENT_SOCKET"):
        paths.append(Path(env["CONTACT_AGENT_SOCKET"]))
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


class ControlServer:
    """Serves the handlers on a Unix socket until :meth:`close`."""

    def __init__(
        self,
        path: Path,
        handlers: Mapping[str, Handler],
        *,
        privileged: Iterable[str] = (),
        group_access: bool = False,
    ) -> None:
        self.path = path
        self._handlers = dict(handlers)
        self._privileged = frozenset(privileged)
        self._group_access = group_access
        self._server: asyncio.AbstractServer | None = None

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
                self._serve, path=str(self.path), limit=MAX_REQUEST_BYTES
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

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = _peer(writer)
        try:
            try:
                line = await asyncio.wait_for(reader.readline(), REQUEST_TIMEOUT_SECONDS)
            except (TimeoutError, ValueError, asyncio.LimitOverrunError):
                return
            answer = await self._answer(line, peer)
            try:
                text = dumps(answer)
            except ValueError:  # a NaN or infinity slipped in: never send non-JSON
                _LOGGER.error("control: the answer held a non-finite number; not sent")
                text = dumps({"ok": False, "error": "internal: non-finite number in the answer"})
            writer.write(text.encode("utf-8") + b"\n")
            await writer.drain()
        except (ConnectionError, OSError) as exc:
            _LOGGER.debug("control client went away: %s", exc)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    async def _answer(self, line: bytes, peer: Peer) -> dict[str, Any]:
        try:
            request = json.loads(line)
        except (ValueError, UnicodeDecodeError):
            return {"ok": False, "error": "request is not JSON"}
        if not isinstance(request, dict) or not isinstance(request.get("cmd"), str):
            return {"ok": False, "error": "request needs a 'cmd' string"}
        cmd = request["cmd"]
        handler = self._handlers.get(cmd)
        if handler is None:
            return {"ok": False, "error": f"unknown command {cmd!r}"}
        if not self._allowed(cmd, peer):
            _LOGGER.warning("control: refused %r from uid %d", cmd, peer.uid)
            return {"ok": False, "error": f"permission denied for {cmd!r}"}
        try:
            result = await handler(request, peer)
        except AgentError as exc:
            return {"ok": False, "error": str(exc)}
        return {"ok": True, "result": dict(result)}


async def _answers(path: Path) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(path)), 1.0)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


def request(
    paths: Iterable[Path],
    cmd: str,
    *,
    timeout: float = REQUEST_TIMEOUT_SECONDS,
    **args: Any,
) -> dict[str, Any]:
    """Send one command to the first daemon that answers (blocking; for the CLI).

    Raises DaemonNotRunningError when no socket answers and ControlError when the
    daemon refuses the command.
    """
    message = dumps({"cmd": cmd, **args}).encode("utf-8") + b"\n"
    refused: OSError | None = None
    for path in paths:
        if len(os.fsencode(path)) > MAX_SUN_PATH:
            continue
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(timeout)
                sock.connect(str(path))
                sock.sendall(message)
                data = _read_line(sock)
        except FileNotFoundError:
            continue
        except TimeoutError:
            raise ControlError(
                f"the daemon at {path} did not answer within {timeout:.0f} s"
            ) from None
        except OSError as exc:
            if exc.errno in (errno.ECONNREFUSED, errno.ENOTSOCK):
                continue
            refused = exc
            continue
        return _decode(data, path)
    if refused is not None and refused.errno in (errno.EACCES, errno.EPERM):
        raise ControlError(
            "permission denied on the daemon's control socket "
            "(run as root or as a member of the contact-agent group)"
        )
    raise DaemonNotRunningError("no contact-agent daemon is running")


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
