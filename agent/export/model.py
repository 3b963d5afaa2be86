"""Value types of a parsed diagnosis-key export, and the limits the reader enforces."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final, TypedDict

import numpy as np
import numpy.typing as npt

from agent.export.columns import KeyArrays
from agent.models import TemporaryExposureKey

MAX_EXPORT_BYTES: Final = 64 * 1024 * 1024
"""Default cap on the zip and on the decompressed export.bin. A 1 M-key file is ~34 MB
(``docs/performance.md``); the largest real national daily files were a few MB."""

MAX_SIG_BYTES: Final = 16 * 1024
"""export.sig holds at most 10 signatures of ~110-150 bytes each; the cap is checked on the
declared size before a byte of it is decompressed or parsed."""

MAX_COMPRESSION_RATIO: Final = 100
"""Declared size over compressed size above this is a zip bomb (bad-input case 21).
Keys are random bytes and barely compress, so real exports are near 1:1."""

RATIO_CHECK_MIN_BYTES: Final = 64 * 1024
"""Tiny entries may compress well (an empty export); the ratio only matters above this."""

MAX_SIGNATURE_INFOS: Final = 10
"""``signature_infos`` holds at most 10 entries (``export.proto``)."""

MAX_BATCH_SIZE: Final = 1000
"""Servers always write batch 1/1; anything beyond this is nonsense."""

MAX_KEYS_PER_FILE: Final = 2_000_000
"""Per-file key cap (Google caps a batch group at 1 M keys; CWA pads ~10x)."""

TR_MIN: Final = 0
TR_MAX: Final = 8
"""Transmission risk outside 0..8 is treated as unknown (0) (bad-input case 36)."""


@dataclass(frozen=True, slots=True)
class SignatureInfo:
    """Which key signed an export (``SignatureInfo`` in ``export.proto``)."""

    key_id: str
    """``verification_key_id``, e.g. the MCC ``310``."""
    key_version: str
    """``verification_key_version``, e.g. ``v1``."""
    algorithm: str
    """OID, ``1.2.840.10045.4.3.2`` for ECDSA P-256 with SHA-256."""

    @property
    def label(self) -> str:
        """``id-version`` as the Android verifier looks keys up."""
        return f"{self.key_id or '?'}-{self.key_version or '?'}"


def _empty_counts() -> Mapping[str, int]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True, eq=False)
class ExportHeader:
    """What ``export.bin`` says about itself (``export.proto``)."""

    start_timestamp: int
    end_timestamp: int
    region: str
    batch_num: int
    batch_size: int
    signature_infos: tuple[SignatureInfo, ...]


class HeaderFields(TypedDict):
    """:class:`ExportHeader`'s fields, for building the classes that extend it."""

    start_timestamp: int
    end_timestamp: int
    region: str
    batch_num: int
    batch_size: int
    signature_infos: tuple[SignatureInfo, ...]


@dataclass(frozen=True, slots=True)
class ExportFile(ExportHeader):
    """A parsed export. Keys are for matching only when ``verified`` is true."""

    keys: tuple[TemporaryExposureKey, ...]
    revised_keys: tuple[TemporaryExposureKey, ...]
    sha256: bytes
    """SHA-256 of the zip bytes: the identity of the file for "already processed"."""
    verified: bool = False
    """True only when made by :func:`read_verified_export`."""
    dropped: Mapping[str, int] = field(default_factory=_empty_counts)
    """Keys that could not even be represented (bad length, period, negative start),
    by reason; the file itself stays valid (``docs/bad-input-coverage.md``, cases 33-35)."""
    signature_count: int = 0
    """Signatures in export.sig (0 when it was absent or unreadable; only shown)."""
    verified_by: SignatureInfo | None = None
    """The signature that a pinned key verified (None when not verified)."""


@dataclass(frozen=True, slots=True, eq=False)
class ExportArrays(ExportHeader):
    """A verified export with its keys as columns (:class:`~agent.export.columns.KeyArrays`).

    Row ``i`` is key ``i`` of :attr:`ExportFile.keys` of the same file, in the same order,
    with the same parse-level drops and the transmission risk already normalised.
    """

    sha256: bytes
    keys: KeyArrays
    valid: npt.NDArray[np.bool_]
    """Keys that pass :func:`~agent.export.validation.validate_arrays`; the time rules
    only apply when ``now_interval`` was given to the reader."""
    revised_keys: KeyArrays
    """The ``revised_keys`` records as parsed (parse-level drops only; not validated)."""
    dropped: Mapping[str, int]
    """Parse-level drops (of keys and revised keys) plus the validation drops behind
    :attr:`valid`."""
    verified: bool = True

    def __len__(self) -> int:
        return len(self.keys)

    def key(self, index: int) -> TemporaryExposureKey:
        """Row ``index`` as a key object."""
        return self.keys[index]

    def valid_keys(self) -> list[TemporaryExposureKey]:
        """The rows of :attr:`valid` as key objects (slow; for tests and small files)."""
        return [self.keys[int(i)] for i in np.flatnonzero(self.valid)]
