"""Load the fault scripts of ``scripts/`` as modules (they are programs, not a package)."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def load_script(name: str) -> ModuleType:
    """``scripts/<name>.py`` as a module (cached in sys.modules)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def require_dbus_daemon() -> None:
    """Skip without dbus-daemon; under CI its absence is a failure."""
    from agent.sim import find_dbus_daemon

    if find_dbus_daemon() is None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("dbus-daemon is missing; CI must install it (Debian: dbus-daemon)")
        pytest.skip("dbus-daemon is not installed (Debian package 'dbus-daemon')")
