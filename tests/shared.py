"""Access to the shared research folder beside the checkout (``../shared``).

Tests that read it skip when it is absent (a bare clone) but must fail, not skip, in CI
where it is present: callers use :func:`shared_path` and then assert on the content.

Also the privacy scan of logs and output: :func:`identifier_leaks` looks for identifiers
in every encoding a log line could use (hex in either case, bytes repr, base64).
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def shared_path(relative: str) -> Path:
    """Path of a shared file, or skip the test when the folder is missing outside CI."""
    path = SHARED / relative
    if not path.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{path} is missing in CI, where ../shared must be present")
        pytest.skip(f"{path} not present (no ../shared beside the checkout)")
    return path


def identifier_forms(identifier: bytes) -> dict[str, bytes]:
    """The ways a log line could spell an identifier (TEK, RPI, AEM): hex in either case,
    the inside of a Python bytes repr, and base64 (standard, URL-safe, unpadded)."""
    forms = {
        "hex": identifier.hex().encode(),
        "HEX": identifier.hex().upper().encode(),
        "repr": repr(identifier)[2:-1].encode(),
        "base64": base64.b64encode(identifier),
        "base64url": base64.urlsafe_b64encode(identifier),
    }
    forms["base64 unpadded"] = forms["base64"].rstrip(b"=")
    forms["base64url unpadded"] = forms["base64url"].rstrip(b"=")
    return forms


def identifier_leaks(text: bytes, identifiers: list[bytes]) -> list[tuple[int, str]]:
    """(index, form) of every identifier found in ``text`` in any of its forms."""
    return [
        (index, form)
        for index, identifier in enumerate(identifiers)
        for form, pattern in identifier_forms(identifier).items()
        if pattern in text
    ]
