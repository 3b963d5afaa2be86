"""Shared helpers of the key-source tests."""

from __future__ import annotations

import itertools
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from agent.clock import Clock, SystemClock
from agent.config import KeySource
from agent.export import read_verified_export
from agent.sources import Candidate, Download, FetchLimits, KeySourceClient
from tests.export.factory import make_keys, ring_for, signed_export

FAST = FetchLimits(
    connect_timeout=2.0,
    total_timeout=5.0,
    read_timeout=0.5,
    min_bytes_per_second=1000.0,
    throughput_grace_seconds=0.3,
    retries=2,
    backoff_initial=0.5,
    backoff_max=4.0,
)


class Sleeps:
    """Records the backoff delays instead of waiting them out."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


class SpoolingClient(KeySourceClient):
    """A client whose ``download(candidate)`` spools to a temporary folder and marks the
    file done when the server clock agrees (what the fetch pipeline does for a file that
    was matched)."""

    _numbers = itertools.count()
    _folder = Path(tempfile.mkdtemp(prefix="ca-spool-"))

    async def download(  # type: ignore[override]
        self, candidate: Candidate, spool: Path | None = None, progress: object = None
    ) -> Download:
        path = spool or self._folder / f"{next(self._numbers)}.zip"
        result = await super().download(candidate, path)
        if not result.clock_skewed:
            self.mark_done(candidate)
        return result


def client(
    source: KeySource,
    session: object,
    state: dict[str, str],
    *,
    clock: Clock | None = None,
    max_bytes: int = 1_000_000,
    limits: FetchLimits = FAST,
    sleeps: Sleeps | None = None,
) -> SpoolingClient:
    return SpoolingClient(
        source,
        session,  # type: ignore[arg-type]
        clock=clock or SystemClock(),
        max_bytes=max_bytes,
        state=state,
        limits=limits,
        sleep=sleeps or Sleeps(),
    )


def export_bytes(signing_key: ec.EllipticCurvePrivateKey, count: int = 3) -> bytes:
    return signed_export(make_keys(count), signing_key)


def verified_count(download: Download, signing_key: ec.EllipticCurvePrivateKey) -> int:
    return len(read_verified_export(download.path.read_bytes(), ring_for(signing_key)).keys)
