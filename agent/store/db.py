"""The one SQLite connection of a :class:`~agent.store.Store`: files, pragmas, transactions.

Everything that touches aiosqlite or sqlite3 directly lives here: creating the files with
private modes, the corruption check and quarantine at open, migrations, the writer lock,
``BEGIN IMMEDIATE`` transactions with ``synchronous`` switched to FULL around critical
writes, WAL checkpoints, and turning sqlite3 exceptions into a clear
:class:`~agent.errors.StoreError`.
"""

from __future__ import annotations

import asyncio
import calendar
import contextlib
import errno
import logging
import os
import sqlite3
import stat
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import aiosqlite

from agent.errors import AgentError, StoreError
from agent.paths import check_private_entry
from agent.store import schema

_LOGGER = logging.getLogger(__name__)

BUSY_TIMEOUT_SECONDS = 5.0
CHECKPOINT_ATTEMPTS = 3
SIDE_SUFFIXES = ("-wal", "-shm")
QUARANTINE_MARK = ".corrupt-"

# Primary result codes (https://www.sqlite.org/rescode.html)
_SQLITE_PERM, _SQLITE_BUSY, _SQLITE_LOCKED = 3, 5, 6
_SQLITE_READONLY, _SQLITE_IOERR, _SQLITE_CORRUPT = 8, 10, 11
_SQLITE_FULL, _SQLITE_CANTOPEN, _SQLITE_NOTADB = 13, 14, 26

Params = Sequence[Any] | Mapping[str, Any]


class CorruptDatabaseError(StoreError):
    """The file failed the integrity check or is not a database (Store.open quarantines)."""


def _primary_code(exc: sqlite3.Error) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)
    return code & 0xFF if isinstance(code, int) else None


def is_corruption(exc: sqlite3.Error) -> bool:
    return _primary_code(exc) in (_SQLITE_CORRUPT, _SQLITE_NOTADB)


def store_error(action: str, exc: sqlite3.Error | ValueError) -> StoreError:
    """A one-line, human message for a failed database operation."""
    code = _primary_code(exc) if isinstance(exc, sqlite3.Error) else None
    if code in (_SQLITE_BUSY, _SQLITE_LOCKED):
        detail = "the database is busy (another contact-agent process is writing); try again"
    elif code == _SQLITE_FULL:
        detail = "the database or the disk is full"
    elif code in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
        detail = "the database file is damaged; restart the agent to quarantine it"
    elif code in (_SQLITE_READONLY, _SQLITE_PERM, _SQLITE_CANTOPEN):
        detail = f"no permission to write the database ({exc})"
    elif code == _SQLITE_IOERR:
        detail = f"input/output error ({exc})"
    else:
        detail = str(exc)
    return StoreError(f"{action}: {detail}")


def db_files(path: Path) -> list[Path]:
    """The database file and its -wal and -shm companions."""
    return [path] + [path.with_name(path.name + suffix) for suffix in SIDE_SUFFIXES]


def prepare_files(path: Path) -> None:
    """Create the database file 0600 before SQLite does; tighten existing files.

    SQLite creates -wal and -shm with the mode of the database file, so they follow.
    An existing file is never opened here: closing a descriptor of it would drop every
    POSIX lock this process holds on it, SQLite's included, and another process could
    then checkpoint and delete the write-ahead log under a live connection.
    """
    for file in db_files(path):
        check_private_entry(file)  # a planted link: refused before anything changes
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        if path.is_dir():
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path)) from None
    else:
        os.close(fd)
    for file in db_files(path):
        with contextlib.suppress(FileNotFoundError):
            if stat.S_IMODE(os.lstat(file).st_mode) != 0o600:
                os.chmod(file, 0o600)


def quarantine(path: Path, wall: float) -> Path:
    """Move the database and its -wal/-shm aside as ``<name>.corrupt-<UTC stamp>``."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(wall))
    target = path.with_name(f"{path.name}{QUARANTINE_MARK}{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}{QUARANTINE_MARK}{stamp}.{n}")
    sources = db_files(path)
    for source in sources:
        check_private_entry(source)  # never move (or chmod) what a link points to
    for source, dest in zip(sources, db_files(target), strict=True):
        if source.exists():
            os.replace(source, dest)
            os.chmod(dest, 0o600)
    return target


def quarantined_copies(path: Path) -> list[Path]:
    """Quarantined databases next to ``path`` (their -wal/-shm are found by name)."""
    prefix = path.name + QUARANTINE_MARK
    return sorted(
        p
        for p in path.parent.glob(prefix + "*")
        if not p.name.endswith(SIDE_SUFFIXES)
    )


def quarantine_time(copy: Path) -> float:
    """When a copy was quarantined: from its name, else its modification time."""
    stamp = copy.name.split(QUARANTINE_MARK, 1)[-1].split(".", 1)[0]
    try:
        return float(calendar.timegm(time.strptime(stamp, "%Y%m%dT%H%M%SZ")))
    except ValueError:
        return copy.stat().st_mtime


class Database:
    """An aiosqlite connection in autocommit mode with explicit, serialised transactions."""

    def __init__(self, conn: aiosqlite.Connection, path: Path) -> None:
        self._conn = conn
        self.path = path
        self._lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path) -> Database:
        """Connect, configure, check and migrate; raises CorruptDatabaseError when damaged."""
        prepare_files(path)
        try:
            conn = await aiosqlite.connect(
                str(path), timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None
            )
        except sqlite3.Error as exc:
            raise store_error(f"cannot open {path}", exc) from exc
        db = cls(conn, path)
        try:
            await db._setup()
        except sqlite3.Error as exc:
            await db.close()
            if is_corruption(exc):
                raise CorruptDatabaseError(str(exc)) from exc
            raise store_error(f"cannot open {path}", exc) from exc
        except BaseException:
            await db.close()
            raise
        prepare_files(path)  # -wal and -shm exist now
        return db

    async def _setup(self) -> None:
        version = await self._scalar("PRAGMA user_version")
        tables = await self._scalar("SELECT count(*) FROM sqlite_schema")
        if version == 0 and tables == 0:
            for pragma in schema.NEW_DATABASE_PRAGMAS:
                await self._conn.execute(pragma)
        for pragma in schema.CONNECTION_PRAGMAS:
            await self._conn.execute(pragma)
        rows = await self._conn.execute_fetchall("PRAGMA quick_check(5)")
        problems = [str(r[0]) for r in rows]
        if problems != ["ok"]:
            raise CorruptDatabaseError("; ".join(problems))
        await self._migrate()

    async def _migrate(self) -> None:
        target = schema.schema_version()
        version = await self._scalar("PRAGMA user_version")
        app_id = await self._scalar("PRAGMA application_id")
        if version > 0 and app_id != schema.APPLICATION_ID:
            raise StoreError(f"{self.path} is not a contact-agent database; move it away")
        if version > target:
            raise StoreError(
                f"{self.path} has schema version {version}, newer than this contact-agent "
                f"supports ({target}); upgrade contact-agent"
            )
        if version == target:
            return
        await self._conn.execute("BEGIN IMMEDIATE")
        try:
            version = await self._scalar("PRAGMA user_version")  # another process may have won
            for number in range(version + 1, target + 1):
                for statement in schema.MIGRATIONS[number - 1]:
                    await self._conn.execute(statement)
                _LOGGER.info("database migrated to schema version %d", number)
            await self._conn.execute(f"PRAGMA user_version={target:d}")
            await self._conn.execute(f"PRAGMA application_id={schema.APPLICATION_ID:d}")
            await self._conn.execute("COMMIT")
        except BaseException:
            await self._rollback()
            raise

    async def close(self) -> None:
        with contextlib.suppress(sqlite3.Error, ValueError):
            await self._conn.close()

    async def _scalar(self, sql: str, params: Params = ()) -> Any:
        rows = list(await self._conn.execute_fetchall(sql, params))
        return rows[0][0] if rows else None

    async def _rollback(self) -> None:
        # Unconditional, and queued behind whatever the connection's thread still runs:
        # a task cancelled while awaiting BEGIN IMMEDIATE leaves that BEGIN to run after
        # an ``in_transaction`` check here would have said False, and the connection
        # would stay inside the transaction (every later durable write then failed with
        # "Safety level may not be changed inside a transaction").
        with contextlib.suppress(sqlite3.Error, ValueError):
            await self._conn.execute("ROLLBACK")

    # --- reads ---------------------------------------------------------------------------
    async def fetchall(self, sql: str, params: Params = ()) -> list[Any]:
        """All result rows of one query (one await; the rows are tuples)."""
        try:
            return list(await self._conn.execute_fetchall(sql, params))
        except (sqlite3.Error, ValueError) as exc:
            raise store_error("database read failed", exc) from exc

    async def scalar(self, sql: str, params: Params = ()) -> Any:
        rows = await self.fetchall(sql, params)
        return rows[0][0] if rows else None

    async def iterate(self, sql: str, params: Params = ()) -> AsyncIterator[Any]:
        """Rows of a large query, fetched in chunks."""
        try:
            async with self._conn.execute(sql, params) as cursor:
                while rows := await cursor.fetchmany(2000):
                    for row in rows:
                        yield row
        except (sqlite3.Error, ValueError) as exc:
            raise store_error("database read failed", exc) from exc

    # --- writes --------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def transaction(self, action: str, *, durable: bool) -> AsyncIterator[Transaction]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT``; rolled back on any error.

        ``durable``: commit with ``synchronous=FULL`` (survives power loss), for small
        critical state; otherwise NORMAL (survives a crash of the process).
        """
        async with self._lock:
            try:
                if durable:
                    await self._conn.execute("PRAGMA synchronous=FULL")
                await self._conn.execute("BEGIN IMMEDIATE")
                yield Transaction(self._conn)
                await self._conn.execute("COMMIT")
            except AgentError:
                await self._rollback()
                raise
            except (sqlite3.Error, ValueError) as exc:
                await self._rollback()
                raise store_error(action, exc) from exc
            except BaseException:
                await self._rollback()
                raise
            finally:
                if durable:
                    with contextlib.suppress(sqlite3.Error, ValueError):
                        await self._conn.execute("PRAGMA synchronous=NORMAL")

    async def pragma(self, statement: str) -> list[Any]:
        """Run a maintenance statement outside any transaction (under the writer lock)."""
        async with self._lock:
            try:
                return list(await self._conn.execute_fetchall(statement))
            except (sqlite3.Error, ValueError) as exc:
                raise store_error(statement, exc) from exc

    async def checkpoint_truncate(self) -> bool:
        """Copy the WAL into the database and truncate it to zero bytes; True when done.

        Fails (returns False) while another connection holds an old snapshot.
        """
        for attempt in range(CHECKPOINT_ATTEMPTS):
            rows = await self.pragma("PRAGMA wal_checkpoint(TRUNCATE)")
            if rows and rows[0][0] == 0:
                return True
            _LOGGER.debug("checkpoint busy (attempt %d)", attempt + 1)
            await asyncio.sleep(0.1 * (attempt + 1))
        return False


class Transaction:
    """Statements inside one :meth:`Database.transaction`."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def execute(self, sql: str, params: Params = ()) -> tuple[int, int | None]:
        """Run one statement; returns (rows changed, last inserted rowid)."""
        async with self._conn.execute(sql, params) as cursor:
            return cursor.rowcount, cursor.lastrowid

    async def executemany(self, sql: str, rows: Iterable[Params]) -> None:
        await self._conn.executemany(sql, rows)

    async def fetchall(self, sql: str, params: Params = ()) -> list[Any]:
        return list(await self._conn.execute_fetchall(sql, params))

    async def scalar(self, sql: str, params: Params = ()) -> Any:
        rows = await self.fetchall(sql, params)
        return rows[0][0] if rows else None
