"""Exposure Notification cryptography, byte-exact with the v1.2 specification.

Pure functions: bytes and interval numbers in, bytes out; nothing reads a clock. Each
function names the section of the Exposure Notification cryptography specification
(v1.2) it implements. Verified against the 144 official vectors in
``tests/unit/test_crypto_vectors.py``.

The spec-named functions (:func:`derive_rpik`, :func:`derive_aemk`, :func:`rpi`,
:func:`encrypt_aem`, :func:`padded_data`) do one key or one interval at a time. Matching
needs millions of RPIs, so there is one batch primitive under them, :func:`rpis_into`:
the RPIs of many keys, each for a range of intervals, written into one buffer. It has two
backends with the same results (``tests/unit/test_crypto_backends.py``):

- ``native``: the C extension ``agent._gaen``, compiled by the package build when a C
  compiler and the OpenSSL headers exist (``setup.py``; it is optional), and imported
  like any installed module. Nothing is compiled, written or loaded from a writable
  directory at run time.
- ``pure``: Python: RPIK by HKDF-SHA256 from precomputed SHA-256 midstates (``hashlib``),
  the RPIs by one AES-128-ECB call per key of the system libcrypto (the OpenSSL that
  Python's ``hashlib`` uses) through ``ctypes``: one context re-keyed per key.

``$CONTACT_AGENT_CRYPTO`` (``native``, ``pure`` or ``auto``, the default: native when
built) picks one; see :func:`batch_backend`.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from agent.constants import (
    AEM_LENGTH,
    AEMK_INFO,
    RPI_LENGTH,
    RPI_PADDING_PREFIX,
    RPIK_INFO,
    TEK_LENGTH,
    TEK_ROLLING_PERIOD,
)
from agent.errors import MalformedInputError

if TYPE_CHECKING:
    from types import ModuleType

    from typing_extensions import Buffer

_gaen: ModuleType | None
try:  # the compiled backend, when the package build could compile it
    from agent import _gaen
except ImportError:  # pragma: no cover - depends on the build machine
    _gaen = None

_UINT32_MAX = 0xFFFF_FFFF


def _require_length(name: str, value: bytes, length: int) -> None:
    if not isinstance(value, bytes | bytearray | memoryview):
        raise MalformedInputError(f"{name} must be bytes, got {type(value).__name__}")
    if len(value) != length:
        raise MalformedInputError(f"{name} must be {length} bytes, got {len(value)}")


def _require_interval(en_interval: int) -> None:
    if isinstance(en_interval, bool) or not isinstance(en_interval, int):
        raise MalformedInputError(f"interval number must be an integer, got {en_interval!r}")
    if not 0 <= en_interval <= _UINT32_MAX:
        raise MalformedInputError(f"interval number must be in 0..2^32-1, got {en_interval}")


def new_tek() -> bytes:
    """A fresh Temporary Exposure Key: 16 bytes from the OS CSPRNG (crypto spec v1.2)."""
    return os.urandom(TEK_LENGTH)


def _hkdf16(tek: bytes, info: bytes) -> bytes:
    _require_length("TEK", tek, TEK_LENGTH)
    return HKDF(algorithm=hashes.SHA256(), length=16, salt=None, info=info).derive(bytes(tek))


def derive_rpik(tek: bytes) -> bytes:
    """RPIK = HKDF-SHA256(TEK, salt=None, info="EN-RPIK", 16) (crypto spec v1.2)."""
    return _hkdf16(tek, RPIK_INFO)


def derive_aemk(tek: bytes) -> bytes:
    """AEMK = HKDF-SHA256(TEK, salt=None, info="EN-AEMK", 16) (crypto spec v1.2)."""
    return _hkdf16(tek, AEMK_INFO)


def padded_data(en_interval: int) -> bytes:
    """PaddedData_j = "EN-RPI" || 0x00 x 6 || uint32_le(ENIN_j) (crypto spec v1.2)."""
    _require_interval(en_interval)
    return RPI_PADDING_PREFIX + struct.pack("<I", en_interval)


def padded_data_blocks(start_interval: int, count: int) -> bytes:
    """PaddedData for ``count`` consecutive intervals, concatenated (one AES call's input)."""
    _require_interval(start_interval)
    if count < 0:
        raise MalformedInputError(f"count must not be negative, got {count}")
    if count:
        _require_interval(start_interval + count - 1)
    return b"".join(
        RPI_PADDING_PREFIX + struct.pack("<I", start_interval + j) for j in range(count)
    )


def _ecb(key: bytes, data: bytes) -> bytes:
    encryptor = Cipher(algorithms.AES(bytes(key)), modes.ECB()).encryptor()  # noqa: S305
    return encryptor.update(data) + encryptor.finalize()


def rpi(rpik: bytes, en_interval: int) -> bytes:
    """RPI_j = AES-128-ECB(RPIK, PaddedData_j) (crypto spec v1.2)."""
    _require_length("RPIK", rpik, 16)
    return _ecb(rpik, padded_data(en_interval))


def rpis(rpik: bytes, start_interval: int, count: int = TEK_ROLLING_PERIOD) -> list[bytes]:
    """All RPIs of ``count`` intervals from ``start_interval``, in one AES call.

    Equal to ``[rpi(rpik, start_interval + j) for j in range(count)]``.
    """
    _require_length("RPIK", rpik, 16)
    blob = _ecb(rpik, padded_data_blocks(start_interval, count))
    return [blob[i : i + RPI_LENGTH] for i in range(0, len(blob), RPI_LENGTH)]


def aem_crypt(aemk: bytes, rpi_value: bytes, data: bytes) -> bytes:
    """AES-128-CTR(AEMK, counter block = RPI, data): encrypts metadata or decrypts an AEM.

    CTR is symmetric, so the same call turns metadata into the AEM and back (crypto spec v1.2).
    """
    _require_length("AEMK", aemk, 16)
    _require_length("RPI", rpi_value, RPI_LENGTH)
    _require_length("AEM/metadata", data, AEM_LENGTH)
    encryptor = Cipher(algorithms.AES(bytes(aemk)), modes.CTR(bytes(rpi_value))).encryptor()
    return encryptor.update(bytes(data)) + encryptor.finalize()


def encrypt_aem(aemk: bytes, rpi_value: bytes, metadata: bytes) -> bytes:
    """AEM_j from the 4 metadata bytes (crypto spec v1.2)."""
    return aem_crypt(aemk, rpi_value, metadata)


def decrypt_aem(aemk: bytes, rpi_value: bytes, aem: bytes) -> bytes:
    """The 4 metadata bytes from an AEM (crypto spec v1.2)."""
    return aem_crypt(aemk, rpi_value, aem)


# --- the batch primitive ---------------------------------------------------------------


RpisInto = Callable[["Buffer", "Buffer", "Buffer", "Buffer"], None]
"""``(teks, firsts, counts, out)``: see :func:`rpis_into`."""

BACKEND_ENV: Final = "CONTACT_AGENT_CRYPTO"
"""``native``, ``pure`` or ``auto`` (default): the backend of :func:`rpis_into`."""

_INNER = hashlib.sha256(b"\x36" * 64)
_OUTER = hashlib.sha256(b"\x5c" * 64)
"""HMAC(salt=None, i.e. 32 zero bytes) midstates: the key XOR ipad/opad is just the pad."""
_XOR36 = bytes(i ^ 0x36 for i in range(256))
_XOR5C = bytes(i ^ 0x5C for i in range(256))
_PAD36 = b"\x36" * 32
_PAD5C = b"\x5c" * 32
_RPIK_INFO_T1 = RPIK_INFO + b"\x01"


def _rpik_midstates(tek: bytes | memoryview) -> bytes:
    """:func:`derive_rpik` by SHA-256 midstates: HKDF extract PRK = HMAC(0^32, TEK), then
    expand T1 = HMAC(PRK, "EN-RPIK" || 0x01), first 16 bytes (the pure backend's RPIK)."""
    inner = _INNER.copy()
    inner.update(tek)
    outer = _OUTER.copy()
    outer.update(inner.digest())
    prk = outer.digest()
    t1_inner = hashlib.sha256(prk.translate(_XOR36) + _PAD36 + _RPIK_INFO_T1).digest()
    return hashlib.sha256(prk.translate(_XOR5C) + _PAD5C + t1_inner).digest()[:16]


class _Templates:
    """PaddedData per (first interval, count): keys of one day share theirs."""

    def __init__(self, limit: int = 1024) -> None:
        self._cache: dict[tuple[int, int], bytes] = {}
        self._limit = limit

    def get(self, first: int, count: int) -> bytes:
        template = self._cache.get((first, count))
        if template is None:
            if len(self._cache) >= self._limit:
                self._cache.clear()
            template = padded_data_blocks(first, count)
            self._cache[(first, count)] = template
        return template


_TEMPLATES = _Templates()


_LIBCRYPTO_NAMES: Final = ("libcrypto.so.3", "libcrypto.so.1.1")
"""The system OpenSSL's libcrypto by soname (Python's own ``hashlib`` and ``ssl`` link
it): the dynamic linker looks it up in the system's library directories."""


class _Libcrypto:
    """The few libcrypto functions the pure backend calls, typed for ctypes: AES-128-ECB
    through one EVP context, re-keyed per key. (``cryptography`` builds a new cipher
    object per key, ~10 us, most of the pure backend's time; a re-key is well under
    a microsecond.)"""

    def __init__(self, lib: ctypes.CDLL) -> None:
        void_p, c_int = ctypes.c_void_p, ctypes.c_int
        self.new = lib.EVP_CIPHER_CTX_new
        self.new.restype, self.new.argtypes = void_p, []
        self.free = lib.EVP_CIPHER_CTX_free
        self.free.restype, self.free.argtypes = None, [void_p]
        self.aes_128_ecb = lib.EVP_aes_128_ecb
        self.aes_128_ecb.restype, self.aes_128_ecb.argtypes = void_p, []
        self.init = lib.EVP_EncryptInit_ex
        self.init.restype = c_int
        self.init.argtypes = [void_p, void_p, void_p, ctypes.c_char_p, void_p]
        self.update = lib.EVP_EncryptUpdate
        self.update.restype = c_int
        self.update.argtypes = [void_p, void_p, void_p, ctypes.c_char_p, c_int]
        self.set_padding = lib.EVP_CIPHER_CTX_set_padding
        self.set_padding.restype, self.set_padding.argtypes = c_int, [void_p, c_int]


@functools.cache
def _libcrypto() -> _Libcrypto:
    """The system libcrypto (looked up on first use, so importing this module loads
    nothing). Raises OSError when none of its sonames loads."""
    failures = []
    for name in _LIBCRYPTO_NAMES:
        try:
            return _Libcrypto(ctypes.CDLL(name))
        except (OSError, AttributeError) as exc:
            failures.append(f"{name}: {exc}")
    raise OSError("no system libcrypto (OpenSSL 3 or 1.1): " + "; ".join(failures))


def _pure_rpis_into(teks: Buffer, firsts: Buffer, counts: Buffer, out: Buffer) -> None:
    """The pure backend of :func:`rpis_into`: RPIK by midstates (``hashlib``), the RPIs
    of each key by one call of the system libcrypto's AES-128-ECB."""
    keys = memoryview(teks).cast("B")
    first_list = memoryview(firsts).cast("B").cast("I").tolist()
    count_list = memoryview(counts).cast("B").cast("I").tolist()
    target = memoryview(out).cast("B")
    if len(keys) % TEK_LENGTH or not len(first_list) == len(count_list) == len(keys) // 16:
        raise ValueError("teks: 16 bytes per row; firsts, counts: 4 per row")
    if len(target) < RPI_LENGTH * sum(count_list):
        raise ValueError("out is smaller than 16 bytes per RPI")
    if not len(target):
        return
    lib = _libcrypto()
    init, update = lib.init, lib.update
    ctx = lib.new()
    view = (ctypes.c_char * len(target)).from_buffer(target)
    try:
        if not ctx or init(ctx, lib.aes_128_ecb(), None, bytes(16), None) != 1:
            raise RuntimeError("libcrypto AES-128-ECB could not be set up")
        lib.set_padding(ctx, 0)
        outl = ctypes.c_int()
        outl_ref = ctypes.byref(outl)
        templates, rpik, tek_bytes = _TEMPLATES.get, _rpik_midstates, bytes(keys)
        address = ctypes.addressof(view)
        for i, (first, count) in enumerate(zip(first_list, count_list, strict=True)):
            if count:
                data = templates(first, count)
                if (
                    init(ctx, None, None, rpik(tek_bytes[16 * i : 16 * i + 16]), None) != 1
                    or update(ctx, address, outl_ref, data, len(data)) != 1
                ):
                    raise RuntimeError("libcrypto AES-128-ECB failed")
                address += len(data)
    finally:
        if ctx:
            lib.free(ctx)
        del view  # releases out's buffer


def batch_backends() -> dict[str, RpisInto]:
    """The backends of :func:`rpis_into` this installation has, fastest first."""
    found: dict[str, RpisInto] = {}
    if _gaen is not None:
        found["native"] = _gaen.rpis_into
    found["pure"] = _pure_rpis_into
    return found


def batch_backend(name: str | None = None) -> tuple[str, RpisInto]:
    """(name, function) of the backend ``name`` or ``$CONTACT_AGENT_CRYPTO`` asks for;
    ``auto`` (the default) is the fastest one installed.

    Raises:
        ValueError: an unknown name, or ``native`` when the extension was not built.
    """
    choice = (name or os.environ.get(BACKEND_ENV) or "auto").strip().lower()
    found = batch_backends()
    if choice == "auto":
        choice = next(iter(found))
    if choice not in ("native", "pure"):
        raise ValueError(f"unknown crypto backend {choice!r} (native, pure or auto)")
    if choice not in found:
        raise ValueError(
            "the native crypto backend was not built (no C compiler or OpenSSL headers "
            "when the package was installed)"
        )
    return choice, found[choice]


RpisMatch = Callable[
    ["Buffer", "Buffer", "Buffer", "Buffer", int, "Buffer", "Buffer", "Buffer", "Buffer"], int
]
"""``(teks, firsts, counts, bloom, shift, high, low, buckets, hits) -> number of hits``."""


def batch_match(name: str) -> RpisMatch | None:
    """The native backend's :func:`rpis_into` fused with the candidate search's checks,
    or None for the pure backend. Each RPI is checked while the key's RPIs are in the L1
    cache, first in ``bloom``, a blocked Bloom filter of ``2**(32 - shift)`` uint64
    words (:class:`agent.matching.kernel.Prefilter` builds it), then exactly against the
    observed RPIs as little-endian uint64 halves ``high``/``low`` sorted by (high, low),
    looked up from ``buckets`` (2^bits + 1 uint32: the first row of each value of
    high's top ``bits`` bits, then the number of rows). ``hits`` gets the index each
    observed one would have in :func:`rpis_into`'s ``out``, as the search's numpy steps
    find them. Nothing else is written."""
    return _gaen.rpis_match if name == "native" and _gaen is not None else None


def rpis_into(teks: Buffer, firsts: Buffer, counts: Buffer, out: Buffer) -> None:
    """For each key i: its RPIs of intervals ``firsts[i] .. firsts[i] + counts[i] - 1``,
    written one after another into ``out`` (RPI_j = AES-128-ECB(RPIK, PaddedData_j), crypto spec
    v1.2).

    ``teks``: 16 bytes per key; ``firsts``, ``counts``: native uint32 per key; ``out``:
    writable, at least 16 bytes per RPI. Unchecked beyond sizes (interval ranges must
    stay below 2^32): callers pass validated keys. Uses the default backend
    (:func:`batch_backend`); the native one releases the GIL.
    """
    batch_backend()[1](teks, firsts, counts, out)
