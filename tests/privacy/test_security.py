"""Security review checks of the running service (local data exposure, daemon compromise).

* Every file the daemon creates is private: data directory 0700; database, -wal, -shm and
  lock file 0600; the control socket 0600 in the data directory, 0660 in systemd's
  runtime directory -- whatever the umask.
* The control socket authorises by SO_PEERCRED: another user who can reach it (through
  the socket's group) may ask for ``status`` but is refused every command that changes
  state or deletes data. (Needs root to act as another user.)
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
from pathlib import Path

import pytest

from agent.control import request
from agent.daemon.actions import PRIVILEGED
from agent.errors import AgentError
from agent.store import DB_FILENAME
from tests.daemon.fakes import RadioFactory
from tests.daemon.test_service import make, running

NOBODY = 65534
OUTSIDER_GROUP = 4242
"""A group id the outsider is given as a supplementary group (not in /etc/group)."""


async def as_outsider(sock: Path, commands: list[str]) -> dict[str, str]:
    """Each command's answer, asked by uid/gid 65534 in a forked child (no exec: the
    interpreter lives in root's home)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop to the outsider, ask, report, leave
        try:
            os.close(read)
            os.setgroups([OUTSIDER_GROUP])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            results = {}
            for cmd in commands:
                try:
                    request([sock], cmd, timeout=30)
                    results[cmd] = "ok"
                except AgentError as exc:
                    results[cmd] = str(exc)
            os.write(write, json.dumps(results).encode())
        finally:
            os._exit(0)
    os.close(write)
    _, status = await asyncio.to_thread(os.waitpid, pid, 0)
    with os.fdopen(read, "rb") as answer:
        data = answer.read()
    assert status == 0
    return dict(json.loads(data))


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_files_are_private_whatever_the_umask(short_dir: Path) -> None:
    data = short_dir / "data"
    old = os.umask(0o000)  # the worst case: everything world-writable by default
    try:
        service = make(data, RadioFactory())
        async with running(service):
            await service.set_consent(True)
            await service.flush_sightings()
            assert mode(data) == 0o700
            for name in (DB_FILENAME, DB_FILENAME + "-wal", DB_FILENAME + "-shm", "daemon.lock"):
                assert mode(data / name) == 0o600, name
            assert mode(data / "control.sock") == 0o600
    finally:
        os.umask(old)


async def test_under_systemd_the_socket_is_for_the_service_group(short_dir: Path) -> None:
    runtime = short_dir / "run"
    service = make(short_dir / "data", RadioFactory(), environ={"RUNTIME_DIRECTORY": str(runtime)})
    async with running(service):
        assert mode(runtime / "control.sock") == 0o660
        assert not (short_dir / "data" / "control.sock").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="acting as another user needs root")
async def test_another_user_gets_status_but_no_privileged_command(short_dir: Path) -> None:
    runtime = short_dir / "run"
    service = make(short_dir / "data", RadioFactory(), environ={"RUNTIME_DIRECTORY": str(runtime)})
    async with running(service):
        await service.set_consent(True)
        sock = runtime / "control.sock"
        os.chown(sock, -1, OUTSIDER_GROUP)  # the outsider reaches it through this group
        for path in (short_dir, runtime):
            path.chmod(0o755)

        results = await as_outsider(sock, ["status", *sorted(PRIVILEGED)])
        assert results.pop("status") == "ok"
        assert results == {cmd: f"permission denied for {cmd!r}" for cmd in PRIVILEGED}
        assert service.consent.enabled  # nothing changed
