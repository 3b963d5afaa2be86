"""kill -9 of ``contact-agent run`` at random moments (F1): 30 short rounds of
``scripts/fault_killdaemon.py`` (the soak runs 200 and more)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.faults.scripts import base as base
from tests.faults.scripts import harness as harness
from tests.faults.scripts import load_script, require_dbus_daemon

ROUNDS = 30


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_kill_9_of_the_daemon_loses_nothing_committed_and_it_restarts(base: Path) -> None:
    require_dbus_daemon()
    killdaemon = load_script("fault_killdaemon")
    report = asyncio.run(killdaemon.run_rounds(ROUNDS, base, max_delay=2.0, seed=20))
    assert report.rounds == ROUNDS
    assert report.integrity_ok == ROUNDS
    assert report.exited_by_itself == 0  # no crash before the kill
    assert report.lost_rows == 0 and report.broken_batches == 0
    assert report.lost_own_teks == 0 and report.consent_lost == 0
    # the kills landed in both phases, and flushes were acknowledged before kills
    assert report.killed_before_ready > 0 and report.killed_while_running > ROUNDS // 2
    assert report.acknowledged_flushes > ROUNDS
    assert report.acknowledged_rows > 0
    assert report.rows_at_end >= report.acknowledged_rows
    assert report.final_ready and report.final_exit == 0
    assert report.passed
