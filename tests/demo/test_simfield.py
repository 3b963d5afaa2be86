"""The simulated field: detection falls with distance and walls, and the verdicts come
from the agents' real keys, matcher and risk model, scored against ground truth."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from agent.cli import main
from agent.lab.demo.geometry import Wall
from agent.lab.demo.scenario import AgentSpec, GroundTruth, ScanSettings, Scenario, load_scenario
from agent.lab.demo.simfield import detection_rate, pair_scenario, simulate

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "scenarios"


def test_detection_falls_with_distance_and_a_wall() -> None:
    rates = [
        detection_rate(simulate(pair_scenario(d, pairs=8, seed=3)))
        for d in (0.5, 1.0, 2.0, 4.0, 6.0, 10.0)
    ]
    assert rates[1] >= 0.99  # 1 m
    assert all(a >= b for a, b in itertools.pairwise(rates)), rates
    assert rates[-1] == 0.0
    behind_wall = detection_rate(simulate(pair_scenario(10.0, walls=1, pairs=8, seed=3)))
    assert behind_wall <= 0.05


def test_duty_cycled_scanning_hears_less_but_still_detects_close_contacts() -> None:
    continuous = simulate(pair_scenario(1.0, pairs=4, seed=5))
    duty = simulate(pair_scenario(1.0, pairs=4, scan=ScanSettings(mode="duty"), seed=5))
    assert duty.sightings * 10 < continuous.sightings
    assert detection_rate(duty) == detection_rate(continuous) == 1.0


def test_the_demo_story_is_scored_against_ground_truth() -> None:
    result = simulate(load_scenario(SCENARIOS / "story.toml"))
    assert (result.true_positives, result.false_positives, result.false_negatives) == (2, 0, 0)
    assert (result.precision, result.recall) == (1.0, 1.0)
    by_pair = {(p.receiver, p.transmitter): p for p in result.pair_days}
    b_hears_a = by_pair[("B", "A")]
    assert 19 <= b_hears_a.close_minutes <= 21 and b_hears_a.min_distance_m == 1.5
    assert b_hears_a.weighted_minutes >= 15 and b_hears_a.windows >= 1
    c_hears_a = by_pair[("C", "A")]  # heard through two walls at 12 m, never a notification
    assert not c_hears_a.close and not c_hears_a.detected and c_hears_a.weighted_minutes == 0
    assert result.total_pair_days == 6 and result.true_negatives == 4


def _through_a_wall(walls_block: bool) -> Scenario:
    return Scenario(
        name="neighbours",
        duration_seconds=30 * 60,
        agents=(
            AgentSpec("left", ((0.0, -0.5, 0.0),), ScanSettings()),
            AgentSpec("right", ((0.0, 0.5, 0.0),), ScanSettings()),
        ),
        walls=(Wall(0.0, -5.0, 0.0, 5.0),),
        ground_truth=GroundTruth(walls_block=walls_block),
        seed=2,
    )


def test_time_through_a_wall_is_not_a_close_contact_unless_configured() -> None:
    blocked = simulate(_through_a_wall(True))
    counted = simulate(_through_a_wall(False))
    # 1 m with a 5 dB wall is still "near" to the radio: a false alarm by ground truth
    assert (blocked.false_positives, blocked.true_positives) == (2, 0)
    assert (counted.false_positives, counted.true_positives) == (0, 2)


@pytest.mark.slow
def test_same_seed_same_numbers_other_seed_other_noise() -> None:
    scenario = load_scenario(SCENARIOS / "wall.toml")
    first, again = simulate(scenario).to_json(), simulate(scenario).to_json()
    assert first == again  # fresh random keys every run, the same verdicts
    other = simulate(replace(scenario, seed=scenario.seed + 1)).to_json()
    assert other["sightings"] != first["sightings"]


def test_simulate_command(tmp_path: Path) -> None:
    runner = CliRunner()
    done = runner.invoke(main, ["simulate", str(SCENARIOS / "story.toml"), "--json"])
    assert done.exit_code == 0, done.output
    document = json.loads(done.output)
    assert document["true_positives"] == 2 and document["precision"] == 1.0
    assert {(p["receiver"], p["transmitter"]) for p in document["pairs"]} == {
        ("A", "B"),
        ("B", "A"),
    }
    text = runner.invoke(main, ["simulate", str(SCENARIOS / "story.toml"), "--seed", "4"])
    assert text.exit_code == 0
    assert "precision 1.000  recall 1.000" in text.output and "seed 4" in text.output
    bad = tmp_path / "bad.toml"
    bad.write_text('[[agents]]\nname = "x"\nposition = [1]\n', encoding="utf-8")
    refused = runner.invoke(main, ["simulate", str(bad)])
    assert refused.exit_code == 1
    assert "bad.toml: agents[0].position must be a list of 2 numbers" in refused.output


@pytest.mark.slow
def test_sim_field_script_prints_a_monotone_table() -> None:
    done = subprocess.run(
        [sys.executable, "scripts/sim_field.py", "--pairs", "3", "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    table = json.loads(done.stdout)
    for column in ("continuous", "continuous+wall"):
        rates = list(table["rates"][column].values())
        assert rates[0] == 1.0 and rates[-1] == 0.0
        assert all(a >= b for a, b in itertools.pairwise(rates)), (column, rates)
    assert table["scores"]["continuous"]["recall"] == 1.0
