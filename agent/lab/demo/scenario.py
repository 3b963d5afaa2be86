"""Scenario files of the simulated field (TOML or JSON) and their model.

A scenario says where every agent is over time, where the walls are, how the radio
behaves, how the agents scan, and what counts as a close contact (ground truth)::

    name = "office"
    duration_minutes = 120
    seed = 1
    walls = [[0, -10, 0, 10]]                 # [x1, y1, x2, y2] metres
    [radio]                                   # all optional, defaults shown in docs/demo.md
    wall_loss_db = 5.0
    [scan]
    mode = "continuous"                       # or "duty"
    [ground_truth]
    distance_m = 2.0
    minutes = 15.0
    [[agents]]
    name = "alice"
    path = [[0, 1, 1], [30, 1, 1], [31, 5, 2]]  # [minute, x, y], linear in between
    [[agents]]
    name = "bob"
    position = [2, 1]                          # stays put
    [[crowds]]                                 # many agents moving between random spots
    prefix = "desk"
    count = 20
    area = [-20, -10, -1, 10]                  # [x1, y1, x2, y2]
    dwell_minutes = 30
    [[attackers]]                              # relay: record here, re-broadcast there
    kind = "relay"                             # or "replay" (delay_minutes, default 60)
    record_at = [5, 5]
    send_at = [-10, 5]

Everything a file gets wrong is a :class:`~agent.errors.MalformedInputError` naming the
file and the key.
"""

from __future__ import annotations

import itertools
import json
import math
import random
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from agent.config import RiskConfig, parse_config
from agent.errors import AgentError, MalformedInputError
from agent.lab.demo.geometry import Wall
from agent.lab.sim.pathloss import PathLossModel

DEFAULT_START = 1_714_554_000.0
"""2024-05-01T09:00:00Z: scenarios are reproducible, so they do not start "now"."""
MAX_AGENTS = 400
MAX_DURATION_MINUTES = 3 * 24 * 60.0
MAX_WORK = 4e8
"""Upper bound of steps x directed pairs (a few minutes of CPU)."""
WALK_SECONDS = 10.0
"""Crowd members take this long to walk to their next spot."""


@dataclass(frozen=True, slots=True)
class RadioModel:
    """The radio of the simulated field: the fake bluetoothd's path-loss model (walls,
    fast noise on every report), plus slow fading and frame reception."""

    path_loss: PathLossModel = field(default_factory=PathLossModel)
    fading_sd_db: float = 3.0
    """Slow fading (body, orientation): one offset per link, redrawn every ``fading_seconds``."""
    fading_seconds: float = 60.0
    frame_loss: float = 0.1
    """Chance that a frame above the sensitivity is lost anyway (collisions, fading)."""
    advertising_interval_ms: float = 250.0
    """GAEN advertises every 200-270 ms."""


@dataclass(frozen=True, slots=True)
class ScanSettings:
    mode: str = "continuous"
    """``continuous`` (60 s scan instances back to back) or ``duty``."""
    duty_scan_seconds: float = 4.0
    duty_period_seconds: float = 300.0


@dataclass(frozen=True, slots=True)
class GroundTruth:
    """A close contact: at least ``minutes`` a UTC day within ``distance_m``."""

    distance_m: float = 2.0
    minutes: float = 15.0
    walls_block: bool = True
    """Time with a wall in between does not count (people are not together)."""


@dataclass(frozen=True, slots=True)
class AgentSpec:
    name: str
    path: tuple[tuple[float, float, float], ...]
    """(seconds since the start, x, y); linear in between, held before and after."""
    scan: ScanSettings
    tx_power_dbm: int = -8
    """Calibrated TX power written into the AEM."""


@dataclass(frozen=True, slots=True)
class AttackerSpec:
    """A relay attacker: a sniffer records every EN advert within ``record_range_m`` of
    ``record_at`` (no wall in between) and its own adapter at ``send_at`` re-broadcasts
    them, ``delay_seconds`` later (0: live relay; e.g. 3600: a replay an hour later),
    cycling through what it recorded from one address."""

    name: str
    record_at: tuple[float, float]
    send_at: tuple[float, float]
    record_range_m: float = 6.0
    delay_seconds: float = 0.0
    rotate_address: bool = False
    """A careful attacker: a fresh address for every relayed RPI (as the victim's own
    rotation), instead of its adapter's one address."""


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    duration_seconds: float
    agents: tuple[AgentSpec, ...]
    walls: tuple[Wall, ...] = ()
    start: float = DEFAULT_START
    step_seconds: float = 1.0
    seed: int = 0
    description: str = ""
    radio: RadioModel = field(default_factory=RadioModel)
    ground_truth: GroundTruth = field(default_factory=GroundTruth)
    risk: RiskConfig = field(default_factory=RiskConfig)
    attackers: tuple[AttackerSpec, ...] = ()
    """Relay and replay attackers (not agents: they neither scan nor are evaluated)."""

    @property
    def steps(self) -> int:
        return int(self.duration_seconds // self.step_seconds)


class _Reader:
    """Typed access to one table of the file, with errors that name the key."""

    def __init__(self, source: str, where: str, table: Any) -> None:
        if not isinstance(table, Mapping):
            raise MalformedInputError(f"{source}: {where or 'the file'} must be a table")
        self.source, self.where, self.table = source, where, table

    def fail(self, key: str, what: str) -> MalformedInputError:
        name = f"{self.where}.{key}" if self.where else key
        return MalformedInputError(f"{self.source}: {name} {what}")

    def sub(self, key: str) -> _Reader:
        where = f"{self.where}.{key}" if self.where else key
        return _Reader(self.source, where, self.table.get(key, {}))

    def number(self, key: str, default: float, low: float, high: float) -> float:
        value = self.table.get(key, default)
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise self.fail(key, f"must be a number, got {value!r}")
        if not low <= value <= high:
            raise self.fail(key, f"must be {low:g}..{high:g}, got {value:g}")
        return float(value)

    def integer(self, key: str, default: int, low: int, high: int) -> int:
        value = self.table.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(key, f"must be a whole number, got {value!r}")
        if not low <= value <= high:
            raise self.fail(key, f"must be {low}..{high}, got {value}")
        return value

    def text(self, key: str, default: str) -> str:
        value = self.table.get(key, default)
        if not isinstance(value, str):
            raise self.fail(key, f"must be a string, got {value!r}")
        return value

    def flag(self, key: str, default: bool) -> bool:
        value = self.table.get(key, default)
        if not isinstance(value, bool):
            raise self.fail(key, f"must be true or false, got {value!r}")
        return value

    def numbers(self, key: str, count: int, value: Any = None) -> tuple[float, ...]:
        value = self.table.get(key) if value is None else value
        if (
            not isinstance(value, list)
            or len(value) != count
            or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
            or not all(math.isfinite(v) for v in value)
        ):
            raise self.fail(key, f"must be a list of {count} numbers, got {value!r}")
        return tuple(float(v) for v in value)

    def tables(self, key: str) -> list[_Reader]:
        value = self.table.get(key, [])
        if not isinstance(value, list):
            raise self.fail(key, "must be a list of tables ([[...]] in TOML)")
        return [_Reader(self.source, f"{key}[{i}]", item) for i, item in enumerate(value)]


def _radio(r: _Reader) -> RadioModel:
    return RadioModel(
        path_loss=PathLossModel(
            tx_at_1m=r.number("tx_at_1m_dbm", -59.0, -100.0, 20.0),
            exponent=r.number("path_loss_exponent", 2.0, 1.0, 6.0),
            wall_loss_db=r.number("wall_loss_db", 5.0, 0.0, 60.0),
            noise_sd_db=r.number("noise_sd_db", 2.0, 0.0, 20.0),
            sensitivity_dbm=r.number("sensitivity_dbm", -100.0, -130.0, -30.0),
        ),
        fading_sd_db=r.number("fading_sd_db", 3.0, 0.0, 20.0),
        fading_seconds=r.number("fading_seconds", 60.0, 1.0, 3600.0),
        frame_loss=r.number("frame_loss", 0.1, 0.0, 0.99),
        advertising_interval_ms=r.number("advertising_interval_ms", 250.0, 20.0, 10_240.0),
    )


def _scan(r: _Reader, default: ScanSettings, step: float) -> ScanSettings:
    mode = r.text("mode", default.mode)
    if mode not in ("continuous", "duty"):
        raise r.fail("mode", f"must be 'continuous' or 'duty', got {mode!r}")
    scan = r.number("duty_scan_seconds", default.duty_scan_seconds, 0.5, 60.0)
    period = r.number("duty_period_seconds", default.duty_period_seconds, 10.0, 3600.0)
    if scan >= period:
        raise r.fail("duty_scan_seconds", "must be shorter than duty_period_seconds")
    if mode == "duty" and scan < step:
        raise r.fail("duty_scan_seconds", f"must be at least the simulation step ({step:g} s)")
    return ScanSettings(mode, scan, period)


def _ground_truth(r: _Reader) -> GroundTruth:
    return GroundTruth(
        distance_m=r.number("distance_m", 2.0, 0.1, 100.0),
        minutes=r.number("minutes", 15.0, 0.0, 1440.0),
        walls_block=r.flag("walls_block", True),
    )


def _risk(source: str, table: Any) -> RiskConfig:
    try:
        return parse_config({"risk": table}).risk
    except AgentError as exc:
        raise MalformedInputError(f"{source}: {exc}") from None


def _path(r: _Reader, duration: float) -> tuple[tuple[float, float, float], ...]:
    if "position" in r.table:
        x, y = r.numbers("position", 2)
        return ((0.0, x, y),)
    raw = r.table.get("path")
    if not isinstance(raw, list) or not raw:
        raise r.fail("path", "must be a list of [minute, x, y] points (or give position = [x, y])")
    points = [r.numbers("path", 3, p) for p in raw]
    times = [p[0] for p in points]
    if any(b < a for a, b in itertools.pairwise(times)):
        raise r.fail("path", "minutes must not go backwards")
    if times[0] < 0 or times[-1] * 60 > duration:
        raise r.fail("path", "minutes must lie within the scenario's duration")
    return tuple((m * 60.0, x, y) for m, x, y in points)


def _crowd(
    r: _Reader, rng: random.Random, duration: float, scan: ScanSettings, tx: int
) -> list[AgentSpec]:
    prefix = r.text("prefix", "p")
    count = r.integer("count", 10, 1, MAX_AGENTS)
    x1, y1, x2, y2 = r.numbers("area", 4)
    dwell = r.number("dwell_minutes", 30.0, 1.0, MAX_DURATION_MINUTES) * 60.0
    agents = []
    for i in range(count):
        here = (rng.uniform(x1, x2), rng.uniform(y1, y2))
        path = [(0.0, *here)]
        t = rng.uniform(0.3, 1.0) * dwell  # people do not all move at once
        while t + WALK_SECONDS < duration:
            there = (rng.uniform(x1, x2), rng.uniform(y1, y2))
            path += [(t, *here), (t + WALK_SECONDS, *there)]
            here, t = there, t + WALK_SECONDS + dwell
        agents.append(AgentSpec(f"{prefix}{i + 1:02d}", tuple(path), scan, tx))
    return agents


def parse_scenario(
    data: Mapping[str, Any], source: str = "scenario", seed: int | None = None
) -> Scenario:
    """A validated scenario from parsed TOML/JSON; ``seed`` overrides the file's seed."""
    r = _Reader(source, "", data)
    name = r.text("name", Path(source).stem)
    duration = r.number("duration_minutes", 60.0, 1.0, MAX_DURATION_MINUTES) * 60.0
    step = r.number("step_seconds", 1.0, 0.25, 10.0)
    file_seed = r.integer("seed", 0, 0, 2**63 - 1)
    chosen_seed = file_seed if seed is None else seed
    start_text = r.text("start", "")
    start = _start_time(r, start_text) if start_text else DEFAULT_START
    default_scan = _scan(r.sub("scan"), ScanSettings(), step)
    tx = r.integer("tx_power_dbm", -8, -50, 20)
    walls = tuple(Wall(*r.numbers("walls", 4, w)) for w in _list(r, "walls"))
    agents: list[AgentSpec] = []
    for a in r.tables("agents"):
        agents.append(
            AgentSpec(
                name=a.text("name", f"agent{len(agents) + 1}"),
                path=_path(a, duration),
                scan=_scan(a.sub("scan"), default_scan, step),
                tx_power_dbm=a.integer("tx_power_dbm", tx, -50, 20),
            )
        )
    rng = random.Random(chosen_seed)
    for c in r.tables("crowds"):
        agents += _crowd(c, rng, duration, _scan(c.sub("scan"), default_scan, step), tx)
    attackers = tuple(_attacker(t, duration) for t in r.tables("attackers"))
    names = [a.name for a in agents] + [a.name for a in attackers]
    if len(agents) < 2:
        raise MalformedInputError(f"{source}: a scenario needs at least two agents")
    if len(agents) > MAX_AGENTS:
        raise MalformedInputError(f"{source}: at most {MAX_AGENTS} agents, got {len(agents)}")
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise MalformedInputError(f"{source}: agent names must be unique: {', '.join(dup)}")
    work = duration / step * len(agents) * (len(agents) - 1)
    if work > MAX_WORK:
        raise MalformedInputError(
            f"{source}: too big to simulate ({work:.2g} link-steps, limit {MAX_WORK:.0g}); "
            "use fewer agents, a shorter duration or a longer step_seconds"
        )
    return Scenario(
        name=name,
        duration_seconds=duration,
        agents=tuple(agents),
        walls=walls,
        start=start,
        step_seconds=step,
        seed=chosen_seed,
        description=r.text("description", ""),
        radio=_radio(r.sub("radio")),
        ground_truth=_ground_truth(r.sub("ground_truth")),
        risk=_risk(source, data.get("risk", {})),
        attackers=attackers,
    )


def _attacker(r: _Reader, duration: float) -> AttackerSpec:
    kind = r.text("kind", "relay")
    if kind not in ("relay", "replay"):
        raise r.fail("kind", f"must be 'relay' or 'replay', got {kind!r}")
    default_delay = 0.0 if kind == "relay" else 60.0
    delay = r.number("delay_minutes", default_delay, 0.0, 120.0) * 60.0
    if kind == "replay" and delay < 1.0:
        raise r.fail("delay_minutes", "a replay needs a delay")
    if delay >= duration:
        raise r.fail("delay_minutes", "must be shorter than the scenario")
    x, y = r.numbers("record_at", 2)
    u, v = r.numbers("send_at", 2)
    return AttackerSpec(
        name=r.text("name", kind),
        record_at=(x, y),
        send_at=(u, v),
        record_range_m=r.number("record_range_m", 6.0, 0.1, 100.0),
        delay_seconds=delay,
        rotate_address=r.flag("rotate_address", False),
    )


def _start_time(r: _Reader, text: str) -> float:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise r.fail(
            "start",
            f"must be an ISO 8601 time with a zone, like 2024-05-01T09:00:00Z, got {text!r}",
        )
    return moment.timestamp()


def _list(r: _Reader, key: str) -> Sequence[Any]:
    value = r.table.get(key, [])
    if not isinstance(value, list):
        raise r.fail(key, "must be a list")
    return value


def load_scenario(path: Path, seed: int | None = None) -> Scenario:
    """Read a ``.toml`` or ``.json`` scenario file."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise AgentError(f"scenario file {path} does not exist") from None
    except OSError as exc:
        raise AgentError(f"cannot read the scenario file {path}: {exc.strerror}") from exc
    try:
        text = raw.decode("utf-8")
        data = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
    except (UnicodeDecodeError, ValueError) as exc:
        kind = "JSON" if path.suffix.lower() == ".json" else "TOML"
        raise MalformedInputError(f"{path.name}: not valid {kind}: {exc}") from None
    return parse_scenario(data, path.name, seed)
