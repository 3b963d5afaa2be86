"""No core dump, no ptrace: every command that can hold a key is non-dumpable (security review).

Outside systemd nothing stopped a core dump: a SIGABRT core of the daemon (94 MB) held
its own TEK six times. Now ``run`` and every other command set ``RLIMIT_CORE`` to 0 and
``PR_SET_DUMPABLE`` to 0 at start. Checked on real child processes that start with an
unlimited core size and are dumpable:

* the daemon (``run`` on the simulated air): the kernel hands ``/proc/PID`` to root:root
  when a process is not dumpable, which differs from the process's own ids (as root the
  child runs with an extra group id so the difference shows), and ``/proc/PID/limits``
  shows a core size of 0;
* the one-shot commands: the command runs through the real CLI entry point in a child
  that then asks the kernel (``PR_GET_DUMPABLE``, ``getrlimit``) and prints the answer.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.faults.scripts import base as base
from tests.faults.scripts import harness as harness
from tests.faults.scripts import require_dbus_daemon

REPO = Path(__file__).resolve().parents[2]
TEST_GID = 4242
"""The daemon's group id in the test when run as root (root:root must differ from it)."""


def unlimited_core() -> None:
    """In the child before exec: allow core dumps, as a shell with ``ulimit -c unlimited``.

    (Where an in-process CLI test already lowered the test runner's hard limit and the
    container withholds CAP_SYS_RESOURCE, the limit stays as it is; the dumpable flag,
    reset by every exec, is checked all the same.)
    """
    limit = resource.RLIM_INFINITY
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_CORE, (limit, limit))


def daemon_child_setup() -> None:
    unlimited_core()
    if os.geteuid() == 0:
        os.setgid(TEST_GID)


def proc_ids(pid: int) -> tuple[int, int, int, int]:
    """(owner uid, owner gid of /proc/PID, the process's effective uid, gid)."""
    info = os.stat(f"/proc/{pid}/status")  # (the /proc/PID directory is not updated)
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    euid = int(fields["Uid"].split()[1])
    egid = int(fields["Gid"].split()[1])
    return info.st_uid, info.st_gid, euid, egid


def core_limit(pid: int) -> list[str]:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max core file size"):
            return line.split()[4:6]
    raise AssertionError("no core limit line")


@pytest.mark.timeout(120)
async def test_the_daemon_is_not_dumpable_and_has_no_core_size(
    harness: ModuleType, base: Path
) -> None:
    require_dbus_daemon()
    async with harness.simulated_air() as (bus, _fake):
        daemon = harness.DaemonProcess(base, bus.address, harness.radio_config())
        try:
            await daemon.start(preexec=daemon_child_setup)
            await daemon.wait_ready()
            owner_uid, owner_gid, euid, egid = proc_ids(daemon.pid)
            assert (euid, egid) != (0, 0), "the child must differ from root:root to tell"
            assert (owner_uid, owner_gid) == (0, 0)  # dumpable: (euid, egid)
            assert core_limit(daemon.pid) == ["0", "0"]
            assert await daemon.stop() == 0
        finally:
            daemon.close()


PROBE = """
import ctypes, json, resource, sys
from agent.cli import main
try:
    main(sys.argv[1:], prog_name="contact-agent")
except SystemExit as exc:
    code = exc.code
except Exception as exc:  # click.Abort and the like: the flags are what matters here
    code = type(exc).__name__
libc = ctypes.CDLL(None)
print(json.dumps({"code": code, "dumpable": libc.prctl(3, 0, 0, 0, 0),
                  "core": list(resource.getrlimit(resource.RLIMIT_CORE))}))
"""


@pytest.mark.parametrize(
    "command",
    [
        ["import", "sightings", "IN"],
        ["export", "sightings"],
        ["fetch"],
        ["match", "--public-key", "absent.pem", "absent.zip"],
        ["report", "--discard-pending"],
        ["keys", "export-own", "--yes", "--output", "OUT"],
        ["forget", "--yes"],
        ["status"],
    ],
)
def test_every_command_that_touches_keys_is_not_dumpable(
    tmp_path: Path, command: list[str]
) -> None:
    sightings = tmp_path / "in.jsonl"
    sightings.write_text(
        '{"time": 1700000000, "rpi": "' + "ab" * 16 + '", "aem": "40080000", "rssi": -60}\n'
    )
    args = [
        str(sightings) if a == "IN" else str(tmp_path / "own.json") if a == "OUT" else a
        for a in command
    ]
    env = {
        **os.environ,
        "CONTACT_AGENT_DATA_DIR": str(tmp_path / "data"),
        "CONTACT_AGENT_CONFIG": os.devnull,  # an empty config: every default
        "CONTACT_AGENT_SYNC_MARKER": "/nonexistent",
    }
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        preexec_fn=unlimited_core,
    )
    assert done.stdout.strip(), done.stderr
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer["dumpable"] == 0, (answer, done.stderr)
    assert answer["core"] == [0, 0]
