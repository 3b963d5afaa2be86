"""The one JSON form of ``contact-agent status``, and its one reader.

:func:`status_json` turns an :class:`~agent.daemon.status_model.AgentStatus` into the JSON
the control socket answers and ``status --json`` prints (both written with
:func:`agent.jsonout.dumps`); :func:`status_from_json` reads it back (the CLI, from the
daemon's answer). The reader is tolerant, as a table of whatever a daemon sent has to be:
a block an older daemon did not send comes back empty or with its defaults, a value of the
wrong type as its default, and nothing raises. The saved ``last_fetch`` and
``quarantined`` states are read with the same functions by the store's side.

Nothing here imports the pipeline, the store or numpy at import time.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from agent.daemon.status_model import (
    AgentStatus,
    ClockStatus,
    DaemonInfo,
    DatabaseFacts,
    FetchSchedule,
    JsonObject,
    KeyFetchFailed,
    KeyFetchReport,
    LastFetch,
    LiveView,
    NetworkLog,
    PossiblyRelayed,
    Quarantine,
    RunningDownload,
    Sightings,
    StoredStatus,
    Where,
)

if TYPE_CHECKING:
    from agent.netlog import NetworkContact


def status_json(status: AgentStatus) -> dict[str, object]:
    """The JSON of ``status --json`` and of the control socket's ``status`` answer
    (written with :func:`agent.jsonout.dumps` by whoever sends or prints it)."""
    stored, live, daemon = status.stored, status.live, status.daemon
    result: dict[str, object] = {
        "consent": stored.consent,
        "sightings": dataclasses.asdict(stored.sightings),
        "unique_rpis_10min": stored.unique_rpis_10min,
        "last_fetch": None if stored.last_fetch is None else _last_fetch_json(stored.last_fetch),
        "exposures": stored.exposures,
    }
    database = stored.database
    if database is not None:
        result["possibly_relayed"] = dataclasses.asdict(database.possibly_relayed)
        result["exposure_days"] = list(database.exposure_days)
    result["risk_level"] = stored.risk_level
    if database is not None:
        result["database_bytes"] = database.database_bytes
        quarantined = database.quarantined
        result["quarantined"] = None if quarantined is None else dataclasses.asdict(quarantined)
    log = stored.network_log
    result["clock_lower_bound"] = stored.clock_lower_bound
    result["network_log"] = {
        "contacts_14_days": log.contacts_14_days,
        "bytes_sent_14_days": log.bytes_sent_14_days,
        "bytes_received_14_days": log.bytes_received_14_days,
        "latest": None if log.latest is None else log.latest.as_dict(),
    }
    result["daemon"] = (
        {"running": False}
        if daemon is None
        else {
            "running": True,
            "name": daemon.name,
            "pid": daemon.pid,
            "version": daemon.version,
            "uptime_seconds": daemon.uptime_seconds,
            "heartbeats": dict(daemon.heartbeats),
        }
    )
    result |= {
        "clock": dataclasses.asdict(status.clock),
        "advertising": status.advertising,
        "advertising_reason": status.advertising_reason,
        "scanning": status.scanning,
        "scanning_reason": status.scanning_reason,
        "adapter": status.adapter,
    }
    if status.data_dir is not None:
        result["data_dir"] = status.data_dir
    if live is not None:
        result["scan_mode"] = live.scan_mode
        result["radio"] = dict(live.radio)
    result["current_interval"] = status.current_interval
    if live is not None:
        fetch = live.fetch
        running = fetch.running
        result |= {
            "degraded": live.degraded,
            "ingest": dataclasses.asdict(live.ingest),
            "fetch": dataclasses.asdict(fetch)
            | {"running": None if running is None else dataclasses.asdict(running)},
            "metrics": dict(live.metrics),
        }
    if status.where is not None:
        result["socket"] = status.where.socket
        if status.where.data_dir_exists is not None:
            result["data_dir_exists"] = status.where.data_dir_exists
    return result


_DATABASE_KEYS = ("possibly_relayed", "exposure_days", "database_bytes", "quarantined")
_LIVE_KEYS = ("scan_mode", "radio", "degraded", "ingest", "fetch", "metrics")


def status_from_json(value: object) -> AgentStatus:
    """:func:`status_json`'s output read back (the daemon's answer, in the CLI)."""
    raw = _object(value)
    return AgentStatus(
        daemon=_daemon_from_json(raw.get("daemon")),
        stored=_stored_from_json(raw),
        clock=_clock_from_json(raw.get("clock")),
        advertising=raw.get("advertising") is True,
        advertising_reason=_text(raw.get("advertising_reason")),
        scanning=raw.get("scanning") is True,
        scanning_reason=_text(raw.get("scanning_reason")),
        adapter=_text(raw.get("adapter")) or "",
        current_interval=_whole(raw.get("current_interval")),
        live=_live_from_json(raw) if any(k in raw for k in _LIVE_KEYS) else None,
        data_dir=_text(raw.get("data_dir")),
        where=(
            Where(socket=_text(raw["socket"]), data_dir_exists=_flag(raw.get("data_dir_exists")))
            if "socket" in raw
            else None
        ),
    )


def _flag(value: object) -> bool | None:
    return value if isinstance(value, bool) else None


def _daemon_from_json(value: object) -> DaemonInfo | None:
    raw = _object(value)
    if not raw.get("running"):
        return None
    return DaemonInfo(
        name=_text(raw.get("name")) or "",
        pid=_int(raw.get("pid")),
        version=_text(raw.get("version")) or "",
        uptime_seconds=_int(raw.get("uptime_seconds")),
        heartbeats=_numbers(raw.get("heartbeats")),
    )


def _stored_from_json(raw: JsonObject) -> StoredStatus:
    sightings = _object(raw.get("sightings"))
    log = _object(raw.get("network_log"))
    database = None
    if any(k in raw for k in _DATABASE_KEYS):
        relayed = _object(raw.get("possibly_relayed"))
        database = DatabaseFacts(
            possibly_relayed=PossiblyRelayed(
                windows=_int(relayed.get("windows")), policy=_text(relayed.get("policy")) or "flag"
            ),
            exposure_days=_texts(raw.get("exposure_days")),
            database_bytes=_int(raw.get("database_bytes")),
            quarantined=quarantine_from_json(raw.get("quarantined")),
        )
    return StoredStatus(
        consent=str(raw.get("consent")),
        sightings=Sightings(
            today=_int(sightings.get("today")), last_14_days=_int(sightings.get("last_14_days"))
        ),
        unique_rpis_10min=_int(raw.get("unique_rpis_10min")),
        last_fetch=last_fetch_from_json(raw.get("last_fetch")),
        exposures=_int(raw.get("exposures")),
        risk_level=str(raw.get("risk_level", "none")),
        clock_lower_bound=_number(raw.get("clock_lower_bound")),
        network_log=NetworkLog(
            contacts_14_days=_int(log.get("contacts_14_days")),
            bytes_sent_14_days=_int(log.get("bytes_sent_14_days")),
            bytes_received_14_days=_int(log.get("bytes_received_14_days")),
            latest=_contact_from_json(log.get("latest")),
        ),
        database=database,
    )


def _live_from_json(raw: JsonObject) -> LiveView:
    from agent.ingest import GuardStats

    fetch = _object(raw.get("fetch"))
    running = fetch.get("running")
    ingest = _object(raw.get("ingest"))
    names = [f.name for f in dataclasses.fields(GuardStats)]
    counts = {name: v for name in names if isinstance(v := ingest.get(name), int | float)}
    return LiveView(
        scan_mode=_text(raw.get("scan_mode")),
        radio=dict(_object(raw.get("radio"))),
        degraded=_text(raw.get("degraded")),
        ingest=GuardStats(**counts),  # type: ignore[arg-type]  # counts, and the flood flag
        fetch=FetchSchedule(
            interval_hours=_number(fetch.get("interval_hours")) or 0,
            next_in_seconds=_int(fetch.get("next_in_seconds")),
            skipped=_text(fetch.get("skipped")),
            consecutive_failures=_int(fetch.get("consecutive_failures")),
            cycles=_int(fetch.get("cycles")),
            notifications=_int(fetch.get("notifications")),
            running=(
                RunningDownload(
                    source=_text(running.get("source")),
                    file=_text(running.get("file")),
                    file_bytes=_int(running.get("file_bytes")),
                    cycle_bytes=_int(running.get("cycle_bytes")),
                    files_downloaded=_int(running.get("files_downloaded")),
                )
                if isinstance(running, dict)
                else None
            ),
        ),
        metrics=_numbers(raw.get("metrics")),
    )


# ---- tolerant readers of JSON values ---------------------------------------------------
def _object(value: object) -> JsonObject:
    return value if isinstance(value, dict) else {}


def _whole(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _int(value: object) -> int:
    return _whole(value) or 0


def _number(value: object) -> float | None:
    """A number as JSON had it (an int stays an int), or None."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    return None


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _texts(value: object) -> tuple[str, ...]:
    return tuple(str(v) for v in value) if isinstance(value, list) else ()


def _numbers(value: object) -> dict[str, float]:
    numbers = {str(k): _number(v) for k, v in _object(value).items()}
    return {k: v for k, v in numbers.items() if v is not None}


def _clock_from_json(value: object) -> ClockStatus:
    """A daemon that sent no clock block: trust ``?`` (``unknown``)."""
    raw = _object(value)
    return ClockStatus(
        trust=_text(raw.get("trust")) or "?",
        trusted=raw.get("trusted") is True,
        reason=_text(raw.get("reason")) or "unknown",
        source=_text(raw.get("source")) or "none",
        require_sync=raw.get("require_sync") is True,
        lower_bound=_number(raw.get("lower_bound")),
    )


def last_fetch_from_json(value: object) -> LastFetch | None:
    """The saved outcome of the latest key cycle (None: never, or unreadable)."""
    if not isinstance(value, dict):
        return None
    at = _number(value.get("at"))
    if "error" in value and "downloaded" not in value:
        return KeyFetchFailed(at=at, error=str(value["error"]))
    return KeyFetchReport(
        at=at,
        ok=value.get("ok") is True,
        downloaded=_int(value.get("downloaded")),
        failed=_texts(value.get("failed")),
        refused=_text(value.get("refused")),
        warning=_text(value.get("warning")),
        rejected=_texts(value.get("rejected")),
        deferred=_int(value.get("deferred")),
        limit=_text(value.get("limit")),
        clock_skew_seconds=_number(value.get("clock_skew_seconds")),
        files_processed=_int(value.get("files_processed")),
        files_skipped=_int(value.get("files_skipped")),
        files_rejected=_int(value.get("files_rejected")),
        matched_keys=_int(value.get("matched_keys")),
        new_windows=_int(value.get("new_windows")),
        retry_after_seconds=_number(value.get("retry_after_seconds")),
    )


def _last_fetch_json(fetch: LastFetch) -> dict[str, object]:
    if isinstance(fetch, KeyFetchFailed):
        return {"at": fetch.at, "ok": False, "error": fetch.error}
    fields = dataclasses.asdict(fetch)
    return fields | {"failed": list(fetch.failed), "rejected": list(fetch.rejected)}


def _contact_from_json(value: object) -> NetworkContact | None:
    if not isinstance(value, dict):
        return None
    from agent.netlog import NetworkContact

    return NetworkContact(
        time=_number(value.get("time")) or 0.0,
        host=str(value.get("host", "")),
        purpose=str(value.get("purpose", "")),
        bytes_sent=_int(value.get("bytes_sent")),
        bytes_received=_int(value.get("bytes_received")),
        result=str(value.get("result", "")),
    )


def quarantine_from_json(value: object) -> Quarantine | None:
    """The saved notice of a moved-aside database (None: none, or unreadable)."""
    if not isinstance(value, dict):
        return None
    return Quarantine(
        path=str(value.get("path", "")),
        at=_number(value.get("at")),
        reason=str(value.get("reason", "")),
    )
