"""From downloaded exports to stored results and new notifications (see :mod:`.cycle`)."""

from __future__ import annotations

from agent.pipeline.cycle import (
    CycleReport,
    ExportInput,
    Notifier,
    Progress,
    QualifyingExposure,
    RingSource,
    load_sightings,
    match_exports,
    refresh_results,
    verify_exports,
)
from agent.pipeline.fetch import (
    SOURCES_STATE_KEY,
    FetchReport,
    config_ring,
    fetch_and_match,
)
from agent.store import LAST_FETCH_STATE_KEY

__all__ = [
    "LAST_FETCH_STATE_KEY",
    "SOURCES_STATE_KEY",
    "CycleReport",
    "ExportInput",
    "FetchReport",
    "Notifier",
    "Progress",
    "QualifyingExposure",
    "RingSource",
    "config_ring",
    "fetch_and_match",
    "load_sightings",
    "match_exports",
    "refresh_results",
    "verify_exports",
]
