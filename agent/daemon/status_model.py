"""The typed tree of ``contact-agent status`` and its one JSON form.

The daemon, the offline reader and the CLI build and read :class:`AgentStatus`; only
:func:`status_json` turns it into the JSON that the control socket sends and
``status --json`` prints, and only :func:`status_from_json` reads that JSON back (the CLI,
from the daemon's answer). The reader is tolerant as a table has to be: a block an older
daemon did not send comes back empty or with its defaults, a value of the wrong type as
its default, and nothing raises.

Absent is not null in this JSON: some keys exist only in some statuses (the ``database``
facts only where a database was read, the ``live`` view only from a running daemon, the
CLI's ``where``), so those blocks are ``None`` here and their keys are left out.

Nothing here imports the pipeline, the store or numpy: ``status`` renders from a daemon's
answer with this module, :mod:`agent.daemon.status` and the standard library.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agent.clock import TrustDecision
    from agent.ingest import GuardStats
    from agent.netlog import NetworkContact

JsonObject = Mapping[str, object]
"""A JSON object as ``json.loads`` returns it (values not checked)."""


# ---- tolerant readers of JSON values ------------------------------------------------------
def _object(value: object) -> JsonObject:
    return value if isinstance(value, dict) else {}


def _int(value: object, default: int = 0) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _whole(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


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


# ---- the blocks -------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ClockStatus:
    """The ``clock`` block (live from :class:`~agent.daemon.clockwatch.ClockWatch`, or offline)."""

    trust: str
    trusted: bool
    reason: str
    source: str
    """Which signal answered: ``timedate1``, ``marker``, ``config`` or ``none``."""
    require_sync: bool
    lower_bound: float | None

    @classmethod
    def of(
        cls, decision: TrustDecision, *, source: str, require_sync: bool, lower_bound: float | None
    ) -> ClockStatus:
        return cls(
            trust=decision.state.value,
            trusted=decision.state.trusted,
            reason=decision.reason,
            source=source,
            require_sync=require_sync,
            lower_bound=lower_bound,
        )

    def as_dict(self) -> dict[str, object]:
        """JSON fields, in this order."""
        return {
            "trust": self.trust,
            "trusted": self.trusted,
            "reason": self.reason,
            "source": self.source,
            "require_sync": self.require_sync,
            "lower_bound": self.lower_bound,
        }

    @classmethod
    def from_json(cls, value: object) -> ClockStatus:
        """A daemon that sent no clock block: trust ``?`` (``unknown``)."""
        raw = _object(value)
        return cls(
            trust=_text(raw.get("trust")) or "?",
            trusted=raw.get("trusted") is True,
            reason=_text(raw.get("reason")) or "unknown",
            source=_text(raw.get("source")) or "none",
            require_sync=raw.get("require_sync") is True,
            lower_bound=_number(raw.get("lower_bound")),
        )


@dataclass(frozen=True, slots=True)
class Sightings:
    """Stored sightings since midnight (UTC) and within the retention period."""

    today: int = 0
    last_14_days: int = 0


@dataclass(frozen=True, slots=True)
class KeyFetchReport:
    """``last_fetch`` after a cycle that ran (:meth:`FetchReport.summary`, saved as state)."""

    at: float | None
    ok: bool = False
    downloaded: int = 0
    failed: tuple[str, ...] = ()
    refused: str | None = None
    warning: str | None = None
    rejected: tuple[str, ...] = ()
    deferred: int = 0
    limit: str | None = None
    clock_skew_seconds: float | None = None
    files_processed: int = 0
    files_skipped: int = 0
    files_rejected: int = 0
    matched_keys: int = 0
    new_windows: int = 0
    retry_after_seconds: float | None = None


@dataclass(frozen=True, slots=True)
class KeyFetchFailed:
    """``last_fetch`` after a cycle that failed as a whole (no connection, a bad answer)."""

    at: float | None
    error: str


LastFetch = KeyFetchReport | KeyFetchFailed


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


@dataclass(frozen=True, slots=True)
class NetworkLog:
    """The transparency log: totals of 14 days and the latest contact."""

    contacts_14_days: int = 0
    bytes_sent_14_days: int = 0
    bytes_received_14_days: int = 0
    latest: NetworkContact | None = None


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


@dataclass(frozen=True, slots=True)
class PossiblyRelayed:
    """Exposure windows the relay guard flagged, and what the policy does with them."""

    windows: int
    policy: str
    """``flag`` (counted, marked) or ``exclude`` (left out of the risk)."""


@dataclass(frozen=True, slots=True)
class Quarantine:
    """A damaged database the store moved aside (saved when it happened)."""

    path: str
    at: float | None
    reason: str


def quarantine_from_json(value: object) -> Quarantine | None:
    """The saved notice of a moved-aside database (None: none, or unreadable)."""
    if not isinstance(value, dict):
        return None
    return Quarantine(
        path=str(value.get("path", "")),
        at=_number(value.get("at")),
        reason=str(value.get("reason", "")),
    )


@dataclass(frozen=True, slots=True)
class DatabaseFacts:
    """What only an opened database tells (absent offline when there is none)."""

    possibly_relayed: PossiblyRelayed
    exposure_days: tuple[str, ...]
    """UTC days (``YYYY-MM-DD``) that call for a notification."""
    database_bytes: int
    quarantined: Quarantine | None


@dataclass(frozen=True, slots=True)
class StoredStatus:
    """Everything ``status`` shows that the database knows."""

    consent: str
    sightings: Sightings = Sightings()
    unique_rpis_10min: int = 0
    last_fetch: LastFetch | None = None
    exposures: int = 0
    """Stored windows that count towards a notification."""
    risk_level: str = "none"
    """``high``, ``low`` or ``none`` (:func:`agent.daemon.status.risk_level`)."""
    clock_lower_bound: float | None = None
    network_log: NetworkLog = NetworkLog()
    database: DatabaseFacts | None = None


@dataclass(frozen=True, slots=True)
class DaemonInfo:
    """The ``daemon`` block of a running daemon (``{"running": false}`` otherwise)."""

    name: str
    pid: int
    version: str
    uptime_seconds: int
    heartbeats: Mapping[str, float]
    """Seconds since each supervised loop last beat."""


@dataclass(frozen=True, slots=True)
class RunningDownload:
    """What the running key cycle downloads now (no identifiers)."""

    source: str | None
    file: str | None
    """None: the listing (index) is being read."""
    file_bytes: int
    cycle_bytes: int
    files_downloaded: int


@dataclass(frozen=True, slots=True)
class FetchSchedule:
    """The daemon's key fetch schedule (the ``fetch`` block)."""

    interval_hours: float
    next_in_seconds: int
    skipped: str | None
    """Why the last cycle was skipped (consent, clock, no sources), or None."""
    consecutive_failures: int
    cycles: int
    notifications: int
    running: RunningDownload | None


@dataclass(frozen=True, slots=True)
class LiveView:
    """What only a running daemon knows: its radio, ingest, fetch schedule and metrics."""

    scan_mode: str | None
    radio: JsonObject
    """The radio port's own report (:meth:`RadioPort.status`), shown as it is."""
    degraded: str | None
    """Why the daemon is not fully working (:func:`degraded_reason`), or None."""
    ingest: GuardStats
    fetch: FetchSchedule
    metrics: Mapping[str, float]
    """Every counter and gauge of :data:`agent.daemon.metrics.SPECS` (whole numbers as int)."""

    @property
    def adapter_state(self) -> str | None:
        """The radio's word on the adapter (e.g. ``bluetoothd not running``)."""
        state = self.radio.get("adapter_state")
        return str(state) if state else None


@dataclass(frozen=True, slots=True)
class Where:
    """Added by the CLI: which socket answered, and whether an offline data dir exists."""

    socket: str | None
    """None: no daemon answered (the status was read from the data dir)."""
    data_dir_exists: bool | None = None
    """Only offline (None: key left out)."""


@dataclass(frozen=True, slots=True)
class AgentStatus:
    """The whole ``status``: stored facts, clock and radio policy, and the live view."""

    daemon: DaemonInfo | None
    """None: no daemon running (the offline status)."""
    stored: StoredStatus
    clock: ClockStatus
    advertising: bool
    advertising_reason: str | None
    scanning: bool
    scanning_reason: str | None
    adapter: str
    current_interval: int | None
    live: LiveView | None = None
    data_dir: str | None = None
    """None: key left out."""
    where: Where | None = None


# ---- the one JSON form ---------------------------------------------------------------------
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
        "clock": status.clock.as_dict(),
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
        clock=ClockStatus.from_json(raw.get("clock")),
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
