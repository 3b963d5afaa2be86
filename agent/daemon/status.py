"""What ``contact-agent status`` shows: from the running daemon, or from the data dir.

:func:`stored_status` reads what the store knows (consent, counts, last key fetch,
exposures, risk level); :func:`live_status` adds the running daemon's view (clock trust,
radio, metrics). Both build the typed tree of :mod:`agent.daemon.status_model`, which
also holds its one JSON form; :func:`render` turns it into a table a person can read.
Nothing here is an identifier: counts, times and states only.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent import __version__
from agent.clock import en_interval_number
from agent.config import RiskConfig
from agent.constants import RETENTION_SECONDS
from agent.daemon.status_json import last_fetch_from_json, quarantine_from_json
from agent.daemon.status_model import (
    AgentStatus,
    DaemonInfo,
    DatabaseFacts,
    KeyFetchFailed,
    LastFetch,
    LiveView,
    NetworkLog,
    PossiblyRelayed,
    Sightings,
    StoredStatus,
)
from agent.models import ExposureWindow

if TYPE_CHECKING:  # `contact-agent status` renders without importing the pipeline
    from agent.clock import Clock
    from agent.consent import ConsentState
    from agent.daemon.clockwatch import ClockWatch
    from agent.daemon.fetching import FetchScheduler
    from agent.daemon.metrics import Metrics
    from agent.daemon.sdnotify import Heartbeats
    from agent.ingest import IngestPipe
    from agent.netlog import NetworkContact
    from agent.store import SightingWriter, Store

UNIQUE_RPI_WINDOW_SECONDS = 600


def risk_level(counting: Sequence[ExposureWindow], days: Sequence[int]) -> str:
    """``high``: a day qualifies for a notification (``days``); ``low``: scored windows that
    count (``counting``) but stay under the threshold; ``none`` otherwise (last 14 days)."""
    if days:
        return "high"
    return "low" if counting else "none"


def _json_state(raw: str | None) -> Any:
    if raw is None:
        return None
    try:
        return json.loads(raw, parse_constant=_no_constant)
    except ValueError:
        return None


def _no_constant(name: str) -> float:
    """NaN or Infinity saved by an older version: the value is dropped, not shown."""
    raise ValueError(f"non-finite number {name} in saved state")


async def stored_status(store: Store, wall: float, risk: RiskConfig) -> StoredStatus:
    """Everything ``status`` shows that the database knows (each window scored once)."""
    from agent.risk import counts_for_notification, qualifying_days, score_window
    from agent.store import LAST_FETCH_STATE_KEY, QUARANTINE_STATE_KEY

    today = wall - wall % 86_400
    since = wall - RETENTION_SECONDS
    windows = await store.exposure_windows(since)
    scored = [score_window(w, risk) for w in windows]
    days = qualifying_days(scored, risk)
    counting = [w for w in scored if counts_for_notification(w, risk)]
    quarantined = _json_state(await store.get_state(QUARANTINE_STATE_KEY))
    return StoredStatus(
        consent=(await store.consent()).value,
        sightings=Sightings(
            today=await store.sighting_counts(today),
            last_14_days=await store.sighting_counts(since),
        ),
        unique_rpis_10min=await store.unique_rpis(wall - UNIQUE_RPI_WINDOW_SECONDS),
        last_fetch=last_fetch_from_json(_json_state(await store.get_state(LAST_FETCH_STATE_KEY))),
        exposures=len(counting),
        risk_level=risk_level(counting, days),
        clock_lower_bound=await store.clock_lower_bound(),
        network_log=network_summary(await store.network_contacts(since)),
        database=DatabaseFacts(
            # relay guard: windows it flagged, and what the policy does
            possibly_relayed=PossiblyRelayed(
                windows=sum(1 for w in windows if w.relay), policy=risk.relay_policy
            ),
            exposure_days=tuple(_day(d) for d in days),
            database_bytes=await store.database_bytes(),
            quarantined=quarantine_from_json(quarantined),
        ),
    )


def network_summary(contacts: Sequence[NetworkContact]) -> NetworkLog:
    """The transparency log in ``status``: totals of 14 days and the latest contact."""
    return NetworkLog(
        contacts_14_days=len(contacts),
        bytes_sent_14_days=sum(c.bytes_sent for c in contacts),
        bytes_received_14_days=sum(c.bytes_received for c in contacts),
        latest=contacts[-1] if contacts else None,
    )


@dataclass(frozen=True, slots=True)
class DaemonIdentity:
    """What does not change while the daemon runs (the ``daemon`` block and paths)."""

    name: str
    started: float
    """Monotonic (real) time the service was created, for the uptime."""
    adapter: str
    data_dir: Path


@dataclass(frozen=True, slots=True)
class LiveParts:
    """The running daemon's parts that ``status`` reads (handed in by the service)."""

    identity: DaemonIdentity
    clock: Clock
    store: Store
    clockwatch: ClockWatch
    heartbeats: Heartbeats
    metrics: Metrics
    writer: SightingWriter
    ingest: IngestPipe
    fetcher: FetchScheduler
    radio_status: Callable[[], Mapping[str, Any]]


@dataclass(frozen=True, slots=True)
class Policy:
    """The service's current decisions, read at the moment ``status`` is asked."""

    consent: ConsentState
    advertising_reason: Callable[[], str | None]
    scanning_reason: Callable[[], str | None]
    degraded: str | None
    """Why the radio is degraded (adapter unreachable), set by the service."""


async def live_status(parts: LiveParts, policy: Policy, risk: RiskConfig) -> AgentStatus:
    """The running daemon's status: the stored part plus its live view."""
    from agent.daemon.radio import is_scanning

    wall = parts.clock.wall()
    stored = await stored_status(parts.store, wall, risk)
    radio = dict(parts.radio_status())
    advertising, scanning = bool(radio.get("advertising")), is_scanning(radio)
    identity = parts.identity
    scan_mode = radio.get("scan_mode")
    return AgentStatus(
        daemon=DaemonInfo(
            name=identity.name,
            pid=os.getpid(),
            version=__version__,
            uptime_seconds=round(time.monotonic() - identity.started),
            heartbeats=parts.heartbeats.ages(),
        ),
        stored=replace(stored, consent=policy.consent.value),
        clock=parts.clockwatch.summary(),
        advertising=advertising,
        advertising_reason=None if advertising else policy.advertising_reason(),
        scanning=scanning,
        scanning_reason=None if scanning else policy.scanning_reason(),
        adapter=identity.adapter,
        current_interval=en_interval_number(wall) if wall >= 0 else None,
        live=LiveView(
            scan_mode=None if scan_mode is None else str(scan_mode),
            radio=radio,
            degraded=degraded_reason(policy.degraded, parts.writer, parts.ingest),
            ingest=parts.ingest.guard.stats(),
            fetch=parts.fetcher.summary(),
            metrics=parts.metrics.snapshot(),
        ),
        data_dir=str(identity.data_dir),
    )


def degraded_reason(
    degraded: str | None, writer: SightingWriter | None, ingest: IngestPipe | None
) -> str | None:
    """Why the daemon is not fully working: adapter, storage, an RPI flood (or None)."""
    reasons = [degraded] if degraded else []
    stats = writer.stats if writer is not None else None
    if stats is not None and stats.failing:
        reasons.append(
            f"sightings are not being written ({stats.last_error}); {stats.pending} kept in memory"
        )
    if ingest is not None and ingest.guard.flood:
        limits = ingest.guard.limits
        reasons.append(
            f"flood: more than {limits.max_new_rpis} new identifiers in "
            f"{limits.window_seconds / 60:.0f} minutes, the rest are dropped"
        )
    return "; ".join(reasons) or None


def _day(day: float) -> str:
    return datetime.fromtimestamp(day, UTC).strftime("%Y-%m-%d")


def _when(value: float | None) -> str:
    if value is None or not -1e11 < value < 1e11:
        return "never"
    return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _yes(value: bool) -> str:
    return "yes" if value else "no"


def _fetch_line(fetch: LastFetch | None) -> str:
    if fetch is None:
        return "never"
    if isinstance(fetch, KeyFetchFailed):
        result = f"failed: {fetch.error}"
    elif fetch.ok:
        result = (
            f"ok, {fetch.downloaded} downloaded, {fetch.matched_keys} keys matched, "
            f"{fetch.new_windows} new windows"
        )
    else:
        why = fetch.refused or (fetch.failed[0] if fetch.failed else None)
        if why is None and fetch.warning:
            result = f"warning: {fetch.warning}"
        else:
            result = f"failed: {why or 'failed'}"
    return f"{_when(fetch.at)}: {result}"


def _size(count: float | None) -> str:
    if count is None:
        return "?"
    value = float(count)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"


def _network_line(log: NetworkLog) -> str:
    if not log.contacts_14_days:
        return "no contact (details: contact-agent network-log)"
    return (
        f"{log.contacts_14_days} contacts, {_size(log.bytes_sent_14_days)} sent, "
        f"{_size(log.bytes_received_14_days)} received (contact-agent network-log)"
    )


def _relayed_line(database: DatabaseFacts | None) -> str:
    if database is None:
        return "-"
    relayed = database.possibly_relayed
    policy = "left out of the risk" if relayed.policy == "exclude" else "flagged"
    return f"{relayed.windows} exposure windows ({policy})"


def _with_reason(on: bool, reason: str | None) -> str:
    return _yes(on) if on or not reason else f"no ({reason})"


def render(status: AgentStatus) -> str:
    """A readable table of a status (live or offline)."""
    daemon, stored, live = status.daemon, status.stored, status.live
    if daemon is not None:
        uptime = daemon.uptime_seconds
        head = (
            f"contact-agent {daemon.version}: daemon running "
            f"(pid {daemon.pid}, up {uptime // 3600}h {uptime % 3600 // 60:02d}m)"
        )
    else:
        head = "contact-agent: daemon not running (state of the data directory)"
    clock, sightings = status.clock, stored.sightings
    rows: list[tuple[str, str]] = [
        ("consent", stored.consent),
        ("clock", f"{clock.trust} ({clock.reason})"),
        ("advertising", _with_reason(status.advertising, status.advertising_reason)),
        ("scanning", _with_reason(status.scanning, status.scanning_reason)),
        ("adapter", status.adapter or "-"),
    ]
    adapter_state = live.adapter_state if live is not None else None
    if adapter_state and not (status.advertising and status.scanning):
        rows.append(("radio", adapter_state))
    interval = status.current_interval
    if interval is not None:
        rows.append(("current interval", f"{interval} (from {_when(interval * 600)})"))
    rows += [
        ("sightings", f"{sightings.today} today, {sightings.last_14_days} in 14 days"),
        ("unique RPIs, 10 min", str(stored.unique_rpis_10min)),
        ("last key fetch", _fetch_line(stored.last_fetch)),
    ]
    running = live.fetch.running if live is not None else None
    if running is not None:
        rows.append(
            (
                "key fetch running",
                f"{running.source}: {running.file or 'listing'}, {_size(running.file_bytes)} "
                f"({_size(running.cycle_bytes)} this cycle)",
            )
        )
    database = stored.database
    rows += [
        ("exposures", str(stored.exposures)),
        ("possibly relayed", _relayed_line(database)),
        ("risk level", stored.risk_level),
        ("database", _size(None if database is None else database.database_bytes)),
        ("network, 14 days", _network_line(stored.network_log)),
    ]
    if status.data_dir is not None:
        where = status.data_dir
        if status.where is not None and status.where.data_dir_exists is False:
            where += " (does not exist yet: no data)"
        rows.append(("data directory", where))
    if status.where is not None:
        rows.append(("control socket", status.where.socket or "none answered"))
    if database is not None and database.quarantined is not None:
        rows.append(("WARNING", "a damaged database was moved aside; see the log"))
    if live is not None and live.degraded:
        rows.append(("degraded", live.degraded))
    width = max(len(name) for name, _ in rows)
    lines = [head] + [f"  {name:<{width}}  {value}" for name, value in rows]
    return "\n".join(lines)
