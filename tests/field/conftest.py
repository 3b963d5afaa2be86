"""Shared fixtures: one simulated field run and its report (session-wide, read-only)."""

from __future__ import annotations

import pytest

from agent.field.report import FieldReport, ReportSettings, analyse
from tests.field import simfield


@pytest.fixture(scope="session")
def run() -> simfield.FieldRun:
    """The 1 m / 3 m / 10 m-behind-a-wall run with seed 7."""
    return simfield.simulate(seed=7)


@pytest.fixture(scope="session")
def report(run: simfield.FieldRun) -> FieldReport:
    """Its report without keys, assuming -8 dBm TX power."""
    return analyse(run.log_a, run.log_b, run.marks, ReportSettings(tx_power_dbm=-8))
