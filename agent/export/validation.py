"""Per-key validity rules for diagnosis keys (tek_validation.md; threats doc 33-38).

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

import numpy as np
import numpy.typing as npt

from agent.constants import KEY_MAX_AGE_DAYS, TEK_LENGTH, TEK_ROLLING_PERIOD
from agent.models import TemporaryExposureKey

DSO_MIN = -14
DSO_MAX = 14
"""Days since onset outside -14..14: drop the key (Google recommends dropping)."""

MAX_AGE_INTERVALS = KEY_MAX_AGE_DAYS * TEK_ROLLING_PERIOD
"""15 days of intervals."""

TR_MAX = 8


def _time_reason(rolling_start: int, now_interval: int) -> str | None:
    if rolling_start > now_interval:
        return "rolling_start_in_future"
    if rolling_start < now_interval - MAX_AGE_INTERVALS:
        return "rolling_start_too_old"
    return None


def validate_keys(
    keys: Iterable[TemporaryExposureKey], now_interval: int
) -> tuple[list[TemporaryExposureKey], Counter[str]]:
    """Split keys into the ones to use and counted reasons for the dropped ones."""
    kept: list[TemporaryExposureKey] = []
    dropped: Counter[str] = Counter()
    seen: set[tuple[bytes, int]] = set()
    for key in keys:
        reason = _time_reason(key.rolling_start_interval_number, now_interval)
        dso = key.days_since_onset_of_symptoms
        if reason is None and dso is not None and not DSO_MIN <= dso <= DSO_MAX:
            reason = "days_since_onset"
        identity = (key.key_data, key.rolling_start_interval_number)
        if reason is None and identity in seen:
            reason = "duplicate"
        if reason is not None:
            dropped[reason] += 1
            continue
        seen.add(identity)
        if not 0 <= key.transmission_risk_level <= TR_MAX:
            key = replace(key, transmission_risk_level=0)
        kept.append(key)
    return kept, dropped


def validate_arrays(
    key_data: bytes,
    rolling_start: npt.NDArray[np.int32],
    days_since_onset: npt.NDArray[np.int32],
    has_days_since_onset: npt.NDArray[np.bool_],
    now_interval: int | None,
) -> tuple[npt.NDArray[np.bool_], Counter[str]]:
    """The same rules as :func:`validate_keys`, vectorised over flat arrays.

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
