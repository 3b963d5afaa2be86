"""Key sources: where diagnosis-key exports come from (``docs/keys.md``; bad-input cases 12-19).

- ``index``: Google's key server layout, an ``index.txt`` listing export ZIPs;
- ``cwa``: the Corona-Warn-App layout, ``/version/v1/diagnosis-keys/country/{CC}/date``
  with daily files and hourly files for the current day;
- ``dir``: a local directory of export ZIPs.

A :class:`KeySourceClient` returns :class:`Candidate` files and downloads each into a
private spool file the caller names (:class:`Download`). Nothing here verifies or parses
exports: :mod:`agent.pipeline.fetch` does, one file at a time.
"""

from __future__ import annotations

from agent.sources.base import (
    MAX_CLOCK_SKEW_SECONDS,
    Candidate,
    Download,
    FetchLimits,
)
from agent.sources.client import KeySourceClient
from agent.sources.http import NotFoundError, ServerBusyError, make_session

__all__ = [
    "MAX_CLOCK_SKEW_SECONDS",
    "Candidate",
    "Download",
    "FetchLimits",
    "KeySourceClient",
    "NotFoundError",
    "ServerBusyError",
    "make_session",
]
