"""Spreading the candidate search over worker processes, and the fast matcher itself."""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context

import numpy as np
import numpy.typing as npt

from agent.clock import en_interval_number
from agent.constants import MATCH_TOLERANCE_INTERVALS, TEK_LENGTH
from agent.matching import (
    WORKER_DIED,
    Candidate,
    MatchingError,
    MatchResult,
    SightingIndex,
    evaluate_candidates,
)
from agent.matching_fast.finder import (
    CandidateFinder,
    NativeFinder,
    candidate_finder,
    lower_priority,
    native_kernel,
)
from agent.matching_fast.keys import KeyArrays
from agent.models import ReportType, TemporaryExposureKey
from agent.native import trim_heap

TASK_KEYS = 65_536
"""Keys per worker task: 1 MB of key data in, a short list of candidates out."""


# --- Worker processes ------------------------------------------------------------------------


_WORKER: list[CandidateFinder] = []


def _init_worker(rpi_blob: bytes, backend: str | None) -> None:
    lower_priority()
    _WORKER[:] = [candidate_finder(rpi_blob, backend)]


def _worker_task(key_data: bytes, rolling_start: bytes, base_index: int) -> list[Candidate]:
    starts = np.frombuffer(rolling_start, dtype=np.int32)
    return _WORKER[0].find(key_data, starts, base_index)


MAX_DEFAULT_WORKERS = 2
"""Each worker process costs ~60 MB (interpreter, numpy, prefilter, chunk buffer) and the
systemd unit caps the whole service at 256 MB, so by default at most two, even on a
4-core Pi; pass ``workers`` to use more. (Native threads cost almost nothing.)"""


def default_workers() -> int:
    """One worker per core this process may run on, at most :data:`MAX_DEFAULT_WORKERS`."""
    return max(1, min(MAX_DEFAULT_WORKERS, len(os.sched_getaffinity(0))))


def _tasks(n: int, task_keys: int) -> list[tuple[int, int]]:
    return [(start, min(n, start + task_keys)) for start in range(0, n, task_keys)]


def _run_tasks(
    pool: Executor,
    submit: Callable[[Executor, int, int], Future[list[Candidate]]],
    tasks: list[tuple[int, int]],
    in_flight: int,
    progress: Callable[[int], None] | None,
) -> list[Candidate]:
    """Run ``tasks`` in order with at most ``in_flight`` submitted at once (each holds a
    copy of its keys while queued), reporting progress as they finish."""
    found: list[Candidate] = []
    pending: deque[tuple[int, Future[list[Candidate]]]] = deque()
    for start, stop in tasks:
        pending.append((stop, submit(pool, start, stop)))
        while len(pending) >= in_flight:
            found.extend(_finished(pending.popleft(), progress))
    while pending:
        found.extend(_finished(pending.popleft(), progress))
    return found


def _finished(
    task: tuple[int, Future[list[Candidate]]], progress: Callable[[int], None] | None
) -> list[Candidate]:
    stop, future = task
    try:
        result = future.result()
    except BrokenProcessPool as exc:
        raise MatchingError(WORKER_DIED) from exc
    if progress is not None:
        progress(stop)
    return result


def _native_threads(
    keys: KeyArrays,
    finder: CandidateFinder,
    workers: int,
    task_keys: int,
    progress: Callable[[int], None] | None,
) -> list[Candidate]:
    """The native kernel in threads: it releases the GIL, so no processes are needed."""
    view = memoryview(keys.key_data)  # slices of a view copy nothing

    def submit(pool: Executor, start: int, stop: int) -> Future[list[Candidate]]:
        return pool.submit(
            finder.find,
            view[TEK_LENGTH * start : TEK_LENGTH * stop],
            keys.rolling_start[start:stop],
            start,
        )

    with ThreadPoolExecutor(max_workers=workers, initializer=lower_priority) as pool:
        return _run_tasks(pool, submit, _tasks(len(keys), task_keys), 2 * workers, progress)


def find_candidates_parallel(
    keys: KeyArrays,
    rpi_blob: bytes,
    *,
    workers: int | None = None,
    backend: str | None = None,
    progress: Callable[[int], None] | None = None,
    task_keys: int | None = None,
) -> list[Candidate]:
    """:func:`find_candidates` over all keys, spread over cores when it pays off.

    The native kernel runs in ``workers`` threads of this process. The Python kernel
    runs here for fewer than two tasks' worth of keys (or ``workers=1``), else in worker
    processes that are spawned (not forked: the caller may hold threads and locks) and
    end with the call. Workers run at a lower priority than the caller (niceness 10).
    ``progress`` is called with the number of keys finished so far.
    """
    n = len(keys)
    workers = workers or default_workers()
    task_keys = task_keys or TASK_KEYS
    try:
        kernel = native_kernel(backend)
    except ValueError:  # an unknown name fails below, where the Python kernel starts
        kernel = None
    if kernel is not None:
        return _native_threads(keys, NativeFinder(rpi_blob, kernel), workers, task_keys, progress)
    found: list[Candidate] = []
    if workers <= 1 or n < 2 * task_keys:
        finder = candidate_finder(rpi_blob, backend)
        for start, stop in _tasks(n, task_keys):
            found.extend(
                finder.find(
                    keys.key_data[TEK_LENGTH * start : TEK_LENGTH * stop],
                    keys.rolling_start[start:stop],
                    start,
                )
            )
            if progress is not None:
                progress(stop)
        return found

    def submit(pool: Executor, start: int, stop: int) -> Future[list[Candidate]]:
        return pool.submit(
            _worker_task,
            keys.key_data[TEK_LENGTH * start : TEK_LENGTH * stop],
            keys.rolling_start[start:stop].tobytes(),
            start,
        )

    with ProcessPoolExecutor(
        max_workers=workers,
        mp_context=get_context("spawn"),
        initializer=_init_worker,
        initargs=(rpi_blob, backend),
    ) as pool:
        return _run_tasks(pool, submit, _tasks(n, task_keys), 2 * workers, progress)


# --- The fast matcher ------------------------------------------------------------------------

SIGHTED_CHUNK = 262_144


def sighted_keys(keys: KeyArrays, index: SightingIndex) -> npt.NDArray[np.bool_]:
    """Keys with at least one sighting within +-12 intervals of their validity period:
    only these can match (any sighting of another key's RPI is outside the window)."""
    intervals = np.unique(
        np.fromiter(
            (en_interval_number(s.first_seen) for scans in index.by_rpi.values() for s in scans),
            dtype=np.int64,
        )
    )
    mask = np.zeros(len(keys), dtype=bool)
    for first in range(0, len(keys), SIGHTED_CHUNK):
        starts = keys.rolling_start[first : first + SIGHTED_CHUNK].astype(np.int64)
        low = np.searchsorted(intervals, starts - MATCH_TOLERANCE_INTERVALS)
        starts += keys.rolling_period[first : first + SIGHTED_CHUNK]
        high = np.searchsorted(intervals, starts + MATCH_TOLERANCE_INTERVALS)
        mask[first : first + SIGHTED_CHUNK] = low < high
    return mask


def fast_match(
    keys: KeyArrays | Sequence[TemporaryExposureKey],
    index: SightingIndex,
    own_keys: frozenset[bytes] = frozenset(),
    *,
    workers: int | None = None,
    backend: str | None = None,
    progress: Callable[[int], None] | None = None,
    skip_unsighted: bool = False,
) -> MatchResult:
    """Exactly :func:`agent.matching.match_keys`, fast. CPU-bound: run it in an executor.

    ``skip_unsighted`` leaves out keys without any sighting within +-2 h of their day
    (:func:`sighted_keys`; counted as ``unsighted_key_skipped``): the same matches, but a
    sighting of such a key's RPI far outside its time window (a replay days later) is
    then not counted in ``outside_time_window``/``outside_rolling_period``, so the
    counters may differ from the reference's.
    """
    arrays = keys if isinstance(keys, KeyArrays) else KeyArrays.from_keys(keys)
    report_type = arrays.report_type
    recursive = report_type == ReportType.RECURSIVE
    revoked = (report_type == ReportType.REVOKED) & ~recursive
    own = np.zeros(len(arrays), dtype=bool)
    if own_keys and len(arrays):
        own = np.isin(arrays.key_view(), np.frombuffer(b"".join(own_keys), dtype=f"V{TEK_LENGTH}"))
    own &= ~(recursive | revoked)
    skipped = recursive | revoked | own
    unsighted = np.zeros(len(arrays), dtype=bool)
    if skip_unsighted and len(index):
        unsighted = ~skipped & ~sighted_keys(arrays, index)
    left_out = skipped | unsighted
    # a few skipped keys are searched anyway (evaluation ignores them): cheaper than a copy
    searched = arrays.select(~left_out) if 4 * np.count_nonzero(left_out) > len(arrays) else arrays
    candidates: list[Candidate] = []
    if len(index) and len(searched):
        candidates = find_candidates_parallel(
            searched, index.rpi_blob(), workers=workers, backend=backend, progress=progress
        )
        if searched is arrays and left_out.any():
            candidates = [c for c in candidates if not left_out[c[0]]]
    result = evaluate_candidates(searched, candidates, index, own_keys)
    for name, mask in (
        ("recursive_key_skipped", recursive),
        ("revoked_key", revoked),
        ("own_key_skipped", own),
        ("unsighted_key_skipped", unsighted),
    ):
        if mask.any():
            result.counters[name] += int(np.count_nonzero(mask))
    view = arrays.key_data
    result.revoked.extend(
        view[TEK_LENGTH * i : TEK_LENGTH * (i + 1)] for i in np.flatnonzero(revoked).tolist()
    )
    del searched, candidates, left_out
    trim_heap()
    return result
