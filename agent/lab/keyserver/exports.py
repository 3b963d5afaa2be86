"""Signed export batches of the test key server, listed in ``index.txt``.

Published keys wait in a pool; :meth:`ExportPublisher.release` moves the keys whose
embargo is over into a new signed batch ``exports/{start}-{end}-00001.zip``, where
``start`` is the previous batch's end. ``index.txt`` lists every batch, oldest first, as a
path relative to the server's base URL (the Google layout). Optional padding adds random
fake keys shaped like each real one; batches are sorted by key bytes by
the export writer, so the upload order is lost either way.

Still-valid keys (their validity covers the current interval) are embargoed until 2 h
after the end of the current UTC day, as Google's key server does; tests turn the
embargo off.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from agent.clock import Clock, en_interval_number
from agent.constants import TEK_LENGTH
from agent.export import write_export
from agent.models import ReportType, TemporaryExposureKey
from agent.report.wire import key_from_json, key_to_json

_LOGGER = logging.getLogger(__name__)

EMBARGO_AFTER_DAY_END_SECONDS = 2 * 3600
EXPORT_DIR = "exports"
INDEX_NAME = "index.txt"
STATE_NAME = "exports.json"


@dataclass(frozen=True, slots=True)
class Batch:
    """One published export file."""

    name: str
    """``{start}-{end}-00001.zip``."""
    start_timestamp: int
    end_timestamp: int
    keys: tuple[TemporaryExposureKey, ...]
    """Real and fake keys as written into the file."""

    @property
    def path(self) -> str:
        """Path relative to the server's base URL, as listed in ``index.txt``."""
        return f"{EXPORT_DIR}/{self.name}"


@dataclass(frozen=True, slots=True)
class _Pending:
    key: TemporaryExposureKey
    release_at: float


def embargo_release_time(key: TemporaryExposureKey, now: float) -> float:
    """When a key may be published: now, or 2 h after the end of the UTC day if still valid."""
    if key.end_interval_number > en_interval_number(now):
        day_end = (int(now) // 86_400 + 1) * 86_400
        return float(day_end + EMBARGO_AFTER_DAY_END_SECONDS)
    return now


def fake_keys_like(key: TemporaryExposureKey, count: int) -> list[TemporaryExposureKey]:
    """``count`` random keys with the validity and report type of ``key``."""
    return [replace(key, key_data=secrets.token_bytes(TEK_LENGTH)) for _ in range(count)]


def _key_json(key: TemporaryExposureKey) -> dict[str, object]:
    """The publish JSON of a key plus what the server adds (report type, onset)."""
    return {
        **key_to_json(key),
        "reportType": int(key.report_type),
        "daysSinceOnset": key.days_since_onset_of_symptoms,
    }


def _key_from_json(entry: dict[str, object]) -> TemporaryExposureKey:
    dso = entry.get("daysSinceOnset")
    return replace(
        key_from_json(entry),
        report_type=ReportType(int(str(entry["reportType"]))),
        days_since_onset_of_symptoms=int(str(dso)) if dso is not None else None,
    )


class ExportPublisher:
    """Pool of published keys, the signed batches made from it, and their index."""

    def __init__(
        self,
        signing_key: ec.EllipticCurvePrivateKey,
        clock: Clock,
        *,
        key_id: str,
        key_version: str,
        region: str,
        embargo: bool = True,
        fake_keys_per_key: int = 0,
        directory: Path | None = None,
    ) -> None:
        self._signing_key = signing_key
        self._clock = clock
        self.key_id = key_id
        self.key_version = key_version
        self.region = region
        self.embargo = embargo
        self.fake_keys_per_key = fake_keys_per_key
        self._directory = directory
        self._pending: list[_Pending] = []
        self._batches: list[Batch] = []
        self._files: dict[str, bytes] = {}
        self._created = int(clock.wall())
        if directory is not None:
            self._load(directory)

    @property
    def batches(self) -> list[Batch]:
        return list(self._batches)

    @property
    def pending_count(self) -> int:
        """Keys held back by the embargo."""
        return len(self._pending)

    def add(self, keys: Iterable[TemporaryExposureKey]) -> None:
        """Accept published keys (and their fake padding) into the pool."""
        now = self._clock.wall()
        for key in keys:
            release_at = embargo_release_time(key, now) if self.embargo else now
            for item in [key, *fake_keys_like(key, self.fake_keys_per_key)]:
                self._pending.append(_Pending(item, release_at))
        self._save()

    def release(self) -> Batch | None:
        """Write a new signed batch of every key whose embargo is over (None: nothing due)."""
        now = self._clock.wall()
        due = [p.key for p in self._pending if p.release_at <= now]
        if not due:
            return None
        self._pending = [p for p in self._pending if p.release_at > now]
        start = self._batches[-1].end_timestamp if self._batches else self._created
        end = max(int(now), start + 1)
        batch = Batch(f"{start}-{end}-00001.zip", start, end, tuple(due))
        self._files[batch.name] = self._write(batch.keys, start, end)
        self._batches.append(batch)
        self._save()
        _LOGGER.info("published export %s with %d keys", batch.name, len(due))
        return batch

    def _write(self, keys: Sequence[TemporaryExposureKey], start: int, end: int) -> bytes:
        return write_export(
            list(keys),
            self._signing_key,
            key_id=self.key_id,
            key_version=self.key_version,
            region=self.region,
            start_timestamp=start,
            end_timestamp=end,
        )

    def index_text(self) -> str:
        """``index.txt``: one relative path per line, oldest first."""
        return "".join(f"{batch.path}\n" for batch in self._batches)

    def batch_file(self, name: str) -> bytes | None:
        return self._files.get(name)

    # --- CWA-style layout: /version/v1/diagnosis-keys/country/{CC}/date[/{day}[/hour[/{h}]]]

    def cwa_days(self) -> list[str]:
        """UTC days (``YYYY-MM-DD``) that have batches, oldest first."""
        return sorted({_day(b.end_timestamp) for b in self._batches})

    def cwa_hours(self, day: str) -> list[int]:
        return sorted(
            {_hour(b.end_timestamp) for b in self._batches if _day(b.end_timestamp) == day}
        )

    def cwa_file(self, day: str, hour: int | None = None) -> bytes | None:
        """All keys of the batches of one day (or one hour of it) in one signed file."""
        chosen = [
            b
            for b in self._batches
            if _day(b.end_timestamp) == day and (hour is None or _hour(b.end_timestamp) == hour)
        ]
        if not chosen:
            return None
        keys = [k for b in chosen for k in b.keys]
        return self._write(keys, chosen[0].start_timestamp, chosen[-1].end_timestamp)

    # --- persistence (``keyserver --data-dir-for-server``) --------------------------------

    def _save(self) -> None:
        if self._directory is None:
            return
        export_dir = self._directory / EXPORT_DIR
        export_dir.mkdir(parents=True, exist_ok=True)
        for batch in self._batches:
            path = export_dir / batch.name
            if not path.exists():
                _atomic_write(path, self._files[batch.name])
        _atomic_write(export_dir / INDEX_NAME, self.index_text().encode("ascii"))
        state = {
            "created": self._created,
            "pending": [dict(_key_json(p.key), release_at=p.release_at) for p in self._pending],
            "batches": [
                {
                    "name": b.name,
                    "start": b.start_timestamp,
                    "end": b.end_timestamp,
                    "keys": [_key_json(k) for k in b.keys],
                }
                for b in self._batches
            ],
        }
        _atomic_write(self._directory / STATE_NAME, json.dumps(state).encode("utf-8"))

    def _load(self, directory: Path) -> None:
        path = directory / STATE_NAME
        if not path.exists():
            return
        state = json.loads(path.read_text(encoding="utf-8"))
        self._created = int(state["created"])
        self._pending = [
            _Pending(_key_from_json(e), float(e["release_at"])) for e in state["pending"]
        ]
        for entry in state["batches"]:
            keys = tuple(_key_from_json(k) for k in entry["keys"])
            batch = Batch(entry["name"], int(entry["start"]), int(entry["end"]), keys)
            file_path = directory / EXPORT_DIR / batch.name
            self._files[batch.name] = file_path.read_bytes()
            self._batches.append(batch)


def _day(timestamp: int) -> str:
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).date().isoformat()


def _hour(timestamp: int) -> int:
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).hour


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
