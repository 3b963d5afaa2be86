"""Value types and limits shared by the key sources."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final

MAX_CLOCK_SKEW_SECONDS: Final = 600.0
"""A server ``Date`` more than 10 minutes from the local clock: report, do not match."""


@dataclass(frozen=True, slots=True)
class Candidate:
    """A file a source offers for download."""

    url: str
    """``https://...``, ``http://127.0.0.1...`` or ``file://...``."""
    name: str
    """Stable name within the source: the index line, ``DE/date/2020-07-01[/hour/5]`` or
    the file name in a local directory."""


@dataclass(frozen=True, slots=True)
class Download:
    """A downloaded export (not yet verified), in a spool file the caller removes."""

    url: str
    path: Path
    """The private spool file holding the body."""
    size: int
    server_date: float | None
    """The server's ``Date`` header as Unix seconds (None for local files or no header)."""
    clock_skew_seconds: float | None
    """``server_date - local wall clock`` at reception (None when unknown)."""

    @property
    def clock_skewed(self) -> bool:
        """True when server and local clock disagree by more than 10 minutes."""
        return (
            self.clock_skew_seconds is not None
            and abs(self.clock_skew_seconds) > MAX_CLOCK_SKEW_SECONDS
        )

    def __repr__(self) -> str:
        return f"Download({self.url!r}, {self.size} bytes, skew={self.clock_skew_seconds})"


@dataclass(frozen=True, slots=True)
class FetchLimits:
    """Timeouts, caps and the retry schedule of one source (bad-input cases 12-19)."""

    connect_timeout: float = 15.0
    total_timeout: float = 300.0
    """Per request, including every byte of the body (20 MiB over 100 KB/s: 210 s)."""
    read_timeout: float = 30.0
    """Longest wait for the next bytes of a response."""
    min_bytes_per_second: float = 2048.0
    throughput_grace_seconds: float = 15.0
    """The minimum throughput applies once a body has been streaming this long."""
    max_listing_bytes: int = 1024 * 1024
    max_listing_entries: int = 5000
    max_daily_files: int = 15
    max_hourly_files: int = 24
    """Files per cycle: <= 15 daily + 24 hourly (an index offers the newest 39)."""
    max_local_files: int = 500
    retries: int = 3
    """Extra attempts after the first for 5xx, 429, 408, resets and connect failures."""
    backoff_initial: float = 2.0
    backoff_max: float = 60.0
    backoff_jitter: float = 0.2
    """Each delay is multiplied by a random factor in [1 - jitter, 1 + jitter]."""
    max_retry_after: float = 120.0
    """A longer Retry-After ends this cycle with :class:`ServerBusyError` instead."""
    retry_after_cap: float = 86_400.0
    """No Retry-After counts for more than this (``keys.max_retry_after_seconds``)."""
    max_redirects: int = 3
    """Hops followed; only to https (or from loopback to loopback over http)."""
    max_cached_listing_bytes: int = 64 * 1024
    """Listings up to this size are kept in the state so a 304 can reuse them."""

    @property
    def max_files(self) -> int:
        return self.max_daily_files + self.max_hourly_files
