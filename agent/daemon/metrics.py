"""Counters and gauges of the daemon, shown by ``status --json`` and written as a
Prometheus textfile-collector file (node_exporter ``--collector.textfile.directory``).

The file is replaced atomically (write a temporary file in the same directory, fsync,
rename), so the collector never reads half a file.
"""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

PREFIX = "contact_agent_"


@dataclass(frozen=True, slots=True)
class MetricSpec:
    name: str
    kind: str
    """``counter`` or ``gauge``."""
    help: str


SPECS: tuple[MetricSpec, ...] = (
    MetricSpec("adverts_heard_total", "counter", "EN advertisements received"),
    MetricSpec("sightings_stored_total", "counter", "Sightings written to the database"),
    MetricSpec("unique_rpis_10min", "gauge", "Distinct RPIs heard in the last 10 minutes"),
    MetricSpec("scanner_restarts_total", "counter", "Radio restarts after a failure"),
    MetricSpec("rotations_total", "counter", "Address and RPI rotations"),
    MetricSpec("clock_steps_total", "counter", "Wall-clock steps detected"),
    MetricSpec("task_restarts_total", "counter", "Supervised tasks restarted after an error"),
    MetricSpec("advertising", "gauge", "1 while our EN advertisement is on air"),
    MetricSpec("scanning", "gauge", "1 while scanning for EN advertisements"),
    MetricSpec("consent", "gauge", "1 when the user enabled contact detection"),
    MetricSpec("clock_trusted", "gauge", "1 when the wall clock is trusted"),
    MetricSpec("key_fetches_total", "counter", "Key download and match cycles"),
    MetricSpec("key_fetch_failures_total", "counter", "Key cycles that failed"),
    MetricSpec("last_fetch_success", "gauge", "1 if the last key cycle succeeded"),
    MetricSpec("last_fetch_duration_seconds", "gauge", "Duration of the last key cycle"),
    MetricSpec("last_fetch_timestamp_seconds", "gauge", "Unix time of the last key cycle"),
    MetricSpec("exposures_total", "gauge", "Qualifying exposure windows stored"),
    MetricSpec("notifications_total", "counter", "Exposure notifications sent"),
    MetricSpec("purges_total", "counter", "Retention purges run"),
    MetricSpec("database_bytes", "gauge", "Size of the database files"),
    MetricSpec("flood", "gauge", "1 while more new RPIs arrive than the flood guard admits"),
    MetricSpec("flood_dropped_total", "counter", "Sightings dropped by the flood guard"),
    MetricSpec("sightings_thinned_total", "counter", "Burst duplicates folded per 2 s slot"),
    MetricSpec("sighting_write_errors_total", "counter", "Failed sighting batch writes"),
    MetricSpec(
        "relay_flagged_sightings_total", "counter", "Sightings the relay guard gave a reason"
    ),
    MetricSpec(
        "relay_flagged_windows", "gauge", "Stored exposure windows flagged as possibly relayed"
    ),
)
_BY_NAME = {s.name: s for s in SPECS}


class Metrics:
    """A fixed set of named counters and gauges (see :data:`SPECS`)."""

    def __init__(self) -> None:
        self._values: dict[str, float] = {s.name: 0.0 for s in SPECS}

    def _check(self, name: str, kind: str) -> None:
        spec = _BY_NAME.get(name)
        if spec is None or spec.kind != kind:
            raise KeyError(f"no {kind} named {name!r}")

    def inc(self, name: str, amount: float = 1.0) -> None:
        """Add to a counter (never negative)."""
        self._check(name, "counter")
        if amount < 0:
            raise ValueError("counters only go up")
        self._values[name] += amount

    def set(self, name: str, value: float | bool) -> None:
        """Set a gauge."""
        self._check(name, "gauge")
        self._values[name] = float(value)

    def get(self, name: str) -> float:
        return self._values[name]

    def snapshot(self) -> dict[str, float | int]:
        """All values; whole numbers as int (for JSON and tables)."""
        return {k: int(v) if v.is_integer() else round(v, 3) for k, v in self._values.items()}

    def render(self) -> str:
        """The Prometheus text exposition format (version 0.0.4)."""
        lines: list[str] = []
        for spec in SPECS:
            full = PREFIX + spec.name
            lines.append(f"# HELP {full} {spec.help}")
            lines.append(f"# TYPE {full} {spec.kind}")
            lines.append(f"{full} {_format(self._values[spec.name])}")
        return "\n".join(lines) + "\n"


def _format(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if value.is_integer():
        return str(int(value))
    return repr(value)


def write_textfile(path: Path, text: str) -> None:
    """Atomically replace ``path`` with ``text`` (mode 0644 so node_exporter can read it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
