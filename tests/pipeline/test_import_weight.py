"""Imported sightings weigh the time they stand for, through the real import and match.

Found by hand: sightings imported without recorded scans counted 120 s each, so
sightings 30 s apart turned a 7.5-minute contact into about 30 weighted minutes (over
the 15-minute threshold: a false notification).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from agent import crypto
from agent.clock import en_interval_number
from agent.payload import Metadata
from tests.pipeline.conftest import Authority, new_key
from tests.pipeline.test_cli import YESTERDAY, _config, _match, _run


def _sightings(tek: bytes, start: int, count: int, every: int) -> str:
    rpik, aemk = crypto.derive_rpik(tek), crypto.derive_aemk(tek)
    metadata = bytes(Metadata(tx_power_dbm=-8))
    lines = []
    for i in range(count):
        t = start + i * every
        rpi = crypto.rpi(rpik, en_interval_number(t))
        aem = crypto.encrypt_aem(aemk, rpi, metadata)
        lines.append(json.dumps({"time": t, "rpi": rpi.hex(), "aem": aem.hex(), "rssi": -60}))
    return "\n".join(lines) + "\n"


async def _imported_windows(
    tmp_path: Path, authority: Authority, start: int, count: int, every: int
) -> list[dict[str, float]]:
    key = new_key(day=YESTERDAY)
    log = tmp_path / f"heard-{start}-{every}.jsonl"
    log.write_text(_sightings(key.key_data, start, count, every))
    data = tmp_path / f"data-{start}-{every}"
    config = _config(tmp_path, authority)
    base = ("--data-dir", str(data), "--config", str(config))
    code, out, err = await _run(*base, "import", "sightings", str(log))
    assert code == 0, err
    export = tmp_path / "keys.zip"
    export.write_bytes(authority.export([key], batch_start=time.time() - 3600))
    code, out, err = await _match(
        data, config, authority, str(export), "--key-id", "310", "--key-version", "v1", "--json"
    )
    assert code == 0, err
    windows: list[dict[str, float]] = json.loads(out)["exposure_windows"]
    return windows


async def test_thirty_sightings_thirty_seconds_apart_weigh_fifteen_minutes(
    tmp_path: Path, authority: Authority
) -> None:
    # 10:00:15 onwards: the stream crosses an interval boundary (a new RPI) at 10:10
    start = YESTERDAY * 600 + 10 * 3600 + 15
    (window,) = await _imported_windows(tmp_path, authority, start, 30, 30)
    assert 14 * 60 <= window["duration_seconds"] <= 16 * 60
    assert 14 * 60 <= window["score"] <= 16 * 60  # attenuation 52 dB: weight 1


@pytest.mark.slow
async def test_sparse_and_dense_streams(tmp_path: Path, authority: Authority) -> None:
    # one sighting every 2 s for 10 minutes: 10 minutes, not 10 x 120 s
    start = YESTERDAY * 600 + 14 * 3600
    (dense,) = await _imported_windows(tmp_path, authority, start, 300, 2)
    assert 9 * 60 <= dense["duration_seconds"] <= 11 * 60
    # sightings 4 minutes apart: each stands for the gap (capped at 5 min by GAEN)
    start = YESTERDAY * 600 + 16 * 3600
    (sparse,) = await _imported_windows(tmp_path, authority, start, 5, 240)
    assert 19 * 60 <= sparse["duration_seconds"] <= 21 * 60
