"""Fixtures for the daemon tests: short directories (Unix socket paths) and private buses."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon.buses import DBUS_DAEMON, dbus_daemon


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A directory with a short path: Unix socket paths must stay under 108 bytes."""
    path = Path(tempfile.mkdtemp(prefix="ca-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def session_bus(short_dir: Path) -> Iterator[str]:
    """Address of a private session bus."""
    if DBUS_DAEMON is None:
        pytest.skip("dbus-daemon not installed")
    with dbus_daemon(short_dir / "session") as address:
        yield address


@pytest.fixture
def system_bus(short_dir: Path) -> Iterator[str]:
    """Address of a private bus standing in for the system bus."""
    if DBUS_DAEMON is None:
        pytest.skip("dbus-daemon not installed")
    with dbus_daemon(short_dir / "system") as address:
        yield address
