"""Diagnosis keys as flat arrays (24 bytes per key), read from verified exports."""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from agent.constants import TEK_LENGTH
from agent.export import (
    ExportArrays,
    PublicKeyRing,
    read_verified_export_arrays,
)
from agent.export.arrays import row_groups
from agent.export.model import MAX_EXPORT_BYTES
from agent.models import ReportType, TemporaryExposureKey
from agent.native import trim_heap

I32 = npt.NDArray[np.int32]
Ints = npt.NDArray[np.integer[Any]]
"""int32, or narrower after :meth:`KeyArrays.compact`."""


@dataclass(frozen=True, slots=True, eq=False)
class KeyArrays:
    """Diagnosis keys as flat arrays; row ``i`` is ``self[i]`` as a key object."""

    key_data: bytes
    rolling_start: I32
    rolling_period: Ints
    transmission_risk: Ints
    report_type: Ints
    days_since_onset: Ints
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
    def from_export(cls, export: ExportArrays) -> KeyArrays:
        """The keys of a verified export that passed validation (``export.valid``)."""
        whole = cls(
            key_data=export.key_data,
            rolling_start=export.rolling_start,
            rolling_period=export.rolling_period,
            transmission_risk=export.transmission_risk,
            report_type=export.report_type,
            days_since_onset=export.days_since_onset,
            has_days_since_onset=export.has_days_since_onset,
        )
        return whole if bool(export.valid.all()) else whole.select(export.valid)

    @classmethod
    def concat(cls, parts: Sequence[KeyArrays]) -> KeyArrays:
        if not parts:
            return cls.from_keys(())
        if len(parts) == 1:
            return parts[0]
        return cls(
            key_data=b"".join(p.key_data for p in parts),
            **{name: np.concatenate([getattr(p, name) for p in parts]) for name in _COLUMNS},
        )

    @classmethod
    def merge(cls, parts: list[KeyArrays]) -> KeyArrays:
        """:meth:`concat` that empties ``parts`` as it goes, freeing each part once it is
        copied: the peak is the result plus a part, not twice all keys (~75 MB for 3 M)."""
        if len(parts) < 2:
            merged = cls.concat(parts)
            parts.clear()
            return merged
        total = sum(len(p) for p in parts)
        columns = {
            name: np.empty(total, dtype=np.result_type(*(getattr(p, name) for p in parts)))
            for name in _COLUMNS
        }
        blob = io.BytesIO()
        at = untrimmed = 0
        parts.reverse()
        while parts:
            part = parts.pop()
            blob.write(part.key_data)
            for name in _COLUMNS:
                columns[name][at : at + len(part)] = getattr(part, name)
            at += len(part)
            untrimmed += len(part)
            del part
            if untrimmed >= TRIM_ROWS:
                trim_heap()
                untrimmed = 0
        return cls(key_data=_bytes_of(blob), **columns)

    def select(self, rows: npt.NDArray[np.intp] | npt.NDArray[np.bool_]) -> KeyArrays:
        """The given rows (indices or a mask), in order."""
        view = self.key_view()
        blob = io.BytesIO()
        for first in range(0, len(rows), SELECT_ROWS):
            chunk = rows[first : first + SELECT_ROWS]
            if chunk.dtype == np.bool_:
                blob.write(view[first : first + SELECT_ROWS][chunk].tobytes())
            else:
                blob.write(view[chunk].tobytes())
        return KeyArrays(
            key_data=_bytes_of(blob),
            **{name: getattr(self, name)[rows] for name in _COLUMNS},
        )

    def key_view(self) -> npt.NDArray[np.void]:
        """One 16-byte opaque value per key, for vectorised comparisons."""
        return np.frombuffer(self.key_data, dtype=f"V{TEK_LENGTH}")

    def dedupe(self) -> tuple[KeyArrays, int]:
        """One row per key_data; the last occurrence (a revision) wins; order kept.

        Searched group by group (:func:`~agent.export.arrays.row_groups`): a few MB of
        temporaries instead of ~50 bytes per key.
        """
        n = len(self)
        if n < 2:
            return self, 0
        view = self.key_view()
        keep = np.zeros(n, dtype=bool)
        prefix = np.frombuffer(self.key_data, dtype="<u8")[::2]
        for rows in row_groups(view.view(np.uint8).reshape(n, TEK_LENGTH)):
            firsts = np.sort(prefix[rows])
            if not np.any(firsts[1:] == firsts[:-1]):  # all distinct: the usual case
                keep[rows] = True
                continue
            _, last_reversed = np.unique(view[rows[::-1]], return_index=True)
            keep[rows[len(rows) - 1 - last_reversed]] = True
        removed = n - int(np.count_nonzero(keep))
        return (self, 0) if not removed else (self.select(keep), removed)

    def compact(self) -> KeyArrays:
        """The same keys with each column in the narrowest type its values fit: 25 bytes
        per key for validated keys instead of 37."""

        def narrow(column: Ints, kind: type[np.integer[Any]]) -> Ints:
            info = np.iinfo(kind)
            if len(column) and info.min <= int(column.min()) and int(column.max()) <= info.max:
                return column.astype(kind)
            return column

        return KeyArrays(
            key_data=self.key_data,
            rolling_start=self.rolling_start,
            rolling_period=narrow(self.rolling_period, np.uint8),
            transmission_risk=narrow(self.transmission_risk, np.int8),
            report_type=narrow(self.report_type, np.int8),
            days_since_onset=narrow(self.days_since_onset, np.int8),
            has_days_since_onset=self.has_days_since_onset,
        )


TRIM_ROWS = 500_000
"""Rows merged between two :func:`~agent.native.trim_heap` calls (~12 MB freed)."""
SELECT_ROWS = 262_144
"""Rows of key data copied per step: a 4 MB temporary instead of one as big as the result."""


def _bytes_of(blob: io.BytesIO) -> bytes:
    """The written bytes; CPython hands over the buffer without copying it."""
    with blob:
        return blob.getvalue()


_COLUMNS = (
    "rolling_start",
    "rolling_period",
    "transmission_risk",
    "report_type",
    "days_since_onset",
    "has_days_since_onset",
)


# --- Verified exports as flat keys ----------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)
class ParsedExport:
    """The usable keys of one verified export."""

    sha256: bytes
    keys: KeyArrays
    """Valid first-release keys, then the valid revised keys (revisions come later so
    that :meth:`KeyArrays.dedupe` lets them win)."""
    key_count: int
    """Keys and revised keys parsed from the file, before validation."""
    dropped: dict[str, int]
    """Keys dropped by parse or validation, by reason."""


def read_export_keys(
    zip_bytes: bytes,
    ring: PublicKeyRing | Callable[[], PublicKeyRing],
    now_interval: int,
    max_bytes: int = MAX_EXPORT_BYTES,
) -> ParsedExport:
    """Verify an export and return its usable keys (CPU-bound: run it in a thread).

    ``ring`` may also be a factory (``functools.partial(PublicKeyRing.from_pem, ...)``),
    called once here.

    Raises:
        ExportFileError, SignatureError: the file is rejected; no key of it is returned.
    """
    pinned = ring if isinstance(ring, PublicKeyRing) else ring()
    export = read_verified_export_arrays(
        zip_bytes, pinned, now_interval=now_interval, max_bytes=max_bytes
    )
    revised = export.revised
    dropped = Counter(export.dropped)
    keys = KeyArrays.from_export(export)
    sha256, key_count = export.sha256, len(export)
    if revised is not None:
        dropped.update({f"revised_{reason}": n for reason, n in revised.dropped.items()})
        key_count += len(revised)
        if bool(revised.valid.any()):
            keys = KeyArrays.concat([keys, KeyArrays.from_export(revised)])
    del revised
    keys = keys.compact()
    del export
    trim_heap()  # the file, its export.bin and the parse temporaries are gone now
    return ParsedExport(
        sha256=sha256,
        keys=keys,
        key_count=key_count,
        dropped=dict(dropped),
    )
