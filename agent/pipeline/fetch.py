"""``fetch``: download new exports from the configured key sources, then match them.

Memory stays bounded whatever servers send: each download is streamed to a private spool
file (0600, in a 0700 ``spool`` directory of the data directory), then verified and
parsed on its own before the next one is fetched; only the parsed keys of accepted files
are kept. A cycle downloads at most ``keys.max_cycle_bytes`` (each source still gets its
first file, so one hostile source cannot starve the others) and takes at most
``keys.max_files_per_source`` files of a source; the rest is deferred to a cycle soon
after. Every download has a deadline (``keys.file_deadline_seconds``) and the downloads
of a cycle together another (``keys.cycle_deadline_seconds``).

A file refused by verification is refused for good: it is marked done at once (the
sources' state is saved) and its SHA-256 is remembered, so neither a restart nor the same
bytes under another name cost a second download-and-refuse. Files that verified are
marked done only once they are matched and stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import aiohttp

from agent.clock import Clock, TrustDecision, en_interval_number
from agent.config import Config
from agent.errors import ClockUntrustedError, ConfigError, ExportFileError, NetworkError
from agent.export import ParsedExport, PublicKeyRing, read_export_keys
from agent.jsonout import dumps
from agent.pipeline.cycle import (
    CycleReport,
    Notifier,
    Progress,
    RingSource,
    match_verified,
)
from agent.servertext import MESSAGE_LIMIT, server_text
from agent.sources import Candidate, FetchLimits, KeySourceClient, ServerBusyError
from agent.store import LAST_FETCH_STATE_KEY, Store

_LOGGER = logging.getLogger(__name__)

SOURCES_STATE_KEY = "keys.sources"
"""JSON of the key sources' state (files delivered, listing ETags)."""
SPOOL_DIR = "spool"
"""Under the data directory: one private folder per running cycle."""


@dataclass(slots=True)
class FetchActivity:
    """What a running cycle is doing now (for ``status``); no identifiers."""

    source: str | None = None
    file: str | None = None
    file_bytes: int = 0
    cycle_bytes: int = 0
    files: int = 0


@dataclass(slots=True)
class FetchReport:
    """One fetch: what was downloaded, what failed, and the matching cycle (if any)."""

    downloaded: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    """(source or file, reason) of listings and downloads that failed."""
    clock_skew_seconds: float | None = None
    refused: str | None = None
    """Why nothing was matched this time (server clock disagrees), or None."""
    cycle: CycleReport | None = None
    retry_after: float | None = None
    """The longest Retry-After (seconds) a server asked for beyond this cycle's patience."""
    deferred: int = 0
    """Files left for the next cycle (byte budget, file cap or cycle deadline)."""
    limit: str | None = None
    """The limit that deferred files, as a sentence (logged once)."""

    def fail(self, name: str, exc: NetworkError | ExportFileError) -> None:
        self.failed.append((server_text(name, MESSAGE_LIMIT), server_text(exc, MESSAGE_LIMIT)))
        if isinstance(exc, ServerBusyError):
            self.retry_after = max(self.retry_after or 0.0, exc.retry_after)

    def defer(self, count: int, why: str) -> None:
        self.deferred += count
        if self.limit is None:
            self.limit = why
            _LOGGER.warning("key fetch: %s", why)

    def summary(self, now: float) -> dict[str, object]:
        cycle = self.cycle
        rejected = cycle.files_rejected if cycle else []
        warning = None
        if rejected:
            warning = f"{len(rejected)} files refused (forged or malformed): {rejected[0][1]}"
        return {
            "at": now,
            "ok": self.refused is None and not self.failed and not rejected,
            "downloaded": len(self.downloaded),
            "failed": [f"{name}: {reason}" for name, reason in self.failed],
            "refused": self.refused,
            "warning": warning,
            "rejected": [f"{name}: {reason}" for name, reason in rejected],
            "deferred": self.deferred,
            "limit": self.limit,
            "clock_skew_seconds": self.clock_skew_seconds,
            "files_processed": len(cycle.files_processed) if cycle else 0,
            "files_skipped": len(cycle.files_skipped) if cycle else 0,
            "files_rejected": len(rejected),
            "matched_keys": cycle.matched_keys if cycle else 0,
            "new_windows": len(cycle.new_window_ids) if cycle else 0,
            "retry_after_seconds": self.retry_after,
        }


def config_ring(config: Config, base_dir: Path | None) -> Callable[[], PublicKeyRing]:
    """A picklable factory of the pinned ``[keys] public_keys`` (checked once here).

    Raises:
        ConfigError: no key pinned, or a key file that cannot be loaded.
    """
    if not config.keys.public_keys:
        raise ConfigError(
            "config: [keys] public_keys is empty: exports cannot be verified, so nothing "
            "is matched (add the health authority's key id, version and pem_file)"
        )
    factory = functools.partial(PublicKeyRing.from_config, config.keys.public_keys, base_dir)
    factory()
    return factory


def spool_root(data_dir: Path) -> Path:
    return data_dir / SPOOL_DIR


def clear_spool(data_dir: Path) -> None:
    """Remove every leftover spool file (a cycle killed mid-way); run at start-up."""
    root = spool_root(data_dir)
    if root.is_dir() and not root.is_symlink():
        shutil.rmtree(root, ignore_errors=True)


def _new_spool(data_dir: Path, stale_after: float) -> Path:
    """A new private folder for one cycle's downloads; folders of cycles that died
    (untouched for ``stale_after`` seconds) are removed on the way."""
    root = spool_root(data_dir)
    root.mkdir(mode=0o700, exist_ok=True)
    os.chmod(root, 0o700)
    now = time.time()
    for entry in os.scandir(root):
        with contextlib.suppress(OSError):
            if now - entry.stat(follow_symlinks=False).st_mtime > stale_after:
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path, ignore_errors=True)
                else:
                    os.unlink(entry.path)
    return Path(tempfile.mkdtemp(prefix="cycle-", dir=root))  # 0700, ours alone


def _hash_file(path: Path) -> bytes:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(1024 * 1024):
            digest.update(chunk)
    return digest.digest()


def _verify_file(path: Path, ring: PublicKeyRing, now_interval: int) -> ParsedExport:
    """Verify and parse one spooled export (in a thread); its bytes are freed on return."""
    return read_export_keys(path.read_bytes(), ring, now_interval)


def source_limits(config: Config) -> FetchLimits:
    """The HTTP limits of every source under ``config``."""
    keys = config.keys
    return replace(
        FetchLimits(),
        total_timeout=min(FetchLimits().total_timeout, keys.file_deadline_seconds),
        retry_after_cap=keys.max_retry_after_seconds,
    )


@dataclass(slots=True)
class _Cycle:
    """The state of one fetch cycle while it downloads and verifies."""

    store: Store
    config: Config
    pinned: PublicKeyRing
    now: float
    spool: Path
    report: FetchReport
    cycle: CycleReport
    activity: FetchActivity
    progress: Progress | None
    state: dict[str, str]
    accepted: list[tuple[str, ParsedExport]] = field(default_factory=list)
    matched_later: list[tuple[KeySourceClient, Candidate]] = field(default_factory=list)
    spooled: int = 0

    async def save_state(self) -> None:
        await self.store.set_state(SOURCES_STATE_KEY, dumps(self.state, sort_keys=True))

    async def source(self, client: KeySourceClient, label: str, deadline: float) -> None:
        """Every new file of one source, one at a time, within the cycle's limits."""
        keys = self.config.keys
        report = self.report
        self.activity.source, self.activity.file, self.activity.file_bytes = label, None, 0
        loop = asyncio.get_running_loop()
        seconds = min(keys.file_deadline_seconds, max(0.0, deadline - loop.time()))
        try:
            async with asyncio.timeout(seconds):
                candidates = await client.candidates()
        except TimeoutError:
            report.fail(label, NetworkError(f"no listing within {seconds:.0f} s"))
            return
        except (NetworkError, ExportFileError) as exc:
            report.fail(label, exc)
            return
        if len(candidates) > keys.max_files_per_source:
            report.defer(
                len(candidates) - keys.max_files_per_source,
                f"{label} offers {len(candidates)} new files; taking "
                f"{keys.max_files_per_source} per cycle (keys.max_files_per_source)",
            )
            candidates = candidates[: keys.max_files_per_source]
        for number, candidate in enumerate(candidates):
            left = len(candidates) - number
            # each source gets its first file whatever the others spent: one hostile
            # source cannot starve the rest (a file is at most keys.max_download_bytes)
            if number > 0 and self.activity.cycle_bytes >= keys.max_cycle_bytes:
                report.defer(
                    left,
                    f"{self.activity.cycle_bytes} bytes downloaded this cycle, the budget is "
                    f"{keys.max_cycle_bytes} (keys.max_cycle_bytes): the rest waits",
                )
                return
            if loop.time() >= deadline:
                report.defer(
                    left,
                    f"the downloads took the cycle's {keys.cycle_deadline_seconds:.0f} s "
                    "(keys.cycle_deadline_seconds): the rest waits",
                )
                return
            await self._file(client, candidate, deadline)

    async def _file(self, client: KeySourceClient, candidate: Candidate, deadline: float) -> None:
        keys = self.config.keys
        report, activity = self.report, self.activity
        self.spooled += 1
        path = self.spool / f"{self.spooled:05d}.zip"
        activity.file, activity.file_bytes = candidate.name, 0
        before = activity.cycle_bytes

        def received(size: int) -> None:
            activity.file_bytes = size
            activity.cycle_bytes = before + size

        loop = asyncio.get_running_loop()
        seconds = min(keys.file_deadline_seconds, max(0.0, deadline - loop.time()))
        try:
            try:
                async with asyncio.timeout(seconds):
                    download = await client.download(candidate, path, received)
            except TimeoutError:
                raise NetworkError(
                    f"{candidate.url}: not complete within {seconds:.0f} s "
                    "(keys.file_deadline_seconds); download abandoned"
                ) from None
            except (NetworkError, ExportFileError) as exc:
                report.fail(candidate.name, exc)
                return
            activity.cycle_bytes = before + download.size
            activity.files += 1
            report.downloaded.append(candidate.name)
            if self.progress is not None:
                self.progress("download", activity.files, activity.files)
            if download.clock_skew_seconds is not None:
                report.clock_skew_seconds = download.clock_skew_seconds
            if download.clock_skewed:
                report.refused = (
                    f"the key server's clock differs from ours by "
                    f"{download.clock_skew_seconds:.0f} s (more than 10 min): not matching"
                )
            if report.refused is not None:
                return  # nothing is matched, so nothing is worth verifying
            await self._verify(client, candidate, path)
        except NetworkError as exc:
            report.fail(candidate.name, exc)
        finally:
            path.unlink(missing_ok=True)

    async def _verify(self, client: KeySourceClient, candidate: Candidate, path: Path) -> None:
        name = f"{self.activity.source}|{candidate.name}"
        sha256 = await asyncio.to_thread(_hash_file, path)
        if await self.store.is_file_processed(sha256):
            self.cycle.files_skipped.append(name)
            client.mark_done(candidate)
            return
        known = await self.store.rejected_file_reason(sha256)
        if known is not None:
            reason = f"refused before: {known}"
        else:
            try:
                parsed = await asyncio.to_thread(
                    _verify_file, path, self.pinned, en_interval_number(self.now)
                )
            except ExportFileError as exc:
                reason = str(exc) or type(exc).__name__
                await self.store.remember_rejected_file(
                    sha256, source=name, reason=reason, rejected_at=self.now
                )
            else:
                self.accepted.append((name, parsed))
                self.cycle.counters.update(parsed.dropped)
                self.matched_later.append((client, candidate))
                return
        _LOGGER.warning("rejected %s: %s", name, reason)
        self.cycle.files_rejected.append((name, reason))
        client.mark_done(candidate)  # refused for good: never downloaded again
        await self.save_state()


async def fetch_and_match(
    store: Store,
    config: Config,
    session: aiohttp.ClientSession,
    *,
    clock: Clock,
    trust: TrustDecision,
    ring: RingSource,
    notifier: Notifier | None = None,
    progress: Progress | None = None,
    workers: int | None = None,
    activity: FetchActivity | None = None,
) -> FetchReport:
    """Download, verify and parse new exports from every configured source (see the
    module docstring), then match the accepted ones (:func:`match_verified`).

    Refuses (raises) while the clock is untrusted. When a key server's ``Date`` differs
    from our clock by more than 10 minutes nothing is matched and no file is marked done,
    so every file is offered again next time.

    Raises:
        ClockUntrustedError: the clock is not trusted (docs/daemon.md, "Clock trust").
    """
    if not trust.state.trusted:
        raise ClockUntrustedError(f"not matching: {trust.reason}")
    report = FetchReport()
    state: dict[str, str] = json.loads(await store.get_state(SOURCES_STATE_KEY) or "{}")
    now = clock.wall()
    pinned = ring if isinstance(ring, PublicKeyRing) else ring()
    limits = source_limits(config)
    stale_after = 2 * config.keys.cycle_deadline_seconds + 3600
    spool = await asyncio.to_thread(_new_spool, store.data_dir, stale_after)
    run = _Cycle(
        store,
        config,
        pinned,
        now,
        spool,
        report,
        CycleReport(),
        activity if activity is not None else FetchActivity(),
        progress,
        state,
    )
    loop = asyncio.get_running_loop()
    deadline = loop.time() + config.keys.cycle_deadline_seconds
    try:
        for source in config.keys.sources:
            client = KeySourceClient(
                source,
                session,
                clock=clock,
                max_bytes=config.keys.max_download_bytes,
                state=state,
                limits=limits,
            )
            label = f"{source.kind}:{source.url or source.path}"
            await run.source(client, label, deadline)
    finally:
        run.activity.source = run.activity.file = None
        await asyncio.to_thread(shutil.rmtree, spool, True)
    now = clock.wall()
    if report.refused is None:
        files, later = run.accepted, run.matched_later
        report.cycle = await match_verified(
            store,
            files,
            run.cycle,
            risk=config.risk,
            now=now,
            source="fetch",
            workers=workers,
            notifier=notifier,
            progress=progress,
        )
        for client, candidate in later:
            client.mark_done(candidate)
        await run.save_state()
    else:
        _LOGGER.warning("%s", report.refused)
    await store.set_state(LAST_FETCH_STATE_KEY, dumps(report.summary(now)))
    return report
