"""Spreading the candidate search over threads (native backend) or worker processes."""

from __future__ import annotations

import contextlib
import os
import pickle
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from pathlib import Path
from typing import cast

import numpy as np

import agent
from agent import crypto
from agent.constants import TEK_LENGTH
from agent.export.columns import KeyArrays
from agent.matching.core import (
    WORKER_DIED,
    Candidate,
    MatchingError,
)
from agent.matching.kernel import Ints, Search, Windows
from agent.matching.worker import ERROR, lower_priority

TASK_KEYS = 65_536
"""Keys per task: 1 MB of key data in, a short list of candidates out."""

MAX_DEFAULT_WORKERS = 2
"""The pure backend's worker processes cost ~35 MB each (interpreter, numpy, prefilter,
chunk buffer), so by default at most two, even on a 4-core Pi; pass ``workers`` to use
more. (The native backend's threads cost almost nothing.)"""


def default_workers() -> int:
    """One worker per core this process may run on, at most :data:`MAX_DEFAULT_WORKERS`."""
    return max(1, min(MAX_DEFAULT_WORKERS, len(os.sched_getaffinity(0))))


# --- Worker processes of the pure backend ----------------------------------------------------

_ROOT = str(Path(agent.__file__).resolve().parent.parent)
_BOOT = (
    "import sys; sys.path.insert(0, sys.argv[1]); "
    "from agent.matching.worker import main; main()"
)


class WorkerProcess:
    """One :mod:`agent.matching.worker` process, fed over its stdin and stdout.

    Started fresh (``python -I``, not forked: the caller may hold threads and locks) and
    lean: it imports only the search, not this process's modules. Not thread-safe: one
    caller thread per worker.
    """

    def __init__(self, rpi_blob: bytes, windows: Windows | None, backend: str | None) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-I", "-c", _BOOT, _ROOT],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        self.pid = self._process.pid
        sighted = None if windows is None else windows.to_bytes()
        self.name = str(self._call((rpi_blob, sighted, backend)))

    def find(
        self,
        key_data: bytes | memoryview,
        rolling_start: Ints,
        rolling_period: Ints,
        base_index: int,
    ) -> list[Candidate]:
        starts = np.ascontiguousarray(rolling_start, dtype=np.int32).tobytes()
        periods = np.ascontiguousarray(rolling_period, dtype=np.int32).tobytes()
        request = (bytes(key_data), starts, periods, base_index)
        return cast("list[Candidate]", self._call(request))

    def _call(self, request: object) -> object:
        pipe_in, pipe_out = self._process.stdin, self._process.stdout
        assert pipe_in is not None and pipe_out is not None  # both are PIPE
        try:
            pickle.dump(request, pipe_in, protocol=pickle.HIGHEST_PROTOCOL)
            pipe_in.flush()
            reply = pickle.load(pipe_out)  # noqa: S301 - our own child process
        except (OSError, EOFError, pickle.UnpicklingError) as exc:
            raise MatchingError(WORKER_DIED) from exc
        if isinstance(reply, tuple) and len(reply) == 2 and reply[0] == ERROR:
            raise MatchingError(f"a matching worker failed: {reply[1]}")
        return reply

    def close(self) -> None:
        """End the worker: end of input, then a kill if it does not exit within 5 s."""
        for pipe in (self._process.stdin, self._process.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
        try:
            self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


class _ProcessPool:
    """``workers`` threads, each feeding its own :class:`WorkerProcess` (started on the
    thread's first task, so all of them start at once)."""

    def __init__(
        self, rpi_blob: bytes, windows: Windows | None, backend: str | None, workers: int
    ) -> None:
        self._blob, self._windows, self._backend = rpi_blob, windows, backend
        self._local = threading.local()
        self._started: list[WorkerProcess] = []
        self._lock = threading.Lock()
        self.threads = ThreadPoolExecutor(max_workers=workers)

    def find(
        self, key_data: bytes, rolling_start: Ints, rolling_period: Ints, base: int
    ) -> list[Candidate]:
        worker: WorkerProcess | None = getattr(self._local, "worker", None)
        if worker is None:
            worker = WorkerProcess(self._blob, self._windows, self._backend)
            with self._lock:
                self._started.append(worker)
            self._local.worker = worker
        return worker.find(key_data, rolling_start, rolling_period, base)

    def __enter__(self) -> _ProcessPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.threads.shutdown(wait=True, cancel_futures=True)
        for worker in self._started:
            worker.close()


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
    result = future.result()
    if progress is not None:
        progress(stop)
    return result


def find_candidates_parallel(
    keys: KeyArrays,
    rpi_blob: bytes,
    *,
    windows: Windows | None = None,
    workers: int | None = None,
    backend: str | None = None,
    progress: Callable[[int], None] | None = None,
    task_keys: int | None = None,
) -> list[Candidate]:
    """:meth:`~agent.matching.kernel.Search.find` over all keys, spread over cores
    when it pays off; ``windows``: the intervals that can match (None: all).

    The native backend runs in ``workers`` threads of this process (it releases the GIL).
    The pure backend runs here for fewer than two tasks' worth of keys (or
    ``workers=1``), else in ``workers`` :class:`WorkerProcess` that end with the call.
    Workers run at a lower priority than the caller (niceness 10). ``progress`` is
    called with the number of keys finished so far.

    Raises:
        ValueError: an unknown ``backend``.
        MatchingError: a worker process died or failed.
    """
    n = len(keys)
    workers = workers or default_workers()
    task_keys = task_keys or TASK_KEYS
    name, _ = crypto.batch_backend(backend)  # an unknown name fails here, before any work
    view = memoryview(keys.key_data)  # slices of a view copy nothing

    def submit_to(find: Callable[..., list[Candidate]]) -> Callable[..., Future[list[Candidate]]]:
        def submit(pool: Executor, start: int, stop: int) -> Future[list[Candidate]]:
            return pool.submit(
                find,
                view[TEK_LENGTH * start : TEK_LENGTH * stop],
                keys.rolling_start[start:stop],
                keys.rolling_period[start:stop],
                start,
            )

        return submit

    if name == "native" or workers <= 1 or n < 2 * task_keys:
        search = Search(rpi_blob, windows, name)
        if name == "native" and workers > 1:
            with ThreadPoolExecutor(max_workers=workers, initializer=lower_priority) as threads:
                return _run_tasks(
                    threads, submit_to(search.find), _tasks(n, task_keys), 2 * workers, progress
                )
        found: list[Candidate] = []
        for start, stop in _tasks(n, task_keys):
            found.extend(
                search.find(
                    view[TEK_LENGTH * start : TEK_LENGTH * stop],
                    keys.rolling_start[start:stop],
                    keys.rolling_period[start:stop],
                    start,
                )
            )
            if progress is not None:
                progress(stop)
        return found
    with _ProcessPool(rpi_blob, windows, name, workers) as pool:
        return _run_tasks(
            pool.threads, submit_to(pool.find), _tasks(n, task_keys), 2 * workers, progress
        )
