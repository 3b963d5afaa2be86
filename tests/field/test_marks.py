"""Ground-truth marks: ``contact-agent mark`` writes valid lines; bad input is one line."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from agent.errors import AgentError, MalformedInputError
from agent.field.marks import (
    MARKS_FILE_NAME,
    Mark,
    append_mark,
    load_marks,
    new_mark,
    parse_marks,
    parse_time,
)


def contact_agent(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent", "--data-dir", str(data_dir), *args],
        capture_output=True, text=True, timeout=60,
    )


@pytest.mark.slow
def test_mark_command_appends_valid_lines(tmp_path: Path) -> None:
    first = contact_agent(tmp_path, "mark", "--distance", "1.5", "--note", "table")
    assert first.returncode == 0, first.stderr
    assert "mark 1: 1.5 m" in first.stdout
    second = contact_agent(
        tmp_path, "mark", "--distance", "10", "--wall", "--at", "2024-05-01T14:30:00+02:00"
    )
    assert second.returncode == 0, second.stderr
    assert "mark 2: 10 m, wall at 2024-05-01T12:30:00Z" in second.stdout
    third = contact_agent(tmp_path, "mark", "--end", "--at", "1714573800.5")
    assert third.returncode == 0, third.stderr

    path = tmp_path / MARKS_FILE_NAME
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 3
    records = [json.loads(line) for line in lines]
    assert records[0]["distance_m"] == 1.5 and records[0]["note"] == "table"
    assert records[0]["wall"] is False and isinstance(records[0]["time"], float)
    assert records[1] == {"time": 1714566600.0, "distance_m": 10.0, "note": "", "wall": True}
    assert records[2]["distance_m"] is None
    marks = load_marks(path)
    assert [m.label for m in marks] == ["10 m, wall", "end", "1.5 m"]  # sorted by time
    assert (path.stat().st_mode & 0o777) != 0  # a real file


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "phrase"),
    [
        (["--distance", "-1"], "must not be negative"),
        (["--distance", "abc"], "number of metres"),
        (["--distance", "nan"], "finite"),
        (["--distance", "5000"], "beyond"),
        (["--distance", "1", "--at", "yesterday"], "neither Unix seconds nor an ISO 8601"),
        (["--distance", "1", "--at", "1714573800000"], "not between 2020 and 2100"),
        (["--distance", "1", "--at", "2019-12-31T23:00:00Z"], "not between 2020 and 2100"),
        (["--note", "x"], "either --distance METRES or --end"),
        (["--distance", "1", "--end"], "either --distance METRES or --end"),
    ],
)
def test_mark_bad_input_is_one_clear_line_and_nothing_is_written(
    tmp_path: Path, args: list[str], phrase: str
) -> None:
    path = tmp_path / MARKS_FILE_NAME
    append_mark(path, new_mark(distance_m=2.0, time=1_714_570_000.0))
    before = path.read_bytes()
    result = contact_agent(tmp_path, "mark", *args)
    assert result.returncode == 2  # bad option values are usage errors
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert phrase in lines[0]
    assert "Traceback" not in result.stderr
    assert path.read_bytes() == before


def test_parse_time_accepts_seconds_and_iso_8601() -> None:
    assert parse_time("1714573800") == 1714573800.0
    assert parse_time(" 1714573800.25 ") == 1714573800.25
    assert parse_time("2024-05-01T12:30:00Z") == 1714566600.0
    assert parse_time("2024-05-01T14:30:00+02:00") == 1714566600.0
    local = datetime(2024, 5, 1, 12, 30).astimezone().timestamp()
    assert parse_time("2024-05-01T12:30:00") == local


def test_append_fences_off_a_torn_last_line(tmp_path: Path) -> None:
    path = tmp_path / "sub" / MARKS_FILE_NAME
    assert append_mark(path, new_mark(distance_m=1.0, time=1_714_570_000.0)) == 1
    with path.open("ab") as handle:
        handle.write(b'{"time": 17145')  # a crash in the middle of a write
    number = append_mark(path, new_mark(distance_m=3.0, time=1_714_570_600.0, note="hall"))
    assert number == 3
    lines = path.read_text(encoding="utf-8").splitlines()
    assert json.loads(lines[2])["note"] == "hall"
    with pytest.raises(MalformedInputError, match="line 2: not valid JSON"):
        load_marks(path)


@pytest.mark.parametrize(
    ("line", "phrase"),
    [
        ('{"distance_m": 1}', "missing field 'time'"),
        ('{"time": 1714570000}', "missing field 'distance_m'"),
        ('{"time": "soon", "distance_m": 1}', "time must be Unix seconds"),
        ('{"time": 1714570000, "distance_m": "far"}', "distance_m must be a number or null"),
        ('{"time": 1714570000, "distance_m": -2}', "must not be negative"),
        ('{"time": 1714570000, "distance_m": 1, "wall": "yes"}', "wall true or false"),
        ('{"time": NaN, "distance_m": 1}', "not between 2020 and 2100"),
        ("[1, 2]", "must be a JSON object"),
    ],
)
def test_parse_marks_names_the_bad_line(line: str, phrase: str) -> None:
    good = '{"time": 1714570000, "distance_m": 1}'
    with pytest.raises(MalformedInputError) as info:
        parse_marks([good, "", line], source="marks.jsonl")
    assert str(info.value).startswith("marks.jsonl line 3: ")
    assert phrase in str(info.value)


def test_marks_round_trip_and_labels() -> None:
    mark = new_mark(distance_m=10.0, time=1_714_570_000.0, note="behind the wall", wall=True)
    (again,) = parse_marks([json.dumps(mark.to_json())])
    assert again == mark
    assert again.label == "10 m, wall"
    assert Mark(time=1.0, distance_m=None).is_end


def test_missing_marks_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(AgentError, match="does not exist"):
        load_marks(tmp_path / "nope.jsonl")
