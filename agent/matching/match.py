"""The fast matcher: :func:`agent.matching.core.match_keys`'s result from flat key arrays.

In two halves, so that a caller with many keys never holds them beside all sightings:
:func:`search_keys` needs only the observed RPIs (16 bytes each) and keeps only the keys
that have candidates; :func:`evaluate_search` then needs the sightings, but no longer
the other keys. :func:`fast_match` runs both.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from agent.constants import RPI_LENGTH, TEK_LENGTH
from agent.export.columns import KeyArrays
from agent.matching.core import (
    CandidateKey,
    MatchResult,
    SightingIndex,
    candidate_keys,
    evaluate_candidate_keys,
)
from agent.matching.kernel import Windows
from agent.matching.parallel import find_candidates_parallel
from agent.memory import trim_heap
from agent.models import ReportType, TemporaryExposureKey


def sighting_intervals(index: SightingIndex) -> npt.NDArray[np.int64]:
    """The distinct intervals in which any scan of ``index`` began, ascending."""
    return np.array(index.intervals(), dtype=np.int64)


@dataclass(slots=True)
class KeySearch:
    """What the first half found: few keys, whatever the number searched."""

    found: list[CandidateKey] = field(default_factory=list)
    """The keys with at least one candidate RPI, with those RPIs."""
    counters: Counter[str] = field(default_factory=Counter)
    """Keys left out of the search, by reason."""
    revoked: list[bytes] = field(default_factory=list)
    """key_data of REVOKED keys, in order."""


def search_keys(
    keys: KeyArrays,
    rpi_blob: bytes,
    own_keys: frozenset[bytes] = frozenset(),
    *,
    sighted: npt.NDArray[np.int64] | Sequence[int] | None = None,
    workers: int | None = None,
    backend: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> KeySearch:
    """Find the keys whose RPIs are in ``rpi_blob`` (the observed RPIs, 16 bytes each).

    ``sighted``: the intervals in which sightings began (or a superset); only the RPIs
    within +-12 intervals of one of them are computed, the only ones that can match
    (:class:`~agent.matching.kernel.Windows`); keys with no such interval are counted as
    ``unsighted_key_skipped``. None computes every interval of every key's rolling period.
    RECURSIVE, REVOKED and our own keys are left out (and counted).
    """
    report_type = keys.report_type
    recursive = report_type == ReportType.RECURSIVE
    revoked = (report_type == ReportType.REVOKED) & ~recursive
    own = np.zeros(len(keys), dtype=bool)
    if own_keys and len(keys):
        own = np.isin(keys.key_view(), np.frombuffer(b"".join(own_keys), dtype=f"V{TEK_LENGTH}"))
    own &= ~(recursive | revoked)
    left_out = recursive | revoked | own
    search = KeySearch()
    for name, mask in (
        ("recursive_key_skipped", recursive),
        ("revoked_key", revoked),
        ("own_key_skipped", own),
    ):
        if mask.any():
            search.counters[name] += int(np.count_nonzero(mask))
    view = keys.key_data
    search.revoked = [
        view[TEK_LENGTH * i : TEK_LENGTH * (i + 1)] for i in np.flatnonzero(revoked).tolist()
    ]
    del recursive, revoked, own
    windows = None if sighted is None else Windows.around(sighted)
    if windows is not None and (
        outside := windows.unreached(keys.rolling_start, keys.rolling_period, left_out)
    ):
        search.counters["unsighted_key_skipped"] += outside
    # a few left-out keys are searched anyway (and dropped below): cheaper than a copy
    searched = keys.select(~left_out) if 4 * np.count_nonzero(left_out) > len(keys) else keys
    if rpi_blob and len(searched):
        found = find_candidates_parallel(
            searched,
            rpi_blob,
            windows=windows,
            workers=workers,
            backend=backend,
            progress=progress,
        )
        if searched is keys and left_out.any():
            found = [c for c in found if not left_out[c[0]]]
        rows = sorted({row for row, _ in found})
        position = {row: i for i, row in enumerate(rows)}
        search.found = candidate_keys(
            searched.select(np.array(rows, dtype=np.intp)),
            [(position[row], offset) for row, offset in found],
            own_keys,
        )
    return search


def evaluate_search(search: KeySearch, index: SightingIndex) -> MatchResult:
    """The second half: the candidates' sightings turned into matches (and counters)."""
    result = evaluate_candidate_keys(search.found, index)
    result.counters.update(search.counters)
    result.revoked.extend(search.revoked)
    return result


def search_rpis(search: KeySearch) -> set[bytes]:
    """The RPIs whose sightings :func:`evaluate_search` reads: those of the candidates
    (a few, whatever the number of keys and sightings)."""
    return {rpi for found in search.found for _, rpi in found.rpis}


def observed_among(rpis: Collection[bytes], rpi_blob: bytes) -> set[bytes]:
    """Those of ``rpis`` that are in ``rpi_blob`` (16 bytes each)."""
    if not rpis or not rpi_blob:
        return set()
    wanted = np.frombuffer(b"".join(rpis), dtype=f"V{RPI_LENGTH}")
    seen = wanted[np.isin(wanted, np.frombuffer(rpi_blob, dtype=f"V{RPI_LENGTH}"))]
    return {bytes(rpi) for rpi in seen}


def fast_match(
    keys: KeyArrays | Sequence[TemporaryExposureKey],
    index: SightingIndex,
    own_keys: frozenset[bytes] = frozenset(),
    *,
    workers: int | None = None,
    backend: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> MatchResult:
    """:func:`agent.matching.core.match_keys` on many keys: the same search, spread over
    cores, and the same evaluation. CPU-bound: run it in an executor."""
    arrays = keys if isinstance(keys, KeyArrays) else KeyArrays.from_keys(keys)
    search = search_keys(
        arrays,
        index.rpi_blob(),
        own_keys,
        sighted=sighting_intervals(index),
        workers=workers,
        backend=backend,
        progress=progress,
    )
    result = evaluate_search(search, index)
    del search
    trim_heap()
    return result
