"""SQL of the sighting tables: batched appends and the aggregated reads.

Rows are (t, rpi, aem, rssi, scan_off, relay): whole Unix seconds (as GAEN's contact
records), the 16-byte RPI and 4-byte AEM as received, the calibrated RSSI, the offset of
the sighting from the start of its scan instance (NULL when unknown), and the relay
guard's reason bitmask (OR-ed per aggregated scan on reading). Every batch appends a
contiguous rowid range and records it in ``sighting_batch`` with its newest time; reads
"since T" start at the first batch that can hold rows at or after T.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Collection, Sequence
from typing import Any, Final

from agent.constants import CALIBRATED_RSSI_MAX, CALIBRATED_RSSI_MIN
from agent.errors import MalformedInputError
from agent.models import ObservedScan, ScanPeriod, Sighting
from agent.store.db import Database, Transaction
from agent.store.records import Encounter, group_by_gap

Row = tuple[int, bytes, bytes, int, int | None, int]
ScanRow = tuple[int, int]

MAX_TIME: Final = 253_402_300_800
"""Year 10000: any time beyond is nonsense, not a sighting."""

_INSERT = "INSERT INTO sighting (t, rpi, aem, rssi, scan_off, relay) VALUES (?, ?, ?, ?, ?, ?)"
_LOW_ROW = "SELECT min(first_row) FROM sighting_batch WHERE t_max >= ?"

_GROUPED = """
SELECT g.rpi, g.aem, g.first, g.last, g.n, g.lo, g.hi, g.mean, g.rl, g.ss,
       (SELECT end_t FROM scan WHERE end_t <= g.ss AND start_t < g.ss
        ORDER BY end_t DESC LIMIT 1),
       (SELECT start_t FROM scan WHERE end_t <= g.ss AND start_t < g.ss
        ORDER BY end_t DESC LIMIT 1)
FROM (SELECT rpi, aem, t - scan_off AS ss, min(t) AS first, max(t) AS last,
             count(*) AS n, min(rssi) AS lo, max(rssi) AS hi, avg(rssi) AS mean,
             (max(relay & 1) | max(relay & 2) | max(relay & 4) | max(relay & 8)
              | max(relay & 16) | max(relay & 32) | max(relay & 64) | max(relay & 128)) AS rl
      FROM sighting WHERE rowid >= ? AND t >= ? AND scan_off IS NOT NULL{rpis}
      GROUP BY rpi, aem, ss) AS g
"""
# rl: SQLite has no bitwise-OR aggregate, so the relay reasons are OR-ed one max() per bit
_UNSCANNED = """
SELECT rpi, aem, t, rssi, relay FROM sighting
WHERE rowid >= ? AND t >= ? AND scan_off IS NULL{rpis}
ORDER BY rpi, aem, t
"""
# {rpis}: nothing, or " AND rpi IN (?, ...)" to read the scans of a few RPIs only
_ENCOUNTERS = """
SELECT rpi, aem, min(t), max(t), count(*), min(rssi), avg(rssi), max(rssi)
FROM sighting WHERE rowid >= ? AND t >= ? GROUP BY rpi, aem ORDER BY min(t)
"""
_DISTINCT_RPIS = """
SELECT group_concat(hex(rpi), '')
FROM (SELECT DISTINCT rpi FROM sighting WHERE rowid >= ? AND t >= ?)
"""
# one row (hex, as group_concat joins text): tens of thousands of one-blob rows would each
# be a Python tuple, enough to set off the garbage collector's full passes, which hold
# the GIL (the event loop) for tens of milliseconds
_DISTINCT_INTERVALS = "SELECT DISTINCT t / 600 FROM sighting WHERE rowid >= ? AND t >= ?"
_COUNT = "SELECT count(*) FROM sighting WHERE rowid >= ? AND t >= ?"
_COUNT_DISTINCT = "SELECT count(DISTINCT rpi) FROM sighting WHERE rowid >= ? AND t >= ?"
_RANGE = "SELECT min(t), max(t) FROM sighting WHERE rowid >= ? AND t >= ?"
_ALL = """
SELECT t, rpi, aem, rssi, scan_off, relay FROM sighting WHERE rowid >= ? AND t >= ?
ORDER BY t, rowid
"""


def _seconds(value: float, what: str) -> int:
    if not isinstance(value, int | float) or not math.isfinite(value):
        raise MalformedInputError(f"{what} must be a finite number")
    if not 0 <= value < MAX_TIME:
        raise MalformedInputError(f"{what} must be Unix seconds, got {value}")
    return math.floor(value)


def sighting_row(sighting: Sighting) -> Row:
    """The stored form of a sighting; raises MalformedInputError for impossible values."""
    t = _seconds(sighting.time, "sighting time")
    rssi = sighting.rssi
    if isinstance(rssi, bool) or not isinstance(rssi, int):
        raise MalformedInputError("rssi must be an integer")
    if not CALIBRATED_RSSI_MIN <= rssi <= CALIBRATED_RSSI_MAX:
        raise MalformedInputError(
            f"rssi must be in {CALIBRATED_RSSI_MIN}..{CALIBRATED_RSSI_MAX}, got {rssi}"
        )
    scan_off = None
    if sighting.scan_start is not None:
        scan_off = t - _seconds(sighting.scan_start, "scan start")
    relay = sighting.relay
    if isinstance(relay, bool) or not isinstance(relay, int) or not 0 <= relay < 256:
        raise MalformedInputError("relay reasons must be a small bitmask")
    return (t, sighting.rpi, sighting.aem, rssi, scan_off, relay)


def scan_row(period: ScanPeriod) -> ScanRow:
    start = _seconds(period.start, "scan start")
    end = _seconds(period.end, "scan end")
    if end < start:
        raise MalformedInputError("a scan cannot end before it starts")
    return (end, start)


async def append(tx: Transaction, rows: Sequence[Row], scans: Sequence[ScanRow]) -> None:
    """Append one batch inside the caller's transaction."""
    if rows:
        before = await tx.scalar("SELECT coalesce(max(rowid), 0) FROM sighting")
        await tx.executemany(_INSERT, rows)
        await tx.execute(
            "INSERT INTO sighting_batch (first_row, last_row, t_max) VALUES (?, ?, ?)",
            (before + 1, before + len(rows), max(r[0] for r in rows)),
        )
    if scans:
        await tx.executemany("INSERT OR REPLACE INTO scan (end_t, start_t) VALUES (?, ?)", scans)


async def _low_row(db: Database, since: float) -> int | None:
    low = await db.scalar(_LOW_ROW, (since,))
    return int(low) if low is not None else None


def _scans_from_rows(grouped: list[Any], unscanned: list[Any]) -> list[ObservedScan]:
    result = [
        ObservedScan(
            rpi=rpi,
            aem=aem,
            first_seen=float(first),
            last_seen=float(last),
            count=n,
            rssi_min=lo,
            rssi_max=hi,
            rssi_mean=float(mean),
            previous_scan_end=None if prev is None else float(prev),
            scan_start=float(scan_start),
            previous_scan_start=None if prev_start is None else float(prev_start),
            relay=int(relay),
        )
        for rpi, aem, first, last, n, lo, hi, mean, relay, scan_start, prev, prev_start in grouped
    ]
    if unscanned:
        result.extend(group_by_gap(unscanned))
    result.sort(key=lambda o: (o.first_seen, o.rpi))
    return result


_RPIS_PER_QUERY: Final = 500
"""RPIs named in one query (SQLite allows 32,766 parameters)."""
_RPI_QUERIES_MAX: Final = 4
"""Each query reads the rows since ``since`` once: for more RPIs than these queries name
(a cycle finds a few; a flood of planted RPIs could make it thousands), one read of
every row, filtered here, costs less."""


async def observed_scans(
    db: Database, since: float, rpis: Collection[bytes] | None = None
) -> list[ObservedScan]:
    """Scan instances of every RPI seen at or after ``since`` (two queries in all), or
    of ``rpis`` only (two queries per 500 of them, at most two reads in all).

    Turning tens of thousands of rows into objects takes a while, so it runs in a thread
    and the event loop (the scanner's callbacks) keeps its timing.
    """
    low = await _low_row(db, since)
    if low is None or (rpis is not None and not rpis):
        return []
    if rpis is None or len(rpis) > _RPI_QUERIES_MAX * _RPIS_PER_QUERY:
        grouped, unscanned = await _scan_rows(db, low, since, [])
        if rpis is not None:
            keep = frozenset(rpis)
            grouped = [row for row in grouped if row[0] in keep]
            unscanned = [row for row in unscanned if row[0] in keep]
    else:
        grouped, unscanned = [], []
        wanted = sorted(rpis)
        for i in range(0, len(wanted), _RPIS_PER_QUERY):
            more = await _scan_rows(db, low, since, wanted[i : i + _RPIS_PER_QUERY])
            grouped += more[0]
            unscanned += more[1]
    return await asyncio.to_thread(_scans_from_rows, grouped, unscanned)


async def _scan_rows(
    db: Database, low: int, since: float, rpis: list[bytes]
) -> tuple[list[Any], list[Any]]:
    """The grouped and the unscanned rows since ``since``, of ``rpis`` only if any."""
    only = f" AND rpi IN ({', '.join('?' * len(rpis))})" if rpis else ""
    grouped = await db.fetchall(_GROUPED.format(rpis=only), (low, since, *rpis))
    unscanned = await db.fetchall(_UNSCANNED.format(rpis=only), (low, since, *rpis))
    return grouped, unscanned


async def distinct_rpis(db: Database, since: float) -> bytes:
    """Every RPI seen at or after ``since`` once, concatenated (16 bytes each)."""
    low = await _low_row(db, since)
    if low is None:
        return b""
    joined = await db.scalar(_DISTINCT_RPIS, (low, since))
    return bytes.fromhex(joined) if joined else b""


async def distinct_intervals(db: Database, since: float) -> list[int]:
    """The EN intervals (t // 600) of the sightings at or after ``since``, ascending."""
    low = await _low_row(db, since)
    if low is None:
        return []
    return sorted(int(j) for (j,) in await db.fetchall(_DISTINCT_INTERVALS, (low, since)))


async def encounters(db: Database, since: float) -> list[Encounter]:
    low = await _low_row(db, since)
    if low is None:
        return []
    return [
        Encounter(rpi, aem, float(first), float(last), n, lo, float(mean), hi)
        for rpi, aem, first, last, n, lo, mean, hi in await db.fetchall(_ENCOUNTERS, (low, since))
    ]


async def count(db: Database, since: float, *, distinct_rpis: bool = False) -> int:
    low = await _low_row(db, since)
    if low is None:
        return 0
    sql = _COUNT_DISTINCT if distinct_rpis else _COUNT
    return int(await db.scalar(sql, (low, since)))


async def time_range(db: Database, since: float) -> tuple[float, float] | None:
    """Oldest and newest sighting time at or after ``since`` (None: no sightings)."""
    low = await _low_row(db, since)
    if low is None:
        return None
    rows = await db.fetchall(_RANGE, (low, since))
    if not rows or rows[0][0] is None:
        return None
    return float(rows[0][0]), float(rows[0][1])


async def iterate(db: Database, since: float) -> AsyncIterator[Sighting]:
    """Every sighting at or after ``since``, oldest first."""
    low = await _low_row(db, since)
    if low is None:
        return
    async for t, rpi, aem, rssi, scan_off, relay in db.iterate(_ALL, (low, since)):
        yield Sighting(
            time=float(t),
            rpi=rpi,
            aem=aem,
            rssi=rssi,
            scan_start=None if scan_off is None else float(t - scan_off),
            relay=relay,
        )
