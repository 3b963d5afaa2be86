"""Access to the shared research folder beside the checkout (``../shared``).

Tests that read it skip when it is absent (a bare clone) but must fail, not skip, in CI
where it is present: callers use :func:`shared_path` and then assert on the content.
"""

from __future__ import annotations

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
