"""RPI flood against ``contact-agent run`` (F14 of ``docs/reliability.md``): a short run of
``scripts/flood.py`` at 2,000 adverts/s (the script's default run lasts 10 minutes).

No timing is asserted: memory stays bounded, the stored rows stay within the flood guard's
budget, the flood status is raised, and the legitimate neighbour is still recorded.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.faults.scripts import base as base
from tests.faults.scripts import harness as harness
from tests.faults.scripts import load_script, require_dbus_daemon


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_flood_of_fresh_rpis_stays_within_budget_and_the_neighbour_is_recorded(
    base: Path,
) -> None:
    require_dbus_daemon()
    flood = load_script("flood")
    figures = asyncio.run(flood.run_flood(base, minutes=0.25, rate=2_000))
    assert figures.ran_throughout and figures.exit_status == 0
    # the flood really arrived: far more fresh RPIs than the guard admits per window
    assert figures.adverts_heard > 5_000
    assert figures.flood_dropped > 0 and figures.flood_status_seen
    assert "flood" in (figures.degraded_text or "")
    # growth within the guard's budget: about one row per admitted RPI here
    assert 0 < figures.rows_stored <= figures.row_budget_per_5min
    assert figures.rows_stored < figures.adverts_heard / 10
    # memory bounded (a short run: growth after the first sample)
    assert figures.rss_growth_mb < 30
    assert figures.neighbour_rows > 0
    assert figures.passed
