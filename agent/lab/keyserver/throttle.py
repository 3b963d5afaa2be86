"""Throttling of verification attempts for the test key server: token buckets per client
and for the whole server, and a memory of each client's wrong guesses.

Every map here is bounded (least recently seen clients are forgotten first), so no
stream of requests from ever new addresses grows the server's memory without end.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

MAX_CLIENTS = 10_000
"""Clients remembered at most; the least recently seen are forgotten first."""


@dataclass
class _Bucket:
    tokens: float
    updated: float


class TokenBuckets:
    """``capacity`` attempts at once, refilled at ``rate`` per second, per key."""

    def __init__(self, capacity: float, rate: float, *, max_keys: int = MAX_CLIENTS) -> None:
        self.capacity = capacity
        self.rate = rate
        self._max_keys = max_keys
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def take(self, key: str, now: float) -> float:
        """0 when an attempt is allowed (and counted), else seconds until the next one."""
        bucket = self._buckets.pop(key, None) or _Bucket(self.capacity, now)
        elapsed = max(0.0, now - bucket.updated)
        bucket.tokens = min(self.capacity, bucket.tokens + elapsed * self.rate)
        bucket.updated = now
        self._buckets[key] = bucket
        while len(self._buckets) > self._max_keys:
            self._buckets.popitem(last=False)
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.rate

    def __len__(self) -> int:
        return len(self._buckets)


class WrongGuesses:
    """Wrong codes per client within ``window`` seconds (bounded like the buckets)."""

    def __init__(self, window: float, *, max_keys: int = MAX_CLIENTS) -> None:
        self.window = window
        self._max_keys = max_keys
        self._seen: OrderedDict[str, tuple[int, float]] = OrderedDict()

    def count(self, key: str, now: float) -> int:
        count, since = self._seen.get(key, (0, now))
        return count if now - since < self.window else 0

    def add(self, key: str, now: float) -> None:
        count = self.count(key, now)
        since = self._seen.pop(key, (0, now))[1] if count else now
        self._seen[key] = (count + 1, since)
        while len(self._seen) > self._max_keys:
            self._seen.popitem(last=False)

    def __len__(self) -> int:
        return len(self._seen)


def retry_after(seconds: float) -> str:
    """A ``Retry-After`` value: whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds)))
