"""Spreading the candidate search over worker processes, and the fast matcher itself."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing import get_context

import numpy as np

from agent.constants import TEK_LENGTH
from agent.matching import (
    WORKER_DIED,
    Candidate,
    MatchingError,
    MatchResult,
    SightingIndex,
    evaluate_candidates,
)
from agent.matching_fast.kernel import EcbBackend, Prefilter, ecb_backend, find_candidates
from agent.matching_fast.keys import KeyArrays
from agent.models import ReportType, TemporaryExposureKey

TASK_KEYS = 65_536
"""Keys per worker task: 1 MB of key data in, a short list of candidates out."""


# --- Worker processes ------------------------------------------------------------------------


@dataclass(slots=True)
class _WorkerState:
    prefilter: Prefilter
    backend: EcbBackend


_WORKER: list[_WorkerState] = []


def _init_worker(rpi_blob: bytes, backend: str | None) -> None:
    _WORKER[:] = [_WorkerState(Prefilter(rpi_blob), ecb_backend(backend))]


def _worker_task(key_data: bytes, rolling_start: bytes, base_index: int) -> list[Candidate]:
    state = _WORKER[0]
    starts = np.frombuffer(rolling_start, dtype=np.int32)
    return find_candidates(key_data, starts, state.prefilter, state.backend, base_index=base_index)


MAX_DEFAULT_WORKERS = 2
"""Each worker process costs ~60 MB (interpreter, numpy, prefilter, chunk buffer) and the
systemd unit caps the whole service at 256 MB, so by default at most two, even on a
4-core Pi; pass ``workers`` to use more."""


def default_workers() -> int:
    """One worker per core this process may run on, at most :data:`MAX_DEFAULT_WORKERS`."""
    return max(1, min(MAX_DEFAULT_WORKERS, len(os.sched_getaffinity(0))))


def find_candidates_parallel(
    keys: KeyArrays,
    rpi_blob: bytes,
    *,
    workers: int | None = None,
    backend: str | None = None,
    progress: Callable[[int], None] | None = None,
    task_keys: int | None = None,
) -> list[Candidate]:
    """:func:`find_candidates` over all keys, in worker processes when it pays off.

    Fewer than two tasks' worth of keys (or ``workers=1``) run in this process. Workers
    are spawned (not forked: the caller may hold threads and locks) and end with the call.
    ``progress`` is called with the number of keys finished so far.
    """
    n = len(keys)
    workers = workers or default_workers()
    task_keys = task_keys or TASK_KEYS
    found: list[Candidate] = []
    if workers <= 1 or n < 2 * task_keys:
        prefilter, aes = Prefilter(rpi_blob), ecb_backend(backend)
        for start in range(0, n, task_keys):
            stop = min(n, start + task_keys)
            found.extend(
                find_candidates(
                    keys.key_data[TEK_LENGTH * start : TEK_LENGTH * stop],
                    keys.rolling_start[start:stop],
                    prefilter,
                    aes,
                    base_index=start,
                )
            )
            if progress is not None:
                progress(stop)
        return found
    done = 0
    with ProcessPoolExecutor(
        max_workers=workers,
        mp_context=get_context("spawn"),
        initializer=_init_worker,
        initargs=(rpi_blob, backend),
    ) as pool:
        futures = [
            (
                min(task_keys, n - start),
                pool.submit(
                    _worker_task,
                    keys.key_data[TEK_LENGTH * start : TEK_LENGTH * (start + task_keys)],
                    keys.rolling_start[start : start + task_keys].tobytes(),
                    start,
                ),
            )
            for start in range(0, n, task_keys)
        ]
        for size, future in futures:
            try:
                found.extend(future.result())
            except BrokenProcessPool as exc:
                raise MatchingError(WORKER_DIED) from exc
            done += size
            if progress is not None:
                progress(done)
    return found


# --- The fast matcher ------------------------------------------------------------------------


def fast_match(
    keys: KeyArrays | Sequence[TemporaryExposureKey],
    index: SightingIndex,
    own_keys: frozenset[bytes] = frozenset(),
    *,
    workers: int | None = None,
    backend: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> MatchResult:
    """Exactly :func:`agent.matching.match_keys`, fast. CPU-bound: run it in an executor."""
    arrays = keys if isinstance(keys, KeyArrays) else KeyArrays.from_keys(keys)
    report_type = arrays.report_type
    recursive = report_type == ReportType.RECURSIVE
    revoked = (report_type == ReportType.REVOKED) & ~recursive
    own = np.zeros(len(arrays), dtype=bool)
    if own_keys and len(arrays):
        own = np.isin(arrays.key_view(), np.frombuffer(b"".join(own_keys), dtype=f"V{TEK_LENGTH}"))
    own &= ~(recursive | revoked)
    skipped = recursive | revoked | own
    matchable = arrays.select(~skipped) if skipped.any() else arrays
    if len(index) and len(matchable):
        candidates = find_candidates_parallel(
            matchable, index.rpi_blob(), workers=workers, backend=backend, progress=progress
        )
    else:
        candidates = []
    result = evaluate_candidates(matchable, candidates, index, own_keys)
    for name, mask in (
        ("recursive_key_skipped", recursive),
        ("revoked_key", revoked),
        ("own_key_skipped", own),
    ):
        if mask.any():
            result.counters[name] += int(np.count_nonzero(mask))
    view = arrays.key_data
    result.revoked.extend(
        view[TEK_LENGTH * i : TEK_LENGTH * (i + 1)] for i in np.flatnonzero(revoked).tolist()
    )
    return result
