"""Counters, gauges and the Prometheus textfile."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import pytest

from agent.daemon.metrics import SPECS, Metrics, write_textfile

_SAMPLE = re.compile(r"^contact_agent_[a-z0-9_]+ -?[0-9.e+-]+$")


def test_render_is_valid_exposition_format() -> None:
    metrics = Metrics()
    metrics.inc("adverts_heard_total", 3)
    metrics.set("last_fetch_duration_seconds", 1.25)
    metrics.set("advertising", True)
    text = metrics.render()
    lines = text.splitlines()
    assert text.endswith("\n")
    assert len(lines) == 3 * len(SPECS)
    for spec, (help_line, type_line, sample) in zip(
        SPECS, zip(lines[0::3], lines[1::3], lines[2::3], strict=True), strict=True
    ):
        assert help_line.startswith(f"# HELP contact_agent_{spec.name} ")
        assert type_line == f"# TYPE contact_agent_{spec.name} {spec.kind}"
        assert _SAMPLE.match(sample), sample
    assert "contact_agent_adverts_heard_total 3" in lines
    assert "contact_agent_last_fetch_duration_seconds 1.25" in lines
    assert "contact_agent_advertising 1" in lines


def test_counters_only_go_up_and_names_are_checked() -> None:
    metrics = Metrics()
    with pytest.raises(ValueError, match="only go up"):
        metrics.inc("rotations_total", -1)
    with pytest.raises(KeyError):
        metrics.inc("advertising")  # a gauge
    with pytest.raises(KeyError):
        metrics.set("rotations_total", 5)  # a counter
    with pytest.raises(KeyError):
        metrics.inc("no_such_metric")
    metrics.inc("rotations_total")
    metrics.inc("rotations_total")
    assert metrics.snapshot()["rotations_total"] == 2


def test_textfile_is_replaced_atomically(tmp_path: Path) -> None:
    target = tmp_path / "collector" / "contact_agent.prom"
    write_textfile(target, "first 1\n")
    inode = target.stat().st_ino
    write_textfile(target, "second 2\n")
    assert target.read_text() == "second 2\n"
    assert target.stat().st_ino != inode  # a new file renamed over the old one
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert [p.name for p in target.parent.iterdir()] == ["contact_agent.prom"]


def test_failed_write_leaves_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "m.prom"
    target.mkdir()  # rename over a directory fails, as a full or read-only disk would
    (target / "keep").write_text("x")
    with pytest.raises(OSError):
        write_textfile(target, "new 2\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.prom"]
    assert (target / "keep").read_text() == "x"
