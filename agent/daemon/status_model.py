"""The typed tree of ``contact-agent status``: one frozen dataclass per block.

The daemon (:func:`~agent.daemon.status.live_status`), the offline reader
(:func:`~agent.daemon.offline.offline_status`) and the CLI build and read
:class:`AgentStatus`; :mod:`agent.daemon.status_json` holds its one JSON form and reader,
:func:`~agent.daemon.status.render` its table.

Some keys of the JSON exist only in some statuses (the ``database`` facts only where a
database was read, the ``live`` view only from a running daemon, the CLI's ``where``):
those blocks are ``None`` here, and their keys are left out (absent is not null).

Nothing here imports the pipeline, the store or numpy at import time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agent.clock import TrustDecision
    from agent.ingest import GuardStats
    from agent.netlog import NetworkContact

JsonObject = Mapping[str, object]
"""A JSON object as ``json.loads`` returns it (values not checked)."""


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


@dataclass(frozen=True, slots=True)
class NetworkLog:
    """The transparency log: totals of 14 days and the latest contact."""

    contacts_14_days: int = 0
    bytes_sent_14_days: int = 0
    bytes_received_14_days: int = 0
    latest: NetworkContact | None = None


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
