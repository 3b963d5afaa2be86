"""Optional native accelerator of the candidate search (docs/performance.md, design 8).

``gaen_kernel.c`` (next to this file) is compiled on first use with the system C
compiler into a per-user cache directory and loaded with ``ctypes``; it opens the
system libcrypto itself (no OpenSSL headers needed). When there is no compiler, no
libcrypto, the build fails, or the result fails the self-test against the spec's test
vector, :func:`load` returns None and the pure-Python path is used: same answers, only
slower. ``CONTACT_AGENT_NATIVE=0`` turns the accelerator off.

The shared object is named after a hash of the source, the compiler and the machine, so
an edited source or another compiler builds a new one. The cache directory must belong
to this user and not be writable by others; otherwise nothing is loaded from it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import hashlib
import logging
import os
import platform
import shutil
import stat
import subprocess
import tempfile
import threading
from pathlib import Path

import numpy as np
import numpy.typing as npt

from agent.paths import default_data_dir

_LOGGER = logging.getLogger(__name__)

NATIVE_ENV = "CONTACT_AGENT_NATIVE"
"""``0``/``off`` disables the accelerator; anything else (default) uses it if it builds."""
CACHE_ENV = "CONTACT_AGENT_NATIVE_DIR"
"""Where the shared object is built (see :func:`cache_dir`)."""
SOURCE = Path(__file__).with_name("gaen_kernel.c")
BUILD_TIMEOUT = 120.0
OUTPUT_SLOTS = 4096
"""Candidate pairs per kernel call (a call stops early when fewer than 144 are free)."""

Candidate = tuple[int, int]


@functools.cache
def libcrypto_path() -> str | None:
    """The system libcrypto's name (looked up once: ``find_library`` runs a subprocess)."""
    return ctypes.util.find_library("crypto")


@functools.cache
def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(None)
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


def enabled() -> bool:
    return os.environ.get(NATIVE_ENV, "").strip().lower() not in ("0", "off", "no", "false")


def cache_dir() -> Path:
    """``$CONTACT_AGENT_NATIVE_DIR``; for a systemd service its ``CacheDirectory=``
    (``$CACHE_DIRECTORY``) or else its data directory (the home is read-only there);
    else ``$XDG_CACHE_HOME/contact-agent/native``."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env)
    systemd_cache = os.environ.get("CACHE_DIRECTORY")
    if systemd_cache:
        return Path(systemd_cache.split(":")[0]) / "native"
    if "INVOCATION_ID" in os.environ:
        return default_data_dir() / "native"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "contact-agent" / "native"


def _compiler() -> str | None:
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return name
    return None


def _private_dir(path: Path) -> bool:
    """Create ``path`` 0700; True when it is ours and nobody else may write to it."""
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        info = path.stat()
    except OSError as exc:
        _LOGGER.debug("native cache %s unusable: %s", path, exc)
        return False
    if info.st_uid != os.geteuid() or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        _LOGGER.warning("not using native cache %s: not private to this user", path)
        return False
    return True


def build(directory: Path | None = None) -> Path | None:
    """The compiled shared object (building it if needed), or None."""
    compiler = _compiler()
    if compiler is None:
        _LOGGER.debug("no C compiler: native matcher unavailable")
        return None
    directory = directory or cache_dir()
    if not _private_dir(directory):
        return None
    source = SOURCE.read_bytes()
    tag = hashlib.sha256(
        source + compiler.encode() + platform.machine().encode() + platform.libc_ver()[1].encode()
    ).hexdigest()[:16]
    target = directory / f"gaen_kernel-{tag}.so"
    if target.exists():
        return target
    fd, scratch = tempfile.mkstemp(prefix=".build-", suffix=".so", dir=directory)
    os.close(fd)
    command = [compiler, "-O2", "-shared", "-fPIC", "-o", scratch, str(SOURCE), "-ldl"]
    try:
        subprocess.run(command, check=True, capture_output=True, timeout=BUILD_TIMEOUT)
        os.chmod(scratch, 0o500)
        os.replace(scratch, target)  # atomic: concurrent builders agree on the result
    except (OSError, subprocess.SubprocessError) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        _LOGGER.info(
            "could not build the native matcher (%s); using the Python path. %s",
            type(exc).__name__,
            detail.decode(errors="replace").strip().splitlines()[-1:] or "",
        )
        Path(scratch).unlink(missing_ok=True)
        return None
    return target


class NativeTable:
    """The observed RPIs inside the native library (freed with the object)."""

    def __init__(self, kernel: NativeKernel, rpi_blob: bytes) -> None:
        count = len(rpi_blob) // 16
        bits = min(23, max(18, (max(count, 1) - 1).bit_length() + 6))
        self._free = kernel.lib.gaen_table_free
        self.handle = kernel.lib.gaen_table_new(rpi_blob, count, bits)
        if not self.handle:
            raise MemoryError("native matcher: cannot allocate the RPI table")

    def __del__(self) -> None:
        handle, self.handle = getattr(self, "handle", None), None
        if handle:
            self._free(handle)


class NativeKernel:
    """The loaded library. ``find`` releases the GIL: threads run it in parallel."""

    def __init__(self, path: Path, libcrypto: str) -> None:
        lib = ctypes.CDLL(str(path))
        lib.gaen_init.argtypes = [ctypes.c_char_p]
        lib.gaen_init.restype = ctypes.c_int
        lib.gaen_table_new.argtypes = [ctypes.c_char_p, ctypes.c_int64, ctypes.c_int]
        lib.gaen_table_new.restype = ctypes.c_void_p
        lib.gaen_table_free.argtypes = [ctypes.c_void_p]
        lib.gaen_table_free.restype = None
        lib.gaen_find.argtypes = [
            ctypes.c_void_p,
            ctypes.c_void_p,
            ctypes.c_void_p,
            ctypes.c_int64,
            ctypes.c_int64,
            ctypes.c_void_p,
            ctypes.c_void_p,
            ctypes.c_int64,
            ctypes.POINTER(ctypes.c_int64),
        ]
        lib.gaen_find.restype = ctypes.c_int64
        lib.gaen_rpis.argtypes = [ctypes.c_char_p, ctypes.c_int32, ctypes.c_char_p, ctypes.c_char_p]
        lib.gaen_rpis.restype = ctypes.c_int
        code = lib.gaen_init(libcrypto.encode())
        if code != 0:
            raise OSError(f"native matcher: libcrypto {libcrypto} unusable (code {code})")
        self.lib = lib
        self.path = path

    def rpis(self, tek: bytes, rolling_start: int) -> tuple[bytes, bytes]:
        """(RPIK, the 144 RPIs) of one key."""
        rpik = ctypes.create_string_buffer(16)
        out = ctypes.create_string_buffer(16 * 144)
        if self.lib.gaen_rpis(tek, rolling_start, rpik, out) != 0:
            raise OSError("native matcher: libcrypto AES failed")
        return rpik.raw, out.raw

    def table(self, rpi_blob: bytes) -> NativeTable:
        return NativeTable(self, rpi_blob)

    def find(
        self,
        table: NativeTable,
        key_data: bytes | memoryview,
        rolling_start: npt.NDArray[np.int32],
        *,
        base_index: int = 0,
    ) -> list[Candidate]:
        """Every (key index + base_index, offset) whose RPI is in ``table``."""
        starts = np.ascontiguousarray(rolling_start, dtype=np.int32)
        n = len(starts)
        if len(key_data) != 16 * n:
            raise ValueError("key_data must hold 16 bytes per rolling start")
        keys = np.frombuffer(key_data, dtype=np.uint8)  # no copy: the C code only reads
        out_key = np.empty(OUTPUT_SLOTS, dtype=np.int64)
        out_offset = np.empty(OUTPUT_SLOTS, dtype=np.int32)
        done = ctypes.c_int64()
        found: list[Candidate] = []
        first = 0
        while first < n:
            count = self.lib.gaen_find(
                table.handle,
                keys.ctypes.data + 16 * first,
                starts.ctypes.data + 4 * first,
                n - first,
                base_index + first,
                out_key.ctypes.data,
                out_offset.ctypes.data,
                OUTPUT_SLOTS,
                ctypes.byref(done),
            )
            if count < 0:
                raise OSError("native matcher: libcrypto AES failed")
            found.extend(zip(out_key[:count].tolist(), out_offset[:count].tolist(), strict=True))
            first += done.value
        return found


def _self_test(kernel: NativeKernel) -> bool:
    from agent import crypto
    from agent.constants import TEK_ROLLING_PERIOD

    tek = bytes.fromhex("75c734c6dd1a782de7a965da5eb93125")  # the spec's test vector
    start = 2642976
    rpik, rpis = kernel.rpis(tek, start)
    expected = crypto.derive_rpik(tek)
    return rpik == expected and rpis == b"".join(crypto.rpis(rpik, start, TEK_ROLLING_PERIOD))


_LOCK = threading.Lock()
_LOADED: list[NativeKernel | None] = []


def load() -> NativeKernel | None:
    """The accelerator of this process (built and self-tested once), or None."""
    with _LOCK:
        if not _LOADED:
            _LOADED.append(_load() if enabled() else None)
        return _LOADED[0]


def _load() -> NativeKernel | None:
    libcrypto = libcrypto_path()
    if libcrypto is None:
        _LOGGER.debug("no libcrypto: native matcher unavailable")
        return None
    path = build()
    if path is None:
        return None
    try:
        kernel = NativeKernel(path, libcrypto)
        if _self_test(kernel):
            _LOGGER.debug("native matcher loaded from %s", path)
            return kernel
        _LOGGER.warning("the native matcher failed its self-test; using the Python path")
    except (OSError, AttributeError) as exc:
        _LOGGER.info("native matcher unavailable (%s); using the Python path", exc)
    return None


__all__ = [
    "CACHE_ENV",
    "NATIVE_ENV",
    "NativeKernel",
    "NativeTable",
    "build",
    "cache_dir",
    "enabled",
    "libcrypto_path",
    "load",
    "trim_heap",
]
