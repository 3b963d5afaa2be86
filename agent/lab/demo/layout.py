"""Where the demo's agents are: A's room, the corridor, the far room, B's building.

A sits at its desk; B is in another building (60 m, three walls) or at A's table; every
further agent (C, D, ...) sits in the far room, 12 m or more from A behind two walls.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.lab.demo.geometry import Point, Wall, link

NAMES = "ABCDEFGH"
MIN_AGENTS, MAX_AGENTS = 2, len(NAMES)
WALLS: tuple[Wall, ...] = (
    Wall(-60.0, 4.0, 60.0, 4.0),
    Wall(-60.0, 8.0, 60.0, 8.0),
    Wall(-60.0, -10.0, 60.0, -10.0),
    Wall(-60.0, -25.0, 60.0, -25.0),
    Wall(-60.0, -40.0, 60.0, -40.0),
)
"""A's room (y from -10 to 4), a corridor, the far room at y > 8, and B's building."""
A_DESK: Point = (0.0, 0.0)
B_AWAY: Point = (0.0, -60.0)
FAR_ROW_Y = 12.0


@dataclass(frozen=True, slots=True)
class Phase:
    """From ``time`` on (simulated), everybody stood at ``places`` (empty: the end)."""

    time: float
    places: dict[str, Point]
    label: str


def names_for(count: int) -> tuple[str, ...]:
    return tuple(NAMES[:count])


def positions(names: tuple[str, ...], *, together: bool, distance_m: float) -> dict[str, Point]:
    """Where everybody is: A at its desk, B away or at A's table, the others in the far room."""
    result: dict[str, Point] = {names[0]: A_DESK}
    result[names[1]] = (A_DESK[0] + distance_m, A_DESK[1]) if together else B_AWAY
    for i, name in enumerate(names[2:]):
        step = (i + 1) // 2 * 8.0
        result[name] = (step if i % 2 else 0.0 - step, FAR_ROW_Y)
    return result


def where(a: str, other: str, places: dict[str, Point]) -> str:
    metres, walls = link(places[a], places[other], WALLS)
    behind = f", {walls} wall{'s' if walls > 1 else ''} between" if walls else ", no wall"
    return f"{other} is {metres:.3g} m from {a}{behind}"
