"""The typed ``status`` tree: its one JSON form, read back, and the keys it pins."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from agent.daemon.status import render
from agent.daemon.status_json import status_from_json, status_json
from agent.daemon.status_model import (
    AgentStatus,
    ClockStatus,
    DaemonInfo,
    DatabaseFacts,
    FetchSchedule,
    KeyFetchFailed,
    KeyFetchReport,
    LiveView,
    NetworkLog,
    PossiblyRelayed,
    Quarantine,
    RunningDownload,
    Sightings,
    StoredStatus,
    Where,
)
from agent.ingest import GuardStats
from agent.jsonout import dumps
from agent.netlog import NetworkContact

FULL = AgentStatus(
    daemon=DaemonInfo(
        name="contact-agent",
        pid=4242,
        version="1.2.3",
        uptime_seconds=3725,
        heartbeats={"clock": 0.5, "radio": 1.25},
    ),
    stored=StoredStatus(
        consent="enabled",
        sightings=Sightings(today=12, last_14_days=340),
        unique_rpis_10min=7,
        last_fetch=KeyFetchReport(
            at=1_700_000_000.5,
            ok=False,
            downloaded=3,
            failed=("a/1.zip: timed out",),
            refused=None,
            warning="1 files refused (forged or malformed): bad signature",
            rejected=("a/2.zip: bad signature",),
            deferred=2,
            limit="keys.max_files_per_source",
            clock_skew_seconds=-1.5,
            files_processed=3,
            files_skipped=1,
            files_rejected=1,
            matched_keys=4,
            new_windows=2,
            retry_after_seconds=120.0,
        ),
        exposures=2,
        risk_level="high",
        clock_lower_bound=1_699_999_000.25,
        network_log=NetworkLog(
            contacts_14_days=5,
            bytes_sent_14_days=1500,
            bytes_received_14_days=2_500_000,
            latest=NetworkContact(
                1_699_999_900.0, "keys.example", "key_download", 300, 2_000_000, "HTTP 200"
            ),
        ),
        database=DatabaseFacts(
            possibly_relayed=PossiblyRelayed(windows=1, policy="exclude"),
            exposure_days=("2023-11-13", "2023-11-14"),
            database_bytes=73_832,
            quarantined=Quarantine(path="/d/contact-agent.db.bad", at=1_699_000_000.0, reason="x"),
        ),
    ),
    clock=ClockStatus(
        trust="trusted",
        trusted=True,
        reason="system clock synchronised (NTP)",
        source="timedate1",
        require_sync=True,
        lower_bound=1_699_999_000.25,
    ),
    advertising=False,
    advertising_reason="clock not trusted: no",
    scanning=True,
    scanning_reason=None,
    adapter="hci1",
    current_interval=2_833_333,
    live=LiveView(
        scan_mode="passive",
        radio={"adapter_state": "powered off", "counters": {"accepted": 3}, "rotations": 9},
        degraded="Bluetooth adapter hci1 not reachable",
        ingest=GuardStats(offered=9, accepted=8, thinned=1, slot_seconds=2.0, flood=True),
        fetch=FetchSchedule(
            interval_hours=4,
            next_in_seconds=600,
            skipped="consent not given",
            consecutive_failures=1,
            cycles=3,
            notifications=1,
            running=RunningDownload(
                source="index:https://keys.example/i.txt",
                file="a/3.zip",
                file_bytes=2_500_000,
                cycle_bytes=9_000_000,
                files_downloaded=2,
            ),
        ),
        metrics={"adverts_heard_total": 12, "last_fetch_duration_seconds": 1.5},
    ),
    data_dir="/var/lib/contact-agent",
    where=Where(socket="/run/contact-agent/control.sock", data_dir_exists=True),
)

OFFLINE = AgentStatus(
    daemon=None,
    stored=StoredStatus(consent="not given"),
    clock=FULL.clock,
    advertising=False,
    advertising_reason="the daemon is not running",
    scanning=False,
    scanning_reason="the daemon is not running",
    adapter="hci0",
    current_interval=None,
    data_dir="/nowhere",
    where=Where(socket=None, data_dir_exists=False),
)

PASSED_THROUGH = {"radio", "metrics", "daemon.heartbeats"}
"""Maps owned by other parts (the radio port, the metric specs, the supervised loops)."""

PINNED_KEYS = {
    "consent",
    "sightings", "sightings.today", "sightings.last_14_days",
    "unique_rpis_10min",
    "last_fetch", "last_fetch.at", "last_fetch.ok", "last_fetch.downloaded",
    "last_fetch.failed", "last_fetch.refused", "last_fetch.warning", "last_fetch.rejected",
    "last_fetch.deferred", "last_fetch.limit", "last_fetch.clock_skew_seconds",
    "last_fetch.files_processed", "last_fetch.files_skipped", "last_fetch.files_rejected",
    "last_fetch.matched_keys", "last_fetch.new_windows", "last_fetch.retry_after_seconds",
    "exposures",
    "possibly_relayed", "possibly_relayed.windows", "possibly_relayed.policy",
    "exposure_days",
    "risk_level",
    "database_bytes",
    "quarantined", "quarantined.path", "quarantined.at", "quarantined.reason",
    "clock_lower_bound",
    "network_log", "network_log.contacts_14_days", "network_log.bytes_sent_14_days",
    "network_log.bytes_received_14_days", "network_log.latest", "network_log.latest.time",
    "network_log.latest.host", "network_log.latest.purpose", "network_log.latest.bytes_sent",
    "network_log.latest.bytes_received", "network_log.latest.result",
    "daemon", "daemon.running", "daemon.name", "daemon.pid", "daemon.version",
    "daemon.uptime_seconds", "daemon.heartbeats",
    "clock", "clock.trust", "clock.trusted", "clock.reason", "clock.source",
    "clock.require_sync", "clock.lower_bound",
    "advertising", "advertising_reason", "scanning", "scanning_reason", "adapter",
    "data_dir",
    "scan_mode",
    "radio",
    "current_interval",
    "degraded",
    "ingest", "ingest.offered", "ingest.accepted", "ingest.thinned", "ingest.flood_dropped",
    "ingest.flood_windows", "ingest.window_new_rpis", "ingest.window_rpis",
    "ingest.window_rows", "ingest.slot_seconds", "ingest.persistent_admitted", "ingest.held",
    "ingest.flood",
    "fetch", "fetch.interval_hours", "fetch.next_in_seconds", "fetch.skipped",
    "fetch.consecutive_failures", "fetch.cycles", "fetch.notifications", "fetch.running",
    "fetch.running.source", "fetch.running.file", "fetch.running.file_bytes",
    "fetch.running.cycle_bytes", "fetch.running.files_downloaded",
    "metrics",
    "socket",
    "data_dir_exists",
}  # fmt: skip


def key_paths(value: object, prefix: str = "") -> set[str]:
    if not isinstance(value, dict):
        return set()
    paths: set[str] = set()
    for key, inner in value.items():
        path = f"{prefix}{key}"
        paths.add(path)
        if path not in PASSED_THROUGH:
            paths |= key_paths(inner, path + ".")
    return paths


def over_the_wire(status: AgentStatus) -> object:
    return json.loads(dumps(status_json(status), sort_keys=True))


@pytest.mark.parametrize(
    "status",
    [
        FULL,
        replace(FULL, stored=replace(FULL.stored, last_fetch=KeyFetchFailed(at=5.0, error="x"))),
        replace(FULL, where=Where(socket="/s")),
        OFFLINE,
        replace(OFFLINE, where=None, data_dir=None),
    ],
    ids=["full", "failed-fetch", "online-cli", "offline", "offline-bare"],
)
def test_status_survives_its_json_form(status: AgentStatus) -> None:
    wire = over_the_wire(status)
    assert status_from_json(wire) == status
    assert status_json(status_from_json(wire)) == wire


def test_json_keys_of_a_full_status_are_pinned() -> None:
    assert key_paths(over_the_wire(FULL)) == PINNED_KEYS


def test_keys_only_some_statuses_have_are_left_out_not_null() -> None:
    offline = over_the_wire(OFFLINE)
    assert isinstance(offline, dict)
    assert offline["daemon"] == {"running": False}
    left_out = {"possibly_relayed", "exposure_days", "database_bytes", "quarantined"}
    left_out |= {"scan_mode", "radio", "degraded", "ingest", "fetch", "metrics"}
    assert not left_out & set(offline)
    served = over_the_wire(replace(FULL, where=None))
    assert isinstance(served, dict)
    assert not {"socket", "data_dir_exists"} & set(served)
    assert over_the_wire(replace(FULL, where=Where(socket=None)))["socket"] is None  # type: ignore[index]


def test_an_older_daemons_partial_answer_is_read_with_defaults() -> None:
    """Blocks it did not send come back empty; the table still renders."""
    answer = {"daemon": {"running": True, "pid": 7}, "consent": "enabled", "radio": "junk"}
    status = status_from_json(answer)
    assert status.daemon is not None and status.daemon.pid == 7
    assert status.stored.last_fetch is None and status.stored.database is None
    assert status.live is not None and status.live.radio == {}
    assert status.clock.trust == "?"
    assert "daemon running (pid 7" in render(status)
    assert status_from_json("not an object").daemon is None
