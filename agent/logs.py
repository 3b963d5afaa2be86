"""The one place logging is configured: levels, format, and redaction of identifiers.

No TEK, RPI or AEM may reach a log at any level, in any encoding. Two layers keep them out:

- Libraries that log parameters or payloads at DEBUG are held at WARNING whatever
  ``--debug`` says: aiosqlite prints every SQL statement with its parameters (an own TEK
  as a Python ``b'...'`` repr, every RPI heard), dbus-fast prints message bodies (service
  data), bleak and bless print advertisement data, aiohttp prints requests and payloads.
- Every line passes through :class:`RedactingFormatter`, which replaces anything that
  looks like 16 bytes or more of binary data -- a run of 32 hex digits (either case),
  a Python bytes repr, a list of 16 byte values, a base64 run (outside URLs) -- with
  ``[redacted]``. That is a safety net for what a library or a future debug line might
  still print; the agent's own lines never format an identifier in the first place.
  (UUIDs such as the Exposure Notification service's stay readable.)
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Final, TextIO

QUIET_LIBRARIES: Final = ("aiosqlite", "dbus_fast", "bleak", "bless", "aiohttp")
"""Loggers held at WARNING even with ``--debug`` (they print parameters or payloads)."""

REDACTED: Final = "[redacted]"

_BINARY: Final = re.compile(
    r"""
      (?<![0-9A-Fa-f])[0-9A-Fa-f]{32,}(?![0-9A-Fa-f])          # hex, either case
    | (?:[0-9A-Fa-f]{2}[:\ -]){15,}[0-9A-Fa-f]{2}              # hex with separators
    | \bb(?P<q>['"])(?:\\.|(?!(?P=q)).){16,}?(?P=q)            # b'\x01...' / b"..."
    | \[(?:\s*\d{1,3}\s*,){15,}\s*\d{1,3}\s*\]                 # [1, 254, ...]
    | (?<![A-Za-z0-9+/=_-])[A-Za-z0-9+/_-]{21,}={0,2}          # base64 candidate
    """,
    re.VERBOSE,
)


def _looks_like_base64(text: str) -> bool:
    """Random bytes in base64 mix both cases with a digit, a symbol or padding; words,
    CamelCase names and lower-case paths do not. (Unpadded base64 of only letters cannot
    be told from a word; nothing here writes identifiers that way.)"""
    body = text.rstrip("=")
    if len(body) < 21:
        return False
    upper = sum(c.isupper() for c in body)
    lower = sum(c.islower() for c in body)
    digits = sum(c.isdigit() for c in body)
    if text.endswith("=") and len(text) % 4 == 0:  # padded: the length says base64
        return upper + digits >= 2
    other = digits > 0 or any(c in "+/_-" for c in body)
    return upper >= 2 and lower >= 2 and other


_UUID: Final = re.compile(r"[0-9A-Fa-f]{8}-(?:[0-9A-Fa-f]{4}-){3}[0-9A-Fa-f]{12}")


def redact(text: str) -> str:
    """``text`` with every run that could encode 16 or more bytes replaced."""

    def replace(match: re.Match[str]) -> str:
        found = match.group(0)
        if _UUID.fullmatch(found):
            return found
        if found[0] not in "[b" and not re.fullmatch(r"[0-9A-Fa-f:\ -]+", found):
            word_start = max(text.rfind(" ", 0, match.start()), text.rfind("\n", 0, match.start()))
            in_url = "://" in text[word_start + 1 : match.start()]
            return REDACTED if _looks_like_base64(found) and not in_url else found
        return REDACTED

    return _BINARY.sub(replace, text)


class RedactingFormatter(logging.Formatter):
    """Formats as usual (message, exception, stack), then redacts the whole line."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def configure_logging(level: int, stream: TextIO | None = None) -> None:
    """Root handler at ``level`` with redaction; noisy libraries held at WARNING.

    Like :func:`logging.basicConfig`, it leaves a root logger that already has someone
    else's handlers alone (a host application, a test runner) apart from the libraries'
    levels; a handler of an earlier call is replaced.
    """
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(max(level, logging.WARNING))
    root = logging.getLogger()
    ours = [h for h in root.handlers if isinstance(h.formatter, RedactingFormatter)]
    if len(ours) != len(root.handlers):
        return
    for old in ours:
        root.removeHandler(old)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(RedactingFormatter("%(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(level)
