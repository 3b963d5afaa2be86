"""Planted files in the data directory change nothing on the machine (issue: security review).

An attacker on the same machine (or a curious admin) plants a symbolic link where the
agent keeps its database, write-ahead log, shared memory, lock, socket or spool, or hands
it a data directory or file that another user owns. Every command -- as root too, which
is how these tests run in CI -- refuses with one line and exit 78 before it creates,
changes, chmods, chowns or moves anything: a byte-exact snapshot of the whole tree
(modes, owners, sizes, contents, link targets) is the same afterwards.

Before this, ``contact-agent.db`` linked to a victim file changed the victim's mode
644 -> 600 and moved the link aside as a "corrupt" copy; a dangling link made root create
its target; a ``-wal`` link chmod'ed the victim; a data directory owned by ``nobody`` was
tightened to 0700 and the database handed to ``nobody``.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from agent.paths import UnsafePathError
from agent.store import DB_FILENAME
from agent.store.db import quarantine

REPO = Path(__file__).resolve().parents[2]
NOBODY = 65534
VICTIM_TEXT = b"the victim's own file\n"
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")


def cli(data: Path, *args: str, timeout: float = 60) -> tuple[int, str, str]:
    """``python -m agent ARGS`` on ``data`` (no config file, clock trusted by config)."""
    env = {
        **os.environ,
        "CONTACT_AGENT_DATA_DIR": str(data),
        "CONTACT_AGENT_CONFIG": os.devnull,  # an empty config: every default
        "CONTACT_AGENT_SYNC_MARKER": "/nonexistent",
        "DBUS_SYSTEM_BUS_ADDRESS": "unix:path=/nonexistent",
        "LANG": "C.UTF-8",
    }
    for name in ("INVOCATION_ID", "NOTIFY_SOCKET", "RUNTIME_DIRECTORY"):
        env.pop(name, None)
    done = subprocess.run(
        [sys.executable, "-m", "agent", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return done.returncode, done.stdout, done.stderr


def snapshot(root: Path) -> dict[str, tuple[object, ...]]:
    """Every path under ``root`` (root included): type, mode, owner, content or target."""
    found: dict[str, tuple[object, ...]] = {}
    for path in [root, *sorted(root.rglob("*"))]:
        info = os.lstat(path)
        if stat.S_ISLNK(info.st_mode):
            body: object = os.readlink(path)
        elif stat.S_ISREG(info.st_mode):
            body = path.read_bytes()
        else:
            body = None
        found[str(path.relative_to(root))] = (info.st_mode, info.st_uid, info.st_gid, body)
    return found


def victim(base: Path) -> Path:
    path = base / "victim.txt"
    path.write_bytes(VICTIM_TEXT)
    path.chmod(0o644)
    return path


def refused(code: int, err: str) -> None:
    assert code == 78, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("contact-agent: refusing "), err
    assert "nothing was changed" in lines[0]


def make_store(data: Path) -> None:
    """A real database (consent on), as a user's first ``enable`` leaves it."""
    code, _, err = cli(data, "enable")
    assert code == 0, err
    assert (data / DB_FILENAME).is_file()


def sightings_file(base: Path) -> str:
    """One sighting in the interchange format, outside the data directory."""
    path = base / "in.jsonl"
    rpi = os.urandom(16).hex()
    path.write_text(f'{{"time": 1700000000, "rpi": "{rpi}", "aem": "40080000", "rssi": -60}}\n')
    return str(path)


@pytest.mark.parametrize("command", [["enable"], ["status"], ["import", "sightings"]])
def test_database_linked_to_a_victim_changes_nothing(tmp_path: Path, command: list[str]) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    target = victim(tmp_path)
    (data / DB_FILENAME).symlink_to(target)
    if command[0] == "import":
        command = [*command, sightings_file(tmp_path)]
    before = snapshot(tmp_path)
    code, _, err = cli(data, *command)
    refused(code, err)
    assert snapshot(tmp_path) == before
    assert stat.S_IMODE(target.stat().st_mode) == 0o644  # was 0600 after the old code
    assert not list(data.glob("*.corrupt-*"))  # nothing moved aside


def test_a_dangling_database_link_creates_no_target(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    target = tmp_path / "elsewhere" / "created-by-root.db"
    target.parent.mkdir()
    (data / DB_FILENAME).symlink_to(target)
    before = snapshot(tmp_path)
    code, _, err = cli(data, "enable")
    refused(code, err)
    assert not target.exists()
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize(
    ("name", "command"),
    [
        (DB_FILENAME + "-wal", ["forget", "--yes"]),
        (DB_FILENAME + "-shm", ["purge"]),
        (DB_FILENAME + "-wal", ["export", "sightings"]),
    ],
)
def test_a_side_file_link_keeps_the_database_and_the_victim(
    tmp_path: Path, name: str, command: list[str]
) -> None:
    data = tmp_path / "data"
    make_store(data)
    (data / name).unlink(missing_ok=True)
    target = victim(tmp_path)
    (data / name).symlink_to(target)
    before = snapshot(tmp_path)
    code, _, err = cli(data, *command)
    refused(code, err)
    assert snapshot(tmp_path) == before  # the database was not forgotten either


@pytest.mark.parametrize("name", ["daemon.lock", "control.sock"])
def test_the_daemon_refuses_a_linked_lock_or_socket(tmp_path: Path, name: str) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    target = victim(tmp_path)
    (data / name).symlink_to(target)
    before = snapshot(tmp_path)
    code, _, err = cli(data, "run")
    refused(code, err)
    assert snapshot(tmp_path) == before


def test_a_link_in_a_subdirectory_is_refused(tmp_path: Path) -> None:
    """A spool (or any other) subdirectory is checked too."""
    data = tmp_path / "data"
    make_store(data)
    (data / "spool").mkdir(mode=0o700)
    (data / "spool" / "download-1.part").symlink_to(victim(tmp_path))
    source = sightings_file(tmp_path)
    before = snapshot(tmp_path)
    code, _, err = cli(data, "import", "sightings", source)
    refused(code, err)
    assert snapshot(tmp_path) == before


def test_a_linked_data_directory_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir(mode=0o755)
    (tmp_path / "data").symlink_to(real)
    before = snapshot(tmp_path)
    code, _, err = cli(tmp_path / "data", "enable")
    refused(code, err)
    assert snapshot(tmp_path) == before


@as_root
@pytest.mark.parametrize("command", [["enable"], ["run"], ["forget", "--yes"]])
def test_a_data_directory_of_another_user_is_refused_even_by_root(
    tmp_path: Path, command: list[str]
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    data.chmod(0o755)
    os.chown(data, NOBODY, NOBODY)
    before = snapshot(tmp_path)
    code, _, err = cli(data, *command)
    refused(code, err)
    assert "belongs to uid 65534" in err
    assert snapshot(tmp_path) == before  # still 0755, still nobody's, still empty
    assert list(data.iterdir()) == []


@as_root
def test_a_database_of_another_user_is_refused_even_by_root(tmp_path: Path) -> None:
    data = tmp_path / "data"
    make_store(data)
    os.chown(data / DB_FILENAME, NOBODY, NOBODY)
    before = snapshot(tmp_path)
    code, _, err = cli(data, "status")
    refused(code, err)
    assert snapshot(tmp_path) == before


def test_quarantine_never_moves_a_link(tmp_path: Path) -> None:
    """The "corrupt copy" move-aside itself refuses a link (defence in depth)."""
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    (data / DB_FILENAME).symlink_to(victim(tmp_path))
    before = snapshot(tmp_path)
    with pytest.raises(UnsafePathError):
        quarantine(data / DB_FILENAME, 0.0)
    assert snapshot(tmp_path) == before


def test_a_private_directory_of_our_own_is_still_tightened(tmp_path: Path) -> None:
    """The checks do not stop the ordinary case: our own 0755 directory becomes 0700."""
    data = tmp_path / "data"
    data.mkdir()
    data.chmod(0o755)
    make_store(data)
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    for name in (DB_FILENAME, DB_FILENAME + "-wal", DB_FILENAME + "-shm"):
        if (data / name).exists():
            assert stat.S_IMODE((data / name).stat().st_mode) == 0o600
