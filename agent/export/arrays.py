"""The flat fast path: a verified export as a key blob and int32 arrays (performance.md §1e).

Same container checks, same signature verification (it shares
:func:`~agent.export.reader.verified_message`), same parse-level drops and the same
validation rules as the object path, without building a Python object per key.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from types import MappingProxyType

import numpy as np

from agent.export.model import MAX_EXPORT_BYTES, ExportArrays
from agent.export.parse import iter_rows, signature_infos, to_keys
from agent.export.reader import verified_message
from agent.export.signature import PublicKeyRing
from agent.export.validation import validate_arrays

_FIELDS = 5  # rolling_start, rolling_period, tr, report_type, dso


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
    message, _ = verified_message(zip_bytes, ring, max_bytes=max_bytes)
    dropped: Counter[str] = Counter()
    rows = list(iter_rows(message.keys, dropped))
    key_blob = b"".join([r[0] for r in rows])
    has_dso = np.fromiter((r[5] is not None for r in rows), dtype=bool, count=len(rows))
    numbers = np.array(
        [(r[1], r[2], r[3], r[4], 0 if r[5] is None else r[5]) for r in rows], dtype=np.int64
    ).reshape(len(rows), _FIELDS)
    columns = numbers.astype(np.int32).T.copy()
    del rows, numbers
    revised = to_keys(iter_rows(message.revised_keys, dropped))
    valid, invalid = validate_arrays(key_blob, columns[0], columns[4], has_dso, now_interval)
    dropped.update(invalid)
    return ExportArrays(
        start_timestamp=message.start_timestamp,
        end_timestamp=message.end_timestamp,
        region=message.region,
        batch_num=message.batch_num,
        batch_size=message.batch_size,
        signature_infos=signature_infos(message),
        sha256=hashlib.sha256(zip_bytes).digest(),
        key_data=key_blob,
        rolling_start=columns[0],
        rolling_period=columns[1],
        transmission_risk=columns[2],
        report_type=columns[3],
        days_since_onset=columns[4],
        has_days_since_onset=has_dso,
        valid=valid,
        revised_keys=revised,
        dropped=MappingProxyType(dict(dropped)),
    )
