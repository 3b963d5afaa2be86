"""The one place logging is configured: levels, format, and redaction of identifiers.

No TEK, RPI or AEM may reach a log at any level, in any encoding. Two layers keep them out:

- Libraries that log parameters or payloads at DEBUG are held at WARNING whatever
  ``--debug`` says: aiosqlite prints every SQL statement with its parameters (an own TEK
  as a Python ``b'...'`` repr, every RPI heard), dbus-fast prints message bodies (service
  data), bleak and bless print advertisement data, aiohttp prints requests and payloads.
- Every line passes through :class:`RedactingFormatter`, which replaces every run the
  one detector :mod:`agent.identifiers` finds -- 16 hex digits or more (either case,
  also split by ``-``, ``:`` or spaces), a Python bytes repr, a list of 16 byte values,
  a random-looking base64 run, a Bluetooth device address -- with ``[redacted]``. That
  is a safety net for what a library or a future debug line might still print; the
  agent's own lines never format an identifier in the first place. (Bluetooth SIG
  UUIDs such as the Exposure Notification service's stay readable.)
"""

from __future__ import annotations

import logging
import sys
from typing import Final, TextIO

from agent.identifiers import elide_identifiers

QUIET_LIBRARIES: Final = ("aiosqlite", "dbus_fast", "bleak", "bless", "aiohttp")
"""Loggers held at WARNING even with ``--debug`` (they print parameters or payloads)."""

REDACTED: Final = "[redacted]"


def redact(text: str) -> str:
    """``text`` with every identifier-looking run (:mod:`agent.identifiers`) replaced."""
    return elide_identifiers(text, REDACTED)


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
