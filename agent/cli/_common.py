"""Small parsing helpers shared by the command modules."""

from __future__ import annotations

import binascii

from agent.errors import MalformedInputError


def parse_hex(name: str, text: str, length: int | None = None) -> bytes:
    """Decode a hex option value, with a clear message on bad input."""
    cleaned = text.strip().lower()
    if cleaned.startswith("0x"):
        cleaned = cleaned[2:]
    try:
        value = binascii.unhexlify(cleaned)
    except (binascii.Error, ValueError):
        raise MalformedInputError(f"{name} must be hexadecimal, got {text!r}") from None
    if length is not None and len(value) != length:
        raise MalformedInputError(
            f"{name} must be {length} bytes ({2 * length} hex digits), got {len(value)} bytes"
        )
    return value
