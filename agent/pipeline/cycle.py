"""From downloaded exports to stored results and new notifications.

One cycle: skip files already processed (SHA-256) -> verify and parse, one file at a
time in a thread (fail closed) -> validate keys -> dedupe keys across files -> search
them for the RPIs observed in the last 14 days (CPU-bound: in threads or worker
processes) -> drop all but the keys with candidates, then load the sightings -> match ->
exposure windows and scores -> remove the windows of REVOKED keys -> store the new
windows -> mark the files processed -> recompute the daily summaries -> the new
qualifying exposures for the notifier, which is told once per window.

Killing the process anywhere is safe: a file is marked processed only after its windows
are stored, windows are stored once per (key, start), and notification state lives in
the store, so a repeated cycle finds the same windows and notifies nothing twice.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field

from agent.clock import en_interval_number
from agent.config import RiskConfig
from agent.constants import RETENTION_SECONDS
from agent.errors import ExportFileError
from agent.export import KeyArrays, ParsedExport, PublicKeyRing, read_export_keys
from agent.keyschedule import KeySchedule
from agent.matching.core import SightingIndex
from agent.matching.match import (
    KeySearch,
    evaluate_search,
    observed_among,
    search_keys,
    search_rpis,
)
from agent.matching.parallel import default_workers
from agent.memory import trim_heap
from agent.models import ExposureWindow
from agent.relayguard import reason_names
from agent.risk import (
    counts_for_notification,
    daily_summaries,
    matched_windows,
    qualifying_days,
    score_window,
)
from agent.servertext import MESSAGE_LIMIT, server_text
from agent.store import Store

_LOGGER = logging.getLogger(__name__)

RingSource = PublicKeyRing | Callable[[], PublicKeyRing]
"""The pinned keys, or a factory of them (resolved once per cycle)."""

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
    return server_text(exc, MESSAGE_LIMIT) or type(exc).__name__


async def verify_exports(
    exports: list[ExportInput],
    ring: RingSource,
    now_interval: int,
    *,
    progress: Progress | None = None,
    consume: bool = False,
) -> list[ParsedExport | ExportFileError]:
    """Verify and parse every export in a thread, one at a time, off the event loop; one
    result or error per file, in order.

    With ``consume`` each file's bytes are dropped from ``exports`` as soon as its keys
    are read, and the list is emptied: a country's files (~50 MB for 3 M keys) are never
    all held beside their parsed keys.
    """
    pinned = _resolve(ring)
    results: list[ParsedExport | ExportFileError] = []
    for i in range(len(exports)):
        content = exports[i].content
        if consume:
            exports[i] = ExportInput(exports[i].name, b"")
        try:
            results.append(await asyncio.to_thread(read_export_keys, content, pinned, now_interval))
        except ExportFileError as exc:
            results.append(exc)
        del content
        if progress is not None:
            progress("verify", i + 1, len(exports))
    if consume:
        exports.clear()
    return results


async def load_sightings(
    store: Store, now: float, own_rpis: frozenset[bytes], rpis: Collection[bytes] | None = None
) -> SightingIndex:
    """The observed scans of the last 14 days (of ``rpis`` only, if given), minus those
    of our own RPIs (dropped and counted)."""
    scans = await store.observed_scans(now - RETENTION_SECONDS, rpis)
    return await asyncio.to_thread(SightingIndex, scans, own_rpis)  # CPU: off the loop


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
    todo = await _unprocessed(store, exports, skip_processed, report)
    if consume:
        if not isinstance(exports, list):
            raise TypeError("consume=True needs the exports as a list")
        exports.clear()
    names = [export.name for export in todo]
    # with consume, todo holds the only reference to each file: freed as it is parsed
    verified = await verify_exports(
        todo, ring, en_interval_number(now), progress=progress, consume=consume
    )
    files = _accepted(names, verified, strict, report)
    return await match_verified(
        store,
        files,
        report,
        risk=risk,
        now=now,
        source=source,
        workers=workers,
        notifier=notifier,
        progress=progress,
    )


async def match_verified(
    store: Store,
    files: list[tuple[str, ParsedExport]],
    report: CycleReport,
    *,
    risk: RiskConfig,
    now: float,
    source: str = "",
    workers: int | None = None,
    notifier: Notifier | None = None,
    progress: Progress | None = None,
) -> CycleReport:
    """The rest of a cycle for files already verified and parsed (``(name, keys)``, in
    order; the list is emptied): match, store, mark processed, notify. ``report`` holds
    what happened to the files so far and is returned completed."""
    workers = workers or default_workers()
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


async def _unprocessed(
    store: Store, exports: Sequence[ExportInput], skip_processed: bool, report: CycleReport
) -> list[ExportInput]:
    """The exports whose SHA-256 the store does not know (all, without skip_processed)."""
    todo: list[ExportInput] = []
    for export in exports:
        sha256 = hashlib.sha256(export.content).digest()
        if skip_processed and await store.is_file_processed(sha256):
            report.files_skipped.append(export.name)
        else:
            todo.append(export)
    return todo


def _accepted(
    names: list[str],
    verified: list[ParsedExport | ExportFileError],
    strict: bool,
    report: CycleReport,
) -> list[tuple[str, ParsedExport]]:
    """The verified files by name; rejected ones are reported (or raised, if ``strict``).
    ``verified`` is emptied."""
    files: list[tuple[str, ParsedExport]] = []
    for name, result in zip(names, verified, strict=True):
        if isinstance(result, ExportFileError):
            if strict:
                raise type(result)(f"{name}: {_reason(result)}") from result
            _LOGGER.warning("rejected %s: %s", server_text(name, MESSAGE_LIMIT), _reason(result))
            report.files_rejected.append((name, _reason(result)))
            continue
        files.append((name, result))
        report.counters.update(result.dropped)
    verified.clear()
    return files


def _merge(parts: list[KeyArrays]) -> tuple[KeyArrays, int]:
    """All files' keys in one set, deduplicated; ``parts`` is emptied so that each file's
    own arrays are freed before matching."""
    deduped = KeyArrays.merge(parts).dedupe()
    trim_heap()
    return deduped


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
    teks = await store.load_own_teks()
    own_keys = frozenset(t.key_data for t in teks)
    own_rpis = await asyncio.to_thread(KeySchedule(teks).own_rpis, en_interval_number(now))
    rpi_blob = await store.observed_rpis(now - RETENTION_SECONDS)
    sighted = await store.sighting_intervals(now - RETENTION_SECONDS)
    loop = asyncio.get_running_loop()

    def match_progress(done: int) -> None:
        if progress is not None:
            loop.call_soon_threadsafe(progress, "match", done, report.keys)

    # the keys first, with only the observed RPIs (16 bytes each); then the sightings of
    # just the RPIs the search found (and of our own RPIs, dropped but counted): the keys
    # and the sightings are never held at once, and the sightings of a busy fortnight
    # are never all turned into objects
    search = await asyncio.to_thread(
        functools.partial(
            search_keys,
            keys,
            rpi_blob,
            own_keys,
            sighted=sighted,
            workers=workers,
            progress=match_progress,
        )
    )
    wanted = await asyncio.to_thread(_rpis_to_read, search, own_rpis, rpi_blob)
    del keys, rpi_blob
    await asyncio.to_thread(trim_heap)
    index = await load_sightings(store, now, own_rpis, wanted)
    result = await asyncio.to_thread(evaluate_search, search, index)
    del search, index
    report.counters.update(result.counters)
    report.matched_keys = result.matched_keys
    report.windows = await asyncio.to_thread(matched_windows, result.matches, risk)
    for window in report.windows:  # relay guard: flagged windows by reason
        report.counters.update(f"relay_{name}_windows" for name in reason_names(window.relay))
    if result.revoked:
        report.revoked_windows_removed = await store.remove_windows_for_keys(result.revoked)
    if report.windows:
        report.new_window_ids = await store.save_exposure_windows(report.windows)
    report.counters = +report.counters
    _LOGGER.info(
        "matched %d keys from %d files: %d keys matched, %d windows (%d new), %d removed",
        report.keys,
        file_count,
        result.matched_keys,
        len(report.windows),
        len(report.new_window_ids),
        report.revoked_windows_removed,
    )


def _rpis_to_read(search: KeySearch, own_rpis: frozenset[bytes], rpi_blob: bytes) -> set[bytes]:
    """The RPIs whose sightings the evaluation needs: the candidates', and our own that
    were observed (reflections: dropped, but counted)."""
    return search_rpis(search) | observed_among(own_rpis, rpi_blob)


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
