"""Per-example bounds for the fuzz targets (``docs/reliability.md`` F12: only the declared error
types, no input takes more than a second, memory stays small).

Time is the thread's CPU time, not wall-clock time, and the limit is a generous hang
detector rather than a speed claim; memory is the tracemalloc peak of the call.
"""

from __future__ import annotations

import os
import time
import tracemalloc
from collections.abc import Callable
from typing import TypeVar

from hypothesis import HealthCheck, settings

T = TypeVar("T")

CPU_SECONDS = 1.0
"""F12: no input may take longer (CPU time of this thread)."""
PEAK_BYTES = 32 * 1024 * 1024
"""Far above what a few-kB input needs, far below a decompression bomb."""

FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "300"))
"""Examples per target: 300 in CI; ``scripts/fault_suite.sh`` raises it for a soak."""
FUZZ = settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        # the RSS baseline fixture is meant per test, not per example
        HealthCheck.function_scoped_fixture,
    ],
)


class Outcome:
    """What a call returned or raised, with its CPU time and memory peak."""

    def __init__(self) -> None:
        self.value: object = None
        self.error: BaseException | None = None
        self.cpu_seconds = 0.0
        self.peak_bytes = 0


def bounded(
    call: Callable[[], T],
    declared: tuple[type[BaseException], ...],
    *,
    cpu_seconds: float = CPU_SECONDS,
    peak_bytes: int = PEAK_BYTES,
) -> Outcome:
    """Run ``call``; only ``declared`` errors may escape it, within the bounds."""
    outcome = Outcome()
    tracemalloc.start()
    started = time.thread_time()
    try:
        outcome.value = call()
    except declared as exc:
        outcome.error = exc
    finally:
        outcome.cpu_seconds = time.thread_time() - started
        outcome.peak_bytes = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert outcome.cpu_seconds < cpu_seconds, f"took {outcome.cpu_seconds:.2f} s of CPU"
    assert outcome.peak_bytes < peak_bytes, f"peak {outcome.peak_bytes} bytes"
    if outcome.error is not None:
        message = str(outcome.error)
        assert message and "\n" not in message, "errors are one clear line"
    return outcome
