"""Relay and replay attackers in the simulated field against the agents' real relay guard."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from agent.errors import MalformedInputError
from agent.lab.demo.scenario import AttackerSpec, load_scenario, parse_scenario
from agent.lab.demo.simfield import pair_scenario, simulate

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"


@pytest.mark.slow
@pytest.mark.parametrize("careful", [False, True])
def test_the_office_meets_the_goal_caught_90_percent_honest_flagged_under_0_1(
    careful: bool,
) -> None:
    """The figures `contact-agent simulate scenarios/office.toml` prints (seed 7); a
    careful attacker (a fresh address per relayed RPI) is still caught where its victims
    are heard too, and by the time shift of the replay."""
    scenario = load_scenario(SCENARIOS / "office.toml")
    if careful:
        attackers = tuple(replace(a, rotate_address=True) for a in scenario.attackers)
        scenario = replace(scenario, attackers=attackers)
    relay = simulate(scenario).relay
    assert relay.attackers == 2 and relay.relayed_windows >= 100
    assert relay.caught_share is not None and relay.caught_share >= 0.90
    assert relay.honest_sightings > 1_000_000
    assert relay.honest_flagged_share is not None and relay.honest_flagged_share <= 0.001
    expected = {"multi_address", "time_shifted"} if careful else {"multi_rpi", "time_shifted"}
    assert expected <= set(relay.reasons)
    assert careful == ("multi_rpi" not in relay.reasons)


def test_without_attackers_no_honest_sighting_is_flagged() -> None:
    result = simulate(pair_scenario(1.5, pairs=4, minutes=60, seed=2))
    assert result.relay.attackers == 0 and result.relay.relayed_windows == 0
    assert result.relay.honest_sightings > 0 and result.relay.honest_flagged == 0


def test_a_lone_relay_of_one_person_is_caught_by_its_address_keeping_two_rpis() -> None:
    """One person, relayed live 5 km away to a listener (next to no direct reception): the relay's
    own adapter keeps its address while the person's RPI rotates."""
    base = pair_scenario(5000.0, pairs=1, minutes=90, seed=4)
    relay = AttackerSpec("relay", record_at=(0.0, 0.0), send_at=(4999.0, 0.0), record_range_m=2)
    figures = simulate(replace(base, attackers=(relay,))).relay
    assert figures.relayed_windows >= 3 and figures.caught_windows == figures.relayed_windows
    assert figures.reasons["multi_rpi"] == figures.caught_windows


def test_a_replay_an_hour_later_far_away_is_time_shifted() -> None:
    base = pair_scenario(5000.0, pairs=1, minutes=150, seed=4)
    replay = AttackerSpec(
        "replay",
        record_at=(0.0, 0.0),
        send_at=(4999.0, 0.0),
        record_range_m=2,
        delay_seconds=3600.0,
    )
    figures = simulate(replace(base, attackers=(replay,))).relay
    assert figures.relayed_windows >= 2 and figures.caught_windows == figures.relayed_windows
    assert "time_shifted" in figures.reasons


@pytest.mark.parametrize(
    ("attacker", "message"),
    [
        ({"kind": "sniff", "record_at": [0, 0], "send_at": [1, 1]}, "kind"),
        ({"kind": "replay", "record_at": [0, 0], "send_at": [1, 1], "delay_minutes": 0}, "delay"),
        ({"kind": "relay", "record_at": [0], "send_at": [1, 1]}, "record_at"),
    ],
)
def test_bad_attackers_are_refused(attacker: dict[str, object], message: str) -> None:
    data = {
        "duration_minutes": 30,
        "agents": [{"name": "a", "position": [0, 0]}, {"name": "b", "position": [1, 0]}],
        "attackers": [attacker],
    }
    with pytest.raises(MalformedInputError, match=message):
        parse_scenario(data, "bad.toml")
