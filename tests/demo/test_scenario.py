"""Scenario files: TOML and JSON say the same, bad input gets one clear line, geometry."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import numpy as np
import pytest

from agent.errors import AgentError, MalformedInputError
from agent.lab.demo.geometry import Wall, link, walls_crossed
from agent.lab.demo.scenario import DEFAULT_START, WALK_SECONDS, load_scenario, parse_scenario

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"

MINIMAL = """
name = "two"
duration_minutes = 30
walls = [[0, -5, 0, 5]]
[radio]
wall_loss_db = 8
[scan]
mode = "duty"
[[agents]]
name = "a"
path = [[0, -1, 0], [10, -1, 0], [11, 3, 0]]
[[agents]]
name = "b"
position = [1, 0]
tx_power_dbm = -12
[agents.scan]
mode = "continuous"
"""


def test_toml_and_json_give_the_same_scenario(tmp_path: Path) -> None:
    toml_file = tmp_path / "two.toml"
    toml_file.write_text(MINIMAL, encoding="utf-8")
    json_file = tmp_path / "two.json"
    json_file.write_text(json.dumps(tomllib.loads(MINIMAL)), encoding="utf-8")
    a, b = load_scenario(toml_file), load_scenario(json_file)
    assert a == b
    assert a.start == DEFAULT_START and a.duration_seconds == 1800
    assert [x.name for x in a.agents] == ["a", "b"]
    assert a.agents[0].path == ((0.0, -1.0, 0.0), (600.0, -1.0, 0.0), (660.0, 3.0, 0.0))
    assert a.agents[0].scan.mode == "duty" and a.agents[1].scan.mode == "continuous"
    assert (a.agents[0].tx_power_dbm, a.agents[1].tx_power_dbm) == (-8, -12)
    assert a.radio.path_loss.wall_loss_db == 8 and a.walls == (Wall(0, -5, 0, 5),)


def test_crowds_follow_the_seed() -> None:
    data = {
        "duration_minutes": 120,
        "crowds": [{"prefix": "p", "count": 5, "area": [0, 0, 10, 10], "dwell_minutes": 20}],
    }
    first, again, other = (
        parse_scenario(data, seed=1),
        parse_scenario(data, seed=1),
        parse_scenario(data, seed=2),
    )
    assert first == again and first.agents != other.agents
    assert [a.name for a in first.agents] == ["p01", "p02", "p03", "p04", "p05"]
    for agent in first.agents:
        assert all(0 <= x <= 10 and 0 <= y <= 10 for _, x, y in agent.path)
        moves = agent.path[1:]
        assert len(moves) >= 4  # about every 20 minutes in two hours
        for (t1, *_), (t2, *_) in zip(moves[::2], moves[1::2], strict=True):
            assert t2 - t1 == pytest.approx(WALK_SECONDS)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"duration_minutes": 0}, "two.toml: duration_minutes must be 1..4320, got 0"),
        ({"duration_minutes": "long"}, "duration_minutes must be a number"),
        ({"scan": {"mode": "sometimes"}}, "scan.mode must be 'continuous' or 'duty'"),
        ({"radio": {"frame_loss": 1.5}}, "radio.frame_loss must be 0..0.99"),
        ({"start": "2024-05-01T09:00:00"}, "start must be an ISO 8601 time with a zone"),
        ({"walls": [[0, 1, 2]]}, "walls must be a list of 4 numbers"),
        ({"ground_truth": {"walls_block": "yes"}}, "ground_truth.walls_block must be true or"),
        ({"risk": {"notify_threshold_minutes": -1}}, "two.toml: config: risk scores and minutes"),
        ({"agents": [{"name": "a", "position": [0, 0]}]}, "needs at least two agents"),
        (
            {"agents": [{"name": "a", "position": [0, 0]}, {"name": "a", "position": [1, 0]}]},
            "agent names must be unique: a",
        ),
        (
            {"agents": [{"name": "a", "path": [[5, 0, 0], [1, 1, 1]]}]},
            "agents[0].path minutes must not go backwards",
        ),
        ({"agents": [{"name": "a"}]}, "agents[0].path must be a list of [minute, x, y]"),
        ({"agents": [{"name": "a", "position": [0, "x"]}]}, "agents[0].position must be a list"),
        ({"crowds": [{"count": 1000, "area": [0, 0, 1, 1]}]}, "crowds[0].count must be 1..400"),
        ({"crowds": [{"count": 400, "area": [0, 0, 9, 9]}]}, "at most 400 agents, got 402"),
        (
            {"crowds": [{"count": 300, "area": [0, 0, 9, 9]}], "duration_minutes": 4000},
            "too big to simulate",
        ),
    ],
)
def test_bad_scenarios_are_refused_in_one_line(change: dict[str, object], message: str) -> None:
    data: dict[str, object] = tomllib.loads(MINIMAL)
    data.update(change)
    with pytest.raises(MalformedInputError) as caught:
        parse_scenario(data, "two.toml")
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_unreadable_files_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(AgentError, match="does not exist"):
        load_scenario(tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("name = [", encoding="utf-8")
    with pytest.raises(MalformedInputError, match=r"broken\.toml: not valid TOML"):
        load_scenario(broken)
    broken_json = tmp_path / "broken.json"
    broken_json.write_text("{", encoding="utf-8")
    with pytest.raises(MalformedInputError, match=r"broken\.json: not valid JSON"):
        load_scenario(broken_json)


@pytest.mark.parametrize("name", ["office.toml", "wall.toml", "story.toml"])
def test_the_example_scenarios_load(name: str) -> None:
    scenario = load_scenario(SCENARIOS / name)
    assert len(scenario.agents) >= 3 and scenario.description


def test_walls_between_points() -> None:
    walls = [Wall(0, -1, 0, 1), Wall(2, -1, 2, 1)]
    assert link((-1, 0), (1, 0), walls) == (2.0, 1)
    assert link((-1, 0), (3, 0), walls) == (4.0, 2)
    assert link((-1, 5), (3, 5), walls) == (4.0, 0)  # passes above both walls
    assert link((0.5, 0), (1.5, 0), walls)[1] == 0
    p = np.array([[-1.0, 0.0], [-1.0, 0.0]])
    q = np.array([[3.0, 0.0], [-0.5, 0.0]])
    assert walls_crossed(p, q, walls).tolist() == [2, 0]
