"""The control socket: real Unix sockets, real peers, the blocking CLI client."""

from __future__ import annotations

import asyncio
import contextlib
import grp
import os
import pwd
import socket
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from agent.control import (
    ControlError,
    ControlServer,
    DaemonNotRunningError,
    Peer,
    client_socket_paths,
    daemon_socket_path,
    in_group,
    request,
)
from agent.errors import ConsentError


class _State:
    def __init__(self) -> None:
        self.consent = False
        self.peers: list[Peer] = []

    async def status(self, req: Mapping[str, Any], peer: Peer) -> Mapping[str, Any]:
        self.peers.append(peer)
        return {"consent": self.consent}

    async def enable(self, req: Mapping[str, Any], peer: Peer) -> Mapping[str, Any]:
        self.consent = True
        return {"consent": True}

    async def fail(self, req: Mapping[str, Any], peer: Peer) -> Mapping[str, Any]:
        raise ConsentError("contact detection is off")


def _server(path: Path, state: _State, **kwargs: Any) -> ControlServer:
    return ControlServer(
        path,
        {"status": state.status, "enable": state.enable, "fail": state.fail},
        privileged={"enable"},
        **kwargs,
    )


async def test_round_trip_and_permissions(short_dir: Path) -> None:
    state = _State()
    server = _server(short_dir / "control.sock", state)
    await server.start()
    try:
        assert stat.S_IMODE(server.path.stat().st_mode) == 0o600
        paths = [short_dir / "missing.sock", server.path]
        result = await asyncio.to_thread(request, paths, "status")
        assert result == {"consent": False}
        assert state.peers[0].pid == os.getpid()
        assert state.peers[0].uid == os.getuid()
        assert await asyncio.to_thread(request, paths, "enable") == {"consent": True}
        assert await asyncio.to_thread(request, paths, "status") == {"consent": True}
        with pytest.raises(ControlError, match="contact detection is off"):
            await asyncio.to_thread(request, paths, "fail")
        with pytest.raises(ControlError, match="unknown command 'reboot'"):
            await asyncio.to_thread(request, paths, "reboot")
    finally:
        await server.close()
    assert not server.path.exists()
    with pytest.raises(DaemonNotRunningError):
        request([server.path], "status")


async def test_group_socket_mode(short_dir: Path) -> None:
    server = _server(short_dir / "g.sock", _State(), group_access=True)
    await server.start()
    try:
        assert stat.S_IMODE(server.path.stat().st_mode) == 0o660
    finally:
        await server.close()


async def test_garbage_requests_get_clear_errors(short_dir: Path) -> None:
    server = _server(short_dir / "control.sock", _State())
    await server.start()
    try:
        for raw, expected in (
            (b"not json\n", "request is not JSON"),
            (b'["status"]\n', "needs a 'cmd' string"),
            (b'{"cmd": 5}\n', "needs a 'cmd' string"),
        ):
            reader, writer = await asyncio.open_unix_connection(str(server.path))
            writer.write(raw)
            await writer.drain()
            answer = await reader.readline()
            writer.close()
            assert expected.encode() in answer
        # a client that connects and says nothing does not block others
        _, silent = await asyncio.open_unix_connection(str(server.path))
        assert await asyncio.to_thread(request, [server.path], "status") == {"consent": False}
        silent.close()
    finally:
        await server.close()


async def test_second_daemon_is_refused_and_stale_socket_replaced(short_dir: Path) -> None:
    path = short_dir / "control.sock"
    first = _server(path, _State())
    await first.start()
    try:
        with pytest.raises(ControlError, match="already running"):
            await _server(path, _State()).start()
    finally:
        await first.close()
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))  # bound but never listening: a crashed daemon's leftover
    stale.close()
    with pytest.raises(DaemonNotRunningError):
        request([path], "status")
    second = _server(path, _State())
    await second.start()
    try:
        assert await asyncio.to_thread(request, [path], "status") == {"consent": False}
    finally:
        await second.close()


async def test_too_long_path_is_a_clear_error(short_dir: Path) -> None:
    deep = short_dir / ("d" * 120)
    with pytest.raises(ControlError, match="too long"):
        await _server(deep / "control.sock", _State()).start()


def test_socket_locations(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert daemon_socket_path(data, {}) == data / "control.sock"
    assert daemon_socket_path(data, {"RUNTIME_DIRECTORY": "/run/ca"}) == Path(
        "/run/ca/control.sock"
    )
    paths = client_socket_paths(data, {"CONTACT_AGENT_SOCKET": "/x.sock"})
    assert paths == [Path("/x.sock"), data / "control.sock"]
    system = client_socket_paths(Path("/var/lib/contact-agent"), {})
    assert system[-1] == Path("/run/contact-agent/control.sock")


def test_group_membership_from_the_group_database() -> None:
    assert in_group(Peer(1, 12345, 0), 0)  # primary group
    assert not in_group(Peer(1, 2_000_000_000, 65534), 0)  # no such user
    for group in grp.getgrall():  # supplementary membership, when the system has one
        for name in group.gr_mem:
            with contextlib.suppress(KeyError):
                user = pwd.getpwnam(name)
                if user.pw_gid != group.gr_gid:
                    assert in_group(Peer(1, user.pw_uid, user.pw_gid), group.gr_gid)
                    return
