"""The flat fast path: a verified export as a key blob and int32 arrays (performance.md §1e).

Same container checks, same signature verification (it shares
:func:`~agent.export.reader.verified_message`), same parse-level drops and the same
validation rules as the object path, without building a Python object per key. Keys are
decoded by :mod:`agent.export.fastparse` when the records have one fixed layout (what
servers write), else from the protobuf objects.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from types import MappingProxyType

import numpy as np
import numpy.typing as npt

from agent.constants import EXPORT_HEADER, TEK_ROLLING_PERIOD
from agent.export import export_pb2 as pb
from agent.export.fastparse import KeyColumns, decode_key_run
from agent.export.model import MAX_EXPORT_BYTES, ExportArrays
from agent.export.parse import TR_MAX, TR_MIN, header_fields, iter_rows, to_keys
from agent.export.reader import verified_message
from agent.export.signature import PublicKeyRing
from agent.export.validation import validate_arrays

_FIELDS = 5  # rolling_start, rolling_period, tr, report_type, dso


def _from_protobuf(message: pb.TemporaryExposureKeyExport, dropped: Counter[str]) -> KeyColumns:
    rows = list(iter_rows(message.keys, dropped))
    has_dso = np.fromiter((r[5] is not None for r in rows), dtype=bool, count=len(rows))
    numbers = np.array(
        [(r[1], r[2], r[3], r[4], 0 if r[5] is None else r[5]) for r in rows], dtype=np.int64
    ).reshape(len(rows), _FIELDS)
    columns = numbers.astype(np.int32).T
    key_data = np.frombuffer(b"".join([r[0] for r in rows]), dtype=np.uint8)
    return KeyColumns(
        key_data=key_data.reshape(len(rows), 16),
        rolling_start=columns[0],
        rolling_period=columns[1],
        transmission_risk=columns[2],
        report_type=columns[3],
        days_since_onset=columns[4],
        has_days_since_onset=has_dso,
    )


def _parse_drops(columns: KeyColumns, dropped: Counter[str]) -> KeyColumns:
    """The drops and normalisation of :func:`~agent.export.parse.iter_rows`, vectorised."""
    period = columns.rolling_period
    bad_period = (period < 1) | (period > TEK_ROLLING_PERIOD)
    negative = ~bad_period & (columns.rolling_start < 0)
    if bad_period.any():
        dropped["rolling_period"] += int(np.count_nonzero(bad_period))
    if negative.any():
        dropped["rolling_start_negative"] += int(np.count_nonzero(negative))
    keep = ~(bad_period | negative)
    tr = columns.transmission_risk
    tr = np.where((tr >= TR_MIN) & (tr <= TR_MAX), tr, 0).astype(np.int32)

    def pick(values: npt.NDArray[np.int32]) -> npt.NDArray[np.int32]:
        return np.ascontiguousarray(values[keep])

    return KeyColumns(
        key_data=np.ascontiguousarray(columns.key_data[keep]),
        rolling_start=pick(columns.rolling_start),
        rolling_period=pick(period),
        transmission_risk=pick(tr),
        report_type=pick(columns.report_type),
        days_since_onset=pick(columns.days_since_onset),
        has_days_since_onset=np.ascontiguousarray(columns.has_days_since_onset[keep]),
    )


def read_verified_export_arrays(
    zip_bytes: bytes,
    ring: PublicKeyRing,
    *,
    now_interval: int | None = None,
    max_bytes: int = MAX_EXPORT_BYTES,
) -> ExportArrays:
    """Verify an export and return its keys as flat arrays.

    ``valid`` marks the keys :func:`~agent.export.validation.validate_keys` would keep;
    the time rules apply only when ``now_interval`` is given.

    Raises:
        ExportFileError, SignatureError: exactly as :func:`read_verified_export`.
    """
    message, _, export_bin = verified_message(zip_bytes, ring, max_bytes=max_bytes)
    dropped: Counter[str] = Counter()
    fast = decode_key_run(export_bin[len(EXPORT_HEADER) :], len(message.keys))
    columns = _parse_drops(fast, dropped) if fast is not None else _from_protobuf(message, dropped)
    key_blob = columns.key_data.tobytes()
    revised = to_keys(iter_rows(message.revised_keys, dropped))
    valid, invalid = validate_arrays(
        key_blob,
        columns.rolling_start,
        columns.days_since_onset,
        columns.has_days_since_onset,
        now_interval,
    )
    dropped.update(invalid)
    return ExportArrays(
        **header_fields(message),
        sha256=hashlib.sha256(zip_bytes).digest(),
        key_data=key_blob,
        rolling_start=np.ascontiguousarray(columns.rolling_start),
        rolling_period=np.ascontiguousarray(columns.rolling_period),
        transmission_risk=np.ascontiguousarray(columns.transmission_risk),
        report_type=np.ascontiguousarray(columns.report_type),
        days_since_onset=np.ascontiguousarray(columns.days_since_onset),
        has_days_since_onset=columns.has_days_since_onset,
        valid=valid,
        revised_keys=revised,
        dropped=MappingProxyType(dict(dropped)),
    )
