"""Splitting keys into groups in which every duplicate meets its twin (bounded memory)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import numpy.typing as npt

GROUP_ROWS = 65_536
"""Rows per group in :func:`row_groups`: bounds the temporaries of a duplicate search."""


def row_groups(
    keys: npt.NDArray[np.uint8], salt: npt.NDArray[np.int32] | None = None
) -> Iterator[npt.NDArray[np.intp]]:
    """Row numbers of ``keys`` (n x 16) in groups of about :data:`GROUP_ROWS`, each in
    ascending order; rows with equal key (and equal ``salt``) are in the same group.

    A duplicate search per group then needs a fraction of the memory of one over all
    rows (``np.unique`` over 3 M keys peaks at ~160 MB) and finds the same duplicates.
    """
    n = len(keys)
    groups = n // GROUP_ROWS
    if groups < 2:
        yield np.arange(n)
        return
    group_of = keys[:, 0].astype(np.uint16) << 8 | keys[:, 1]
    if salt is not None:
        group_of += np.remainder(salt, groups).astype(np.uint16)
    group_of %= groups
    for group in range(groups):
        rows = np.flatnonzero(group_of == group)
        if len(rows):
            yield rows
