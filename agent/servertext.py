"""Text from a server (or from a file it listed), made safe to quote in a message or log.

A key or verification server chooses its error texts, reason phrases and file names. A
hostile one could put an identifier into the journal that way, or escape sequences, or a
wall of text. :func:`server_text` is the one place such text passes through before it
reaches a message: control and other non-printable characters go, whitespace collapses to
single spaces, hexadecimal runs of 16 or more digits (also split by ``-`` or ``:``, when
they hold a letter) and base64-looking runs of identifier length (20 characters or more)
become ``…``, and the result is cut to a short length.
"""

from __future__ import annotations

import itertools
import re
from typing import Final

ELIDED: Final = "…"
DEFAULT_LIMIT: Final = 60
"""Characters kept of a single server-supplied field (a reason, an error code)."""
MESSAGE_LIMIT: Final = 240
"""Characters kept of a whole message that quotes server text (a URL and a reason)."""

_HEX_RUN = re.compile(r"[0-9A-Fa-f]{16,}")
_HEX_SPLIT = re.compile(r"[0-9A-Fa-f]+(?:[-:][0-9A-Fa-f]+)+")
_BASE64_RUN = re.compile(r"[A-Za-z0-9+/_-]{20,}={0,2}")
_MIN_HEX_DIGITS = 16
_MIN_BASE64_CHARS = 20
"""16 bytes (a key or an identifier) are 22 characters of base64."""


def _class(char: str) -> int:
    if char.isdigit():
        return 0
    if char.isupper():
        return 1
    return 2


def _looks_random(run: str) -> bool:
    """Base64 of random bytes changes between digit, upper and lower case often and
    rarely repeats a character; words, CamelCase names and numbers do not (a random
    22-character run passes with a probability of about 99.9 %)."""
    body = [c for c in run if c.isalnum()]
    if len(run.rstrip("=")) < _MIN_BASE64_CHARS or not body:
        return False
    changes = sum(1 for a, b in itertools.pairwise(body) if _class(a) != _class(b))
    return changes * 4 >= len(body) and len(set(body)) * 5 >= len(body) * 3


def _split_hex(match: re.Match[str]) -> str:
    run = match.group(0)
    digits = sum(1 for c in run if c not in "-:")
    has_letter = any(c.isalpha() for c in run)
    return ELIDED if digits >= _MIN_HEX_DIGITS and has_letter else run


def _base64(match: re.Match[str]) -> str:
    run = match.group(0)
    return ELIDED if _looks_random(run) else run


def server_text(value: object, limit: int = DEFAULT_LIMIT) -> str:
    """``value`` as one short printable line with identifier-like runs elided."""
    text = " ".join(str(value).split())
    text = "".join(c for c in text if c.isprintable())
    text = _HEX_RUN.sub(ELIDED, text)
    text = _HEX_SPLIT.sub(_split_hex, text)
    text = _BASE64_RUN.sub(_base64, text)
    if len(text) > limit:
        text = text[: max(0, limit - 1)] + ELIDED
    return text
