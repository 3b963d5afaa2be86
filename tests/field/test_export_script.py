"""scripts/field-export.sh on two real data directories, then the report from its output.

Each simulated device gets a real store (its own TEK and what it heard) and marks; the
script exports both with their keys, and ``field report`` matches each log exactly with
the other device's verified keys.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from agent.clock import en_interval_number, rolling_start_interval_number
from agent.field.marks import append_mark
from agent.keyschedule import OwnTek
from agent.models import Sighting
from agent.store import Store
from tests.field import simfield

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "field-export.sh"


async def make_device(data_dir: Path, tek: bytes, heard: list[Sighting], t0: float) -> None:
    start = rolling_start_interval_number(en_interval_number(t0))
    async with await Store.open(data_dir) as store:
        await store.save_own_teks([OwnTek(tek, start, max_broadcast_interval=start + 5)])
        await store.add_sightings(heard)


def export(data_dir: Path, out: Path, name: str) -> Path:
    env = {**os.environ, "CONTACT_AGENT": f"{sys.executable} -m agent"}
    result = subprocess.run(
        ["bash", str(SCRIPT), "-d", str(data_dir), "-o", str(out), "-n", name, "--with-keys"],
        capture_output=True, text=True, timeout=120, env=env,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert result.returncode == 0, result.stderr
    assert "own-keys.zip lets its holder" in result.stderr
    (folder,) = [p for p in out.iterdir() if p.is_dir() and p.name.startswith(f"field-{name}-")]
    return folder


@pytest.mark.slow
async def test_export_both_devices_then_report_with_their_keys(tmp_path: Path) -> None:
    if shutil.which("bash") is None or shutil.which("tar") is None:
        pytest.skip("needs bash and tar")
    today = time.time() // 86_400 * 86_400
    run = simfield.simulate(seed=5, t0=today - 86_400 + 3_600)  # yesterday 01:00 UTC
    dir_a, dir_b, out = tmp_path / "a", tmp_path / "b", tmp_path / "out"
    out.mkdir()
    await make_device(dir_a, run.a.tek, run.log_a, run.marks[0].time)
    await make_device(dir_b, run.b.tek, run.log_b, run.marks[0].time)
    for mark in run.marks:
        append_mark(dir_a / "marks.jsonl", mark)

    folder_a, folder_b = export(dir_a, out, "pi-a"), export(dir_b, out, "pi-b")
    assert (folder_a / "marks.jsonl").read_bytes() == (dir_a / "marks.jsonl").read_bytes()
    assert not (folder_b / "marks.jsonl").exists()
    assert len((folder_a / "sightings.jsonl").read_text().splitlines()) == len(run.log_a)
    preflight = json.loads((folder_a / "preflight.json").read_text())
    assert {c["name"] for c in preflight["checks"]} >= {"adapter", "clock"}
    with tarfile.open(f"{folder_a}.tar.gz") as archive:
        names = set(archive.getnames())
    assert f"{folder_a.name}/sightings.jsonl" in names
    assert f"{folder_a.name}/own-keys.zip" in names

    report_dir = tmp_path / "report"
    result = subprocess.run(
        [sys.executable, "-m", "agent", "field", "report",
         str(folder_a / "sightings.jsonl"), str(folder_b / "sightings.jsonl"),
         "--marks", str(folder_a / "marks.jsonl"), "--out", str(report_dir), "--no-plots",
         "--keys", str(folder_a / "own-keys.zip"), "--keys", str(folder_b / "own-keys.zip"),
         "--public-key", str(folder_a / "own-keys.pub.pem"),
         "--public-key", str(folder_b / "own-keys.pub.pem"), "--json"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    a_hears_b, b_hears_a = document["directions"]
    assert a_hears_b["matched_keys"] == b_hears_a["matched_keys"] == 1
    assert "decrypted" in a_hears_b["tx_source"]
    # The store keeps whole seconds, so the latency is the simulated one floored.
    first = a_hears_b["segments"][0]
    heard = [s.time for s in run.log_a if run.marks[0].time <= s.time < run.marks[1].time]
    assert first["detection_latency_seconds"] == pytest.approx(
        int(min(heard)) - run.marks[0].time, abs=1.0
    )
    assert a_hears_b["exposure_windows"] and not (report_dir / "timeline.png").exists()
