"""In-run references and measuring helpers for ``scripts/bench`` (performance.md, "How a
benchmark should measure this").

* AES limit: one AES-128-ECB encryptor, ``update_into`` over 1 MiB -> blocks/s.
* Python-call unit: ``hashlib.sha256(16 bytes).digest()`` calls/s.
* Slices: short runs alternating [reference, target]; median, IQR and drift over them.
* Process-tree memory (PSS) sampling and event-loop lag, for the end-to-end runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

ROOT = Path(__file__).resolve().parents[1]


def aes_blocks_per_second(seconds: float) -> float:
    """The AES limit: bulk AES-128-ECB on one core, in 16-byte blocks per second."""
    encryptor = Cipher(algorithms.AES(os.urandom(16)), modes.ECB()).encryptor()
    source = bytes(1 << 20)
    target = bytearray((1 << 20) + 16)
    rounds = 0
    start = time.perf_counter()
    while True:
        for _ in range(8):
            encryptor.update_into(source, target)
        rounds += 8
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return rounds * (1 << 20) / 16 / elapsed


def python_calls_per_second(seconds: float) -> float:
    """The Python-call unit: ``hashlib.sha256(tek).digest()`` per second."""
    tek = os.urandom(16)
    sha256 = hashlib.sha256
    calls = 0
    start = time.perf_counter()
    while True:
        for _ in range(2000):
            sha256(tek).digest()
        calls += 2000
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return calls / elapsed


def summary(values: list[float]) -> dict[str, float]:
    """Median, quartiles and drift (median of the first half over the second half)."""
    if len(values) < 2:
        value = values[0] if values else float("nan")
        return {"median": value, "q1": value, "q3": value, "drift": 1.0}
    q1, median, q3 = statistics.quantiles(values, n=4, method="inclusive")
    half = len(values) // 2
    drift = statistics.median(values[:half]) / statistics.median(values[half:])
    return {"median": median, "q1": q1, "q3": q3, "drift": drift}


def pin_one_core() -> int | None:
    """Run on one core only (the lowest this process may use); returns it."""
    try:
        cpu = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})
        return cpu
    except (AttributeError, OSError):
        return None


def unpin(cpus: set[int]) -> None:
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setaffinity(0, cpus)


# --- process tree memory ---------------------------------------------------------------------


def _pss_kb(pid: int) -> int:
    """Proportional set size: shared pages (libraries, copy-on-write after fork) are
    split between the processes sharing them, so the sum over a tree is its real use."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as rollup:
            for line in rollup:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children", encoding="ascii") as f:
                found.extend(int(c) for c in f.read().split())
        except (OSError, ValueError):
            continue
    return found


def tree_pss_mb(pid: int) -> tuple[float, float, float]:
    """PSS of ``pid``, of ``pid`` and all its descendants, and of its largest
    descendant, in MB (``ru_maxrss`` of children is useless here: a child forked by a
    big parent starts with the parent's high-water mark)."""
    own = _pss_kb(pid)
    total, largest = own, 0
    todo = [(child, pid) for child in _children(pid)]
    while todo:
        child, parent = todo.pop()
        if _cmdline(child) == _cmdline(parent):
            # forked and not exec'd yet (subprocess uses vfork: the child's /proc shows
            # the parent's own memory): counted in the parent; counting it again made
            # one 3 M-key sample 405 MB instead of ~250
            continue
        pss = _pss_kb(child)
        total += pss
        largest = max(largest, pss)
        todo.extend((grandchild, child) for grandchild in _children(child))
    return own / 1024, total / 1024, largest / 1024


def _cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


class TreeSampler:
    """Samples this process tree's PSS every ``interval`` s in a thread; keeps the peaks."""

    def __init__(self, interval: float = 0.02) -> None:
        self.interval = interval
        self.peak_self_mb = 0.0
        self.peak_tree_mb = 0.0
        self.peak_child_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        pid = os.getpid()
        while not self._stop.is_set():
            own, tree, child = tree_pss_mb(pid)
            self.peak_self_mb = max(self.peak_self_mb, own)
            self.peak_tree_mb = max(self.peak_tree_mb, tree)
            self.peak_child_mb = max(self.peak_child_mb, child)
            self._stop.wait(self.interval)

    def __enter__(self) -> TreeSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# --- event-loop lag -----------------------------------------------------------------------------


class LoopLag:
    """A periodic task on the running loop; records how late each wake-up is (s)."""

    def __init__(self, period: float = 0.005) -> None:
        self.period = period
        self.lags: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + self.period
            await asyncio.sleep(self.period)
            self.lags.append(max(0.0, loop.time() - due))

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> dict[str, Any]:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        lags = sorted(self.lags) or [0.0]
        return {
            "samples": len(self.lags),
            "p50_ms": 1000 * lags[len(lags) // 2],
            "p99_ms": 1000 * lags[min(len(lags) - 1, int(len(lags) * 0.99))],
            "max_ms": 1000 * lags[-1],
        }


def timed(function: Callable[[], object]) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start
