"""``contact-agent --version`` and ``keys derive``, run as a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from agent import __version__
from tests.vectors import en_v1_2 as v


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent", *args], capture_output=True, text=True, timeout=60
    )


@pytest.mark.slow
def test_version() -> None:
    result = run("--version")
    assert result.returncode == 0
    assert __version__ in result.stdout


@pytest.mark.slow
def test_keys_derive_json_prints_exactly_the_vector_table() -> None:
    result = run(
        "keys", "derive", "--tek", v.TEK, "--start", str(v.START_INTERVAL),
        "--count", "144", "--metadata", v.METADATA, "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    table = json.loads(result.stdout)
    assert table["TEK"] == v.TEK
    assert table["RPIK"] == v.RPIK
    assert table["AEMK"] == v.AEMK
    assert table["BLE_METADATA"] == v.METADATA
    assert table["CTINTERVAL_NUMBER_OF_GENERATED_KEY"] == v.START_INTERVAL
    assert table["KEY_GENERATION_SECONDS"] == v.KEY_GENERATION_SECONDS
    assert [(r["i"], r["rpi"], r["aem"]) for r in table["advertised"]] == v.ADVERTISED
    assert all(set(r) == {"i", "rpi", "aem"} for r in table["advertised"])


@pytest.mark.slow
def test_keys_derive_text_and_without_metadata() -> None:
    result = run("keys", "derive", "--tek", v.TEK, "--start", str(v.START_INTERVAL), "--count", "2")
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert lines[0] == f"RPIK {v.RPIK}"
    assert lines[2].split() == ["0", str(v.START_INTERVAL), v.ADVERTISED[0][1]]
    assert len(lines) == 4


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tek", "xyz", "--start", "1"], "--tek: must be hexadecimal"),
        (["--tek", "75c734c6", "--start", "1"], "--tek: must be 16 bytes"),
        (["--tek", v.TEK, "--start", "-1"], "--start: must not be negative"),
        (["--tek", v.TEK, "--start", "5000000000"], "interval number must be in 0..2^32-1"),
        (["--tek", v.TEK, "--start", "1", "--count", "0"], "--count: must be in 1..10000"),
        (["--tek", v.TEK, "--start", "1", "--metadata", "4008"], "--metadata: must be 4 bytes"),
        (["--tek", v.TEK, "--start", "1", "--metadata", "zz080000"], "--metadata: must be hex"),
    ],
)
def test_keys_derive_bad_input_is_one_clear_line(args: list[str], message: str) -> None:
    """A bad option value is a usage error: exit status 2, one line."""
    result = run("keys", "derive", *args)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert message in lines[0]


@pytest.mark.slow
def test_usage_error_is_exit_2() -> None:
    result = run("keys", "derive", "--start", "1")
    assert result.returncode == 2
    assert "Missing option '--tek'" in result.stderr


@pytest.mark.slow
def test_python_m_agent_is_the_same_program() -> None:
    result = run("--help")
    assert result.returncode == 0
    assert "keys" in result.stdout
