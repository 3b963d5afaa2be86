"""Fixtures for the daemon tests: short directories (Unix socket paths) and private buses.

Without a dbus-daemon binary the bus tests are skipped locally but fail under CI.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from agent.lab.sim import PrivateBus, find_dbus_daemon


def require_dbus_daemon() -> None:
    if find_dbus_daemon() is None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("dbus-daemon is missing; CI must install it (Debian: dbus-daemon)")
        pytest.skip("dbus-daemon is not installed (Debian package 'dbus-daemon')")




@pytest.fixture
def session_bus() -> Iterator[str]:
    """Address of a private session bus."""
    require_dbus_daemon()
    with PrivateBus() as bus:
        yield bus.address


@pytest.fixture
def system_bus() -> Iterator[str]:
    """Address of a private bus standing in for the system bus."""
    require_dbus_daemon()
    with PrivateBus() as bus:
        yield bus.address
