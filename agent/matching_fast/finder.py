"""Which candidate search runs: the native kernel when it builds, else the Python kernel.

Backends (``backend=`` or ``$CONTACT_AGENT_AES_BACKEND``): ``native`` (the C kernel of
:mod:`agent.native`), ``ctypes`` and ``public`` (the Python kernel with that AES path),
``auto`` (default: native, else ctypes, else public). All return exactly the same
candidates; the tests check each against the reference.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import TYPE_CHECKING, Protocol

import numpy as np
import numpy.typing as npt

from agent import native
from agent.matching_fast.kernel import (
    BACKEND_ENV,
    EcbBackend,
    Prefilter,
    ecb_backend,
    find_candidates,
)

if TYPE_CHECKING:  # agent.matching pulls in cryptography: worker processes do without
    from agent.matching import Candidate

_LOGGER = logging.getLogger(__name__)

BACKENDS = ("auto", "native", "ctypes", "public")


class CandidateFinder(Protocol):
    """The observed RPIs, ready to search keys for them."""

    name: str

    def find(
        self, key_data: bytes | memoryview, rolling_start: npt.NDArray[np.int32], base_index: int
    ) -> list[Candidate]:
        """Every (key index + base_index, offset) whose RPI was observed."""


class PythonFinder:
    """The Python kernel (performance.md design 6, or 4 on the public AES API)."""

    def __init__(self, rpi_blob: bytes, backend: EcbBackend) -> None:
        self.prefilter = Prefilter(rpi_blob)
        self.backend = backend
        self.name = backend.name

    def find(
        self, key_data: bytes | memoryview, rolling_start: npt.NDArray[np.int32], base_index: int
    ) -> list[Candidate]:
        return find_candidates(
            key_data, rolling_start, self.prefilter, self.backend, base_index=base_index
        )


class NativeFinder:
    """The C kernel (design 8); its calls release the GIL, so threads run in parallel."""

    name = "native"

    def __init__(self, rpi_blob: bytes, kernel: native.NativeKernel) -> None:
        self.kernel = kernel
        self.table = kernel.table(rpi_blob)

    def find(
        self, key_data: bytes | memoryview, rolling_start: npt.NDArray[np.int32], base_index: int
    ) -> list[Candidate]:
        return self.kernel.find(self.table, key_data, rolling_start, base_index=base_index)


def backend_choice(backend: str | None = None) -> str:
    """The backend asked for: ``backend``, else the environment, else ``auto``."""
    choice = (backend or os.environ.get(BACKEND_ENV) or "auto").lower()
    if choice not in BACKENDS:
        raise ValueError(f"unknown AES backend {choice!r} ({', '.join(BACKENDS)})")
    return choice


def native_kernel(backend: str | None = None) -> native.NativeKernel | None:
    """The native kernel if the choice allows it and it loads.

    Raises:
        ValueError: an unknown backend name.
        OSError: ``native`` was asked for explicitly and cannot be built or loaded.
    """
    choice = backend_choice(backend)
    if choice not in ("auto", "native"):
        return None
    kernel = native.load()
    if kernel is None and choice == "native":
        raise OSError("the native matcher is not available (no C compiler or libcrypto?)")
    return kernel


def candidate_finder(rpi_blob: bytes, backend: str | None = None) -> CandidateFinder:
    """The fastest finder allowed by ``backend`` (see the module docstring)."""
    kernel = native_kernel(backend)
    if kernel is not None:
        return NativeFinder(rpi_blob, kernel)
    return PythonFinder(rpi_blob, ecb_backend(backend_choice(backend)))


def lower_priority(nice: int = 10) -> None:
    """Make the calling thread (Linux: niceness is per thread) yield to the event loop."""
    try:
        thread = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, thread, max(nice, os.getpriority(os.PRIO_PROCESS, thread)))
    except (OSError, AttributeError) as exc:  # a seccomp filter may refuse: no harm
        _LOGGER.debug("cannot lower the matcher's priority: %s", exc)
