"""The fast candidate finder (performance.md, designs 4-6, 9): same answers, many keys.

It finds exactly the (key, interval offset) pairs of :func:`agent.matching.reference_candidates`
and hands them to the shared evaluation, so the two matchers cannot disagree about what a
match is. Speed comes from:

- keys as flat arrays (:class:`KeyArrays`, 24 bytes per key), no object per key;
- RPIK by HKDF-SHA256 with precomputed SHA-256 midstates (``hashlib``), 4 hashes per key;
- all 144 RPIs of a key in one AES-128-ECB call over a cached 2304-byte PaddedData
  template, written into a chunk buffer: through one re-keyed OpenSSL context by
  ``ctypes`` when the system libcrypto loads and passes a self-test (design 6), else
  through the public ``cryptography`` API (design 4);
- a numpy prefilter per chunk of 2048 keys (a bit table on each RPI's first 32 bits),
  confirmed by an exact set lookup;
- chunks of 64k keys spread over worker processes (design 9).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import logging
import math
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from typing import Protocol

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from agent import crypto
from agent.constants import RPI_LENGTH, RPIK_INFO, TEK_LENGTH, TEK_ROLLING_PERIOD
from agent.matching import Candidate, MatchResult, SightingIndex, evaluate_candidates
from agent.models import ReportType, TemporaryExposureKey

_LOGGER = logging.getLogger(__name__)

BLOCK_BYTES = RPI_LENGTH * TEK_ROLLING_PERIOD  # 2304: one key's PaddedData / RPIs
CHUNK_KEYS = 2048
"""Keys per prefilter pass: a 4.7 MB RPI buffer (stays in L2/L3, per performance.md)."""
TASK_KEYS = 65_536
"""Keys per worker task: 1 MB of key data in, a short list of candidates out."""
BACKEND_ENV = "CONTACT_AGENT_AES_BACKEND"
"""``ctypes``, ``public`` or ``auto`` (default): which AES path to use."""

I32 = npt.NDArray[np.int32]


# --- Keys as flat arrays -------------------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)
class KeyArrays:
    """Diagnosis keys as flat arrays; row ``i`` is ``self[i]`` as a key object."""

    key_data: bytes
    rolling_start: I32
    rolling_period: I32
    transmission_risk: I32
    report_type: I32
    days_since_onset: I32
    has_days_since_onset: npt.NDArray[np.bool_]

    def __len__(self) -> int:
        return len(self.rolling_start)

    def __getitem__(self, index: int) -> TemporaryExposureKey:
        i = int(index)
        dso = int(self.days_since_onset[i]) if self.has_days_since_onset[i] else None
        return TemporaryExposureKey(
            key_data=self.key_data[TEK_LENGTH * i : TEK_LENGTH * (i + 1)],
            rolling_start_interval_number=int(self.rolling_start[i]),
            rolling_period=int(self.rolling_period[i]),
            transmission_risk_level=int(self.transmission_risk[i]),
            report_type=ReportType(int(self.report_type[i])),
            days_since_onset_of_symptoms=dso,
        )

    @classmethod
    def from_keys(cls, keys: Iterable[TemporaryExposureKey]) -> KeyArrays:
        rows = list(keys)

        def column(values: Iterable[int]) -> I32:
            return np.fromiter(values, dtype=np.int32, count=len(rows))

        return cls(
            key_data=b"".join(k.key_data for k in rows),
            rolling_start=column(k.rolling_start_interval_number for k in rows),
            rolling_period=column(k.rolling_period for k in rows),
            transmission_risk=column(k.transmission_risk_level for k in rows),
            report_type=column(int(k.report_type) for k in rows),
            days_since_onset=column(k.days_since_onset_of_symptoms or 0 for k in rows),
            has_days_since_onset=np.fromiter(
                (k.days_since_onset_of_symptoms is not None for k in rows),
                dtype=bool,
                count=len(rows),
            ),
        )

    @classmethod
    def concat(cls, parts: Sequence[KeyArrays]) -> KeyArrays:
        if not parts:
            return cls.from_keys(())
        return cls(
            key_data=b"".join(p.key_data for p in parts),
            **{name: np.concatenate([getattr(p, name) for p in parts]) for name in _COLUMNS},
        )

    def select(self, rows: npt.NDArray[np.intp] | npt.NDArray[np.bool_]) -> KeyArrays:
        """The given rows (indices or a mask), in order."""
        blob = self.key_view()[rows]
        return KeyArrays(
            key_data=blob.tobytes(),
            **{name: getattr(self, name)[rows] for name in _COLUMNS},
        )

    def key_view(self) -> npt.NDArray[np.void]:
        """One 16-byte opaque value per key, for vectorised comparisons."""
        return np.frombuffer(self.key_data, dtype=f"V{TEK_LENGTH}")

    def dedupe(self) -> tuple[KeyArrays, int]:
        """One row per key_data; the last occurrence (a revision) wins; order kept."""
        n = len(self)
        if n < 2:
            return self, 0
        _, last_reversed = np.unique(self.key_view()[::-1], return_index=True)
        keep = np.sort(n - 1 - last_reversed)
        if len(keep) == n:
            return self, 0
        return self.select(keep), n - len(keep)


_COLUMNS = (
    "rolling_start",
    "rolling_period",
    "transmission_risk",
    "report_type",
    "days_since_onset",
    "has_days_since_onset",
)


# --- RPIK: HKDF-SHA256 with midstates -------------------------------------------------------

_INNER = hashlib.sha256(b"\x36" * 64)
_OUTER = hashlib.sha256(b"\x5c" * 64)
"""HMAC(salt=None -> 32 zero bytes) midstates: the key XOR ipad/opad is just the pads."""
_XOR36 = bytes(i ^ 0x36 for i in range(256))
_XOR5C = bytes(i ^ 0x5C for i in range(256))
_PAD36 = b"\x36" * 32
_PAD5C = b"\x5c" * 32
_RPIK_INFO_T1 = RPIK_INFO + b"\x01"


def derive_rpik_fast(tek: bytes) -> bytes:
    """RPIK = HKDF-SHA256(TEK, salt=None, info="EN-RPIK", 16), as :func:`crypto.derive_rpik`.

    Extract: PRK = HMAC(0^32, TEK). Expand: T1 = HMAC(PRK, info || 0x01), first 16 bytes.
    """
    inner = _INNER.copy()
    inner.update(tek)
    outer = _OUTER.copy()
    outer.update(inner.digest())
    prk = outer.digest()
    t1_inner = hashlib.sha256(prk.translate(_XOR36) + _PAD36 + _RPIK_INFO_T1).digest()
    return hashlib.sha256(prk.translate(_XOR5C) + _PAD5C + t1_inner).digest()[:16]


# --- AES-128-ECB backends --------------------------------------------------------------------


class EcbBackend(Protocol):
    name: str

    def encrypt_into(self, key: bytes, data: bytes, out: memoryview, address: int) -> None:
        """Write AES-128-ECB(key, data) at ``out[:len(data)]`` (= memory at ``address``)."""


class PublicEcb:
    """Design 4: one ``cryptography`` Cipher per key."""

    name = "public"

    def encrypt_into(self, key: bytes, data: bytes, out: memoryview, address: int) -> None:
        encryptor = Cipher(algorithms.AES(key), modes.ECB()).encryptor()  # noqa: S305
        out[: len(data)] = encryptor.update(data)


class CtypesEcb:
    """Design 6: one OpenSSL EVP context from the system libcrypto, re-keyed per key."""

    name = "ctypes"

    def __init__(self) -> None:
        path = ctypes.util.find_library("crypto")
        if path is None:
            raise OSError("libcrypto not found")
        lib = ctypes.CDLL(path)
        lib.EVP_CIPHER_CTX_new.restype = ctypes.c_void_p
        lib.EVP_CIPHER_CTX_free.argtypes = [ctypes.c_void_p]
        lib.EVP_aes_128_ecb.restype = ctypes.c_void_p
        lib.EVP_EncryptInit_ex.argtypes = [ctypes.c_void_p] * 5
        lib.EVP_EncryptInit_ex.restype = ctypes.c_int
        lib.EVP_EncryptUpdate.argtypes = [
            ctypes.c_void_p,
            ctypes.c_void_p,
            ctypes.c_void_p,
            ctypes.c_char_p,
            ctypes.c_int,
        ]
        lib.EVP_EncryptUpdate.restype = ctypes.c_int
        lib.EVP_CIPHER_CTX_set_padding.argtypes = [ctypes.c_void_p, ctypes.c_int]
        self._lib = lib
        self._ctx = lib.EVP_CIPHER_CTX_new()
        if not self._ctx:
            raise OSError("EVP_CIPHER_CTX_new failed")
        if lib.EVP_EncryptInit_ex(self._ctx, lib.EVP_aes_128_ecb(), None, bytes(16), None) != 1:
            raise OSError("EVP_EncryptInit_ex failed")
        lib.EVP_CIPHER_CTX_set_padding(self._ctx, 0)
        self._init = lib.EVP_EncryptInit_ex
        self._update = lib.EVP_EncryptUpdate
        self._outl = ctypes.c_int()
        self._outl_ref = ctypes.byref(self._outl)

    def encrypt_into(self, key: bytes, data: bytes, out: memoryview, address: int) -> None:
        self._init(self._ctx, None, None, key, None)
        self._update(self._ctx, address, self._outl_ref, data, len(data))

    def __del__(self) -> None:
        ctx, self._ctx = getattr(self, "_ctx", None), None
        if ctx:
            self._lib.EVP_CIPHER_CTX_free(ctx)


def _self_test(backend: EcbBackend) -> bool:
    key = hashlib.sha256(b"self-test").digest()[:16]
    data = crypto.padded_data_blocks(2642976, TEK_ROLLING_PERIOD)
    buffer = bytearray(len(data))
    address = ctypes.addressof((ctypes.c_char * len(buffer)).from_buffer(buffer))
    backend.encrypt_into(key, data, memoryview(buffer), address)
    expected = Cipher(algorithms.AES(key), modes.ECB()).encryptor().update(data)  # noqa: S305
    return bytes(buffer) == expected


def ecb_backend(name: str | None = None) -> EcbBackend:
    """The AES path: ``name`` or ``$CONTACT_AGENT_AES_BACKEND``, else ctypes if it works."""
    choice = (name or os.environ.get(BACKEND_ENV) or "auto").lower()
    if choice == "public":
        return PublicEcb()
    if choice not in ("auto", "ctypes"):
        raise ValueError(f"unknown AES backend {choice!r} (ctypes, public or auto)")
    try:
        backend = CtypesEcb()
        if _self_test(backend):
            return backend
        _LOGGER.warning("system libcrypto failed the AES self-test; using the slower path")
    except (OSError, AttributeError) as exc:
        _LOGGER.debug("ctypes AES unavailable (%s); using the public API", exc)
    if choice == "ctypes":
        raise OSError("the ctypes AES backend is not available on this system")
    return PublicEcb()


# --- Prefilter and the candidate kernel ----------------------------------------------------


class Prefilter:
    """Observed RPIs as a bit table on their first 32 bits plus an exact set."""

    def __init__(self, rpi_blob: bytes) -> None:
        count = len(rpi_blob) // RPI_LENGTH
        self.bits = min(24, max(20, math.ceil(math.log2(max(count, 1))) + 6))
        self.shift = 32 - self.bits
        self.table = np.zeros(1 << self.bits, dtype=bool)
        firsts = np.frombuffer(rpi_blob, dtype="<u4")[:: RPI_LENGTH // 4]
        self.table[firsts >> self.shift] = True
        self.exact = frozenset(
            rpi_blob[i : i + RPI_LENGTH] for i in range(0, len(rpi_blob), RPI_LENGTH)
        )


class _Templates:
    """PaddedData of 144 intervals per rolling start; a run sees only a few starts."""

    def __init__(self, limit: int = 4096) -> None:
        self._cache: dict[int, bytes] = {}
        self._limit = limit

    def get(self, rolling_start: int) -> bytes:
        template = self._cache.get(rolling_start)
        if template is None:
            if len(self._cache) >= self._limit:
                self._cache.clear()
            template = crypto.padded_data_blocks(rolling_start, TEK_ROLLING_PERIOD)
            self._cache[rolling_start] = template
        return template


def find_candidates(
    key_data: bytes,
    rolling_start: Sequence[int] | I32,
    prefilter: Prefilter,
    backend: EcbBackend | None = None,
    *,
    base_index: int = 0,
) -> list[Candidate]:
    """Every (key index + base_index, offset) whose RPI was observed: the hot loop."""
    backend = backend or ecb_backend()
    buffer = bytearray(CHUNK_KEYS * BLOCK_BYTES)
    out = memoryview(buffer)
    address = ctypes.addressof((ctypes.c_char * len(buffer)).from_buffer(buffer))
    words = np.frombuffer(buffer, dtype="<u4")
    shifted = np.empty(CHUNK_KEYS * TEK_ROLLING_PERIOD, dtype="<u4")
    templates = _Templates()
    starts = [int(s) for s in rolling_start]
    encrypt, derive, table, exact = (
        backend.encrypt_into,
        derive_rpik_fast,
        prefilter.table,
        prefilter.exact,
    )
    found: list[Candidate] = []
    for chunk in range(0, len(starts), CHUNK_KEYS):
        n = min(CHUNK_KEYS, len(starts) - chunk)
        for k in range(n):
            i = chunk + k
            offset = k * BLOCK_BYTES
            encrypt(
                derive(key_data[TEK_LENGTH * i : TEK_LENGTH * (i + 1)]),
                templates.get(starts[i]),
                out[offset:],
                address + offset,
            )
        first_words = shifted[: n * TEK_ROLLING_PERIOD]
        np.right_shift(
            words[: n * BLOCK_BYTES // 4 : RPI_LENGTH // 4], prefilter.shift, out=first_words
        )
        for hit in np.flatnonzero(table.take(first_words)).tolist():
            if out[RPI_LENGTH * hit : RPI_LENGTH * (hit + 1)].tobytes() in exact:
                key_index, j = divmod(hit, TEK_ROLLING_PERIOD)
                found.append((base_index + chunk + key_index, j))
    return found


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


def default_workers() -> int:
    """One worker per core this process may run on."""
    return max(1, len(os.sched_getaffinity(0)))


def find_candidates_parallel(
    keys: KeyArrays,
    rpi_blob: bytes,
    *,
    workers: int | None = None,
    backend: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[Candidate]:
    """:func:`find_candidates` over all keys, in worker processes when it pays off.

    Fewer than two tasks' worth of keys (or ``workers=1``) run in this process.
    ``progress`` is called with the number of keys finished so far.
    """
    n = len(keys)
    workers = workers or default_workers()
    if workers <= 1 or n < 2 * TASK_KEYS:
        found = find_candidates(
            keys.key_data, keys.rolling_start, Prefilter(rpi_blob), ecb_backend(backend)
        )
        if progress is not None:
            progress(n)
        return found
    found = []
    done = 0
    with ProcessPoolExecutor(
        max_workers=workers,
        mp_context=get_context("spawn"),
        initializer=_init_worker,
        initargs=(rpi_blob, backend),
    ) as pool:
        futures = [
            (
                min(TASK_KEYS, n - start),
                pool.submit(
                    _worker_task,
                    keys.key_data[TEK_LENGTH * start : TEK_LENGTH * (start + TASK_KEYS)],
                    keys.rolling_start[start : start + TASK_KEYS].tobytes(),
                    start,
                ),
            )
            for start in range(0, n, TASK_KEYS)
        ]
        for size, future in futures:
            found.extend(future.result())
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
    matchable = arrays.select(~(recursive | revoked | own))
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
