#!/usr/bin/env python3
"""kill -9 soak of the store (fault test F1 of ``docs/reliability.md``).

A child process opens the real :class:`agent.store.Store` on a shared data directory and
appends sighting batches as fast as it can, printing each batch id after its commit;
every few batches it also writes FULL state, records a scan and purges old rows (so kills
land in checkpoints and purges too). The parent kills it with SIGKILL at a random moment
(sometimes before it is even ready; otherwise after a few acknowledged batches), then
reopens the database and checks:

* ``PRAGMA integrity_check`` is ok after every kill;
* every batch the child printed is present with all its rows (no committed batch lost);
* no batch is present in part (a transaction is all or nothing).

Usage: ``scripts/killtest_store.py [--rounds 200] [--max-delay 0.3] [--dir DIR] [--json]``.
Exit status 0 when every round passed. Prints the figures of the run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.models import ScanPeriod, Sighting
from agent.store import Store

BATCH_ROWS = 50
BASE_TIME = 1_700_000_000
ROUND_SPAN = 1_000_000
"""Seconds between the time ranges of two rounds (batches of a round stay inside)."""
OLD_TIME = 1_000_000_000
"""Rows this old are purged by the child while it runs."""
EARLY_KILL_SHARE = 0.1
"""Share of rounds killed at a random moment of start-up instead of while writing."""
BATCHES_BEFORE_KILL = 6
"""A writing round waits for this many acknowledged batches, then kills after a random
delay: the work done before a kill is an event, not a race with a busy machine."""


def batch_rpi(round_no: int, batch: int) -> bytes:
    return b"KILL" + round_no.to_bytes(6, "big") + batch.to_bytes(6, "big")


async def child(data_dir: Path, round_no: int) -> None:
    store = await Store.open(data_dir)
    print("ready", flush=True)
    t0 = BASE_TIME + round_no * ROUND_SPAN
    batch = 0
    while True:
        rpi = batch_rpi(round_no, batch)
        rows = [Sighting(float(t0 + batch), rpi, b"\x40\x08\0\0", -60, t0)] * BATCH_ROWS
        rows += [Sighting(float(OLD_TIME + i), os.urandom(16), b"abcd", -90) for i in range(3)]
        await store.add_sightings(rows)
        print(batch, flush=True)
        if batch % 5 == 4:
            await store.set_state("killtest.last_batch", str(batch))
            await store.record_scan(ScanPeriod(t0 + batch - 1, t0 + batch))
        if batch % 20 == 19:
            await store.purge(OLD_TIME + 10_000)
        batch += 1


@dataclass
class Report:
    rounds: int = 0
    integrity_ok: int = 0
    acknowledged_batches: int = 0
    lost_batches: int = 0
    partial_batches: int = 0
    extra_committed_batches: int = 0
    """Committed but killed before the child could print the id (allowed)."""
    early_kills: int = 0
    resumed_deletions: int = 0
    """Opens that found a purge/forget cut short by the kill and finished it."""
    kill_delays_ms: list[float] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return (
            self.integrity_ok == self.rounds
            and self.lost_batches == 0
            and self.partial_batches == 0
        )

    def figures(self) -> dict[str, object]:
        delays = self.kill_delays_ms or [0.0]
        data = asdict(self)
        del data["kill_delays_ms"]
        data.update(
            passed=self.passed,
            kill_delay_ms_median=round(statistics.median(delays), 1),
            kill_delay_ms_max=round(max(delays), 1),
            seconds_per_round=round(self.seconds / max(1, self.rounds), 3),
        )
        return data


async def check_round(data_dir: Path, round_no: int, acked: list[int], report: Report) -> None:
    async with await Store.open(data_dir) as store:
        if await store.integrity_ok():
            report.integrity_ok += 1
        since = BASE_TIME + round_no * ROUND_SPAN
        counts = {e.rpi: e.count for e in await store.encounters(since)}
    report.acknowledged_batches += len(acked)
    for batch in acked:
        if counts.pop(batch_rpi(round_no, batch), 0) != BATCH_ROWS:
            report.lost_batches += 1
    for rpi, n in counts.items():
        if rpi.startswith(b"KILL"):
            if n == BATCH_ROWS:
                report.extra_committed_batches += 1
            else:
                report.partial_batches += 1


def run_round(
    data_dir: Path, round_no: int, rng: random.Random, max_delay: float
) -> tuple[list[int], bool, float]:
    """One child run, killed at a random moment; returns (printed batch ids, early, delay)."""
    proc = subprocess.Popen(
        [sys.executable, __file__, "--child", str(data_dir), str(round_no)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    started = time.monotonic()
    early = rng.random() < EARLY_KILL_SHARE
    seen: list[str] = []
    if early:
        delay = rng.uniform(0.0, 0.15)
    else:
        proc.stdout.readline()  # "ready" (or "" if the child died)
        while len(seen) < BATCHES_BEFORE_KILL:
            line = proc.stdout.readline()
            if not line:
                break  # the child died: the checks below say what was lost
            seen.append(line)
        delay = rng.uniform(0.0, max_delay)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    out, _ = proc.communicate()
    lines = [line.strip() for line in [*seen, *out.splitlines()]]
    acked = [int(line) for line in lines if line.isdigit()]
    return acked, early, (time.monotonic() - started) * 1000


class _Resumes(logging.Handler):
    def __init__(self, report: Report) -> None:
        super().__init__(logging.WARNING)
        self.report = report

    def emit(self, record: logging.LogRecord) -> None:
        if "interrupted" in record.getMessage():
            self.report.resumed_deletions += 1


def run_rounds(rounds: int, data_dir: Path, *, max_delay: float = 0.3, seed: int = 1) -> Report:
    rng = random.Random(seed)
    report = Report()
    store_logger = logging.getLogger("agent.store.store")
    handler = _Resumes(report)
    store_logger.addHandler(handler)
    start = time.monotonic()
    for round_no in range(rounds):
        acked, early, delay_ms = run_round(data_dir, round_no, rng, max_delay)
        asyncio.run(check_round(data_dir, round_no, acked, report))
        report.rounds += 1
        report.early_kills += early
        report.kill_delays_ms.append(delay_ms)
    report.seconds = time.monotonic() - start
    store_logger.removeHandler(handler)
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", nargs=2, metavar=("DIR", "ROUND"), help=argparse.SUPPRESS)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--max-delay", type=float, default=0.3, help="seconds after ready")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--dir", type=Path, default=None, help="data dir (default: temporary)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    if args.child:
        asyncio.run(child(Path(args.child[0]), int(args.child[1])))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = args.dir or Path(tmp) / "data"
        report = run_rounds(args.rounds, data_dir, max_delay=args.max_delay, seed=args.seed)
    figures = report.figures()
    if args.json:
        print(json.dumps(figures))
    else:
        for key, value in figures.items():
            print(f"{key:28} {value}")
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
