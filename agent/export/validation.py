"""Per-key validity rules for diagnosis keys (the one validator; bad-input cases 33-38).

An invalid key is dropped with a counted reason; the file stays valid. Rules, in the order
a key is checked (a key is counted under the first rule it breaks):

- ``rolling_start_in_future``: starts after the current interval;
- ``rolling_start_too_old``: starts more than 15 days before the current interval;
- ``days_since_onset``: days since onset of symptoms outside -14..14;
- ``duplicate``: the same (key_data, rolling_start_interval_number) was already kept.

Length, rolling period and negative starts are checked by the parser (a key object
cannot hold them). A transmission risk outside 0..8 is set to 0 (unknown), not dropped.
REVOKED and RECURSIVE report types are kept: the pipeline decides what they mean.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

import numpy as np
import numpy.typing as npt

from agent.constants import KEY_MAX_AGE_DAYS, TEK_LENGTH, TEK_ROLLING_PERIOD
from agent.export.columns import KeyArrays
from agent.export.model import TR_MAX, TR_MIN
from agent.models import TemporaryExposureKey

DSO_MIN = -14
DSO_MAX = 14
"""Days since onset outside -14..14: drop the key (Google recommends dropping)."""

MAX_AGE_INTERVALS = KEY_MAX_AGE_DAYS * TEK_ROLLING_PERIOD
"""15 days of intervals."""

def validate_arrays(
    key_data: bytes,
    rolling_start: npt.NDArray[np.int32],
    days_since_onset: npt.NDArray[np.integer[Any]],
    has_days_since_onset: npt.NDArray[np.bool_],
    now_interval: int | None,
) -> tuple[npt.NDArray[np.bool_], Counter[str]]:
    """Which keys to use (the rules above), and counted reasons for the others.

    With ``now_interval=None`` the two time rules are skipped (the caller applies them
    later, when it knows the time).
    """
    n = len(rolling_start)
    ok = np.ones(n, dtype=bool)
    dropped: Counter[str] = Counter()

    def drop(bad: npt.NDArray[np.bool_], reason: str) -> None:
        hit = bad & ok
        count = int(np.count_nonzero(hit))
        if count:
            dropped[reason] += count
            ok[hit] = False

    starts = rolling_start.astype(np.int64)
    if now_interval is not None:
        drop(starts > now_interval, "rolling_start_in_future")
        drop(starts < now_interval - MAX_AGE_INTERVALS, "rolling_start_too_old")
    dso = days_since_onset.astype(np.int64)
    drop(has_days_since_onset & ((dso < DSO_MIN) | (dso > DSO_MAX)), "days_since_onset")
    rows = np.flatnonzero(ok)
    if len(rows) > 1:
        records = np.empty((len(rows), TEK_LENGTH + 4), dtype=np.uint8)
        keys = np.frombuffer(key_data, dtype=np.uint8).reshape(n, TEK_LENGTH)
        records[:, :TEK_LENGTH] = keys[rows]
        records[:, TEK_LENGTH:] = rolling_start[rows].astype("<i4").view(np.uint8).reshape(-1, 4)
        identity = records.view(f"V{TEK_LENGTH + 4}").ravel()
        _, first = np.unique(identity, return_index=True)
        duplicate = np.ones(n, dtype=bool)
        duplicate[rows[first]] = False
        drop(duplicate, "duplicate")
    return ok, dropped


def validate_keys(
    keys: KeyArrays | Iterable[TemporaryExposureKey], now_interval: int | None
) -> tuple[list[TemporaryExposureKey], Counter[str]]:
    """:func:`validate_arrays` for key objects (or columns): the keys to use, in order,
    and counted reasons for the others."""
    columns = keys if isinstance(keys, KeyArrays) else KeyArrays.from_keys(keys)
    ok, dropped = validate_arrays(
        columns.key_data,
        columns.rolling_start,
        columns.days_since_onset,
        columns.has_days_since_onset,
        now_interval,
    )
    tr = columns.transmission_risk
    known = (tr >= TR_MIN) & (tr <= TR_MAX)
    if not bool(known.all()):  # keys built by hand: the reader has normalised its own
        columns = replace(columns, transmission_risk=np.where(known, tr, 0))
    return [columns[int(i)] for i in np.flatnonzero(ok)], dropped
