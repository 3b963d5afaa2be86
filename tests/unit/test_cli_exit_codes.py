"""One exit-code contract: 0 ok, 1 failed, 2 usage (bad option values too), 78 config;
a closed pipe ends quietly; OS errors a user causes are one line, never "internal error"."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from agent.cli import main
from tests.vectors import en_v1_2 as v


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "CONTACT_AGENT_CONFIG": ""},
    )


@pytest.mark.parametrize(
    ("args", "phrase"),
    [
        (["keys", "derive", "--tek", "zz", "--start", "1"], "--tek"),
        (["export", "sightings", "--since", "yesterday"], "--since"),
        (["mark", "--distance", "abc"], "--distance"),
        (["demo", "--agents", "99"], "--agents"),
        (["no-such-command"], "No such command"),
    ],
)
def test_bad_option_values_are_usage_errors(tmp_path: Path, args: list[str], phrase: str) -> None:
    result = run("--data-dir", str(tmp_path / "data"), *args)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and phrase in lines[0]
    assert "internal error" not in result.stderr


def test_a_closed_pipe_ends_quietly() -> None:
    """`keys derive --count 5000 | head -2`: no traceback, no message."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent", "keys", "derive", "--tek", v.TEK, "--start", "1",
         "--count", "5000"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    first = [proc.stdout.readline() for _ in range(2)]
    assert first[0].startswith(b"RPIK ")
    proc.stdout.close()  # what `head -2` does after two lines
    stderr = proc.stderr.read()
    assert proc.wait(timeout=60) == 1
    assert stderr == b""


def test_a_missing_directory_is_one_line(tmp_path: Path) -> None:
    target = tmp_path / "no-such-dir" / "out.jsonl"
    result = run("--data-dir", str(tmp_path / "data"), "export", "sightings", "-o", str(target))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines == [f"contact-agent: cannot write {target}: No such file or directory"]


@pytest.mark.parametrize(
    ("code", "text"),
    [
        (errno.EROFS, "Read-only file system"),
        (errno.EACCES, "Permission denied"),
        (errno.ENOENT, "No such file or directory"),
        (errno.ENOSPC, "No space left on device"),
    ],
)
def test_os_errors_a_user_causes_are_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int, text: str
) -> None:
    """Wherever in a command the OS refuses (here: opening the store), the user reads
    one line naming the path, exit status 1."""
    where = str(tmp_path / "data")

    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError(code, os.strerror(code), where)

    from agent.cli import data as data_commands

    monkeypatch.setattr(data_commands, "_with_store", refuse)
    result = CliRunner().invoke(main, ["--data-dir", where, "purge"])
    assert result.exit_code == 1
    assert result.stderr.strip() == f"contact-agent: {where}: {text}"


def test_an_unexpected_error_is_still_reported_as_internal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EIO, "Input/output error")

    from agent.cli import data as data_commands

    monkeypatch.setattr(data_commands, "_with_store", broken)
    result = CliRunner().invoke(main, ["--data-dir", str(tmp_path), "purge"])
    assert result.exit_code == 1
    assert "internal error" in result.stderr
