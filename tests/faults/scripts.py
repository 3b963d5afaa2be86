"""Load the fault scripts of ``scripts/`` as modules (they are programs, not a package)."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from tests.daemon.conftest import require_dbus_daemon

__all__ = ["base", "harness", "load_script", "require_dbus_daemon"]

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


@pytest.fixture
def harness() -> ModuleType:
    """``scripts/fault_harness.py``: the simulated air and ``contact-agent run``."""
    return load_script("fault_harness")


@pytest.fixture
def base(harness: ModuleType) -> Iterator[Path]:
    """A short working directory (Unix socket paths), removed afterwards."""
    path: Path = harness.short_dir("ca-t-")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
