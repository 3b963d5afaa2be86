"""One key source (a ``[keys] sources`` entry): which files are new, and downloading them.

State: the caller gives each client a ``dict[str, str]`` and persists it. The client
keeps in it the names marked done (:meth:`KeySourceClient.mark_done`, pruned to what the
server still lists) and, for listings, the ETag plus a copy of the body so that a 304
costs nothing. Listings change the state only once they parsed cleanly; a file is marked
done by the caller once its fate is known (matched, or refused for good), so a failing
or lying server leaves it untouched.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import aiohttp

from agent.clock import Clock
from agent.config import KeySource
from agent.errors import ExportFileError, NetworkError
from agent.servertext import MESSAGE_LIMIT, server_text
from agent.sources import layouts
from agent.sources.base import MAX_CLOCK_SKEW_SECONDS, Candidate, Download, FetchLimits
from agent.sources.http import BytesProgress, HttpFetcher, NotFoundError, Sleep
from agent.sources.local import LocalDirectory

_LOGGER = logging.getLogger(__name__)

_ZIP_MAGIC = b"PK\x03\x04"
_DONE = "done"


class KeySourceClient:
    """Lists and downloads the export files of one source."""

    def __init__(
        self,
        source: KeySource,
        session: aiohttp.ClientSession,
        *,
        clock: Clock,
        max_bytes: int,
        state: dict[str, str],
        limits: FetchLimits | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if source.kind not in ("index", "cwa", "dir"):
            raise NetworkError(f"unknown key source kind {source.kind!r}")
        self.source = source
        self._clock = clock
        self._max_bytes = max_bytes
        self._state = state
        self._limits = limits or FetchLimits()
        self._http = HttpFetcher(session, clock=clock, limits=self._limits, sleep=sleep)
        self._local = (
            LocalDirectory(source.path, limits=self._limits) if source.kind == "dir" else None
        )
        self._prefix = f"{source.kind}:{source.url or source.path}:{source.country}|"

    # --- state -------------------------------------------------------------------------
    def _key(self, name: str) -> str:
        return self._prefix + name

    def done(self) -> set[str]:
        """Names already delivered (as recorded in the state)."""
        return {n for n in self._state.get(self._key(_DONE), "").split("\n") if n}

    def _set_done(self, names: set[str]) -> None:
        self._state[self._key(_DONE)] = "\n".join(sorted(names))

    @property
    def clock_skew_seconds(self) -> float | None:
        """Server ``Date`` minus the local clock, from the latest response (None: unknown)."""
        return self._http.last_clock_skew_seconds

    @property
    def clock_skewed(self) -> bool:
        """True when the latest response's Date was more than 10 minutes off."""
        skew = self.clock_skew_seconds
        return skew is not None and abs(skew) > MAX_CLOCK_SKEW_SECONDS

    async def _listing(self, url: str) -> tuple[bytes, Callable[[], None]]:
        """A listing body (fresh or, on 304, the cached copy) and a commit for the state."""
        etag_key, body_key = self._key("etag " + url), self._key("body " + url)
        cached = self._state.get(body_key)
        etag = self._state.get(etag_key) if cached is not None else None
        response = await self._http.get(url, max_bytes=self._limits.max_listing_bytes, etag=etag)
        if response.not_modified and cached is not None:
            return cached.encode("utf-8"), lambda: None
        body = response.body

        def commit() -> None:
            self._state.pop(etag_key, None)
            self._state.pop(body_key, None)
            if response.etag and len(body) <= self._limits.max_cached_listing_bytes:
                try:
                    self._state[body_key] = body.decode("utf-8")
                except UnicodeDecodeError:
                    return
                self._state[etag_key] = response.etag

        return body, commit

    # --- listing -------------------------------------------------------------------------
    async def candidates(self) -> list[Candidate]:
        """New files, oldest first, at most the per-cycle caps.

        Raises:
            NetworkError: the listing could not be fetched or is malformed.
        """
        if self._local is not None:
            done = self.done()
            found = await self._local.candidates(done)
            self._set_done(done & self._local.identities())
            return found
        if self.source.kind == "index":
            return await self._index_candidates()
        return await self._cwa_candidates()

    async def _index_candidates(self) -> list[Candidate]:
        url = self.source.url
        body, commit = await self._listing(url)
        names = layouts.parse_index(body, max_entries=self._limits.max_listing_entries)
        commit()
        done = self.done() & set(names)
        self._set_done(done)
        pending = [n for n in names if n not in done][-self._limits.max_files :]
        return [Candidate(layouts.index_file_url(url, n), n) for n in pending]

    def _today(self) -> dt.date:
        return dt.datetime.fromtimestamp(self._clock.wall(), tz=dt.UTC).date()

    async def _cwa_candidates(self) -> list[Candidate]:
        source, limits = self.source, self._limits
        root = layouts.cwa_root(source.url, source.country)
        body, commit = await self._listing(root)
        dates = layouts.parse_cwa_dates(body, max_entries=limits.max_listing_entries)
        commit()
        done = self.done()
        prefix = f"{source.country}/date/"
        today = self._today()
        hourly: list[Candidate] = []
        for day in (today - dt.timedelta(days=1), today):
            iso = day.isoformat()
            if iso in dates:
                continue
            try:
                hours_body, hours_commit = await self._listing(f"{root}/{iso}/hour")
            except NotFoundError:
                continue
            hours = layouts.parse_cwa_hours(hours_body)
            hours_commit()
            for hour in hours:
                name = f"{prefix}{iso}/hour/{hour}"
                if name not in done:
                    hourly.append(Candidate(f"{root}/{iso}/hour/{hour}", name))
        daily: list[Candidate] = []
        for iso in dates:
            name = prefix + iso
            hours_done = all(f"{name}/hour/{h}" in done for h in range(24))
            if name not in done and not hours_done:
                daily.append(Candidate(f"{root}/{iso}", name))
        oldest = dates[0] if dates else (today - dt.timedelta(days=1)).isoformat()
        self._set_done({n for n in done if n.startswith(prefix) and n[len(prefix) :] >= oldest})
        return daily[-limits.max_daily_files :] + hourly[-limits.max_hourly_files :]

    # --- download ------------------------------------------------------------------------
    async def download(
        self, candidate: Candidate, spool: Path, progress: BytesProgress | None = None
    ) -> Download:
        """Fetch one candidate completely, within the size cap, into the file ``spool``
        (created 0600; the caller removes it).

        Nothing is recorded as delivered here: the caller calls :meth:`mark_done` once the
        file's fate is known (matched, or refused for good).

        Raises:
            NetworkError: not fetched (see :class:`~agent.sources.http.HttpFetcher`).
            ExportFileError: the body is not a ZIP (an HTML page answered with 200).
        """
        if self._local is not None:
            size = await self._local.copy(candidate, spool, self._max_bytes)
            result = Download(candidate.url, spool, size, None, None)
        else:
            with _create_private(spool) as sink:
                response = await self._http.get(
                    candidate.url, max_bytes=self._max_bytes, sink=sink, progress=progress
                )
            result = Download(
                candidate.url,
                spool,
                response.size,
                response.server_date,
                response.clock_skew_seconds,
            )
        with spool.open("rb") as stream:
            magic = stream.read(len(_ZIP_MAGIC))
        if magic != _ZIP_MAGIC:
            raise ExportFileError(
                f"{candidate.url}: not a ZIP file (an HTML page or error text instead?)"
            )
        if result.clock_skewed:
            _LOGGER.warning(
                "key server clock differs from ours by %.0f s; not marking %s as done",
                result.clock_skew_seconds,
                server_text(candidate.name, MESSAGE_LIMIT),
            )
        return result

    def mark_done(self, candidate: Candidate) -> None:
        """Record ``candidate`` as delivered: it is not offered again while listed."""
        self._set_done(self.done() | {self._done_name(candidate)})

    def _done_name(self, candidate: Candidate) -> str:
        if self._local is not None:
            return self._local.identity(candidate)
        return candidate.name


def _create_private(path: Path) -> BinaryIO:
    """A new file readable and writable by this user only (never an existing one)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    return os.fdopen(fd, "wb")
