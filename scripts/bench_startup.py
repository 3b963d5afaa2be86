"""Start-up figures for ``scripts/bench``: how fast and small the CLI answers.

``contact-agent --help`` and ``contact-agent status`` (no daemon, a fresh user without a
data directory: the first command a new user types) are timed ``rounds`` times each,
interleaved with ``python -c pass`` (interpreter start-up, the in-run reference), and
reported as ratios of the medians. The peak memory of each (``VmHWM``, read by the
process itself as it exits) is reported in MB beside that of ``python -c pass``.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_refs import ROOT

_PEAK = (
    "import atexit, sys\n"
    "def _peak():\n"
    "    with open('/proc/self/status') as f:\n"
    "        kb = [l.split()[1] for l in f if l.startswith('VmHWM:')][0]\n"
    "    sys.stderr.write(f'\\n@@peak_kb {kb}\\n')\n"
    "atexit.register(_peak)\n"
)
"""Prepended to each measured program: report its own peak memory at exit."""


def _program(args: list[str]) -> str:
    if not args:
        return _PEAK
    return _PEAK + (
        f"sys.argv = ['contact-agent', *{args!r}]\nfrom agent.cli import main\nmain()\n"
    )


def _run(args: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and peak MB of one run."""
    began = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", _program(args)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    wall = time.perf_counter() - began
    if done.returncode != 0:
        raise RuntimeError(f"contact-agent {' '.join(args)} failed: {done.stderr.strip()}")
    peak_kb = int(done.stderr.rsplit("@@peak_kb ", 1)[1].split()[0])
    return wall, peak_kb / 1024


def startup(rounds: int) -> dict[str, Any]:
    """``--help`` and ``status`` against ``python -c pass``, measured in the same run."""
    with tempfile.TemporaryDirectory(prefix="ca-bench-") as scratch:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("CONTACT_AGENT_") and k != "INVOCATION_ID"
        }
        env.update(
            CONTACT_AGENT_DATA_DIR=str(Path(scratch) / "data"),
            XDG_CONFIG_HOME=scratch,
            LANG="C.UTF-8",
        )
        commands = {"python": [], "help": ["--help"], "status": ["status"]}
        walls: dict[str, list[float]] = {name: [] for name in commands}
        peaks: dict[str, float] = dict.fromkeys(commands, 0.0)
        for args in commands.values():  # warm the page cache once
            _run(args, env)
        for _ in range(rounds):
            for name, args in commands.items():
                wall, peak = _run(args, env)
                walls[name].append(wall)
                peaks[name] = max(peaks[name], peak)
    reference = statistics.median(walls["python"])
    result: dict[str, Any] = {
        "rounds": rounds,
        "python_startup_seconds": reference,
        "python_peak_mb": peaks["python"],
    }
    for name in ("help", "status"):
        seconds = statistics.median(walls[name])
        result[f"{name}_seconds"] = seconds
        result[f"{name}_over_startup"] = seconds / reference
        result[f"{name}_peak_mb"] = peaks[name]
    return result
