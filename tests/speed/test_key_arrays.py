"""KeyArrays.merge and select: the memory-lean ways give exactly the simple results."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from agent.export import columns as keys_module
from agent.export.columns import KeyArrays
from tests.matching.dataset import make_dataset


def _same(a: KeyArrays, b: KeyArrays) -> None:
    assert a.key_data == b.key_data
    for name in keys_module._COLUMNS:
        left, right = getattr(a, name), getattr(b, name)
        assert np.array_equal(left, right), name


def _parts() -> list[KeyArrays]:
    data = make_dataset(2000, 10, planted=1, seed=3).keys
    cuts = [0, 1, 700, 701, 1500, 2000]
    parts = [data.select(np.arange(a, b)) for a, b in itertools.pairwise(cuts)]
    parts[1] = parts[1].compact()  # columns of other dtypes in one part
    return parts


@pytest.mark.parametrize("trim_rows", [1, 10**9])
def test_merge_equals_concat_and_empties_the_parts(
    monkeypatch: pytest.MonkeyPatch, trim_rows: int
) -> None:
    monkeypatch.setattr(keys_module, "TRIM_ROWS", trim_rows)
    parts = _parts()
    expected = KeyArrays.concat(parts)
    handed_over = list(parts)
    merged = KeyArrays.merge(handed_over)
    assert handed_over == []
    _same(merged, expected)
    assert merged.rolling_start.dtype == np.int32
    assert len(merged) == 2000 and merged[1999] == expected[1999]


def test_merge_of_one_or_no_part() -> None:
    one = _parts()[:1]
    only = one[0]
    assert KeyArrays.merge(one) is only and one == []
    assert len(KeyArrays.merge([])) == 0


@pytest.mark.parametrize("select_rows", [7, 10**6])
def test_select_in_steps_equals_numpy(monkeypatch: pytest.MonkeyPatch, select_rows: int) -> None:
    monkeypatch.setattr(keys_module, "SELECT_ROWS", select_rows)
    keys = KeyArrays.concat(_parts())
    rng = np.random.default_rng(5)
    mask = rng.random(len(keys)) < 0.3
    rows = np.sort(rng.choice(len(keys), size=300, replace=False))
    for chosen in (mask, rows, np.zeros(len(keys), dtype=bool), np.arange(0)):
        picked = keys.select(chosen)
        assert picked.key_data == keys.key_view()[chosen].tobytes()
        assert np.array_equal(picked.rolling_start, keys.rolling_start[chosen])
        assert len(picked) == len(keys.rolling_start[chosen])
