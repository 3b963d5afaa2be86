"""SQLite persistence: fast to append, durable where it matters, provable to delete.

The only package that imports aiosqlite (and sqlite3). One :class:`Store` owns one
connection; a second process (the CLI while the daemon runs) opens its own, which WAL
mode and a 5 s busy timeout make safe.

Design decisions
----------------
* **Files.** ``<data_dir>/contact-agent.db`` (+ ``-wal``, ``-shm``); the directory is
  created 0700, the database file 0600 before SQLite opens it (SQLite gives -wal/-shm the
  same mode). Schema changes are ordered migrations in :mod:`agent.store.schema`, tracked
  by ``PRAGMA user_version``; ``application_id`` marks the file as ours; a newer schema
  is refused, never downgraded.
* **Open.** WAL, ``synchronous=NORMAL``, ``secure_delete=ON``, ``temp_store=MEMORY``,
  ``auto_vacuum=INCREMENTAL`` (new files), then ``PRAGMA quick_check``. A file that fails
  it (or is not a database) is renamed with its -wal/-shm to
  ``contact-agent.db.corrupt-<UTC stamp>`` (0600), an ERROR is logged, a fresh database
  created, and the event kept in :attr:`Store.quarantined` and the state key
  ``store.quarantined`` for ``status``. Quarantined copies go with the retention purge
  after 14 days and with ``forget`` at once.
* **Sightings** are one append-only rowid table without an index: whole Unix seconds,
  RPI, AEM, calibrated RSSI and the offset from the start of the scan instance (NULL
  when unknown) -- about 40 bytes per sighting on disk (``scripts/bench_store.py``).
  They arrive in batches (:class:`SightingWriter`: every 10 s or 500 rows and on close),
  one ``BEGIN IMMEDIATE`` transaction with ``executemany`` per batch. Each batch also
  records its rowid range and newest time, so queries "since T" skip older rows.
* **Aggregation** happens when reading, in SQL: :meth:`Store.observed_scans` returns one
  :class:`~agent.models.ObservedScan` per scan instance = (RPI, AEM, scan start), or, when
  the scan start is unknown (imports), by the 25.5 s gap rule capped at 60 s; its
  ``previous_scan_end`` is the end of the latest recorded :class:`~agent.models.ScanPeriod`
  that ended before the instance's scan started. :meth:`Store.encounters` aggregates per
  RPI (and AEM). An RPI heard with two AEMs (a replay) gives separate rows.
* **Durability.** Sightings and scan periods commit with ``synchronous=NORMAL``: a crash
  of the process loses nothing committed, a power cut may lose the newest commits. Every
  other write (own keys, state such as consent, clock lower bound and upload state,
  processed files, exposure windows, summaries, notification marks) switches the
  connection to ``synchronous=FULL`` for its transaction.
* **Deletion.** :meth:`Store.purge` deletes rows older than the cutoff the caller
  chooses (clock trust, docs/daemon.md: with an untrusted clock, the lower bound minus 14 days);
  :meth:`Store.forget` deletes every row. Both run with ``secure_delete=ON`` and end with
  ``PRAGMA wal_checkpoint(TRUNCATE)``, so no deleted identifier stays in the database,
  -wal or -shm file. A ``store.pending`` state mark, written in the same transaction,
  makes the next open finish a deletion interrupted by a crash. Processed-file records
  (SHA-256 of public files) are kept 28 days so an old file is never matched again.
* **Exposure windows** are unique by (key_data, start): saving one again is a no-op, so
  reprocessing never notifies twice; ``notified`` marks the ones already announced.
"""

from __future__ import annotations

from agent.store.records import Encounter, PurgeResult
from agent.store.schema import DB_FILENAME
from agent.store.store import (
    CONSENT_STATE_KEY,
    LAST_FETCH_STATE_KEY,
    LOWER_BOUND_STATE_KEY,
    PENDING_STATE_KEY,
    QUARANTINE_STATE_KEY,
    Store,
)
from agent.store.writer import SightingWriter, WriterStats

__all__ = [
    "CONSENT_STATE_KEY",
    "DB_FILENAME",
    "LAST_FETCH_STATE_KEY",
    "LOWER_BOUND_STATE_KEY",
    "PENDING_STATE_KEY",
    "QUARANTINE_STATE_KEY",
    "Encounter",
    "PurgeResult",
    "SightingWriter",
    "Store",
    "WriterStats",
]
