"""The written report: valid PNGs of the right size, and summaries that carry the numbers.

Logs are written with the project's own exporter (:mod:`agent.interchange`), and the
whole path is run once through the real command line.
"""

from __future__ import annotations

import json
import re
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from agent.field import plots
from agent.field.files import load_log, write_report
from agent.field.marks import append_mark
from agent.field.render import seconds_text
from agent.field.report import FieldReport
from agent.interchange import SIGHTING_FIELDS, RecordWriter, sighting_record
from agent.models import Sighting
from tests.field import simfield

needs_matplotlib = pytest.mark.skipif(
    not plots.matplotlib_available(),
    reason="matplotlib is not installed (scripts/setup.sh installs it): no plots to check",
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from the IHDR chunk, after checking the PNG's structure."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13
    body = data[16 : 16 + length]
    (crc,) = struct.unpack(">I", data[16 + length : 20 + length])
    assert crc == zlib.crc32(kind + body)
    assert data[-12:] == struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND"))
    width, height = struct.unpack(">II", body[:8])
    return width, height


def write_log(path: Path, sightings: list[Sighting]) -> None:
    fmt = "csv" if path.suffix == ".csv" else "jsonl"
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = RecordWriter(out, fmt, SIGHTING_FIELDS)
        for sighting in sightings:
            writer.write(sighting_record(sighting))


def table_rows(text: str, first_cell: str) -> list[list[str]]:
    """Markdown table rows whose first cell is ``first_cell``."""
    rows = []
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == first_cell:
            rows.append(cells)
    return rows


@pytest.mark.slow
@needs_matplotlib
def test_report_files_hold_the_numbers_and_the_pngs_open(
    tmp_path: Path, run: simfield.FieldRun, report: FieldReport
) -> None:
    files = write_report(report, tmp_path)
    assert png_size(files.plots["timeline"]) == plots.TIMELINE_SIZE_PX
    assert png_size(files.plots["histogram"]) == plots.HISTOGRAM_SIZE_PX
    from matplotlib.image import imread

    width, height = plots.TIMELINE_SIZE_PX
    assert imread(files.plots["timeline"]).shape[:2] == (height, width)

    markdown = files.markdown.read_text(encoding="utf-8")
    page = files.html.read_text(encoding="utf-8")
    assert "![RSSI and attenuation over time](timeline.png)" in markdown
    assert '<img src="histogram.png"' in page
    logs = {"A": run.log_a, "B": run.log_b}
    for direction in report.directions:
        section = markdown.split(f"## {direction.label}")[1].split("\n## ")[0]
        for stats in direction.segments:
            seg = stats.segment
            latency = simfield.expected_latency(logs[direction.receiver], seg.mark, seg.end)
            per_mark = section.split("### Per mark")[1].split("###")[0]
            (row,) = table_rows(per_mark, str(seg.number))
            assert row[1] == seg.mark.label
            assert row[4] == f"{latency:.1f} s" == seconds_text(stats.latency_seconds)
            assert row[3] == str(stats.count)
            assert f"<td>{row[4]}</td>" in page
        hist = direction.histogram
        labels = list(hist.counts)
        for i in range(len(hist.edges) - 1):
            (row,) = table_rows(section, f"{hist.bin_label(i)} dB")
            counts = [str(hist.counts[label][i]) for label in labels]
            assert row[1:] == counts
            cells = "".join(f"<td>{c}</td>" for c in [f"{hist.bin_label(i)} dB", *counts])
            assert f"<tr>{cells}</tr>" in page
        total = sum(sum(c) for c in hist.counts.values())
        assert total == sum(s.count for s in direction.segments)
    document = json.loads(files.json.read_text(encoding="utf-8"))
    assert document["plots"] == {"timeline": "timeline.png", "histogram": "histogram.png"}
    assert "rpi" not in files.json.read_text(encoding="utf-8")


def test_without_matplotlib_the_report_is_text_with_a_clear_note(
    tmp_path: Path, report: FieldReport, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    assert not plots.matplotlib_available()
    files = write_report(report, tmp_path)
    assert files.plots == {}
    assert not list(tmp_path.glob("*.png"))
    markdown = files.markdown.read_text(encoding="utf-8")
    assert "matplotlib is not installed" in markdown
    assert "![" not in markdown
    assert "matplotlib is not installed" in files.html.read_text(encoding="utf-8")
    assert "detection latency" in markdown


def _contact_agent(*args: str, block_matplotlib: bool = False) -> subprocess.CompletedProcess[str]:
    prelude = "import sys; sys.modules['matplotlib'] = None; " if block_matplotlib else ""
    code = prelude + "from agent.cli import main; main(prog_name='contact-agent')"
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60
    )


@pytest.mark.slow
def test_field_report_command_end_to_end(tmp_path: Path, run: simfield.FieldRun) -> None:
    log_a, log_b = tmp_path / "a.jsonl", tmp_path / "b.csv"
    write_log(log_a, run.log_a)
    write_log(log_b, run.log_b)
    assert load_log(log_b) == run.log_b  # the exporter's own format round-trips
    marks = tmp_path / "marks.jsonl"
    for mark in run.marks:
        append_mark(marks, mark)
    out = tmp_path / "out"
    result = _contact_agent(
        "--data-dir", str(tmp_path / "data"), "field", "report", str(log_a), str(log_b),
        "--marks", str(marks), "--out", str(out), "--tx-power", "-8", "--json",
    )
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    for direction, log in zip(document["directions"], (run.log_a, run.log_b), strict=True):
        for segment, mark in zip(direction["segments"], run.marks, strict=False):
            expected = simfield.expected_latency(log, mark, segment["end"])
            assert segment["detection_latency_seconds"] == pytest.approx(expected)
    if plots.matplotlib_available():  # else the test above skips, saying why
        assert png_size(out / "timeline.png") == plots.TIMELINE_SIZE_PX
    assert (out / "report.md").exists() and (out / "report.html").exists()

    text_only = tmp_path / "text-only"
    result = _contact_agent(
        "field", "report", str(log_a), str(log_b), "--marks", str(marks), "--out",
        str(text_only), block_matplotlib=True,
    )
    assert result.returncode == 0, result.stderr
    assert "note: matplotlib is not installed" in result.stderr
    assert re.search(r"A hears B: \d+ sightings; latency 1 m: \d+\.\d s", result.stdout)
    assert not list(text_only.glob("*.png"))


@pytest.mark.slow
def test_field_report_bad_log_is_one_line(tmp_path: Path, run: simfield.FieldRun) -> None:
    good, bad = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    write_log(good, run.log_a[:10])
    bad.write_text('{"time": 1714564800, "rpi": "zz", "aem": "00000000", "rssi": -60}\n')
    marks = tmp_path / "marks.jsonl"
    append_mark(marks, run.marks[0])
    result = _contact_agent(
        "field", "report", str(good), str(bad), "--marks", str(marks), "--out",
        str(tmp_path / "out"),
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"{bad}: line 1: rpi" in lines[0]
    assert not (tmp_path / "out").exists()
