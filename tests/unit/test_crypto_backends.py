"""The crypto seam: both backends of the batch primitive equal the spec functions."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent import crypto
from agent.constants import TEK_ROLLING_PERIOD
from tests.vectors import en_v1_2

BACKENDS = list(crypto.batch_backends())
ROOT = Path(__file__).resolve().parents[2]


def _native_paths() -> list[str]:
    """The native backend's paths on this CPU: the x86 AES and SHA instructions (where
    the CPU has them) and OpenSSL (everywhere); both must give the spec's RPIs."""
    if "native" not in BACKENDS:
        return []
    from agent import _gaen

    paths = ["openssl"]
    previous = _gaen._path()
    try:
        _gaen._path("cpu")
        paths.append("cpu")
    except ValueError:
        pass
    finally:
        _gaen._path(previous)
    return paths


VARIANTS = [f"native-{path}" for path in _native_paths()] + ["pure"]


@pytest.fixture
def backend_variant(request: pytest.FixtureRequest) -> Iterator[str]:
    """A backend name, with the native backend's path set for the test."""
    name, _, path = str(request.param).partition("-")
    if not path:
        yield name
        return
    from agent import _gaen

    previous = _gaen._path(path)
    try:
        yield name
    finally:
        _gaen._path(previous)


def _run(name: str, teks: bytes, firsts: list[int], counts: list[int]) -> bytes:
    out = bytearray(16 * sum(counts))
    crypto.batch_backend(name)[1](
        teks,
        np.array(firsts, dtype=np.uint32).data,
        np.array(counts, dtype=np.uint32).data,
        out,
    )
    return bytes(out)


@pytest.mark.parametrize("backend_variant", VARIANTS, indirect=True)
def test_backends_reproduce_the_official_rpis(backend_variant: str) -> None:
    got = _run(
        backend_variant, bytes.fromhex(en_v1_2.TEK), [en_v1_2.START_INTERVAL], [TEK_ROLLING_PERIOD]
    )
    assert [got[16 * i : 16 * i + 16].hex() for i in range(TEK_ROLLING_PERIOD)] == [
        rpi for _, rpi, _ in en_v1_2.ADVERTISED
    ]


rows = st.lists(
    st.tuples(
        st.binary(min_size=16, max_size=16),
        st.integers(0, 2**32 - 400),
        st.integers(0, 300),  # longer than a day too
    ),
    max_size=8,
)


@pytest.mark.parametrize("backend_variant", VARIANTS, indirect=True)
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows)
def test_batch_equals_the_spec_functions(
    backend_variant: str, case: list[tuple[bytes, int, int]]
) -> None:
    expected = b"".join(
        b"".join(crypto.rpis(crypto.derive_rpik(tek), first, count)) for tek, first, count in case
    )
    got = _run(
        backend_variant,
        b"".join(tek for tek, _, _ in case),
        [first for _, first, _ in case],
        [count for _, _, count in case],
    )
    assert got == expected


@given(st.binary(min_size=16, max_size=16))
def test_rpik_by_midstates_equals_hkdf(tek: bytes) -> None:
    assert crypto._rpik_midstates(tek) == crypto.derive_rpik(tek)


@pytest.mark.parametrize("name", BACKENDS)
def test_sizes_are_checked(name: str) -> None:
    rpis_into = crypto.batch_backend(name)[1]
    firsts = np.array([1], dtype=np.uint32).data
    counts = np.array([2], dtype=np.uint32).data
    with pytest.raises(ValueError):
        rpis_into(bytes(15), firsts, counts, bytearray(32))
    with pytest.raises(ValueError):
        rpis_into(bytes(16), firsts, counts, bytearray(31))


def test_backend_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    assert crypto.batch_backend("PURE")[0] == "pure"
    assert crypto.batch_backend("auto")[0] == BACKENDS[0]
    monkeypatch.setenv(crypto.BACKEND_ENV, "pure")
    assert crypto.batch_backend()[0] == "pure"
    with pytest.raises(ValueError, match="unknown crypto backend"):
        crypto.batch_backend("rot13")
    monkeypatch.setattr(crypto, "_gaen", None)
    assert list(crypto.batch_backends()) == ["pure"]
    with pytest.raises(ValueError, match="not built"):
        crypto.batch_backend("native")


def test_nothing_is_compiled_or_loaded_from_a_cache_at_run_time() -> None:
    """The compiled backend is an installed module or nothing: the agent's code runs no
    compiler and loads no shared object of its own by path."""
    sources = [p for p in (ROOT / "agent").rglob("*.py") if "lab" not in p.parts]
    for path in sources:
        text = path.read_text()
        for needle in ('"cc"', '"gcc"', "CDLL(str(", "-shared", '.so"'):
            assert needle not in text, f"{path.relative_to(ROOT)}: {needle}"


def test_the_native_backend_is_built_where_a_compiler_exists() -> None:
    """On a machine with the build tools (CI, a developer's), the package build made it."""
    python_h = Path(sysconfig.get_paths()["include"]) / "Python.h"
    has_tools = python_h.exists() and (
        subprocess.run(
            ["sh", "-c", "command -v cc && test -e /usr/include/openssl/evp.h"],
            capture_output=True,
            check=False,
        ).returncode
        == 0
    )
    if not has_tools:
        pytest.skip("no C compiler, Python or OpenSSL headers: the pure backend runs")
    assert "native" in BACKENDS, f"{sys.executable}: agent._gaen was not built"
