"""Disk full and I/O errors under ``contact-agent run`` (``docs/reliability.md`` F4, F5; bad-input
case 48).

The data directory sits on a small tmpfs (``mount -t tmpfs -o size=8m``, as root); where
mounting is refused (a sandbox), the daemon runs with ``RLIMIT_FSIZE`` instead (SIGXFSZ
ignored, so growing a file fails with EFBIG), which the parent raises again with
``prlimit`` to "free space". Either way: the daemon stays up and keeps feeding the
watchdog, reports itself degraded, keeps the sightings in memory, and writes them all once
space returns; the database stays intact.

The I/O-error test runs the daemon in-process and makes every database transaction fail
with SQLite's "disk I/O error" for a while (F5), consent changes included.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import resource
import shutil
import signal
import sqlite3
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from agent.errors import AgentError
from agent.store import DB_FILENAME, Store
from agent.store.db import Database, Transaction, store_error
from tests.daemon.fakes import RadioFactory, eventually
from tests.daemon.test_service import make, running
from tests.faults.scripts import base as base
from tests.faults.scripts import harness as harness
from tests.faults.scripts import require_dbus_daemon

BEACONS = 30


@dataclass
class Full:
    """How the disk is made full: ``method`` is ``tmpfs`` or ``rlimit``."""

    method: str
    fill: Callable[[int], None]
    """Make the disk full for the daemon with this pid."""
    free: Callable[[int], None]
    preexec: Callable[[], None] | None = None


def _mount_tmpfs(data: Path) -> bool:
    data.mkdir(mode=0o700)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m,mode=0700", "tmpfs", str(data)],
        capture_output=True,
        check=False,
    )
    return done.returncode == 0


def _fill(path: Path) -> None:
    """Fill the file system of ``path`` to its last byte. It may be full already (the
    daemon's own files can fill the small tmpfs first): then the open, a write or the
    close says ENOSPC, and the disk is just as full."""
    chunk = bytes(64 * 1024)
    try:
        with path.open("wb") as out:
            while True:
                out.write(chunk)
                out.flush()
    except OSError as exc:
        assert exc.errno == errno.ENOSPC, exc


@contextlib.contextmanager
def full_disk(data: Path, method: str) -> Iterator[Full]:
    if method == "tmpfs":
        if not _mount_tmpfs(data):
            pytest.skip("mounting a tmpfs is refused here (the rlimit variant runs)")
        filler = data / "filler"
        try:
            yield Full(
                "tmpfs", lambda pid: _fill(filler), lambda pid: filler.unlink(missing_ok=True)
            )
        finally:
            subprocess.run(["umount", "-l", str(data)], check=False)
        return
    data.mkdir(mode=0o700)

    def preexec() -> None:  # in the child: growing a file past the limit is EFBIG
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    def fill(pid: int) -> None:
        biggest = max(p.stat().st_size for p in data.iterdir() if p.is_file())
        limit = biggest + 4096
        resource.prlimit(pid, resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))

    def free(pid: int) -> None:
        resource.prlimit(pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY,) * 2)

    yield Full("rlimit", fill, free, preexec)


def rows(data: Path) -> tuple[str, int]:
    conn = sqlite3.connect(str(data / DB_FILENAME), timeout=10)
    try:
        integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
        return integrity, conn.execute("SELECT count(*) FROM sighting").fetchone()[0]
    finally:
        conn.close()


async def wait_for(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.2)


@contextlib.asynccontextmanager
async def streaming_daemon(
    harness: ModuleType, base: Path, preexec: Callable[[], None] | None = None
) -> AsyncIterator[tuple[Any, Any]]:
    """The daemon with consent, hearing BEACONS phones, watchdog enabled (1 s)."""
    async with harness.simulated_air(tick=0.1) as (bus, fake):
        for n in range(BEACONS):
            harness.en_beacon(fake, f"phone{n}", os.urandom(20), rssi=-50 - n)
        daemon = harness.DaemonProcess(
            base, bus.address, harness.radio_config(harness.local_keys(base))
        )
        daemon.env["WATCHDOG_USEC"] = "1000000"
        try:
            code, _, err = await daemon.cli("enable")
            assert code == 0, err
            await daemon.start(preexec=preexec)
            await daemon.wait_ready()
            yield daemon, fake
        finally:
            daemon.close()


def watchdog_pings(daemon: Any) -> int:
    return sum("WATCHDOG=1" in m for m in daemon.drain())


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize("method", ["tmpfs", "rlimit"])
async def test_disk_full_keeps_the_daemon_up_degraded_and_loses_nothing(
    harness: ModuleType, base: Path, method: str
) -> None:
    require_dbus_daemon()
    with full_disk(base / "data", method) as disk:
        async with streaming_daemon(harness, base, disk.preexec) as (daemon, _):

            async def stored() -> int:
                await daemon.control("fetch")
                return int((await daemon.control("status"))["sightings"]["today"])

            before = await wait_for(stored, 20, "sightings written")
            disk.fill(daemon.pid)

            async def degraded() -> dict[str, Any] | None:
                with contextlib.suppress(Exception):
                    await daemon.control("fetch")
                status = await daemon.control("status")
                return status if "not being written" in (status["degraded"] or "") else None

            status = await wait_for(degraded, 30, "degraded: sightings not written")
            assert status["metrics"]["sighting_write_errors_total"] > 0
            pings = watchdog_pings(daemon)
            await asyncio.sleep(3.0)  # still scanning, still alive, the watchdog still fed
            assert daemon.running and watchdog_pings(daemon) > pings
            status = await daemon.control("status")
            assert status["scanning"] and "not being written" in status["degraded"]
            held = status["ingest"]["accepted"]
            assert held > before  # heard while full: kept in memory

            disk.free(daemon.pid)

            async def recovered() -> bool:
                await daemon.control("fetch")
                status = await daemon.control("status")
                return not status["degraded"] and status["sightings"]["today"] >= held

            await wait_for(recovered, 30, "sightings written again")
            accepted = (await daemon.control("status"))["ingest"]["accepted"]
            assert await daemon.stop() == 0
            integrity, count = rows(daemon.data)
            assert integrity == "ok"
            assert count >= accepted  # every sighting the guard handed over was written
            log = daemon.log.read_text()
            assert "sightings kept in memory, the write failed" in log
            assert "Traceback" not in log


class IoErrors:
    """Makes every store transaction fail with SQLite's "disk I/O error" while on."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.on = False
        self.injected = 0
        original = Database.transaction

        @contextlib.asynccontextmanager
        async def transaction(
            db: Database, action: str, *, durable: bool
        ) -> AsyncIterator[Transaction]:
            if self.on:
                self.injected += 1
                error = sqlite3.OperationalError("disk I/O error")
                error.sqlite_errorcode = 778  # SQLITE_IOERR_WRITE
                raise store_error(action, error)
            async with original(db, action, durable=durable) as tx:
                yield tx

        monkeypatch.setattr(Database, "transaction", transaction)


@pytest.mark.slow
@pytest.mark.timeout(60)
async def test_io_errors_on_every_write_are_survived_counted_and_recovered(
    short_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In-process daemon (fake radio port): F5 with every write failing for a while."""
    faults = IoErrors(monkeypatch)
    data = short_dir / "data"
    radios = RadioFactory()
    service = make(data, radios)
    async with running(service):
        await service.set_consent(True)
        await eventually(lambda: service.radio_status().get("scanning") is True)
        await service.flush_sightings()
        faults.on = True
        await asyncio.sleep(0.2)  # more heard
        assert not await service.flush_sightings()
        await asyncio.sleep(0.3)
        live = (await service.status()).live
        assert live is not None
        assert "not being written (storing sightings failed: input/output error" in (
            live.degraded or ""
        )
        # consent can be withdrawn even now: the radio goes off, the error is told
        with pytest.raises(AgentError, match="input/output error"):
            await service.set_consent(False)
        assert not service.consent.enabled
        assert not service.radio_status().get("scanning")  # (the radio may be restarting)
        heard_while_failing = service.ingest.guard.stats().accepted if service.ingest else 0
        assert heard_while_failing > 0
        writer = service.writer
        assert writer is not None and writer.stats.failing
        faults.on = False
        assert await service.flush_sightings()
        live = (await service.status()).live
        assert live is not None and live.degraded is None
        assert writer.stats.errors >= 1 and writer.stats.dropped == 0
        assert live.metrics["sighting_write_errors_total"] == writer.stats.errors
        assert faults.injected >= writer.stats.errors + 1  # + the consent write
        accepted = service.ingest.guard.stats().accepted if service.ingest else 0
    async with await Store.open(data) as store:
        assert await store.integrity_ok()
        assert await store.sighting_counts(0) == accepted
