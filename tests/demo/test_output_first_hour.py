"""What a new user sees from `simulate` and the demo report: progress on a terminal only,
labelled columns, a left-aligned HTML report that links each pair's report."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
from pathlib import Path

import pytest

from agent.field.render import Links, Paragraph, to_html, to_markdown
from agent.lab.demo.fieldtext import ROW_HEADER, ROW_UNITS, field_lines
from agent.lab.demo.scenario import load_scenario
from agent.lab.demo.simfield import simulate

ROOT = Path(__file__).resolve().parents[2]
STORY = ROOT / "scenarios" / "story.toml"


def _read_all(fd: int, proc: subprocess.Popen[bytes]) -> bytes:
    out = b""
    while True:
        ready, _, _ = select.select([fd], [], [], 120)
        if not ready:
            raise TimeoutError("no output from the command for 120 s")
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the other side closed
            break
        if not chunk:
            break
        out += chunk
    proc.wait(timeout=120)
    return out


def test_simulate_shows_progress_on_a_terminal() -> None:
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent", "simulate", str(STORY)],
        stdout=follower,
        stderr=follower,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "COLUMNS": "100", "TERM": "xterm"},
    )
    os.close(follower)
    try:
        text = _read_all(leader, proc).decode(errors="replace")
    finally:
        os.close(leader)
    assert proc.returncode == 0, text
    assert "simulating the radio" in text
    assert "matching keys" in text
    assert "precision 1.000" in text


def test_simulate_into_a_pipe_prints_no_progress() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "agent", "simulate", str(STORY)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert "simulating" not in result.stdout


@pytest.mark.slow
def test_listed_pairs_have_labelled_columns() -> None:
    result = simulate(load_scenario(ROOT / "scenarios" / "office.toml"))
    lines = field_lines(result, limit=3)
    title = next(i for i, line in enumerate(lines) if line.startswith("false alarms"))
    assert lines[title + 1] == ROW_HEADER and lines[title + 2] == ROW_UNITS
    for label in ("receiver", "transmitter", "UTC day", "close", "weighted", "closest"):
        assert label in ROW_HEADER
    row = lines[title + 3]
    # every value sits under its header: the header's columns end where the row's do
    assert len(row) == len(ROW_HEADER)


def test_html_is_left_aligned_and_links_each_pair_report() -> None:
    blocks = [
        Paragraph("B was notified, C was not."),
        Links((("A-B: field report", "A-B/report.md", "A-B/report.html"),)),
    ]
    page = to_html(blocks, "contact-agent demo")
    assert "text-align:right" not in page and "text-align:left" in page
    assert '<li><a href="A-B/report.html">A-B: field report</a></li>' in page
    assert "- [A-B: field report](A-B/report.md)" in to_markdown(blocks)


def test_demo_report_lines_give_a_url_and_say_when_plots_are_missing(tmp_path: Path) -> None:
    from agent.cli import demo as demo_command

    files = {"markdown": str(tmp_path / "demo.md"), "html": str(tmp_path / "demo.html")}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(demo_command, "matplotlib_available", lambda: True)
        assert demo_command.report_lines(files) == [
            f"report: {tmp_path / 'demo.md'} (and demo.html; open file://{tmp_path}/demo.html)"
        ]
        patch.setattr(demo_command, "matplotlib_available", lambda: False)
        note, report = demo_command.report_lines(files)
    assert note.startswith("plots: not drawn, matplotlib is missing")
    assert "scripts/setup.sh" in note
    assert report.startswith("report: ")
