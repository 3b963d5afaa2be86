"""Giving freed heap memory back to the system after a big parse or match."""

from __future__ import annotations

import ctypes
import functools


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
