"""The native accelerator for the speed tests: built into a per-test-session cache.

Without a C compiler or libcrypto the native tests are skipped (the pure path is then
what runs); where both exist, the build must succeed, or the tests fail.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent import native


@pytest.fixture(scope="session")
def native_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("native")
    path.chmod(0o700)
    return path


@pytest.fixture(scope="session")
def kernel(native_cache: Path) -> Iterator[native.NativeKernel]:
    """A freshly built native kernel (not the user's cached one)."""
    libcrypto = native.libcrypto_path()
    compiler = shutil.which(os.environ.get("CC") or "cc") or shutil.which("gcc")
    if libcrypto is None or compiler is None:
        pytest.skip("no C compiler or no libcrypto: the native accelerator cannot be built")
    path = native.build(native_cache)
    assert path is not None, "a C compiler and libcrypto exist, but the build failed"
    yield native.NativeKernel(path, libcrypto)
