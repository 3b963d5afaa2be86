"""The sightings interchange format (``docs/storage.md``): parse and write records.

Pure functions: bytes in, values out (parse), values in, text out (format). Two formats:
``jsonl`` (one JSON object per line) and ``csv`` (a header row with the field names).
Sightings have ``time`` (Unix seconds, a number), ``rpi`` (32 hex digits), ``aem``
(8 hex digits, still encrypted) and ``rssi`` (calibrated dBm, an integer in -127..126).
Extra fields are ignored on import. A file is parsed completely before anything is
returned: any bad line makes :func:`parse_sightings` raise one
:class:`~agent.errors.MalformedInputError` that names the first bad line, what is wrong
with it, and how many lines were bad in all -- so a caller stores all or nothing.
Error messages never repeat field values (they could be identifiers).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterator, Mapping
from typing import Any, Final, TextIO

from agent.constants import AEM_LENGTH, CALIBRATED_RSSI_MAX, CALIBRATED_RSSI_MIN, RPI_LENGTH
from agent.errors import MalformedInputError
from agent.jsonout import dumps
from agent.models import ExposureWindow, Sighting
from agent.relayguard import reason_names

FORMATS: Final = ("jsonl", "csv")
SIGHTING_FIELDS: Final = ("time", "rpi", "aem", "rssi")
EXPOSURE_FIELDS: Final = (  # the keys of :func:`window_json`
    "start",
    "duration_seconds",
    "min_attenuation_db",
    "typical_attenuation_db",
    "report_type",
    "score",
)
EXPOSURE_EXPORT_FIELDS: Final = (*EXPOSURE_FIELDS, "possibly_relayed")
"""``export exposures``: :func:`window_json` plus the relay guard's reasons."""
MAX_TIME: Final = 253_402_300_800
"""Year 10000."""


def window_json(window: ExposureWindow) -> dict[str, Any]:
    """One exposure window as ``match --json`` and ``export exposures`` show it.

    The field names are fixed by ``docs/storage.md``; ``report_type`` is the integer.
    """
    return {
        "start": window.start,
        "duration_seconds": window.duration_seconds,
        "min_attenuation_db": window.min_attenuation_db,
        "typical_attenuation_db": window.typical_attenuation_db,
        "report_type": int(window.report_type),
        "score": window.score,
    }


def window_export_record(window: ExposureWindow) -> dict[str, Any]:
    """One line of ``export exposures``: :func:`window_json` and ``possibly_relayed``, the
    relay guard's reasons joined by ``+`` (empty: nothing noticed)."""
    return {**window_json(window), "possibly_relayed": "+".join(reason_names(window.relay))}


class _BadLine(Exception):
    """Internal: what is wrong with one line (without its values)."""


# --- formatting ------------------------------------------------------------------------
def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


def sighting_record(sighting: Sighting) -> dict[str, Any]:
    return {
        "time": _number(sighting.time),
        "rpi": sighting.rpi.hex(),
        "aem": sighting.aem.hex(),
        "rssi": sighting.rssi,
    }


class RecordWriter:
    """Writes records as jsonl, or csv with a header row, to a text stream."""

    def __init__(self, out: TextIO, fmt: str, fields: tuple[str, ...]) -> None:
        self._fmt = check_format(fmt)
        self._out = out
        self.count = 0
        self._csv: csv.DictWriter[str] | None = None
        if fmt == "csv":
            self._csv = csv.DictWriter(out, fieldnames=fields, lineterminator="\n")
            self._csv.writeheader()

    def write(self, record: Mapping[str, Any]) -> None:
        if self._csv is not None:
            self._csv.writerow(record)
        else:
            self._out.write(dumps(record, separators=(",", ":")) + "\n")
        self.count += 1


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise MalformedInputError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    return fmt


def guess_format(name: str, data: bytes) -> str:
    """``csv`` or ``jsonl`` from the file name, else from the first non-blank byte."""
    lowered = name.lower()
    if lowered.endswith(".csv"):
        return "csv"
    if lowered.endswith((".jsonl", ".json", ".ndjson")):
        return "jsonl"
    head = data.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    return "jsonl" if head == b"{" else "csv"


# --- parsing ---------------------------------------------------------------------------
def parse_sightings(data: bytes, fmt: str) -> list[Sighting]:
    """Every sighting of a file, or MalformedInputError naming the first bad line."""
    check_format(fmt)
    text = _decode(data)
    text_values = fmt == "csv"
    lines = _csv_records(text) if text_values else _jsonl_records(text)
    sightings: list[Sighting] = []
    first_error: str | None = None
    bad = 0
    for line_no, record in lines:
        try:
            if isinstance(record, _BadLine):
                raise record
            sightings.append(_sighting(record, text_values))
        except _BadLine as exc:
            bad += 1
            if first_error is None:
                first_error = f"line {line_no}: {exc}"
    if first_error is not None:
        more = f" ({bad} bad lines in all)" if bad > 1 else ""
        raise MalformedInputError(first_error + more)
    return sightings


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line_no = data.count(b"\n", 0, exc.start) + 1
        raise MalformedInputError(f"line {line_no}: not UTF-8 text") from None


Records = Iterator[tuple[int, "Mapping[str, Any] | _BadLine"]]


def _jsonl_records(text: str) -> Records:
    for line_no, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            yield line_no, _BadLine(f"bad JSON ({exc.msg} at column {exc.colno})")
            continue
        except RecursionError:
            yield line_no, _BadLine("bad JSON (nested too deeply)")
            continue
        except ValueError:  # e.g. an integer of more than 4,300 digits
            yield line_no, _BadLine("bad JSON (a number too long)")
            continue
        if not isinstance(value, dict):
            yield line_no, _BadLine("not a JSON object")
            continue
        yield line_no, value


def _csv_records(text: str) -> Records:
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header: list[str] | None = None
    while True:
        start = reader.line_num + 1  # where the next record begins
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield start, _BadLine(f"bad CSV ({exc}; is a quote left open?)")
            return
        if not row or all(not cell.strip() for cell in row):
            continue
        if header is None:
            header = [cell.strip().lower() for cell in row]
            missing = [f for f in SIGHTING_FIELDS if f not in header]
            if missing or len(set(header)) != len(header):
                problem = f"header lacks {', '.join(missing)}" if missing else "duplicate names"
                yield start, _BadLine(f"bad CSV header: {problem}")
                return
            continue
        if len(row) != len(header):
            yield start, _BadLine(f"{len(row)} fields, the header has {len(header)}")
            continue
        yield start, dict(zip(header, row, strict=True))


def _sighting(record: Mapping[str, Any], text_values: bool) -> Sighting:
    """A record's sighting; ``text_values``: numbers come as text (CSV), else JSON types."""
    missing = [f for f in SIGHTING_FIELDS if f not in record or record[f] in (None, "")]
    if missing:
        raise _BadLine(f"missing field {', '.join(missing)}")
    return Sighting(
        time=_time(record["time"], text_values),
        rpi=_hex(record["rpi"], "rpi", RPI_LENGTH),
        aem=_hex(record["aem"], "aem", AEM_LENGTH),
        rssi=_rssi(record["rssi"], text_values),
    )


def _time(value: Any, text_values: bool) -> float:
    if text_values:
        try:
            value = float(value)
        except ValueError:
            raise _BadLine("time must be a number") from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _BadLine("time must be a number")
    if not math.isfinite(value) or not 0 <= value < MAX_TIME:
        raise _BadLine("time must be Unix seconds (a finite number >= 0)")
    return float(value)


def _hex(value: Any, name: str, length: int) -> bytes:
    if not isinstance(value, str):
        raise _BadLine(f"{name} must be a string of {2 * length} hexadecimal digits")
    text = value.strip()
    if len(text) != 2 * length:
        raise _BadLine(f"{name} must be {2 * length} hexadecimal digits, got {len(text)}")
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise _BadLine(f"{name} is not hexadecimal") from None
    if len(raw) != length:  # fromhex skips spaces
        raise _BadLine(f"{name} is not hexadecimal")
    return raw


def _rssi(value: Any, text_values: bool) -> int:
    if text_values:
        try:
            value = int(value.strip())
        except ValueError:
            raise _BadLine("rssi must be an integer") from None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _BadLine("rssi must be an integer")
    if not CALIBRATED_RSSI_MIN <= value <= CALIBRATED_RSSI_MAX:
        raise _BadLine(f"rssi must be in {CALIBRATED_RSSI_MIN}..{CALIBRATED_RSSI_MAX}")
    return value
