#!/usr/bin/env python3
"""RPI flood against ``contact-agent run`` (fault test F14 of ``docs/reliability.md``).

The fake bluetoothd relays ``--rate`` EN advertisements per second (default 2,000) from
``--devices`` simulated flood transmitters that change address and RPI every
``--rotate`` seconds (BlindSignedID-style cheap transmitters), plus one legitimate
neighbour: a phone with a real TEK whose RPI follows the EN interval. The daemon runs as
a child process for ``--minutes`` (default 10). The script samples the daemon's resident
memory and status every few seconds and reads the database at the end.

Pass criteria (exit status 0): the daemon ran throughout and stopped cleanly on SIGTERM;
its memory stayed bounded (growth after the first minute, or after the first sample in
short runs, below ``--max-rss-growth-mb``); the stored rows of every 5-minute span stay
within the flood guard's budget; the flood status was raised; the neighbour was recorded
in most minutes of the run.

Usage: ``scripts/flood.py [--minutes 10] [--rate 2000] [--devices 100] [--rotate 0.5]``
``[--json]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import sqlite3
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from fault_harness import (
    DaemonProcess,
    add_output_arguments,
    en_beacon,
    print_figures,
    radio_config,
    run_in,
    simulated_air,
    widen_send_buffer,
)

from agent import crypto
from agent.clock import en_interval_number
from agent.ingest import GuardLimits
from agent.lab.sim import FakeBluez
from agent.payload import Metadata
from agent.store import DB_FILENAME

SAMPLE_SECONDS = 5.0
WINDOW_SECONDS = 300


@dataclass
class Neighbour:
    """A real phone next to the device: its RPI follows the EN interval."""

    tek: bytes = field(default_factory=lambda: os.urandom(16))
    interval: int = -1

    def rpi(self, interval: int) -> bytes:
        return crypto.rpi(crypto.derive_rpik(self.tek), interval)

    def update(self, fake: FakeBluez, wall: float) -> None:
        interval = en_interval_number(wall)
        if interval != self.interval:
            rpi = self.rpi(interval)
            aem = crypto.encrypt_aem(crypto.derive_aemk(self.tek), rpi, bytes(Metadata(-8)))
            en_beacon(fake, "neighbour", rpi + aem, rssi=-55)
            self.interval = interval


@dataclass
class Sample:
    at: float
    rss: int
    heard: int
    stored: int
    dropped: int
    thinned: int
    db_bytes: int
    flood: bool


@dataclass
class Figures:
    minutes: float
    rate_asked: int
    devices: int
    rotate_seconds: float
    adverts_heard: int = 0
    heard_per_second: float = 0.0
    flood_dropped: int = 0
    thinned: int = 0
    rows_stored: int = 0
    max_rows_per_5min: int = 0
    row_budget_per_5min: int = 0
    db_bytes_start: int = 0
    db_bytes_end: int = 0
    db_growth_bytes_per_hour: float = 0.0
    rss_first_mb: float = 0.0
    rss_max_mb: float = 0.0
    rss_end_mb: float = 0.0
    rss_growth_mb: float = 0.0
    flood_status_seen: bool = False
    degraded_text: str | None = None
    neighbour_rows: int = 0
    neighbour_minutes: int = 0
    run_minutes: int = 0
    """Whole minutes of the run; ``neighbour_minutes`` of them hold a neighbour row."""
    ran_throughout: bool = False
    exit_status: int | None = None
    max_rss_growth_mb: float = 50.0
    samples: list[Sample] = field(default_factory=list)

    @property
    def neighbour_coverage(self) -> float:
        return self.neighbour_minutes / self.run_minutes if self.run_minutes else 1.0

    @property
    def passed(self) -> bool:
        return (
            self.ran_throughout
            and self.exit_status == 0
            and self.rss_growth_mb <= self.max_rss_growth_mb
            and self.max_rows_per_5min <= self.row_budget_per_5min
            and self.flood_status_seen
            and self.neighbour_rows > 0
            and self.neighbour_coverage >= 0.8
        )

    def summary(self) -> dict[str, object]:
        out = asdict(self)
        out.pop("samples")
        out["neighbour_coverage"] = round(self.neighbour_coverage, 3)
        out["passed"] = self.passed
        return out


def row_budget(limits: GuardLimits) -> int:
    """Rows a 5-minute span of wall time may hold: it overlaps at most two guard windows,
    each with at most its row budget plus one more row per tracked RPI."""
    return 2 * (limits.max_rows_per_window + limits.max_tracked_rpis)


async def _flood(fake: FakeBluez, devices: int, rotate: float, tick: float) -> None:
    """The radio ticks, paced to the asked rate: every tick each transmitter is heard
    once, and ``devices * tick / rotate`` of them change address and RPI first."""
    per_tick = devices * tick / rotate
    for n in range(devices):
        en_beacon(fake, f"flood{n}", os.urandom(20), rssi=-70 - n % 20)
    nxt, owed = 0, 0.0
    due = time.monotonic()
    while True:
        due += tick
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        owed += per_tick
        while owed >= 1:
            en_beacon(fake, f"flood{nxt}", os.urandom(20), rssi=-70 - nxt % 20)
            nxt, owed = (nxt + 1) % devices, owed - 1
        await fake.relay_now()


def _db_bytes(data: Path) -> int:
    total = 0
    for suffix in ("", "-wal"):
        with contextlib.suppress(FileNotFoundError):
            total += (data / (DB_FILENAME + suffix)).stat().st_size
    return total


async def _sample(daemon: DaemonProcess, started: float) -> Sample:
    status = await daemon.control("status", timeout=30)
    m = status["metrics"]
    return Sample(
        at=round(time.monotonic() - started, 1),
        rss=daemon.rss_bytes(),
        heard=int(m["adverts_heard_total"]),
        stored=int(m["sightings_stored_total"]),
        dropped=int(m["flood_dropped_total"]),
        thinned=int(m["sightings_thinned_total"]),
        db_bytes=_db_bytes(daemon.data),
        flood=bool(m["flood"]) or "flood" in (status.get("degraded") or ""),
    )


def _read_rows(
    data: Path, neighbour: Neighbour, start: float, end: float
) -> tuple[int, int, int, set[int]]:
    """(rows, max rows in a 5-min span, neighbour rows, minutes with the neighbour)."""
    first, last = en_interval_number(start) - 1, en_interval_number(end) + 1
    mine = {neighbour.rpi(i) for i in range(first, last + 1)}
    conn = sqlite3.connect(str(data / DB_FILENAME))
    try:
        times = [t for (t,) in conn.execute("SELECT t FROM sighting WHERE t >= ?", (start,))]
        neighbour_times = [
            t for t, rpi in conn.execute("SELECT t, rpi FROM sighting") if bytes(rpi) in mine
        ]
    finally:
        conn.close()
    spans = Counter(int(t // WINDOW_SECONDS) for t in times)
    busiest = max(spans.values(), default=0)
    whole = range(math.ceil(start / 60), math.floor(end / 60))  # minutes inside the run
    minutes = {int(t // 60) for t in neighbour_times} & set(whole)
    return len(times), busiest, len(neighbour_times), minutes


async def run_flood(
    base: Path,
    *,
    minutes: float = 10.0,
    rate: int = 2_000,
    devices: int = 100,
    rotate: float = 0.5,
    max_rss_growth_mb: float = 50.0,
    progress: bool = False,
) -> Figures:
    limits = GuardLimits()
    figures = Figures(minutes, rate, devices, rotate, max_rss_growth_mb=max_rss_growth_mb)
    figures.row_budget_per_5min = row_budget(limits)
    tick = devices / rate
    neighbour = Neighbour()
    # the fake's own radio loop idles; _flood drives the ticks at the asked rate
    async with simulated_air(tick=3600.0, stale_timeout=max(2.0, 2 * rotate)) as (bus, fake):
        widen_send_buffer(fake)
        daemon = DaemonProcess(base, bus.address, radio_config())
        try:
            await daemon.cli("enable")
            neighbour.update(fake, time.time())
            idle = asyncio.create_task(_flood(fake, 0, rotate, 0.05))  # the neighbour alone
            await daemon.start()
            await daemon.wait_ready()
            idle.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await idle
            figures.db_bytes_start = _db_bytes(daemon.data)
            wall_start = time.time()
            started = time.monotonic()
            flood = asyncio.create_task(_flood(fake, devices, rotate, tick))
            try:
                while time.monotonic() - started < minutes * 60:
                    await asyncio.sleep(SAMPLE_SECONDS)
                    neighbour.update(fake, time.time())
                    if not daemon.running:
                        break
                    sample = await _sample(daemon, started)
                    figures.samples.append(sample)
                    if progress:
                        print(
                            f"  {sample.at:6.0f} s  rss {sample.rss / 1e6:6.1f} MB  heard "
                            f"{sample.heard}  stored {sample.stored}  dropped {sample.dropped}",
                            file=sys.stderr,
                        )
                figures.ran_throughout = daemon.running
                last = await _sample(daemon, started) if daemon.running else None
                status = await daemon.control("status") if daemon.running else {}
                figures.degraded_text = status.get("degraded")
            finally:
                flood.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await flood
            wall_end = time.time()
            figures.exit_status = await daemon.stop()
        finally:
            daemon.close()
    if last is not None:
        figures.samples.append(last)
    _fill(figures, daemon, neighbour, wall_start, wall_end)
    return figures


def _fill(
    figures: Figures, daemon: DaemonProcess, neighbour: Neighbour, start: float, end: float
) -> None:
    samples = figures.samples
    if not samples:
        return
    run_seconds = max(1.0, samples[-1].at)
    last = samples[-1]
    figures.adverts_heard = last.heard
    figures.heard_per_second = round(last.heard / run_seconds, 1)
    figures.flood_dropped, figures.thinned = last.dropped, last.thinned
    figures.flood_status_seen = any(s.flood for s in samples)
    base = next((s for s in samples if s.at >= 60), samples[0])
    figures.rss_first_mb = round(base.rss / 1e6, 1)
    figures.rss_max_mb = round(max(s.rss for s in samples) / 1e6, 1)
    figures.rss_end_mb = round(last.rss / 1e6, 1)
    later = [s.rss for s in samples if s.at >= base.at]
    figures.rss_growth_mb = round((max(later) - base.rss) / 1e6, 1)
    figures.db_bytes_end = _db_bytes(daemon.data)
    growth = figures.db_bytes_end - figures.db_bytes_start
    figures.db_growth_bytes_per_hour = round(growth * 3600 / run_seconds)
    rows, busiest, mine, minutes = _read_rows(daemon.data, neighbour, start, end)
    figures.rows_stored, figures.max_rows_per_5min = rows, busiest
    figures.neighbour_rows, figures.neighbour_minutes = mine, len(minutes)
    figures.run_minutes = max(0, math.floor(end / 60) - math.ceil(start / 60))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=int, default=2_000, help="adverts per second")
    parser.add_argument("--devices", type=int, default=100, help="flood transmitters")
    parser.add_argument("--rotate", type=float, default=0.5, help="seconds per flood RPI")
    parser.add_argument("--max-rss-growth-mb", type=float, default=50.0)
    add_output_arguments(parser)
    args = parser.parse_args(argv)
    figures = run_in(
        args.dir,
        "ca-flood-",
        lambda base: run_flood(
            base,
            minutes=args.minutes,
            rate=args.rate,
            devices=args.devices,
            rotate=args.rotate,
            max_rss_growth_mb=args.max_rss_growth_mb,
            progress=not args.json,
        ),
    )
    title = f"RPI flood against `contact-agent run` for {args.minutes:g} min"
    print_figures(title, figures.summary(), args.json)
    return 0 if figures.passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
