"""Retry delays: the one backoff schedule of the agent, and a server's ``Retry-After``.

:class:`Backoff` doubles a delay from ``initial`` up to ``maximum`` and multiplies it by a
random factor in ``[1 - jitter, 1 + jitter]`` so that many agents never retry in step;
:class:`Retries` counts the failures in a row of one long-running part (a radio part, a
daemon part) and gives the delay before its next try.
:func:`retry_after` reads the HTTP header (RFC 9110 §10.2.3: delay-seconds or an
HTTP-date) and caps it: whatever a server sends, the result is a finite number of
seconds between 0 and the cap, or None.
"""

from __future__ import annotations

import email.utils
import math
import random
from dataclasses import dataclass, field

_MAX_EXPONENT = 62
"""2**62 seconds is beyond any maximum: larger attempts cannot overflow a float."""


@dataclass(frozen=True, slots=True)
class Backoff:
    """``initial * 2**attempt`` seconds, at most ``maximum``, jittered."""

    initial: float
    maximum: float
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if not (0 < self.initial <= self.maximum and math.isfinite(self.maximum)):
            raise ValueError("backoff: need 0 < initial <= maximum, finite")
        if not 0 <= self.jitter < 1:
            raise ValueError("backoff: jitter must be in [0, 1)")

    def base(self, attempt: int) -> float:
        """The delay before jitter for the 0-based ``attempt``."""
        return min(self.maximum, self.initial * 2.0 ** min(max(attempt, 0), _MAX_EXPONENT))

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """The jittered delay for the 0-based ``attempt``."""
        factor = (rng or random).uniform(1 - self.jitter, 1 + self.jitter)
        return self.base(attempt) * factor


@dataclass(slots=True)
class Retries:
    """The failures in a row of one part, on a :class:`Backoff` schedule."""

    backoff: Backoff
    rng: random.Random = field(default_factory=random.SystemRandom)
    healthy_after: float | None = None
    """A run at least this long (seconds) before the failure starts over from the
    shortest delay (None: only :meth:`reset` does)."""
    failures: int = 0

    def next_delay(self) -> float:
        """The delay before the next try; counts one more failure."""
        delay = self.backoff.delay(self.failures, self.rng)
        self.failures += 1
        return delay

    def ran_for(self, seconds: float) -> None:
        """The part ran ``seconds`` before this failure: long enough, and it starts over."""
        if self.healthy_after is not None and seconds >= self.healthy_after:
            self.failures = 0

    def reset(self) -> None:
        self.failures = 0


def http_date(value: str | None) -> float | None:
    """An HTTP-date (``Date``, ``Retry-After``) as Unix seconds; None when unreadable."""
    if not value or len(value) > 64:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if parsed.tzinfo is None:
        return None
    try:
        return parsed.timestamp()
    except (OverflowError, ValueError, OSError):
        return None


def retry_after(value: str | None, now: float, cap: float) -> float | None:
    """``Retry-After`` (seconds or HTTP-date) in seconds from ``now``, capped at ``cap``.

    None when absent or unreadable (the caller's own backoff applies then). 400 digits,
    a date in the year 9999 or ``1e999`` all give ``cap``, never infinity.
    """
    if not value:
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():
        # compare as text: int("9" * 400) is fine, float() of it would be inf
        digits = text.lstrip("0") or "0"
        if len(digits) > 15:
            return cap
        return min(float(int(digits)), cap)
    when = http_date(text)
    if when is None:
        return None
    return min(max(0.0, when - now), cap)
