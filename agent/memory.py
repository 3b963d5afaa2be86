"""The heap of a long-running process: freed memory given back to the system after a
big parse or match, and the start-up's objects kept out of the garbage collector's way."""

from __future__ import annotations

import ctypes
import functools
import gc


@functools.cache
def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(None)  # this process's own C library, already loaded
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        libc.malloc_trim.restype = ctypes.c_int
    except (OSError, AttributeError):  # not glibc
        return None
    return libc


def trim_heap() -> None:
    """Give freed heap memory back to the system (glibc ``malloc_trim``; elsewhere a
    no-op). After a big parse or match, glibc otherwise keeps the freed arrays' pages:
    a 3 M-key cycle left the process ~90 MB larger for good."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


def freeze_startup_objects() -> None:
    """Once, when a service has started: leave the objects alive now (the modules,
    classes and functions of its imports, ~50,000) out of every later collection.

    A full collection walks every tracked object while holding the GIL; with the
    imports in the heap, each held the event loop for 20-35 ms on a 2-core VM (~100 ms
    on a slower one) whenever a worker thread made objects quickly, e.g. while loading
    rows. Garbage made later is collected as before; the frozen objects are never
    freed, and never would have been. Later calls do nothing (tests start many services
    in one process).
    """
    if not gc.get_freeze_count():
        gc.collect()
        gc.freeze()
