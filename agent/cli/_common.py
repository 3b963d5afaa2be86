"""Small parsing helpers shared by the command modules.

A bad option value is a usage error: :class:`click.BadParameter` (exit status 2, with
the usage line), never a failed operation.
"""

from __future__ import annotations

import binascii
import sys
from typing import Any

import click


def parse_hex(name: str, text: str, length: int | None = None) -> bytes:
    """Decode a hex option value, with a clear message on bad input."""
    cleaned = text.strip().lower()
    if cleaned.startswith("0x"):
        cleaned = cleaned[2:]
    try:
        value = binascii.unhexlify(cleaned)
    except (binascii.Error, ValueError):
        raise click.BadParameter(f"must be hexadecimal, got {text!r}", param_hint=name) from None
    if length is not None and len(value) != length:
        raise click.BadParameter(
            f"must be {length} bytes ({2 * length} hex digits), got {len(value)} bytes",
            param_hint=name,
        )
    return value


class TerminalProgress:
    """A click progress bar per stage on stderr, for a person at a terminal: callable as
    ``progress(stage, done, total)``. Use it only when :meth:`wanted`."""

    LABELS = {
        "download": "downloading",
        "verify": "verifying",
        "match": "matching keys",
        "radio": "simulating the radio",
    }

    def __init__(self) -> None:
        self._stage = ""
        self._bar: Any = None
        self._pos = 0

    @staticmethod
    def wanted() -> bool:
        """Both output streams are a terminal: nobody parses what is printed."""
        return sys.stdout.isatty() and sys.stderr.isatty()

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage != self._stage:
            self.close()
            self._stage, self._pos = stage, 0
            self._bar = click.progressbar(
                length=total, label=self.LABELS.get(stage, stage), file=sys.stderr
            )
            self._bar.__enter__()
        if self._bar is not None and done > self._pos:
            self._bar.update(done - self._pos)
            self._pos = done

    def close(self) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None
