"""SQL of the matching results: exposure windows, daily summaries, notification state."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Final

from agent.errors import StoreError
from agent.jsonout import dumps
from agent.models import DailySummary, ExposureWindow, ReportType, ScanInstance
from agent.store.db import Database, Transaction

_SELECT: Final = (
    "SELECT id, key_data, start, duration_seconds, report_type, infectiousness, "
    "calibration_confidence, scan_instances, score, weighted_duration_seconds, relay "
    "FROM exposure_window WHERE start >= ? ORDER BY start, id"
)
_SELECT_UNNOTIFIED: Final = _SELECT.replace("WHERE ", "WHERE notified = 0 AND ")
_INSERT: Final = (
    "INSERT OR IGNORE INTO exposure_window (key_data, start, duration_seconds, report_type, "
    "infectiousness, calibration_confidence, scan_instances, score, "
    "weighted_duration_seconds, relay) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def _encode_scans(scans: Sequence[ScanInstance]) -> str:
    triples = [
        [s.typical_attenuation_db, s.min_attenuation_db, s.seconds_since_last_scan] for s in scans
    ]
    return dumps(triples, separators=(",", ":"))


def _decode_scans(text: str) -> tuple[ScanInstance, ...]:
    try:
        return tuple(ScanInstance(int(a), int(b), int(c)) for a, b, c in json.loads(text))
    except (ValueError, TypeError) as exc:
        raise StoreError(f"a stored exposure window is unreadable ({exc})") from exc


def window_params(window: ExposureWindow) -> tuple[Any, ...]:
    return (
        window.key_data,
        window.start,
        window.duration_seconds,
        int(window.report_type),
        window.infectiousness,
        window.calibration_confidence,
        _encode_scans(window.scan_instances),
        window.score,
        window.weighted_duration_seconds,
        window.relay,
    )


def _window(row: Sequence[Any]) -> tuple[int, ExposureWindow]:
    wid, key_data, start, duration, report_type, infectiousness, confidence = row[:7]
    scans, score, weighted, relay = row[7:]
    return wid, ExposureWindow(
        start=start,
        duration_seconds=duration,
        report_type=ReportType(report_type),
        infectiousness=infectiousness,
        calibration_confidence=confidence,
        scan_instances=_decode_scans(scans),
        key_data=key_data,
        score=score,
        weighted_duration_seconds=weighted,
        relay=relay,
    )


async def insert_windows(tx: Transaction, windows: Sequence[ExposureWindow]) -> list[int]:
    """Insert windows not stored yet (same key_data and start); returns the new ids."""
    new: list[int] = []
    for window in windows:
        changed, rowid = await tx.execute(_INSERT, window_params(window))
        if changed == 1 and rowid is not None:
            new.append(rowid)
    return new


async def windows(
    db: Database, since: float = 0, *, unnotified: bool = False
) -> list[tuple[int, ExposureWindow]]:
    rows = await db.fetchall(_SELECT_UNNOTIFIED if unnotified else _SELECT, (since,))
    return [_window(row) for row in rows]


async def delete_windows_for_keys(tx: Transaction, key_datas: Sequence[bytes]) -> int:
    removed = 0
    for key_data in dict.fromkeys(key_datas):
        changed, _ = await tx.execute("DELETE FROM exposure_window WHERE key_data = ?", (key_data,))
        removed += changed
    return removed


async def write_summaries(
    tx: Transaction, summaries: Sequence[DailySummary], *, replace_all: bool
) -> None:
    if replace_all:
        await tx.execute("DELETE FROM daily_summary")
    await tx.executemany(
        "INSERT OR REPLACE INTO daily_summary (day, score_sum, maximum_score, "
        "weighted_duration_sum) VALUES (?, ?, ?, ?)",
        [(s.day, s.score_sum, s.maximum_score, s.weighted_duration_sum) for s in summaries],
    )


async def summaries(db: Database) -> list[DailySummary]:
    rows = await db.fetchall(
        "SELECT day, score_sum, maximum_score, weighted_duration_sum FROM daily_summary "
        "ORDER BY day"
    )
    return [DailySummary(*row) for row in rows]
