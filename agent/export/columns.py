"""The one column type of diagnosis keys: :class:`KeyArrays`, flat arrays (25 bytes per
key after :meth:`KeyArrays.compact`). The export reader returns it; matching consumes it."""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from agent.constants import TEK_LENGTH
from agent.export.groups import row_groups
from agent.memory import trim_heap
from agent.models import ReportType, TemporaryExposureKey

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

    def __iter__(self) -> Iterator[TemporaryExposureKey]:
        return (self[i] for i in range(len(self)))

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
"""Rows merged between two :func:`~agent.memory.trim_heap` calls (~12 MB freed)."""
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
