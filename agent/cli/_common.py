"""Small parsing helpers shared by the command modules.

A bad option value is a usage error: :class:`click.BadParameter` (exit status 2, with
the usage line), never a failed operation.
"""

from __future__ import annotations

import binascii

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
