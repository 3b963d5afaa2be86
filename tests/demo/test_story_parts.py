"""The demo's pieces that need no D-Bus: its clock start, places, marks, hook, verdicts."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from agent.daemon.notify import Notice, Notifier
from agent.errors import MalformedInputError
from agent.lab.demo.geometry import link
from agent.lab.demo.hook import hook_command, read_notifications
from agent.lab.demo.layout import WALLS, Phase, names_for, positions
from agent.lab.demo.report import pair_marks
from agent.lab.demo.steps import DemoFailure, Timeline, event_line
from agent.lab.demo.story import StoryOptions, StoryResult, run_story, story_start
from agent.lab.demo.summary import result_json, verdict_line

DAY = 86_400.0


def test_the_story_never_crosses_a_utc_midnight() -> None:
    span = 3240.0
    noon = 20_000 * DAY + 12 * 3600
    assert story_start(noon, span) == noon
    late = 20_001 * DAY - 600  # 23:50 UTC
    start = story_start(late, span)
    assert start < late and start // DAY == (start + span - 1) // DAY == 20_000


def test_places_a_together_b_apart_the_others_behind_walls() -> None:
    names = names_for(5)
    apart = positions(names, together=False, distance_m=1.5)
    together = positions(names, together=True, distance_m=1.5)
    assert link(together["A"], together["B"], WALLS) == (1.5, 0)
    assert link(apart["A"], apart["B"], WALLS) == (60.0, 3)
    for name in "CDE":
        metres, walls = link(together["A"], together[name], WALLS)
        assert metres >= 12 and walls == 2
    assert len(set(together.values())) == 5


def test_marks_follow_the_moves_of_a_pair() -> None:
    names = names_for(3)
    apart = positions(names, together=False, distance_m=1.5)
    together = positions(names, together=True, distance_m=1.5)
    phases = [
        Phase(100.0, apart, "apart"),
        Phase(220.0, together, "B at A's table"),
        Phase(1420.0, apart, "B left"),
        Phase(1540.0, {}, "end"),
    ]
    ab = pair_marks(phases, "A", "B")
    assert [(m.time, m.distance_m, m.wall) for m in ab] == [
        (100.0, 60.0, True),
        (220.0, 1.5, False),
        (1420.0, 60.0, True),
        (1540.0, None, False),
    ]
    ac = pair_marks(phases, "A", "C")  # C never moved: one mark, then the end
    assert [(m.distance_m, m.wall) for m in ac] == [(12.0, True), (None, False)]


async def test_the_hook_records_what_the_notifier_sends(tmp_path: Path) -> None:
    target = tmp_path / "with space" / "notifications.jsonl"
    target.parent.mkdir()
    notifier = Notifier(language="en", desktop=False, hooks=[hook_command(target)])
    results = await notifier.notify(Notice(day=19_000 * 86_400, minutes=21, windows=1), now=1.0)
    assert results["exec[0]"] is True
    [notice] = read_notifications(target)
    assert notice["event"] == notice["env_event"] == "exposure"
    assert notice["minutes"] == 21 and "for about 21 minutes" in notice["body"]
    assert read_notifications(tmp_path / "none.jsonl") == []


def test_options_outside_the_story_are_refused() -> None:
    for options in (
        StoryOptions(agents=1),
        StoryOptions(agents=9),
        StoryOptions(speed=0.5),
        StoryOptions(contact_minutes=45),
        StoryOptions(distance_m=20),
    ):
        with pytest.raises(MalformedInputError):
            options.validate()


async def test_a_keep_folder_with_data_in_it_is_refused(tmp_path: Path) -> None:
    (tmp_path / "old.db").write_text("earlier run", encoding="utf-8")
    lines: list[str] = []
    result = await run_story(StoryOptions(keep=tmp_path), lambda e: lines.append(event_line(e)))
    assert not result.ok and result.failure is not None
    assert result.failure.step == "prepare a working folder"
    assert "is not empty" in result.failure.reason
    assert lines[-1].endswith(f"FAILED: prepare a working folder: {result.failure.reason}")
    document = result_json(result)
    assert document["ok"] is False and document["failed_step"] == "prepare a working folder"
    assert verdict_line(result).startswith("the demo FAILED at step 'prepare a working folder'")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.db"]


def test_verdict_lines() -> None:
    result = StoryResult(StoryOptions(agents=4), names_for(4), expected_notified=("B",))
    result.notified, result.not_notified, result.real_seconds = ["B"], ["C", "D"], 25.04
    assert verdict_line(result) == "B was notified and C, D were not: the story held (25.0 s)"
    result.notified, result.not_notified = ["B", "C"], ["D"]
    assert verdict_line(result).endswith("D was not: the story did NOT hold (25.0 s)")


async def test_a_step_turns_any_error_into_a_named_failure() -> None:
    timeline = Timeline()
    with pytest.raises(DemoFailure) as caught:
        async with timeline.step("fetch"):
            await asyncio.sleep(0)
            raise OSError("connection refused")
    assert str(caught.value) == "demo step 'fetch' failed: OSError: connection refused"
    assert [e.kind for e in timeline.events] == ["step", "fail"]
    assert json.dumps([e.to_json() for e in timeline.events])


async def test_a_keep_folder_too_deep_for_unix_sockets_is_refused(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 120)
    result = await run_story(StoryOptions(keep=deep))
    assert result.failure is not None and "too long a path" in result.failure.reason
    assert not deep.exists()
