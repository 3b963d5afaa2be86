"""``keys show`` and ``match`` memory figures for ``scripts/bench``: one big export read
whole by a command.

A signed export of ``keys`` random keys (every one valid: the last 13 days) and one of
as many revised keys are made once in the cache. Each command runs in a fresh process
with its output sent to /dev/null and reports its own peak memory (``VmHWM``) as it
exits: ``keys show`` (text and ``--json``) of the key file, and ``match`` (no
sightings, clock trust off) of the key file and of the revised-key file.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_refs import ROOT
from bench_startup import _program


def _inputs(cache: Path, keys: int) -> Path:
    return cache / f"show-v1-{keys}"


def make_inputs(cache: Path, keys: int) -> Path:
    """The two signed exports and their public key, made once."""
    base = _inputs(cache, keys)
    if base.exists():
        return base
    from agent.clock import en_interval_number
    from agent.export import generate_signing_key, public_key_pem, write_export
    from agent.models import ReportType, TemporaryExposureKey

    cache.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".build-", dir=cache))
    now = en_interval_number(time.time())
    day = now - now % 144 - 144
    rows = [
        TemporaryExposureKey(
            key_data=os.urandom(16),
            rolling_start_interval_number=day - 144 * (i % 13),
            transmission_risk_level=i % 9,
            report_type=ReportType.CONFIRMED_TEST,
            days_since_onset_of_symptoms=(i % 29) - 14,
        )
        for i in range(keys)
    ]
    signing = generate_signing_key()
    stamps = {"start_timestamp": (day - 13 * 144) * 600, "end_timestamp": day * 600}
    (scratch / "keys.zip").write_bytes(write_export(rows, signing, **stamps))
    (scratch / "revised.zip").write_bytes(
        write_export(rows[:10], signing, revised_keys=rows[10:], **stamps)
    )
    (scratch / "authority.pem").write_bytes(public_key_pem(signing))
    os.replace(scratch, base)
    return base


def _peak_mb(args: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and peak MB of ``contact-agent ARGS``, its output discarded."""
    began = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", _program(args)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    wall = time.perf_counter() - began
    if done.returncode != 0:
        raise RuntimeError(f"contact-agent {' '.join(args)} failed: {done.stderr.strip()}")
    return wall, int(done.stderr.rsplit("@@peak_kb ", 1)[1].split()[0]) / 1024


def show(cache: Path, keys: int) -> dict[str, Any]:
    base = make_inputs(cache, keys)
    pem = str(base / "authority.pem")
    results: dict[str, Any] = {"keys": keys}
    with tempfile.TemporaryDirectory(prefix="ca-bench-") as scratch:
        config = Path(scratch) / "config.toml"
        config.write_text("[clock]\nrequire_sync = false\n")
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONTACT_AGENT_")}
        env.update(CONTACT_AGENT_DATA_DIR=str(Path(scratch) / "data"), LANG="C.UTF-8")
        commands = {
            "show_text": ["keys", "show", str(base / "keys.zip")],
            "show_json": ["keys", "show", str(base / "keys.zip"), "--json"],
            "match_keys": [
                "--config",
                str(config),
                "match",
                str(base / "keys.zip"),
                "--public-key",
                pem,
            ],
            "match_revised": [
                "--config",
                str(config),
                "match",
                str(base / "revised.zip"),
                "--public-key",
                pem,
            ],
        }
        for name, args in commands.items():
            wall, peak = _peak_mb(args, env)
            results[f"{name}_seconds"] = wall
            results[f"{name}_peak_mb"] = peak
    return results
