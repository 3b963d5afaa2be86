"""What ``contact-agent status`` shows: from the running daemon, or from the data dir.

:func:`stored_status` reads what the store knows (consent, counts, last key fetch,
exposures, risk level); the daemon adds its live view (clock trust, radio, metrics).
:func:`render` turns either into a table a person can read. Nothing here is an
identifier: counts, times and states only.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent import __version__
from agent.clock import en_interval_number
from agent.config import RiskConfig
from agent.constants import RETENTION_SECONDS
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


def risk_level(windows: Sequence[ExposureWindow], risk: RiskConfig) -> str:
    """``high``: a day qualifies for a notification; ``low``: contacts that count but
    stay under the threshold; ``none`` otherwise (last 14 days)."""
    from agent.risk import counts_for_notification, qualifying_days, score_window

    scored = [score_window(w, risk) for w in windows]
    if qualifying_days(scored, risk):
        return "high"
    if any(counts_for_notification(w, risk) for w in scored):
        return "low"
    return "none"


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


async def stored_status(store: Store, wall: float, risk: RiskConfig) -> dict[str, Any]:
    """Everything ``status`` shows that the database knows."""
    from agent.risk import counts_for_notification, qualifying_days, score_window
    from agent.store import LAST_FETCH_STATE_KEY, QUARANTINE_STATE_KEY

    today = wall - wall % 86_400
    since = wall - RETENTION_SECONDS
    windows = await store.exposure_windows(since)
    scored = [score_window(w, risk) for w in windows]
    days = qualifying_days(scored, risk)
    return {
        "consent": (await store.consent()).value,
        "sightings": {
            "today": await store.sighting_counts(today),
            "last_14_days": await store.sighting_counts(since),
        },
        "unique_rpis_10min": await store.unique_rpis(wall - UNIQUE_RPI_WINDOW_SECONDS),
        "last_fetch": _json_state(await store.get_state(LAST_FETCH_STATE_KEY)),
        "exposures": len([w for w in scored if counts_for_notification(w, risk)]),
        "possibly_relayed": {  # relay guard: windows it flagged, and what the policy does
            "windows": sum(1 for w in windows if w.relay),
            "policy": risk.relay_policy,
        },
        "exposure_days": [_day(d) for d in days],
        "risk_level": risk_level(windows, risk),
        "database_bytes": await store.database_bytes(),
        "quarantined": _json_state(await store.get_state(QUARANTINE_STATE_KEY)),
        "clock_lower_bound": await store.clock_lower_bound(),
        "network_log": network_summary(await store.network_contacts(since)),
    }


def network_summary(contacts: Sequence[NetworkContact]) -> dict[str, Any]:
    """The transparency log in ``status``: totals of 14 days and the latest contact."""
    return {
        "contacts_14_days": len(contacts),
        "bytes_sent_14_days": sum(c.bytes_sent for c in contacts),
        "bytes_received_14_days": sum(c.bytes_received for c in contacts),
        "latest": contacts[-1].as_dict() if contacts else None,
    }


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


async def live_status(parts: LiveParts, policy: Policy, risk: RiskConfig) -> dict[str, Any]:
    """The running daemon's status: the stored part plus its live view."""
    from agent.daemon.radio import is_scanning

    wall = parts.clock.wall()
    result = await stored_status(parts.store, wall, risk)
    radio = dict(parts.radio_status())
    advertising, scanning = bool(radio.get("advertising")), is_scanning(radio)
    identity = parts.identity
    result.update(
        {
            "daemon": {
                "running": True,
                "name": identity.name,
                "pid": os.getpid(),
                "version": __version__,
                "uptime_seconds": round(time.monotonic() - identity.started),
                "heartbeats": parts.heartbeats.ages(),
            },
            "consent": policy.consent.value,
            "clock": parts.clockwatch.summary().as_dict(),
            "advertising": advertising,
            "advertising_reason": None if advertising else policy.advertising_reason(),
            "scanning": scanning,
            "scanning_reason": None if scanning else policy.scanning_reason(),
            "adapter": identity.adapter,
            "data_dir": str(identity.data_dir),
            "scan_mode": radio.get("scan_mode"),
            "radio": radio,
            "current_interval": en_interval_number(wall) if wall >= 0 else None,
            "degraded": degraded_reason(policy.degraded, parts.writer, parts.ingest),
            "ingest": parts.ingest.guard.as_dict(),
            "fetch": parts.fetcher.summary(),
            "metrics": parts.metrics.snapshot(),
        }
    )
    return result


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


def _when(value: Any) -> str:
    if not isinstance(value, int | float) or not -1e11 < value < 1e11:
        return "never"
    return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _yes(value: Any) -> str:
    return "yes" if value else "no"


def _fetch_line(fetch: Any) -> str:
    if not isinstance(fetch, Mapping):
        return "never"
    if fetch.get("ok"):
        result = (
            f"ok, {fetch.get('downloaded', 0)} downloaded, "
            f"{fetch.get('matched_keys', 0)} keys matched, "
            f"{fetch.get('new_windows', 0)} new windows"
        )
    else:
        reasons = fetch.get("failed") or []
        why = fetch.get("refused") or (reasons[0] if reasons else None)
        if why is None and fetch.get("warning"):
            result = f"warning: {fetch['warning']}"
        else:
            result = f"failed: {why or fetch.get('error', 'failed')}"
    return f"{_when(fetch.get('at'))}: {result}"


def _size(count: Any) -> str:
    if not isinstance(count, int | float):
        return "?"
    value = float(count)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"


def _network_line(log: Any) -> str:
    if not isinstance(log, Mapping) or not log.get("contacts_14_days"):
        return "no contact (details: contact-agent network-log)"
    return (
        f"{log['contacts_14_days']} contacts, {_size(log.get('bytes_sent_14_days'))} sent, "
        f"{_size(log.get('bytes_received_14_days'))} received (contact-agent network-log)"
    )


def _relayed_line(relayed: Any) -> str:
    if not isinstance(relayed, dict):
        return "-"
    policy = "left out of the risk" if relayed.get("policy") == "exclude" else "flagged"
    return f"{relayed.get('windows', 0)} exposure windows ({policy})"


def render(status: Mapping[str, Any]) -> str:
    """A readable table of a status dict (live or offline)."""
    daemon = status.get("daemon") or {}
    if daemon.get("running"):
        uptime = int(daemon.get("uptime_seconds", 0))
        head = (
            f"contact-agent {daemon.get('version', '')}: daemon running "
            f"(pid {daemon.get('pid')}, up {uptime // 3600}h {uptime % 3600 // 60:02d}m)"
        )
    else:
        head = "contact-agent: daemon not running (state of the data directory)"
    clock = status.get("clock") or {}
    sightings = status.get("sightings") or {}
    rows: list[tuple[str, str]] = [
        ("consent", str(status.get("consent"))),
        ("clock", f"{clock.get('trust', '?')} ({clock.get('reason', 'unknown')})"),
    ]
    advertising = _yes(status.get("advertising"))
    if not status.get("advertising") and status.get("advertising_reason"):
        advertising += f" ({status['advertising_reason']})"
    scanning = _yes(status.get("scanning"))
    if not status.get("scanning") and status.get("scanning_reason"):
        scanning += f" ({status['scanning_reason']})"
    rows += [
        ("advertising", advertising),
        ("scanning", scanning),
        ("adapter", str(status.get("adapter") or "-")),
    ]
    radio = status.get("radio")
    adapter_state = radio.get("adapter_state") if isinstance(radio, Mapping) else None
    if adapter_state and not (status.get("advertising") and status.get("scanning")):
        rows.append(("radio", str(adapter_state)))
    interval = status.get("current_interval")
    if isinstance(interval, int):
        rows.append(("current interval", f"{interval} (from {_when(interval * 600)})"))
    rows += [
        (
            "sightings",
            f"{sightings.get('today', 0)} today, {sightings.get('last_14_days', 0)} in 14 days",
        ),
        ("unique RPIs, 10 min", str(status.get("unique_rpis_10min", 0))),
        ("last key fetch", _fetch_line(status.get("last_fetch"))),
    ]
    running = (status.get("fetch") or {}).get("running")
    if isinstance(running, Mapping):
        file = running.get("file") or "listing"
        rows.append(
            (
                "key fetch running",
                f"{running.get('source')}: {file}, {_size(running.get('file_bytes'))} "
                f"({_size(running.get('cycle_bytes'))} this cycle)",
            )
        )
    rows += [
        ("exposures", str(status.get("exposures", 0))),
        ("possibly relayed", _relayed_line(status.get("possibly_relayed"))),
        ("risk level", str(status.get("risk_level", "none"))),
        ("database", _size(status.get("database_bytes"))),
        ("network, 14 days", _network_line(status.get("network_log"))),
    ]
    if "data_dir" in status:
        where = str(status["data_dir"])
        if status.get("data_dir_exists") is False:
            where += " (does not exist yet: no data)"
        rows.append(("data directory", where))
    if "socket" in status:
        rows.append(("control socket", str(status["socket"] or "none answered")))
    if status.get("quarantined"):
        rows.append(("WARNING", "a damaged database was moved aside; see the log"))
    if status.get("degraded"):
        rows.append(("degraded", str(status["degraded"])))
    width = max(len(name) for name, _ in rows)
    lines = [head] + [f"  {name:<{width}}  {value}" for name, value in rows]
    return "\n".join(lines)
