"""A second process that opens, reads and closes the database (``export``, an offline
``status``) must not take the write-ahead log away from the daemon's live connection.

Closing any descriptor of a file drops every POSIX lock the process holds on it; when the
store closed a descriptor of the open database, SQLite's shared lock went with it, and the
reader's close then checkpointed and deleted the WAL under the daemon: what the daemon
wrote afterwards was invisible to others and lost with a kill -9.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from agent.models import Sighting
from agent.store import DB_FILENAME, Store

WRITER = """
import asyncio, os, sys
from pathlib import Path
from agent.models import Sighting
from agent.store import Store

async def main():
    store = await Store.open(Path(sys.argv[1]))
    await store.add_sightings([Sighting(1.7e9, os.urandom(16), bytes(4), -60)])
    print("first", flush=True)
    sys.stdin.readline()  # another process reads and closes meanwhile
    await store.add_sightings([Sighting(1.7e9, os.urandom(16), bytes(4), -60)] * 5)
    print("more", flush=True)
    await asyncio.sleep(3600)  # killed here

asyncio.run(main())
"""


def count(data: Path) -> int:
    conn = sqlite3.connect(str(data / DB_FILENAME))
    try:
        return int(conn.execute("SELECT count(*) FROM sighting").fetchone()[0])
    finally:
        conn.close()


def test_a_reader_closing_does_not_lose_the_writers_commits(tmp_path: Path) -> None:
    data = tmp_path / "data"
    root = str(Path(__file__).resolve().parents[2])
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(data)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": root},
    )
    assert writer.stdin is not None and writer.stdout is not None
    try:
        assert writer.stdout.readline().strip() == "first"
        assert count(data) == 1  # this process reads, then closes its connection
        writer.stdin.write("go\n")
        writer.stdin.flush()
        assert writer.stdout.readline().strip() == "more"
        assert count(data) == 6  # committed is visible to others ...
        writer.send_signal(signal.SIGKILL)
        writer.wait(10)
        time.sleep(0.05)
        assert count(data) == 6  # ... and survives the writer's kill -9
    finally:
        if writer.poll() is None:
            writer.kill()
        writer.stdin.close()
        writer.stdout.close()


async def test_a_second_store_in_the_daemon_process_keeps_the_locks(tmp_path: Path) -> None:
    """Opening the store again in the same process (an in-process action) must not drop
    the first connection's lock either."""
    data = tmp_path / "data"
    first = await Store.open(data)
    second = await Store.open(data)
    await second.close()
    assert count_elsewhere(data) == 0  # another process reads and closes
    await first.add_sightings([Sighting(1.7e9, os.urandom(16), bytes(4), -60)] * 3)
    assert count_elsewhere(data) == 3
    await first.close()


def count_elsewhere(data: Path) -> int:
    code = (
        "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); "
        "print(c.execute('SELECT count(*) FROM sighting').fetchone()[0]); c.close()"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(data / DB_FILENAME)],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return int(out.stdout)
