"""Batching of sightings between the scanner and the store.

The scanner produces a stream of :class:`~agent.models.Sighting` (and
:class:`~agent.models.ScanPeriod`) items; writing each one would cost a transaction and
SD-card wear per advertisement. :class:`SightingWriter` buffers them and appends one batch
every ``flush_interval`` seconds or ``max_rows`` sightings, whichever comes first, and on
close. A kill -9 loses at most the unflushed buffer.

When a write fails (disk full, database busy beyond the timeout) the batch stays buffered
and is retried at the next interval; beyond ``max_buffer`` sightings the oldest are
dropped and counted. The writer logs a warning once per failure spell and never raises
out of :meth:`run`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from dataclasses import dataclass

from agent.errors import MalformedInputError, StoreError
from agent.models import ScanPeriod, Sighting
from agent.store.sightings import Row, ScanRow, scan_row, sighting_row
from agent.store.store import Store

_LOGGER = logging.getLogger(__name__)

Item = Sighting | ScanPeriod


@dataclass
class WriterStats:
    """Counters for ``status`` and metrics."""

    flushed_rows: int = 0
    batches: int = 0
    errors: int = 0
    """Failed flush attempts."""
    dropped: int = 0
    """Sightings dropped because the buffer was full while writes failed."""
    rejected: int = 0
    """Items with impossible values (not stored)."""
    pending: int = 0
    last_error: str | None = None
    failing: bool = False
    """The latest write failed (the buffer waits for the next attempt)."""


class SightingWriter:
    """Buffers sightings and scan periods and appends them to the store in batches.

    Feed it with :meth:`add` or give it an ``asyncio.Queue`` that :meth:`run` drains.
    Run :meth:`run` as a task (or call :meth:`start`); :meth:`close` (or cancelling the
    task) flushes what is left.
    """

    def __init__(
        self,
        store: Store,
        queue: asyncio.Queue[Item] | None = None,
        *,
        flush_interval: float = 10.0,
        max_rows: int = 500,
        max_buffer: int = 50_000,
    ) -> None:
        if flush_interval <= 0 or max_rows < 1 or max_buffer < max_rows:
            raise ValueError("need flush_interval > 0 and 1 <= max_rows <= max_buffer")
        self._store = store
        self._queue = queue
        self.flush_interval = flush_interval
        self.max_rows = max_rows
        self.max_buffer = max_buffer
        self._rows: deque[Row] = deque()
        self._scans: list[ScanRow] = []
        self._wake = asyncio.Event()
        self._closing = False
        self._failing = False
        self._flush_lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._stats = WriterStats()

    @property
    def stats(self) -> WriterStats:
        self._stats.pending = len(self._rows)
        self._stats.failing = self._failing
        return self._stats

    def add(self, item: Item) -> None:
        """Buffer one sighting or scan period (never blocks; never raises)."""
        try:
            if isinstance(item, ScanPeriod):
                self._scans.append(scan_row(item))
                return
            self._rows.append(sighting_row(item))
        except MalformedInputError as exc:
            self._stats.rejected += 1
            _LOGGER.debug("sighting rejected: %s", exc)
            return
        self._trim()
        if len(self._rows) >= self.max_rows and not self._failing:
            self._wake.set()

    async def flush(self) -> bool:
        """Append everything buffered in one transaction; False when the write failed."""
        async with self._flush_lock:
            if not self._rows and not self._scans:
                return True
            rows, self._rows = self._rows, deque()
            scans, self._scans = self._scans, []
            try:
                await self._store._append(list(rows), scans)
            except BaseException as exc:
                rows.extend(self._rows)
                self._rows, self._scans = rows, scans + self._scans
                self._trim()
                if not isinstance(exc, StoreError):
                    raise
                self._stats.errors += 1
                self._stats.last_error = str(exc)
                if not self._failing:
                    _LOGGER.warning("sightings kept in memory, the write failed: %s", exc)
                self._failing = True
                return False
            self._stats.flushed_rows += len(rows)
            self._stats.batches += 1
            if self._failing:
                _LOGGER.info("sightings are written again")
                self._failing = False
            return True

    def _trim(self) -> None:
        while len(self._rows) > self.max_buffer:
            self._rows.popleft()
            self._stats.dropped += 1
        del self._scans[: max(0, len(self._scans) - self.max_buffer)]

    async def run(self) -> None:
        """Flush on time or size until :meth:`close` or cancellation; then a final flush."""
        loop = asyncio.get_running_loop()
        feeder = asyncio.create_task(self._feed()) if self._queue is not None else None
        try:
            deadline = loop.time() + self.flush_interval
            while not self._closing:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), max(0.0, deadline - loop.time()))
                self._wake.clear()
                due = loop.time() >= deadline
                if due or (len(self._rows) >= self.max_rows and not self._failing):
                    # shielded: a cancellation must not leave a commit half-known
                    await asyncio.shield(self.flush())
                    deadline = loop.time() + self.flush_interval
        finally:
            if feeder is not None:
                feeder.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await feeder
            self._drain_queue()
            await self.flush()

    async def _feed(self) -> None:
        assert self._queue is not None
        while True:
            self.add(await self._queue.get())

    def _drain_queue(self) -> None:
        if self._queue is None:
            return
        while True:
            try:
                self.add(self._queue.get_nowait())
            except asyncio.QueueEmpty:
                return

    def start(self) -> asyncio.Task[None]:
        """Run :meth:`run` as a task of the current loop."""
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name="sighting-writer")
        return self._task

    async def close(self) -> None:
        """Stop the loop (if started) and flush the rest."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await asyncio.wait([self._task])  # its end (even a cancellation) is not ours
        self._drain_queue()
        await self.flush()
