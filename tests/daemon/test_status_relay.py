"""`status` shows the exposure windows the relay guard flagged, and what the policy does."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.clock import ClockTrust, TrustDecision
from agent.config import RiskConfig
from agent.daemon.status import render, stored_status
from agent.daemon.status_model import AgentStatus, ClockStatus, PossiblyRelayed
from agent.models import ExposureWindow, ReportType, ScanInstance
from agent.relayguard import Reason
from agent.store import Store

NOW = 1_700_100_000.0


@pytest.mark.parametrize(
    ("policy", "text"), [("flag", "(flagged)"), ("exclude", "(left out of the risk)")]
)
async def test_status_counts_possibly_relayed_windows(
    tmp_path: Path, policy: str, text: str
) -> None:
    window = ExposureWindow(
        start=int(NOW - 86_400),
        duration_seconds=1200,
        report_type=ReportType.CONFIRMED_TEST,
        infectiousness=1,
        calibration_confidence=0,
        scan_instances=(ScanInstance(45, 40, 300),) * 4,
        key_data=bytes(16),
        relay=int(Reason.MULTI_ADDRESS),
    )
    async with await Store.open(tmp_path / "data") as store:
        await store.save_exposure_windows([window])
        status = await stored_status(store, NOW, RiskConfig(relay_policy=policy))
    assert status.database is not None
    assert status.database.possibly_relayed == PossiblyRelayed(windows=1, policy=policy)
    assert status.exposures == (1 if policy == "flag" else 0)
    trust = TrustDecision(ClockTrust.ASSUMED, "test")
    shown = AgentStatus(
        daemon=None,
        stored=status,
        clock=ClockStatus.of(trust, source="config", require_sync=False, lower_bound=None),
        advertising=False,
        advertising_reason=None,
        scanning=False,
        scanning_reason=None,
        adapter="hci0",
        current_interval=None,
    )
    line = next(line for line in render(shown).splitlines() if "possibly relayed" in line)
    assert line.endswith(f"1 exposure windows {text}")
