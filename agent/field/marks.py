"""Ground-truth marks of a field test: "from now on the devices are D metres apart".

A mark is one JSON object per line in ``marks.jsonl`` in the data directory::

    {"time": 1714573800.0, "distance_m": 1.5, "note": "table", "wall": false}

A mark holds until the next one. ``distance_m`` is ``null`` for an *end* mark: the test
is over (or the devices are taken out of range on purpose) and nothing after it counts.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from agent.errors import AgentError, MalformedInputError
from agent.jsonout import dumps

MARKS_FILE_NAME = "marks.jsonl"
MAX_DISTANCE_M = 1000.0
MAX_NOTE_LENGTH = 200
EARLIEST_PLAUSIBLE = 1_577_836_800.0
"""2020-01-01T00:00:00Z: a mark before GAEN existed means a wrong time or an unset clock."""
LATEST_PLAUSIBLE = 4_102_444_800.0
"""2100-01-01T00:00:00Z: later means milliseconds were given where seconds are expected."""


@dataclass(frozen=True, slots=True)
class Mark:
    """One ground-truth mark."""

    time: float
    """Unix seconds (UTC) from which the distance holds."""
    distance_m: float | None
    """Metres between the two devices; None marks the end of the test."""
    note: str = ""
    wall: bool = False
    """True when a wall or another obstacle stands between the devices."""

    @property
    def is_end(self) -> bool:
        return self.distance_m is None

    @property
    def label(self) -> str:
        """A short name for tables and plots, e.g. ``3 m`` or ``10 m, wall``."""
        if self.distance_m is None:
            return "end"
        text = f"{self.distance_m:g} m"
        return f"{text}, wall" if self.wall else text

    def to_json(self) -> dict[str, object]:
        return {
            "time": self.time,
            "distance_m": self.distance_m,
            "note": self.note,
            "wall": self.wall,
        }


def format_time(unix_seconds: float) -> str:
    """ISO 8601 in UTC with a ``Z``, to the second."""
    moment = datetime.fromtimestamp(unix_seconds, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _check_plausible(value: float, what: str) -> float:
    if not math.isfinite(value):
        raise MalformedInputError(f"{what} must be a finite number of seconds")
    if not EARLIEST_PLAUSIBLE <= value < LATEST_PLAUSIBLE:
        raise MalformedInputError(
            f"{what} {value:g} is not between 2020 and 2100 "
            "(give Unix seconds, or ISO 8601 like 2024-05-01T14:30:00+02:00)"
        )
    return value


def parse_time(text: str) -> float:
    """Unix seconds from ``text``: a number of seconds, or ISO 8601.

    An ISO time without a zone is this machine's local time, as ``date`` prints it.
    """
    cleaned = text.strip()
    if not cleaned:
        raise MalformedInputError("--at needs a time (Unix seconds or ISO 8601)")
    try:
        seconds = float(cleaned)
    except ValueError:
        pass
    else:
        return _check_plausible(seconds, "--at")
    try:
        moment = datetime.fromisoformat(cleaned.replace("z", "Z"))
    except ValueError:
        raise MalformedInputError(
            f"--at {text!r} is neither Unix seconds nor an ISO 8601 time "
            "(e.g. 2024-05-01T14:30:00+02:00)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.astimezone()
    return _check_plausible(moment.timestamp(), "--at")


def new_mark(
    *,
    distance_m: float | None,
    time: float,
    note: str = "",
    wall: bool = False,
) -> Mark:
    """A validated mark; every bad value raises a one-line :class:`MalformedInputError`."""
    if distance_m is not None:
        if not math.isfinite(distance_m):
            raise MalformedInputError("--distance must be a finite number of metres")
        if distance_m < 0:
            raise MalformedInputError(f"--distance must not be negative, got {distance_m:g} m")
        if distance_m > MAX_DISTANCE_M:
            raise MalformedInputError(
                f"--distance {distance_m:g} m is beyond {MAX_DISTANCE_M:g} m; "
                "use --end when the devices leave each other's range"
            )
    if len(note) > MAX_NOTE_LENGTH:
        raise MalformedInputError(f"--note must be at most {MAX_NOTE_LENGTH} characters")
    if any(ord(c) < 32 for c in note):
        raise MalformedInputError("--note must be one line without control characters")
    if not math.isfinite(time) or not EARLIEST_PLAUSIBLE <= time < LATEST_PLAUSIBLE:
        raise MalformedInputError(
            f"the mark's time {time:g} is not between 2020 and 2100: "
            "is this device's clock set? (see `contact-agent field preflight`)"
        )
    return Mark(time=float(time), distance_m=distance_m, note=note, wall=wall)


def append_mark(path: Path, mark: Mark) -> int:
    """Append ``mark`` as one line to ``path``; returns the mark's line number.

    The line is written with a single ``write`` and synced, so a crash leaves either the
    whole line or none of it; a torn last line of an earlier crash is kept and fenced off
    with a newline so that the new mark stays readable.
    """
    line = dumps(mark.to_json(), ensure_ascii=False) + "\n"
    try:
        if not path.parent.exists():
            path.parent.mkdir(parents=True, mode=0o700)
        with path.open("a+b") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            prefix = b""
            if size:
                handle.seek(size - 1)
                if handle.read(1) != b"\n":
                    prefix = b"\n"
            handle.seek(0)
            lines = handle.read().count(b"\n") + (1 if prefix else 0)
            handle.write(prefix + line.encode("utf-8"))
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        raise AgentError(f"cannot write the mark to {path}: {exc.strerror}") from exc
    return lines + 1


def _field(obj: dict[str, object], name: str, where: str) -> object:
    if name not in obj:
        raise MalformedInputError(f"{where}: missing field {name!r}")
    return obj[name]


def mark_from_json(obj: object, where: str) -> Mark:
    """A :class:`Mark` from one parsed JSON line; ``where`` names the line in errors."""
    if not isinstance(obj, dict):
        raise MalformedInputError(f"{where}: a mark must be a JSON object")
    time = _field(obj, "time", where)
    distance = _field(obj, "distance_m", where)
    note = obj.get("note", "")
    wall = obj.get("wall", False)
    if isinstance(time, bool) or not isinstance(time, int | float):
        raise MalformedInputError(f"{where}: time must be Unix seconds")
    if distance is not None and (
        isinstance(distance, bool) or not isinstance(distance, int | float)
    ):
        raise MalformedInputError(f"{where}: distance_m must be a number or null")
    if not isinstance(note, str) or not isinstance(wall, bool):
        raise MalformedInputError(f"{where}: note must be a string and wall true or false")
    try:
        return new_mark(
            distance_m=None if distance is None else float(distance),
            time=float(time),
            note=note,
            wall=wall,
        )
    except MalformedInputError as exc:
        raise MalformedInputError(f"{where}: {exc}") from None


def parse_marks(lines: Iterable[str], source: str = "marks") -> list[Mark]:
    """Marks from JSON lines, sorted by time; blank lines are skipped.

    A line that breaks the format raises :class:`MalformedInputError` naming the line.
    """
    marks: list[Mark] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{source} line {number}"
        try:
            obj = json.loads(line)
        except ValueError:
            raise MalformedInputError(f"{where}: not valid JSON") from None
        marks.append(mark_from_json(obj, where))
    marks.sort(key=lambda m: m.time)
    return marks


def load_marks(path: Path) -> list[Mark]:
    """Read a marks file (see :func:`parse_marks`)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise AgentError(f"marks file {path} does not exist") from None
    except OSError as exc:
        raise AgentError(f"cannot read marks file {path}: {exc.strerror}") from exc
    except UnicodeDecodeError:
        raise MalformedInputError(f"marks file {path} is not UTF-8 text") from None
    return parse_marks(text.splitlines(), source=path.name)
