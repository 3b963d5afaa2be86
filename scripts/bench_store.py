#!/usr/bin/env python3
"""Benchmark of the sighting store: ingest rate, bytes per sighting, load rate.

Every figure comes with an in-run reference measured the same way on the same machine,
and the ratio is the number to compare across machines:

* ingest: sightings through the real path (``SightingWriter.add`` + ``flush`` ->
  aiosqlite, one ``BEGIN IMMEDIATE`` transaction per batch) against raw stdlib
  ``sqlite3`` ``executemany`` of ready tuples into an equivalent table (same columns,
  WAL, synchronous=NORMAL, same batch size). Slices of the two alternate.
* storage: database bytes per stored sighting after a checkpoint, for the store and for
  the reference table; the target is <= 40 B.
* load: ``Store.observed_scans`` (aggregated scan instances) against a raw
  ``SELECT rpi, t`` fetchall of the reference table, in sightings per second.

Usage: ``scripts/bench_store.py [--sightings 200000] [--batch 500] [--slices 30] [--json]``
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.models import ScanPeriod, Sighting
from agent.store import DB_FILENAME, SightingWriter, Store

T0 = 1_700_000_000
TARGET_BYTES_PER_SIGHTING = 40.0
REFERENCE_SCHEMA = """CREATE TABLE ref (t INTEGER NOT NULL, rpi BLOB NOT NULL, aem BLOB NOT NULL,
    rssi INTEGER NOT NULL, scan_off INTEGER)"""


def make_stream(n: int, seed: int = 7) -> tuple[list[Sighting], list[ScanPeriod]]:
    """A day-like stream: 60 s scan instances, ~30 devices around, each RPI heard ~1/s."""
    rng = random.Random(seed)
    sightings: list[Sighting] = []
    scans: list[ScanPeriod] = []
    devices = [rng.randbytes(16) for _ in range(30)]
    t = float(T0)
    while len(sightings) < n:
        scan_start = t
        scans.append(ScanPeriod(scan_start, scan_start + 60))
        if rng.random() < 0.1:  # an RPI rotates
            devices[rng.randrange(len(devices))] = rng.randbytes(16)
        for second in range(60):
            for rpi in devices[: rng.randint(5, len(devices))]:
                sightings.append(
                    Sighting(t + second + rng.random(), rpi, rpi[:4], rng.randint(-95, -40), t)
                )
        t += 60
    return sightings[:n], scans


def reference_rows(sightings: list[Sighting]) -> list[tuple[int, bytes, bytes, int, int | None]]:
    rows = []
    for s in sightings:
        t = int(s.time)
        scan_off = None if s.scan_start is None else t - int(s.scan_start)
        rows.append((t, s.rpi, s.aem, s.rssi, scan_off))
    return rows


def open_reference(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute(REFERENCE_SCHEMA)
    return conn


def reference_batch(conn: sqlite3.Connection, rows: list[tuple[object, ...]]) -> None:
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany("INSERT INTO ref VALUES (?, ?, ?, ?, ?)", rows)
    conn.execute("COMMIT")


def quartiles(values: list[float]) -> tuple[float, float, float]:
    q = statistics.quantiles(values, n=4)
    return q[0], statistics.median(values), q[2]


async def bench(n: int, batch: int, slices: int, workdir: Path) -> dict[str, object]:
    sightings, scans = make_stream(n)
    ref_rows = reference_rows(sightings)
    ref_conn = open_reference(workdir / "reference.db")
    data_dir = workdir / "data"
    store = await Store.open(data_dir)
    writer = SightingWriter(store, flush_interval=3600, max_rows=batch, max_buffer=10 * batch)
    for scan in scans:
        writer.add(scan)

    # --- ingest: alternate slices of the real path and of the reference ----------------
    per_slice = n // slices
    ratios: list[float] = []
    target_rates: list[float] = []
    ref_rates: list[float] = []
    gc.disable()
    try:
        for k in range(slices):
            part = sightings[k * per_slice : (k + 1) * per_slice]
            start = time.perf_counter()
            for i in range(0, len(part), batch):
                for s in part[i : i + batch]:
                    writer.add(s)
                await writer.flush()
            target = len(part) / (time.perf_counter() - start)
            ref_part = ref_rows[k * per_slice : (k + 1) * per_slice]
            start = time.perf_counter()
            for i in range(0, len(ref_part), batch):
                reference_batch(ref_conn, ref_part[i : i + batch])
            ref = len(ref_part) / (time.perf_counter() - start)
            target_rates.append(target)
            ref_rates.append(ref)
            ratios.append(target / ref)
    finally:
        gc.enable()
    stored = per_slice * slices
    assert await store.sighting_counts(0) == stored, "not every sighting was stored"

    # --- load: aggregated scan instances vs a raw fetch --------------------------------
    load_rates: list[float] = []
    ref_load_rates: list[float] = []
    instances = 0
    for _ in range(5):
        start = time.perf_counter()
        observed = await store.observed_scans(0)
        load_rates.append(stored / (time.perf_counter() - start))
        instances = len(observed)
        start = time.perf_counter()
        ref_conn.execute("SELECT rpi, t FROM ref").fetchall()
        ref_load_rates.append(stored / (time.perf_counter() - start))
    assert sum(o.count for o in observed) == stored

    # --- storage: after a checkpoint (close truncates the WAL) -------------------------
    await writer.close()
    await store.close()
    ref_conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    ref_conn.close()
    store_bytes = (data_dir / DB_FILENAME).stat().st_size
    ref_bytes = (workdir / "reference.db").stat().st_size

    lo, mid, hi = quartiles(ratios)
    load_ratio = statistics.median(load_rates) / statistics.median(ref_load_rates)
    half = len(ratios) // 2
    return {
        "sightings": stored,
        "batch_rows": batch,
        "slices": slices,
        "ingest_rows_per_s": round(statistics.median(target_rates)),
        "ingest_reference_rows_per_s": round(statistics.median(ref_rates)),
        "ingest_ratio_median": round(mid, 3),
        "ingest_ratio_iqr": [round(lo, 3), round(hi, 3)],
        "ingest_ratio_drift": round(
            statistics.median(ratios[:half]) / statistics.median(ratios[half:]), 3
        ),
        "bytes_per_sighting": round(store_bytes / stored, 1),
        "reference_bytes_per_row": round(ref_bytes / stored, 1),
        "bytes_target": TARGET_BYTES_PER_SIGHTING,
        "bytes_ok": store_bytes / stored <= TARGET_BYTES_PER_SIGHTING,
        "scan_instances": instances,
        "load_sightings_per_s": round(statistics.median(load_rates)),
        "load_reference_rows_per_s": round(statistics.median(ref_load_rates)),
        "load_ratio": round(load_ratio, 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sightings", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--slices", type=int, default=30)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        figures = asyncio.run(bench(args.sightings, args.batch, args.slices, Path(tmp)))
    if args.json:
        print(json.dumps(figures))
    else:
        for key, value in figures.items():
            print(f"{key:30} {value}")
    return 0 if figures["bytes_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
