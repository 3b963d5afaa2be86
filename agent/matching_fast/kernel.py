"""The hot loop: RPIK by hashlib midstates, 144 RPIs per AES call, numpy prefilter."""

from __future__ import annotations

import ctypes
import hashlib
import logging
import math
import os
import struct
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

import numpy as np
import numpy.typing as npt

from agent.constants import (
    RPI_LENGTH,
    RPI_PADDING_PREFIX,
    RPIK_INFO,
    TEK_LENGTH,
    TEK_ROLLING_PERIOD,
)
from agent.native import libcrypto_path

if TYPE_CHECKING:  # agent.matching pulls in cryptography: worker processes do without
    from agent.matching import Candidate

_LOGGER = logging.getLogger(__name__)

BLOCK_BYTES = RPI_LENGTH * TEK_ROLLING_PERIOD  # 2304: one key's PaddedData / RPIs
CHUNK_KEYS = 1024
"""Keys per prefilter pass: a 2.4 MB RPI buffer (stays in L2/L3, per performance.md; as
fast as 2048 here, and half the memory per worker)."""
BACKEND_ENV = "CONTACT_AGENT_AES_BACKEND"
"""``native``, ``ctypes``, ``public`` or ``auto`` (default): which kernel and AES path to
use (:mod:`agent.matching_fast.finder`)."""


# --- RPIK: HKDF-SHA256 with midstates -------------------------------------------------------

_INNER = hashlib.sha256(b"\x36" * 64)
_OUTER = hashlib.sha256(b"\x5c" * 64)
"""HMAC(salt=None -> 32 zero bytes) midstates: the key XOR ipad/opad is just the pads."""
_XOR36 = bytes(i ^ 0x36 for i in range(256))
_XOR5C = bytes(i ^ 0x5C for i in range(256))
_PAD36 = b"\x36" * 32
_PAD5C = b"\x5c" * 32
_RPIK_INFO_T1 = RPIK_INFO + b"\x01"


def derive_rpik_fast(tek: bytes | memoryview) -> bytes:
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

    def __init__(self) -> None:
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

        self._cipher = Cipher
        self._aes = algorithms.AES
        self._ecb = modes.ECB()  # noqa: S305 - GAEN's RPI is AES-128 of single blocks

    def encrypt_into(self, key: bytes, data: bytes, out: memoryview, address: int) -> None:
        out[: len(data)] = self._cipher(self._aes(key), self._ecb).encryptor().update(data)


class CtypesEcb:
    """Design 6: one OpenSSL EVP context from the system libcrypto, re-keyed per key."""

    name = "ctypes"

    def __init__(self) -> None:
        path = libcrypto_path()
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


def padded_data(start_interval: int) -> bytes:
    """PaddedData of the 144 intervals from ``start_interval`` (as
    :func:`agent.crypto.padded_data_blocks`, unchecked: validated keys only)."""
    return b"".join(
        RPI_PADDING_PREFIX + struct.pack("<I", start_interval + j)
        for j in range(TEK_ROLLING_PERIOD)
    )


_VECTOR_START = 2642976
_VECTOR_RPIK = bytes.fromhex("185ad91db69ec7dd048960f1f3ba6175")
_VECTOR_RPIS_SHA256 = "7d0d92c8f0ebe30719c9cedbe5262fd8da1a914dd76a6d163bd080c6c04d7fd9"
"""The spec's test vector: the RPIK and the SHA-256 of its 144 RPIs from START_INTERVAL."""


def _self_test(backend: EcbBackend) -> bool:
    data = padded_data(_VECTOR_START)
    buffer = bytearray(len(data))
    address = ctypes.addressof((ctypes.c_char * len(buffer)).from_buffer(buffer))
    backend.encrypt_into(_VECTOR_RPIK, data, memoryview(buffer), address)
    return hashlib.sha256(buffer).hexdigest() == _VECTOR_RPIS_SHA256


def ecb_backend(name: str | None = None) -> EcbBackend:
    """The AES path: ``name`` or ``$CONTACT_AGENT_AES_BACKEND``, else ctypes if it works."""
    choice = (name or os.environ.get(BACKEND_ENV) or "auto").lower()
    if choice == "native":  # the AES path under the native kernel's Python fallback
        choice = "auto"
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
    """Observed RPIs as a bit table on their first 32 bits, confirmed exactly against the
    RPIs sorted as two 64-bit halves (16 bytes per RPI; a set of bytes takes ~100)."""

    def __init__(self, rpi_blob: bytes) -> None:
        count = len(rpi_blob) // RPI_LENGTH
        self.bits = min(24, max(20, math.ceil(math.log2(max(count, 1))) + 6))
        self.shift = 32 - self.bits
        self.table = np.zeros(1 << self.bits, dtype=bool)
        firsts = np.frombuffer(rpi_blob, dtype="<u4")[:: RPI_LENGTH // 4]
        self.table[firsts >> self.shift] = True
        halves = np.frombuffer(rpi_blob, dtype="<u8").reshape(count, 2)
        order = np.lexsort((halves[:, 1], halves[:, 0]))
        self.high = halves[order, 0]
        self.low = halves[order, 1]
        self._exact: frozenset[bytes] | None = None
        if count > 1 and bool(np.any(self.high[1:] == self.high[:-1])):
            # two RPIs alike in 64 bits (~1e-10 for 50k): a lookup by halves could miss one
            self._exact = frozenset(
                rpi_blob[i : i + RPI_LENGTH] for i in range(0, len(rpi_blob), RPI_LENGTH)
            )

    def confirm(
        self, high: npt.NDArray[np.uint64], low: npt.NDArray[np.uint64]
    ) -> npt.NDArray[np.bool_]:
        """Which of the RPIs given by their halves (``<u8`` words 0 and 1) are observed."""
        if self._exact is not None:
            return np.fromiter(
                (
                    int(h).to_bytes(8, "little") + int(lo).to_bytes(8, "little") in self._exact
                    for h, lo in zip(high.tolist(), low.tolist(), strict=True)
                ),
                dtype=bool,
                count=len(high),
            )
        if not len(self.high):
            return np.zeros(len(high), dtype=bool)
        at = np.minimum(np.searchsorted(self.high, high), len(self.high) - 1)
        observed: npt.NDArray[np.bool_] = (self.high[at] == high) & (self.low[at] == low)
        return observed


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
            template = padded_data(rolling_start)
            self._cache[rolling_start] = template
        return template


def find_candidates(
    key_data: bytes | memoryview,
    rolling_start: Sequence[int] | npt.NDArray[np.int32],
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
    halves = np.frombuffer(buffer, dtype="<u8")
    shifted = np.empty(CHUNK_KEYS * TEK_ROLLING_PERIOD, dtype="<u4")
    templates = _Templates()
    starts = [int(s) for s in rolling_start]
    encrypt, derive, table = backend.encrypt_into, derive_rpik_fast, prefilter.table
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
        hits = np.flatnonzero(table.take(first_words))
        if len(hits):
            hits = hits[prefilter.confirm(halves[2 * hits], halves[2 * hits + 1])]
            for hit in hits.tolist():
                key_index, j = divmod(hit, TEK_ROLLING_PERIOD)
                found.append((base_index + chunk + key_index, j))
    return found
