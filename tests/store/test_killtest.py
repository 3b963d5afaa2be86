"""kill -9 of a writing child process: the database stays intact, no committed batch is lost.

The child and the checks live in ``scripts/killtest_store.py`` (the longer soak); this test
runs 50 short rounds of it and checks the figures and the final database itself.
"""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from agent.store import Store

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "killtest_store.py"
ROUNDS = 50


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("killtest_store", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


async def count_rows(data_dir: Path, since: float) -> tuple[bool, int]:
    async with await Store.open(data_dir) as store:
        return await store.integrity_ok(), await store.sighting_counts(since)


@pytest.mark.slow
def test_kill_9_loses_no_committed_batch(tmp_path: Path) -> None:
    killtest = load_script()
    data_dir = tmp_path / "data"
    report = killtest.run_rounds(ROUNDS, data_dir, max_delay=0.2)
    assert report.rounds == ROUNDS
    assert report.integrity_ok == ROUNDS
    assert report.lost_batches == 0
    assert report.partial_batches == 0
    # the kills really landed while the child was writing
    # (writing rounds kill only after this many acknowledged batches: an event, not a race)
    writing_rounds = ROUNDS - report.early_kills
    assert writing_rounds > 0
    assert report.acknowledged_batches >= killtest.BATCHES_BEFORE_KILL * writing_rounds
    intact, rows = asyncio.run(count_rows(data_dir, killtest.BASE_TIME))
    assert intact
    assert rows >= report.acknowledged_batches * killtest.BATCH_ROWS
