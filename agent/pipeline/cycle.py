"""From downloaded exports to stored results and new notifications.

One cycle: skip files already processed (SHA-256) -> verify and parse (fail closed) ->
validate keys -> dedupe keys across files -> load the sightings of the last 14 days once
-> match (CPU-bound: in a thread, which spreads big jobs over worker processes) ->
exposure windows and scores -> remove the windows of REVOKED keys -> store the new
windows -> mark the files processed -> recompute the daily summaries -> the new
qualifying exposures for the notifier, which is told once per window.

Killing the process anywhere is safe: a file is marked processed only after its windows
are stored, windows are stored once per (key, start), and notification state lives in
the store, so a repeated cycle finds the same windows and notifies nothing twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from multiprocessing import get_context

from agent.clock import en_interval_number
from agent.config import RiskConfig
from agent.constants import RETENTION_SECONDS
from agent.errors import ExportFileError
from agent.export import PublicKeyRing
from agent.keyschedule import KeySchedule
from agent.matching import WORKER_DIED, MatchingError, SightingIndex
from agent.matching_fast import KeyArrays, ParsedExport, fast_match, read_export_keys
from agent.matching_fast.parallel import default_workers
from agent.models import ExposureWindow
from agent.risk import (
    counts_for_notification,
    daily_summaries,
    exposure_windows,
    qualifying_days,
    score_window,
)
from agent.store import Store

_LOGGER = logging.getLogger(__name__)

PROCESS_PARSE_BYTES = 4 * 1024 * 1024
"""Exports at least this big (~120k keys) are parsed in a worker process: the parse peak
(~190 MB per 1 M keys) then never stays in the daemon's memory."""

RingSource = PublicKeyRing | Callable[[], PublicKeyRing]
"""The pinned keys, or a picklable factory of them (needed for worker processes)."""

Progress = Callable[[str, int, int], None]
"""``progress(stage, done, total)``; stages ``verify`` (files) and ``match`` (keys)."""


@dataclass(frozen=True, slots=True)
class ExportInput:
    """One downloaded or local export to process."""

    name: str
    content: bytes


@dataclass(frozen=True, slots=True)
class QualifyingExposure:
    """A day that calls for a notification, with the not yet notified windows it covers."""

    day: int
    """UTC midnight, Unix seconds."""
    minutes: float
    """Weighted minutes of the day's counting windows (all of them, not only new ones)."""
    window_ids: tuple[int, ...]
    windows: tuple[ExposureWindow, ...]


Notifier = Callable[[Sequence[QualifyingExposure]], Awaitable[None]]


@dataclass(slots=True)
class CycleReport:
    """What one cycle did (no identifiers: safe to log and show)."""

    files_processed: list[str] = field(default_factory=list)
    files_skipped: list[str] = field(default_factory=list)
    """Already processed (same SHA-256): no work done."""
    files_rejected: list[tuple[str, str]] = field(default_factory=list)
    """(name, reason): not verified or not readable; none of their keys was used."""
    keys: int = 0
    """Distinct keys matched against."""
    matched_keys: int = 0
    windows: list[ExposureWindow] = field(default_factory=list)
    """Every window this cycle found (stored before or not)."""
    new_window_ids: list[int] = field(default_factory=list)
    revoked_windows_removed: int = 0
    new_exposures: list[QualifyingExposure] = field(default_factory=list)
    counters: Counter[str] = field(default_factory=Counter)
    """Dropped keys and sightings by reason."""


def _resolve(ring: RingSource) -> PublicKeyRing:
    return ring if isinstance(ring, PublicKeyRing) else ring()


def _reason(exc: ExportFileError) -> str:
    return str(exc) or type(exc).__name__


async def verify_exports(
    exports: Sequence[ExportInput],
    ring: RingSource,
    now_interval: int,
    *,
    progress: Progress | None = None,
) -> list[ParsedExport | ExportFileError]:
    """Verify and parse every export off the event loop; one result or error per file.

    Big files go to a worker process, one at a time (``ring`` must then be picklable);
    small ones run in a thread with the ring resolved once.

    Raises:
        MatchingError: the worker process died (e.g. killed for memory).
    """
    results: list[ParsedExport | ExportFileError | None] = [None] * len(exports)
    big = [i for i, e in enumerate(exports) if len(e.content) >= PROCESS_PARSE_BYTES]
    small = [i for i, e in enumerate(exports) if len(e.content) < PROCESS_PARSE_BYTES]
    done = 0

    def report() -> None:
        if progress is not None:
            progress("verify", done, len(exports))

    if small:
        pinned = _resolve(ring)
        for i in small:
            try:
                results[i] = await asyncio.to_thread(
                    read_export_keys, exports[i].content, pinned, now_interval
                )
            except ExportFileError as exc:
                results[i] = exc
            done += 1
            report()
    if big:
        loop = asyncio.get_running_loop()
        # one parse at a time: a 1 M-key file peaks near 400 MB in its worker
        with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
            futures = {
                i: loop.run_in_executor(
                    pool, read_export_keys, exports[i].content, ring, now_interval
                )
                for i in big
            }
            for i, future in futures.items():
                try:
                    results[i] = await future
                except ExportFileError as exc:
                    results[i] = exc
                except BrokenProcessPool as exc:
                    raise MatchingError(WORKER_DIED) from exc
                done += 1
                report()
    return [r for r in results if r is not None]


async def load_sightings(store: Store, now: float) -> tuple[SightingIndex, frozenset[bytes]]:
    """The last 14 days of observed scans minus our own RPIs, and our own key_data."""
    teks = await store.load_own_teks()
    own_rpis = KeySchedule(teks).own_rpis(en_interval_number(now)) if teks else frozenset()
    scans = await store.observed_scans(now - RETENTION_SECONDS)
    index = await asyncio.to_thread(SightingIndex, scans, own_rpis)  # CPU: off the loop
    return index, frozenset(t.key_data for t in teks)


async def match_exports(
    store: Store,
    exports: Sequence[ExportInput],
    *,
    ring: RingSource,
    risk: RiskConfig,
    now: float,
    skip_processed: bool = True,
    strict: bool = False,
    source: str = "",
    workers: int | None = None,
    notifier: Notifier | None = None,
    progress: Progress | None = None,
    consume: bool = False,
) -> CycleReport:
    """Run one cycle over ``exports`` (see the module docstring).

    Args:
        skip_processed: skip files whose SHA-256 the store already knows.
        strict: a rejected file raises its error before anything is matched or stored
            (the ``match`` command); otherwise it is reported and the others proceed.
        notifier: awaited with the new qualifying exposures; their windows are marked
            notified only after it returns. Without one, nothing is marked.
        consume: the caller hands ``exports`` over (a list): it is emptied here, so that
            the files' bytes (tens of MB for a country) are freed before matching.

    Raises:
        ExportFileError, SignatureError: only with ``strict``.
    """
    report = CycleReport()
    workers = workers or default_workers()
    todo: list[ExportInput] = []
    for export in exports:
        sha256 = hashlib.sha256(export.content).digest()
        if skip_processed and await store.is_file_processed(sha256):
            report.files_skipped.append(export.name)
        else:
            todo.append(export)
    if consume:
        if not isinstance(exports, list):
            raise TypeError("consume=True needs the exports as a list")
        exports.clear()
    now_interval = en_interval_number(now)
    verified = await verify_exports(todo, ring, now_interval, progress=progress)
    names = [export.name for export in todo]
    todo.clear()  # from here on only the parsed keys are needed
    files: list[tuple[str, ParsedExport]] = []
    for name, result in zip(names, verified, strict=True):
        if isinstance(result, ExportFileError):
            if strict:
                raise type(result)(f"{name}: {_reason(result)}") from result
            _LOGGER.warning("rejected %s: %s", name, _reason(result))
            report.files_rejected.append((name, _reason(result)))
            continue
        files.append((name, result))
        report.counters.update(result.dropped)
    verified.clear()
    if files:
        processed = [(name, p.sha256, p.key_count) for name, p in files]
        parts = [p.keys for _, p in files]
        files.clear()
        await _match_parsed(store, parts, len(processed), report, risk, now, workers, progress)
        for name, sha256, key_count in processed:
            await store.mark_file_processed(
                sha256, source=source, key_count=key_count, processed_at=now
            )
            report.files_processed.append(name)
    report.new_exposures = await refresh_results(store, risk, now, notifier)
    return report


def _merge(parts: list[KeyArrays]) -> tuple[KeyArrays, int]:
    """All files' keys in one set, deduplicated; ``parts`` is emptied so that each file's
    own arrays are freed before matching."""
    merged = KeyArrays.concat(parts)
    parts.clear()
    return merged.dedupe()


async def _match_parsed(
    store: Store,
    parts: list[KeyArrays],
    file_count: int,
    report: CycleReport,
    risk: RiskConfig,
    now: float,
    workers: int,
    progress: Progress | None,
) -> None:
    keys, duplicates = await asyncio.to_thread(_merge, parts)  # CPU: off the loop
    report.counters["duplicate_keys"] += duplicates
    report.keys = len(keys)
    index, own_keys = await load_sightings(store, now)
    loop = asyncio.get_running_loop()

    def match_progress(done: int) -> None:
        if progress is not None:
            loop.call_soon_threadsafe(progress, "match", done, len(keys))

    result = await asyncio.to_thread(
        fast_match, keys, index, own_keys, workers=workers, progress=match_progress
    )
    report.counters.update(result.counters)
    report.matched_keys = result.matched_keys
    for match in result.matches:
        report.windows.extend(exposure_windows(match.key, match.scans, risk))
    report.windows.sort(key=lambda w: w.start)
    if result.revoked:
        report.revoked_windows_removed = await store.remove_windows_for_keys(result.revoked)
    if report.windows:
        report.new_window_ids = await store.save_exposure_windows(report.windows)
    report.counters = +report.counters
    _LOGGER.info(
        "matched %d keys from %d files: %d keys matched, %d windows (%d new), %d removed",
        len(keys),
        file_count,
        result.matched_keys,
        len(report.windows),
        len(report.new_window_ids),
        report.revoked_windows_removed,
    )


async def refresh_results(
    store: Store, risk: RiskConfig, now: float, notifier: Notifier | None = None
) -> list[QualifyingExposure]:
    """Rescore the stored windows with ``risk``, rewrite the daily summaries, and return
    (and, with a notifier, notify and mark) the new qualifying exposures."""
    since = now - RETENTION_SECONDS
    stored = [score_window(w, risk) for w in await store.exposure_windows(since)]
    await store.save_daily_summaries(daily_summaries(stored, risk), replace_all=True)
    qualifying = set(qualifying_days(stored, risk))
    minutes: dict[int, float] = defaultdict(float)
    for window in stored:
        if counts_for_notification(window, risk):
            minutes[window.day] += window.weighted_duration_seconds / 60
    pending: dict[int, list[tuple[int, ExposureWindow]]] = defaultdict(list)
    for window_id, window in await store.unnotified_windows():
        if window.day in qualifying and window.start >= since:
            pending[window.day].append((window_id, score_window(window, risk)))
    exposures = [
        QualifyingExposure(
            day=day,
            minutes=minutes[day],
            window_ids=tuple(i for i, _ in found),
            windows=tuple(w for _, w in found),
        )
        for day, found in sorted(pending.items())
        if any(counts_for_notification(w, risk) for _, w in found)
    ]
    if exposures and notifier is not None:
        await notifier(exposures)
        await store.mark_notified([i for e in exposures for i in e.window_ids])
    return exposures
