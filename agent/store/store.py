"""The :class:`Store`: the agent's only door to its SQLite database.

See the package docstring (``agent.store``) for the design, durability and deletion rules.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import AsyncIterator, Collection, Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Final

from agent.clock import Clock, SystemClock
from agent.consent import ConsentState
from agent.constants import EN_INTERVAL_SECONDS, RETENTION_SECONDS
from agent.errors import MalformedInputError, StoreError
from agent.jsonout import dumps
from agent.keyschedule import OwnTek
from agent.models import DailySummary, ExposureWindow, ObservedScan, ScanPeriod, Sighting
from agent.netlog import NetworkContact
from agent.paths import ensure_private_dir
from agent.store import results, schema
from agent.store import sightings as sql_sightings
from agent.store.db import (
    CorruptDatabaseError,
    Database,
    Transaction,
    db_files,
    quarantine,
    quarantine_time,
    quarantined_copies,
)
from agent.store.records import Encounter, PurgeResult

_LOGGER = logging.getLogger(__name__)

QUARANTINE_STATE_KEY: Final = "store.quarantined"
"""State key set when a damaged database was moved aside (JSON: path, at, reason)."""
PENDING_STATE_KEY: Final = "store.pending"
"""``forget`` or ``checkpoint``: a deletion to finish at the next open after a crash."""
CONSENT_STATE_KEY: Final = "consent"
"""``enabled`` / ``disabled`` (``on`` / ``off`` before): consent to contact detection."""
CONSENT_CHANGED_STATE_KEY: Final = "consent.changed_at"
"""Unix seconds of the last consent change, as text."""
LOWER_BOUND_STATE_KEY: Final = "clock.lower_bound"
"""Unix seconds that true time is known to be at or after (docs/daemon.md, "Clock trust"), as
text."""
LAST_FETCH_STATE_KEY: Final = "keys.last_fetch"
"""JSON summary of the latest fetch for ``status``: at, ok, files, matched_keys, ..."""
SHA256_LENGTH: Final = 32
MAX_NETWORK_LOG_ROWS: Final = 20_000
"""Rows of the transparency log kept at most (a retry storm cannot grow it without bound)."""


class Store:
    """Sightings, own keys, key-file bookkeeping, results and small state in one database.

    Open with ``await Store.open(data_dir)``; one connection per instance, closed by
    :meth:`close` (or ``async with``). Every method is a coroutine safe to call from any
    task of the owning event loop.
    """

    def __init__(self, db: Database, data_dir: Path, quarantined: Path | None) -> None:
        self._db = db
        self.data_dir = data_dir
        self.path = db.path
        self.quarantined = quarantined
        """Set when a corrupt database was moved aside by this open (its new name)."""

    # --- lifecycle -----------------------------------------------------------------------
    @classmethod
    async def open(
        cls, data_dir: Path, *, clock: Clock | None = None, max_bytes: int | None = None
    ) -> Store:
        """Open (creating if needed) the database in ``data_dir`` (0700, files 0600).

        A database that fails the quick check is moved aside with a timestamp and a fresh
        one created: logged at ERROR, kept in :attr:`quarantined` and in the state key
        ``store.quarantined`` so ``status`` can show it. ``max_bytes`` caps the database
        size (writes beyond it fail with "database or disk is full").
        """
        clock = clock or SystemClock()
        path = data_dir / schema.DB_FILENAME
        moved: Path | None = None
        reason = ""
        try:
            ensure_private_dir(data_dir)
            try:
                db = await Database.open(path)
            except CorruptDatabaseError as exc:
                reason = str(exc)
                moved = quarantine(path, clock.wall())
                _LOGGER.error(
                    "database %s is damaged (%s); moved it to %s and started an empty one",
                    path,
                    reason,
                    moved.name,
                )
                db = await Database.open(path)
        except OSError as exc:
            raise StoreError(f"cannot open the database in {data_dir}: {exc}") from exc
        store = cls(db, data_dir, moved)
        try:
            if max_bytes is not None:
                await store._limit_size(max_bytes)
            if moved is not None:
                notice = {"path": str(moved), "at": clock.wall(), "reason": reason}
                await store.set_state(QUARANTINE_STATE_KEY, dumps(notice))
            await store._resume_pending()
        except BaseException:
            await store.close()
            raise
        return store

    async def close(self) -> None:
        await self._db.close()

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _limit_size(self, max_bytes: int) -> None:
        page_size = int(await self._db.scalar("PRAGMA page_size"))
        await self._db.pragma(f"PRAGMA max_page_count={max(1, max_bytes // page_size):d}")

    async def _resume_pending(self) -> None:
        pending = await self.get_state(PENDING_STATE_KEY)
        if pending == "forget":
            _LOGGER.warning("finishing an interrupted forget")
            await self.forget()
        elif pending is not None:
            _LOGGER.warning("finishing an interrupted deletion (WAL checkpoint)")
            await self._finish_deletion()

    # --- sightings -----------------------------------------------------------------------
    async def add_sightings(self, sightings: Sequence[Sighting]) -> None:
        """Append sightings in one transaction (all or nothing)."""
        rows = [sql_sightings.sighting_row(s) for s in sightings]
        await self._append(rows, [])

    async def record_scan(self, period: ScanPeriod) -> None:
        """Remember a scan's start and end (for seconds-since-last-scan)."""
        await self._append([], [sql_sightings.scan_row(period)])

    async def _append(
        self, rows: Sequence[sql_sightings.Row], scans: Sequence[sql_sightings.ScanRow]
    ) -> None:
        if not rows and not scans:
            return
        async with self._db.transaction("storing sightings failed", durable=False) as tx:
            await sql_sightings.append(tx, rows, scans)

    async def observed_scans(
        self, since: float, rpis: Collection[bytes] | None = None
    ) -> list[ObservedScan]:
        """Every scan instance with sightings at or after ``since`` (of ``rpis`` only,
        if given), oldest first.

        Instance = (rpi, aem, scan start); without a known scan start, the 25.5 s gap rule
        with a 60 s cap. ``previous_scan_end`` = end of the latest recorded scan that
        ended before the instance's scan started (None when unknown).
        """
        return await sql_sightings.observed_scans(self._db, since, rpis)

    async def observed_rpis(self, since: float) -> bytes:
        """Every RPI seen at or after ``since`` once, concatenated (16 bytes each): what
        a key search needs, at a fraction of :meth:`observed_scans`' memory."""
        return await sql_sightings.distinct_rpis(self._db, since)

    async def sighting_intervals(self, since: float) -> list[int]:
        """The EN intervals in which sightings at or after ``since`` were made: a key
        search computes only the RPIs within +-12 intervals of them."""
        return await sql_sightings.distinct_intervals(self._db, since)

    async def encounters(self, since: float) -> list[Encounter]:
        """Per RPI (and AEM): first/last seen, count, min/mean/max calibrated RSSI."""
        return await sql_sightings.encounters(self._db, since)

    async def sighting_counts(self, since: float) -> int:
        """Number of sightings at or after ``since``."""
        return await sql_sightings.count(self._db, since)

    async def unique_rpis(self, since: float) -> int:
        """Number of distinct RPIs seen at or after ``since``."""
        return await sql_sightings.count(self._db, since, distinct_rpis=True)

    async def sighting_time_range(self, since: float) -> tuple[float, float] | None:
        """Oldest and newest sighting at or after ``since``; None when there are none."""
        return await sql_sightings.time_range(self._db, since)

    def iter_sightings(self, since: float = 0) -> AsyncIterator[Sighting]:
        """Every stored sighting at or after ``since``, oldest first (for export)."""
        return sql_sightings.iterate(self._db, since)

    # --- own keys (synchronous=FULL) -----------------------------------------------------
    async def load_own_teks(self) -> list[OwnTek]:
        rows = await self._db.fetchall(
            "SELECT key_data, rolling_start_interval_number, rolling_period, "
            "max_broadcast_interval FROM own_tek ORDER BY rolling_start_interval_number"
        )
        return [OwnTek(*row) for row in rows]

    async def save_own_teks(self, teks: Iterable[OwnTek]) -> None:
        """Insert or update keys (a changed period or broadcast high-water mark)."""
        teks = list(teks)
        if not teks:
            return
        async with self._db.transaction("saving own keys failed", durable=True) as tx:
            await tx.executemany(
                "INSERT OR REPLACE INTO own_tek (key_data, rolling_start_interval_number, "
                "rolling_period, max_broadcast_interval) VALUES (?, ?, ?, ?)",
                [
                    (
                        t.key_data,
                        t.rolling_start_interval_number,
                        t.rolling_period,
                        t.max_broadcast_interval,
                    )
                    for t in teks
                ],
            )

    async def delete_own_teks_before(self, rolling_start: int) -> None:
        """Delete own keys whose rolling start interval is before ``rolling_start``."""
        async with self._db.transaction("deleting own keys failed", durable=True) as tx:
            await tx.execute(
                "DELETE FROM own_tek WHERE rolling_start_interval_number < ?", (rolling_start,)
            )

    # --- small state (synchronous=FULL) --------------------------------------------------
    async def get_state(self, key: str) -> str | None:
        value = await self._db.scalar("SELECT value FROM state WHERE key = ?", (key,))
        return None if value is None else str(value)

    async def set_state(self, key: str, value: str) -> None:
        async with self._db.transaction("saving state failed", durable=True) as tx:
            await tx.execute(
                "INSERT OR REPLACE INTO state (key, value) VALUES (?, ?)", (key, value)
            )

    async def delete_state(self, key: str) -> None:
        async with self._db.transaction("saving state failed", durable=True) as tx:
            await tx.execute("DELETE FROM state WHERE key = ?", (key,))

    async def consent(self) -> ConsentState:
        """The user's consent (``UNSET`` until ``enable`` or ``disable`` ran)."""
        return ConsentState.parse(await self.get_state(CONSENT_STATE_KEY))

    async def set_consent(self, enabled: bool, wall: float) -> ConsentState:
        """Persist consent (durable before this returns) and when it changed."""
        state = ConsentState.ENABLED if enabled else ConsentState.DISABLED
        await self.set_state(CONSENT_STATE_KEY, state.value)
        await self.set_state(CONSENT_CHANGED_STATE_KEY, f"{wall:.0f}")
        return state

    async def clock_lower_bound(self) -> float | None:
        """The persisted lower bound of true time (None: none saved, or unreadable)."""
        text = await self.get_state(LOWER_BOUND_STATE_KEY)
        try:
            value = float(text) if text else None
        except ValueError:
            return None
        return value if value is not None and math.isfinite(value) else None

    async def set_clock_lower_bound(self, bound: float) -> None:
        """Persist the lower bound of true time (docs/daemon.md, "Clock trust")."""
        await self.set_state(LOWER_BOUND_STATE_KEY, f"{bound:.3f}")

    # --- downloaded key files (synchronous=FULL) -----------------------------------------
    async def is_file_processed(self, sha256: bytes) -> bool:
        _check_sha256(sha256)
        found = await self._db.scalar("SELECT 1 FROM processed_file WHERE sha256 = ?", (sha256,))
        return found is not None

    async def mark_file_processed(
        self, sha256: bytes, *, source: str, key_count: int, processed_at: float
    ) -> None:
        """Remember a processed file; a second mark keeps the first record."""
        _check_sha256(sha256)
        async with self._db.transaction("saving file state failed", durable=True) as tx:
            await tx.execute(
                "INSERT OR IGNORE INTO processed_file (sha256, source, key_count, processed_at) "
                "VALUES (?, ?, ?, ?)",
                (sha256, source, key_count, processed_at),
            )

    async def rejected_file_reason(self, sha256: bytes) -> str | None:
        """Why a file with this SHA-256 was refused before, or None."""
        _check_sha256(sha256)
        reason = await self._db.scalar(
            "SELECT reason FROM rejected_file WHERE sha256 = ?", (sha256,)
        )
        return None if reason is None else str(reason)

    async def remember_rejected_file(
        self, sha256: bytes, *, source: str, reason: str, rejected_at: float
    ) -> None:
        """Remember a file refused by verification (purged with the processed files)."""
        _check_sha256(sha256)
        async with self._db.transaction("saving file state failed", durable=True) as tx:
            await tx.execute(
                "INSERT OR IGNORE INTO rejected_file (sha256, source, reason, rejected_at) "
                "VALUES (?, ?, ?, ?)",
                (sha256, source[:200], reason[:500], rejected_at),
            )

    # --- results (synchronous=FULL) ------------------------------------------------------
    async def save_exposure_windows(self, windows: Sequence[ExposureWindow]) -> list[int]:
        """Store windows; returns the ids of the new ones (same key_data + start: kept once)."""
        async with self._db.transaction("saving exposure windows failed", durable=True) as tx:
            return await results.insert_windows(tx, windows)

    async def exposure_windows(self, since: float = 0) -> list[ExposureWindow]:
        return [w for _, w in await results.windows(self._db, since)]

    async def remove_windows_for_keys(self, key_datas: Sequence[bytes]) -> int:
        """Delete the windows of these diagnosis keys (revoked); returns how many."""
        async with self._db.transaction("removing exposure windows failed", durable=True) as tx:
            return await results.delete_windows_for_keys(tx, key_datas)

    async def save_daily_summaries(
        self, summaries: Sequence[DailySummary], *, replace_all: bool = False
    ) -> None:
        """Insert or replace summaries by day; ``replace_all`` first drops every stored day."""
        async with self._db.transaction("saving daily summaries failed", durable=True) as tx:
            await results.write_summaries(tx, summaries, replace_all=replace_all)

    async def daily_summaries(self) -> list[DailySummary]:
        return await results.summaries(self._db)

    async def unnotified_windows(self) -> list[tuple[int, ExposureWindow]]:
        """(id, window) of every stored window not yet notified, oldest first."""
        return await results.windows(self._db, 0, unnotified=True)

    async def mark_notified(self, ids: Sequence[int]) -> None:
        async with self._db.transaction("saving notification state failed", durable=True) as tx:
            await tx.executemany(
                "UPDATE exposure_window SET notified = 1 WHERE id = ?", [(i,) for i in ids]
            )

    # --- the transparency log (agent.netlog) ---------------------------------------------
    async def add_network_contacts(self, contacts: Sequence[NetworkContact]) -> None:
        """Append contacts; the oldest beyond :data:`MAX_NETWORK_LOG_ROWS` go."""
        if not contacts:
            return
        async with self._db.transaction("saving the network log failed", durable=False) as tx:
            await tx.executemany(
                "INSERT INTO network_log (t, host, purpose, bytes_sent, bytes_received, result) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (c.time, c.host, c.purpose, c.bytes_sent, c.bytes_received, c.result)
                    for c in contacts
                ],
            )
            await tx.execute(
                "DELETE FROM network_log WHERE id <= (SELECT max(id) FROM network_log) - ?",
                (MAX_NETWORK_LOG_ROWS,),
            )

    async def network_contacts(self, since: float = 0) -> list[NetworkContact]:
        """Contacts at or after ``since``, oldest first."""
        rows = await self._db.fetchall(
            "SELECT t, host, purpose, bytes_sent, bytes_received, result FROM network_log "
            "WHERE t >= ? ORDER BY t, id",
            (since,),
        )
        return [NetworkContact(float(t), h, p, int(s), int(r), res) for t, h, p, s, r, res in rows]

    # --- retention and deletion ----------------------------------------------------------
    async def purge(self, cutoff: float) -> PurgeResult:
        """Delete everything older than ``cutoff`` (Unix seconds), provably.

        The caller chooses the cutoff: wall - 14 days with a trusted clock, else the
        clock lower bound - 14 days (docs/daemon.md, "Clock trust"). Rows go with
        ``secure_delete`` on, then the WAL is checkpointed and truncated, so no deleted byte
        stays in any file. Processed-file records are kept twice as long (they hold no
        identifier and stop an old file from being matched, and notified, again).
        """
        if not isinstance(cutoff, int | float) or not math.isfinite(cutoff):
            raise MalformedInputError("purge cutoff must be a finite number")
        async with self._db.transaction("purge failed", durable=True) as tx:
            counts = {
                "sightings": "DELETE FROM sighting WHERE t < :c",
                "scans": "DELETE FROM scan WHERE end_t < :c",
                # a key older than the cutoff ended (start + period intervals) before it
                "own_teks": "DELETE FROM own_tek WHERE "
                "(rolling_start_interval_number + rolling_period) * :i <= :c",
                "exposure_windows": "DELETE FROM exposure_window "
                "WHERE start + duration_seconds < :c",
                "daily_summaries": "DELETE FROM daily_summary WHERE day + 86400 <= :c",
                "processed_files": "DELETE FROM processed_file WHERE processed_at < :f",
                "network_contacts": "DELETE FROM network_log WHERE t < :c",
            }
            params = {"c": cutoff, "f": cutoff - RETENTION_SECONDS, "i": EN_INTERVAL_SECONDS}
            deleted = {name: (await tx.execute(q, params))[0] for name, q in counts.items()}
            await tx.execute("DELETE FROM sighting_batch WHERE t_max < ?", (cutoff,))
            await tx.execute("DELETE FROM rejected_file WHERE rejected_at < :f", params)
            await self._mark_pending(tx, "checkpoint")
        copies = await self._delete_quarantined(cutoff)
        await self._db.pragma("PRAGMA incremental_vacuum")
        done = await self._finish_deletion()
        result = PurgeResult(cutoff=cutoff, quarantined_copies=copies, checkpointed=done, **deleted)
        _LOGGER.info("purge before %.0f deleted %d rows", cutoff, result.total)
        return result

    async def forget(self) -> None:
        """Delete every row of every table (own keys, sightings, files, results, state).

        Only the schema survives; consent is whatever the caller sets afterwards (the CLI
        sets it off). Quarantined copies are deleted too. Resumed at the next open if the
        process dies half-way.
        """
        try:
            await self.set_state(PENDING_STATE_KEY, "forget")
        except StoreError as exc:  # e.g. a full database: deleting must still work
            _LOGGER.warning("forget cannot be resumed after a crash: %s", exc)
        async with self._db.transaction("forget failed", durable=True) as tx:
            for table in schema.TABLES:
                await tx.execute(f"DELETE FROM {table}")  # noqa: S608 -- constant names
            await self._mark_pending(tx, "checkpoint")
        await self._delete_quarantined(None)
        await self._db.pragma("VACUUM")
        await self._finish_deletion()
        _LOGGER.info("all stored data was deleted (forget)")

    @staticmethod
    async def _mark_pending(tx: Transaction, what: str) -> None:
        await tx.execute(
            "INSERT OR REPLACE INTO state (key, value) VALUES (?, ?)", (PENDING_STATE_KEY, what)
        )

    async def _finish_deletion(self) -> bool:
        """Checkpoint + truncate the WAL, then clear the pending mark; True when final."""
        if await self._db.checkpoint_truncate():
            await self.delete_state(PENDING_STATE_KEY)
            if await self._db.checkpoint_truncate():
                return True
        _LOGGER.warning(
            "deleted data stays in the write-ahead log until the next checkpoint: another "
            "process holds the database open"
        )
        return False

    async def _delete_quarantined(self, cutoff: float | None) -> int:
        """Delete quarantined copies (all, or those moved aside before ``cutoff``)."""
        removed = 0
        for copy in quarantined_copies(self.path):
            if cutoff is not None and quarantine_time(copy) >= cutoff:
                continue
            for file in db_files(copy):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(file)
            removed += 1
        if removed and cutoff is not None and not quarantined_copies(self.path):
            await self.delete_state(QUARANTINE_STATE_KEY)
        return removed

    # --- health --------------------------------------------------------------------------
    async def integrity_ok(self) -> bool:
        """Full ``PRAGMA integrity_check`` (slower than the quick check at open)."""
        rows = await self._db.fetchall("PRAGMA integrity_check")
        return [r[0] for r in rows] == ["ok"]

    async def database_bytes(self) -> int:
        """Bytes on disk of the database and its write-ahead log."""
        total = 0
        for file in db_files(self.path)[:2]:
            with contextlib.suppress(FileNotFoundError):
                total += file.stat().st_size
        return total

    async def schema_version(self) -> int:
        return int(await self._db.scalar("PRAGMA user_version"))


def _check_sha256(sha256: bytes) -> None:
    if not isinstance(sha256, bytes) or len(sha256) != SHA256_LENGTH:
        raise MalformedInputError(f"a file digest must be {SHA256_LENGTH} bytes (SHA-256)")
