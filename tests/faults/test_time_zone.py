"""Bad input 45: a time-zone or DST change has no effect (all internal time is UTC epoch
seconds and EN intervals). The same commands in processes under UTC and under zones with
offsets and DST give identical answers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

TEK = "75c734c6dd1a782de7a965da5eb93125"
ZONES = ["UTC", "Asia/Almaty", "Australia/Lord_Howe"]


def run(tz: str, data: Path, *args: str) -> dict[str, object]:
    env = {**os.environ, "TZ": tz, "CONTACT_AGENT_DATA_DIR": str(data)}
    env["CONTACT_AGENT_CONFIG"] = str(data.parent / "empty.toml")  # every default
    done = subprocess.run(
        [sys.executable, "-m", "agent", *args], env=env, capture_output=True, text=True, check=True
    )
    return dict(json.loads(done.stdout))


@pytest.mark.slow
def test_time_zone_and_dst_do_not_change_intervals_rpis_or_status(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (tmp_path / "empty.toml").write_text("")  # a config named must exist
    derive = ["keys", "derive", "--tek", TEK, "--start", "2642976", "--count", "3", "--json"]
    derived = [run(tz, data, *derive) for tz in ZONES]
    assert all(d == derived[0] for d in derived)
    statuses = [run(tz, data, "status", "--json") for tz in ZONES]
    for status in statuses:
        status.pop("clock", None)  # holds the time of the question
        status.pop("current_interval", None)
    assert all(s == statuses[0] for s in statuses)
