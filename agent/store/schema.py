"""Tables of the store and their ordered migrations (``PRAGMA user_version``).

Migration ``n`` (1-based) brings a database from version ``n - 1`` to ``n``. A database
newer than :data:`SCHEMA_VERSION` is refused, never downgraded. Append new migrations at
the end; never edit one that has shipped.
"""

from __future__ import annotations

from typing import Final

APPLICATION_ID: Final = 0x43414754
"""``PRAGMA application_id`` ("CAGT"): tells our database from any other SQLite file."""

DB_FILENAME: Final = "contact-agent.db"

CONNECTION_PRAGMAS: Final = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA secure_delete=ON",
    "PRAGMA temp_store=MEMORY",
    "PRAGMA journal_size_limit=4194304",
    "PRAGMA foreign_keys=ON",
)
"""Applied to every connection (busy_timeout is the connect timeout, 5 s)."""

NEW_DATABASE_PRAGMAS: Final = ("PRAGMA auto_vacuum=INCREMENTAL",)
"""Only effective before the first table exists."""

_V1: Final = (
    # Hot path: one row per received advertisement, appended in batches, no index.
    # t: Unix seconds (floored); scan_off: t - floor(scan_start), NULL when unknown.
    """CREATE TABLE sighting (
        t INTEGER NOT NULL,
        rpi BLOB NOT NULL,
        aem BLOB NOT NULL,
        rssi INTEGER NOT NULL,
        scan_off INTEGER
    )""",
    # One row per committed batch: the contiguous rowid range it appended and its newest
    # time, so "since" queries skip old rows without a per-row time index.
    """CREATE TABLE sighting_batch (
        id INTEGER PRIMARY KEY,
        first_row INTEGER NOT NULL,
        last_row INTEGER NOT NULL,
        t_max INTEGER NOT NULL
    )""",
    "CREATE INDEX sighting_batch_t_max ON sighting_batch (t_max)",
    """CREATE TABLE scan (
        end_t INTEGER PRIMARY KEY,
        start_t INTEGER NOT NULL
    )""",
    """CREATE TABLE own_tek (
        key_data BLOB PRIMARY KEY,
        rolling_start_interval_number INTEGER NOT NULL,
        rolling_period INTEGER NOT NULL,
        max_broadcast_interval INTEGER
    ) WITHOUT ROWID""",
    """CREATE TABLE state (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    ) WITHOUT ROWID""",
    """CREATE TABLE processed_file (
        sha256 BLOB PRIMARY KEY,
        source TEXT NOT NULL,
        key_count INTEGER NOT NULL,
        processed_at REAL NOT NULL
    ) WITHOUT ROWID""",
    """CREATE TABLE exposure_window (
        id INTEGER PRIMARY KEY,
        key_data BLOB NOT NULL,
        start INTEGER NOT NULL,
        duration_seconds INTEGER NOT NULL,
        report_type INTEGER NOT NULL,
        infectiousness INTEGER NOT NULL,
        calibration_confidence INTEGER NOT NULL,
        scan_instances TEXT NOT NULL,
        score REAL NOT NULL,
        weighted_duration_seconds REAL NOT NULL,
        notified INTEGER NOT NULL DEFAULT 0,
        UNIQUE (key_data, start)
    )""",
    """CREATE TABLE daily_summary (
        day INTEGER PRIMARY KEY,
        score_sum REAL NOT NULL,
        maximum_score REAL NOT NULL,
        weighted_duration_sum REAL NOT NULL
    )""",
)

_NETWORK_LOG: Final = (
    # The transparency log (agent.netlog): one row per network contact, kept 14 days.
    # No identifier, key, token or path: host (and port), purpose, body bytes, result.
    """CREATE TABLE network_log (
        id INTEGER PRIMARY KEY,
        t REAL NOT NULL,
        host TEXT NOT NULL,
        purpose TEXT NOT NULL,
        bytes_sent INTEGER NOT NULL,
        bytes_received INTEGER NOT NULL,
        result TEXT NOT NULL
    )""",
    "CREATE INDEX network_log_t ON network_log (t)",
)

_RELAY_GUARD: Final = (
    # The relay guard's reason bitmask (agent.relayguard.Reason) of each sighting, and the
    # OR of its scans' bitmasks on each exposure window; 0 = nothing noticed.
    "ALTER TABLE sighting ADD COLUMN relay INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE exposure_window ADD COLUMN relay INTEGER NOT NULL DEFAULT 0",
)

_FETCH_STATE: Final = (
    # Export files refused by verification (forged, malformed), by SHA-256: the same
    # bytes are never verified again, whatever name a server gives them.
    """CREATE TABLE rejected_file (
        sha256 BLOB PRIMARY KEY,
        source TEXT NOT NULL,
        reason TEXT NOT NULL,
        rejected_at REAL NOT NULL
    ) WITHOUT ROWID""",
)

MIGRATIONS: tuple[tuple[str, ...], ...] = (_V1, _NETWORK_LOG, _RELAY_GUARD, _FETCH_STATE)
"""Statements of each migration, in order; index 0 creates version 1."""

TABLES: Final = (
    "sighting",
    "sighting_batch",
    "scan",
    "own_tek",
    "state",
    "processed_file",
    "rejected_file",
    "exposure_window",
    "daily_summary",
    "network_log",
)
"""Every table holding data: what ``forget`` empties."""


def schema_version() -> int:
    """The version this code writes: the number of migrations."""
    return len(MIGRATIONS)
