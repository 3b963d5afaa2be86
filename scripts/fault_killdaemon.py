#!/usr/bin/env python3
"""kill -9 of the whole daemon at random moments (fault test F1 of ``docs/reliability.md``).

``contact-agent run`` runs as a child process against the fake bluetoothd while fake
beacons stream sightings in. In every round the daemon starts, the script asks it for a
key fetch now and then (the daemon writes the sightings it holds before every fetch, so
an answered fetch *acknowledges* everything counted by the ``status`` that follows), and
SIGKILLs it at a random moment -- during start-up (before READY=1), or a random time
after READY=1: in the middle of a flush, between flushes. Which phase a round kills in is
decided by the round, not by how fast the machine is. After every kill the script opens
the database itself and checks:

* ``PRAGMA integrity_check`` is ``ok``;
* no acknowledged sighting is lost (the row count never drops below the acknowledged
  count, nor below the count found after the previous kill);
* every batch is whole: each recorded rowid range holds all its rows (no partial commit);
* no own key is lost (every TEK found once is found again) and consent stays on.

Between acknowledgements a second process opens, reads and closes the database, as
``export`` or an offline ``status`` would: its close must not take the write-ahead log
away from the running daemon (it did, before ``prepare_files`` stopped closing a
descriptor of the open database: POSIX drops all of a process's locks on a file then).

A last daemon must start cleanly (READY), answer ``status`` and stop with SIGTERM (0).

Usage: ``scripts/fault_killdaemon.py [--rounds 200] [--max-delay 3.0] [--dir DIR] [--json]``.
Exit status 0 when every round passed. Prints the figures of the run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import sqlite3
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from fault_harness import (
    DaemonProcess,
    add_output_arguments,
    en_beacon,
    local_keys,
    print_figures,
    radio_config,
    run_in,
    simulated_air,
)

from agent.store import DB_FILENAME

BEACONS = 40
FETCH_EVERY = (0.1, 0.6)
"""Seconds between two acknowledged flushes (fetch requests) while a daemon runs."""


@dataclass
class Snapshot:
    """What the database holds after a kill."""

    integrity: str
    rows: int
    batches: int
    broken_batches: int
    own_teks: frozenset[bytes]
    consent: str | None


@dataclass
class Report:
    rounds: int = 0
    integrity_ok: int = 0
    killed_before_ready: int = 0
    killed_while_running: int = 0
    exited_by_itself: int = 0
    acknowledged_flushes: int = 0
    acknowledged_rows: int = 0
    lost_rows: int = 0
    broken_batches: int = 0
    lost_own_teks: int = 0
    consent_lost: int = 0
    final_ready: bool = False
    final_exit: int | None = None
    rows_at_end: int = 0
    ready_seconds: list[float] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return (
            self.integrity_ok == self.rounds
            and self.exited_by_itself == 0
            and self.lost_rows == 0
            and self.broken_batches == 0
            and self.lost_own_teks == 0
            and self.consent_lost == 0
            and self.final_ready
            and self.final_exit == 0
        )

    def figures(self) -> dict[str, object]:
        out = asdict(self)
        ready = out.pop("ready_seconds")
        out["median_ready_seconds"] = round(statistics.median(ready), 2) if ready else None
        out["passed"] = self.passed
        return out


def snapshot(data_dir: Path) -> Snapshot:
    """Read the database directly (as a second process would after the crash)."""
    conn = sqlite3.connect(str(data_dir / DB_FILENAME), timeout=10)
    try:
        integrity = "; ".join(r[0] for r in conn.execute("PRAGMA integrity_check"))
        rows = conn.execute("SELECT count(*) FROM sighting").fetchone()[0]
        batches = conn.execute("SELECT first_row, last_row FROM sighting_batch").fetchall()
        broken = 0
        for first, last in batches:
            present = conn.execute(
                "SELECT count(*) FROM sighting WHERE rowid BETWEEN ? AND ?", (first, last)
            ).fetchone()[0]
            broken += present != last - first + 1
        teks = frozenset(r[0] for r in conn.execute("SELECT key_data FROM own_tek"))
        consent = conn.execute("SELECT value FROM state WHERE key = 'consent'").fetchone()
    finally:
        conn.close()
    return Snapshot(integrity, rows, len(batches), broken, teks, consent[0] if consent else None)


def read_like_a_cli(data_dir: Path) -> int:
    """What ``export`` or an offline ``status`` does: open, read, close (its close must
    not take the write-ahead log away from the running daemon)."""
    conn = sqlite3.connect(str(data_dir / DB_FILENAME), timeout=10)
    try:
        return int(conn.execute("SELECT count(*) FROM sighting").fetchone()[0])
    finally:
        conn.close()


async def _acknowledge(daemon: DaemonProcess, acked: list[int], rng: random.Random) -> None:
    """Until cancelled: fetch (flushes first), then note the committed row count; a
    second process reads the database in between."""
    with contextlib.suppress(Exception):
        await daemon.wait_ready()
    while True:
        await asyncio.sleep(rng.uniform(*FETCH_EVERY))
        with contextlib.suppress(Exception):  # the kill may cut any request short
            await asyncio.to_thread(read_like_a_cli, daemon.data)
            await daemon.control("fetch", timeout=10)
            status = await daemon.control("status", timeout=10)
            acked.append(int(status["sightings"]["last_14_days"]))


async def run_rounds(
    rounds: int,
    base: Path,
    *,
    min_delay: float = 0.2,
    max_delay: float = 3.0,
    beacons: int = BEACONS,
    seed: int | None = None,
    progress: bool = False,
) -> Report:
    """``rounds`` kills of a daemon on ``base``; returns the figures."""
    rng = random.Random(seed)
    report = Report()
    started = time.monotonic()
    async with simulated_air(tick=0.1) as (bus, fake):
        for n in range(beacons):
            en_beacon(fake, f"phone{n}", os.urandom(20), rssi=-50 - n % 40)
        daemon = DaemonProcess(base, bus.address, radio_config(local_keys(base)))
        try:
            code, _, err = await daemon.cli("enable")
            if code != 0:
                raise RuntimeError(f"enable failed: {err.strip()}")
            before = snapshot(daemon.data)
            for round_no in range(rounds):
                before = await _round(daemon, rng, min_delay, max_delay, before, report)
                if progress and round_no % 10 == 9:
                    print(f"  {round_no + 1} rounds, {before.rows} rows", file=sys.stderr)
            await daemon.start()
            report.ready_seconds.append(await daemon.wait_ready())
            report.final_ready = True
            status = await daemon.control("status")
            report.final_ready = status["daemon"]["running"] is True
            report.final_exit = await daemon.stop()
            report.rows_at_end = snapshot(daemon.data).rows
        finally:
            daemon.close()
    report.seconds = round(time.monotonic() - started, 1)
    return report


async def _round(
    daemon: DaemonProcess,
    rng: random.Random,
    min_delay: float,
    max_delay: float,
    before: Snapshot,
    report: Report,
) -> Snapshot:
    """One start and one kill. Even rounds kill during start-up: the first right after
    the process is spawned (necessarily before READY), later ones at a random moment
    before the fastest READY seen so far. Odd rounds kill while running: after READY=1
    and a first acknowledged flush of new sightings, at a random delay measured from
    there, so the phase does not depend on how long start-up takes on a busy machine."""
    acked: list[int] = []
    await daemon.start()
    pinger = asyncio.create_task(_acknowledge(daemon, acked, rng))
    if report.rounds % 2 == 1:
        with contextlib.suppress(RuntimeError, TimeoutError):  # ended: counted below
            report.ready_seconds.append(await daemon.wait_ready(timeout=120))
            # ... and a flush of new sightings acknowledged in this run, then the delay.
            deadline = time.monotonic() + 120
            while not (acked and acked[-1] > before.rows) and time.monotonic() < deadline:
                if not daemon.running:
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(rng.uniform(min_delay, max_delay))
    elif report.ready_seconds:
        await asyncio.sleep(rng.uniform(0.0, 0.8 * min(report.ready_seconds)))
    ready = daemon.is_ready()
    ended = await daemon.kill9()
    pinger.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await pinger
    report.rounds += 1
    if ended is not None:
        report.exited_by_itself += 1
    elif ready:
        report.killed_while_running += 1
    else:
        report.killed_before_ready += 1
    after = snapshot(daemon.data)
    report.integrity_ok += after.integrity == "ok"
    floor = max([before.rows, *acked])
    report.acknowledged_flushes += len(acked)
    report.acknowledged_rows = max(report.acknowledged_rows, floor)
    report.lost_rows += max(0, floor - after.rows)
    report.broken_batches += after.broken_batches
    report.lost_own_teks += len(before.own_teks - after.own_teks)
    report.consent_lost += after.consent not in ("enabled", "on")
    return after


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--min-delay", type=float, default=0.2)
    parser.add_argument("--max-delay", type=float, default=3.0)
    parser.add_argument("--beacons", type=int, default=BEACONS)
    parser.add_argument("--seed", type=int, default=None)
    add_output_arguments(parser)
    args = parser.parse_args(argv)
    report = run_in(
        args.dir,
        "ca-kill-",
        lambda base: run_rounds(
            args.rounds,
            base,
            min_delay=args.min_delay,
            max_delay=args.max_delay,
            beacons=args.beacons,
            seed=args.seed,
            progress=not args.json,
        ),
    )
    title = "kill -9 of `contact-agent run` (fake bluetoothd, beacons streaming)"
    print_figures(title, report.figures(), args.json)
    return 0 if report.passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
