"""``fetch``: download new exports from the configured key sources, then match them."""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from agent.clock import Clock, TrustDecision
from agent.config import Config
from agent.errors import ClockUntrustedError, ConfigError, ExportFileError, NetworkError
from agent.export import PublicKeyRing
from agent.pipeline.cycle import (
    CycleReport,
    ExportInput,
    Notifier,
    Progress,
    RingSource,
    match_exports,
)
from agent.servertext import MESSAGE_LIMIT, server_text
from agent.sources import KeySourceClient, ServerBusyError
from agent.store import LAST_FETCH_STATE_KEY, Store

_LOGGER = logging.getLogger(__name__)

SOURCES_STATE_KEY = "keys.sources"
"""JSON of the key sources' state (files delivered, listing ETags)."""


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

    def fail(self, name: str, exc: NetworkError | ExportFileError) -> None:
        self.failed.append((server_text(name, MESSAGE_LIMIT), server_text(exc, MESSAGE_LIMIT)))
        if isinstance(exc, ServerBusyError):
            self.retry_after = max(self.retry_after or 0.0, exc.retry_after)

    def summary(self, now: float) -> dict[str, object]:
        cycle = self.cycle
        return {
            "at": now,
            "ok": self.refused is None and not self.failed,
            "downloaded": len(self.downloaded),
            "failed": [f"{name}: {reason}" for name, reason in self.failed],
            "refused": self.refused,
            "clock_skew_seconds": self.clock_skew_seconds,
            "files_processed": len(cycle.files_processed) if cycle else 0,
            "files_skipped": len(cycle.files_skipped) if cycle else 0,
            "files_rejected": len(cycle.files_rejected) if cycle else 0,
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
) -> FetchReport:
    """Download new exports from every configured source, then :func:`match_exports`.

    Refuses (raises) while the clock is untrusted. When a key server's ``Date`` differs
    from our clock by more than 10 minutes nothing is matched and the sources' state is
    not saved, so every file is offered again next time.

    Raises:
        ClockUntrustedError: the clock is not trusted (Appendix A).
    """
    if not trust.state.trusted:
        raise ClockUntrustedError(f"not matching: {trust.reason}")
    report = FetchReport()
    state: dict[str, str] = json.loads(await store.get_state(SOURCES_STATE_KEY) or "{}")
    exports: list[ExportInput] = []
    for source in config.keys.sources:
        client = KeySourceClient(
            source, session, clock=clock, max_bytes=config.keys.max_download_bytes, state=state
        )
        label = f"{source.kind}:{source.url or source.path}"
        try:
            candidates = await client.candidates()
        except (NetworkError, ExportFileError) as exc:
            report.fail(label, exc)
            continue
        for candidate in candidates:
            try:
                download = await client.download(candidate)
            except (NetworkError, ExportFileError) as exc:
                report.fail(candidate.name, exc)
                continue
            if download.clock_skew_seconds is not None:
                report.clock_skew_seconds = download.clock_skew_seconds
            if download.clock_skewed:
                report.refused = (
                    f"the key server's clock differs from ours by "
                    f"{download.clock_skew_seconds:.0f} s (more than 10 min): not matching"
                )
            exports.append(ExportInput(f"{label}|{candidate.name}", download.content))
            report.downloaded.append(candidate.name)
            if progress is not None:
                progress("download", len(report.downloaded), len(candidates))
    now = clock.wall()
    if report.refused is None:
        report.cycle = await match_exports(
            store,
            exports,
            ring=ring,
            risk=config.risk,
            now=now,
            source="fetch",
            workers=workers,
            notifier=notifier,
            progress=progress,
            consume=True,
        )
        await store.set_state(SOURCES_STATE_KEY, json.dumps(state, sort_keys=True))
    else:
        _LOGGER.warning("%s", report.refused)
    await store.set_state(LAST_FETCH_STATE_KEY, json.dumps(report.summary(now)))
    return report
