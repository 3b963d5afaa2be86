"""The simulated field: many agents, no D-Bus, real keys/matching/risk, against ground truth.

:func:`simulate` runs a :class:`~agent.lab.demo.scenario.Scenario` through the in-process
radio (:mod:`.simradio`), then, for every receiver, the agent's real matcher
(:func:`agent.matching.core.match_keys`) over its observed scans against every other agent's
keys (as if everybody reported), the real v2 risk model and notification rule
(:func:`agent.risk.exposure_windows`, :func:`agent.risk.qualifying_days`). The unit of
evaluation is the ordered pair (receiver, transmitter) and UTC day: *detected* when the
receiver would notify about the transmitter that day, *close* (ground truth) when they
spent at least ``ground_truth.minutes`` within ``ground_truth.distance_m`` that day.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from agent.lab.demo.geometry import Wall, distances, walls_crossed
from agent.lab.demo.scenario import AgentSpec, RadioModel, ScanSettings, Scenario
from agent.lab.demo.simradio import (
    Heard,
    Paths,
    ScanPlan,
    TxPlan,
    aggregate,
    max_range_m,
    mean_rssi,
    observed_scans,
    sightings_of,
    step_reception,
)
from agent.lab.demo.simrelay import (
    AttackPlan,
    RelayFigures,
    attack_plan,
    guard_scans,
    window_scans,
)
from agent.matching.core import MatchedScan, SightingIndex, match_keys
from agent.models import ExposureWindow
from agent.risk import exposure_windows, qualifying_days, score_window

DAY = 86_400
CHUNK_CELLS = 1_500_000
"""Steps x pairs x walls handled at once (bounds the memory to some 100 MB)."""


@dataclass(frozen=True, slots=True)
class PairDay:
    """One receiver, one transmitter, one UTC day."""

    receiver: str
    transmitter: str
    day: int
    close_minutes: float
    """Ground truth: minutes within the contact distance (no wall, if walls block)."""
    close: bool
    detected: bool
    """The receiver's agent would notify about this transmitter's key on this day."""
    weighted_minutes: float
    windows: int
    min_distance_m: float

    def to_json(self) -> dict[str, Any]:
        return {
            "receiver": self.receiver,
            "transmitter": self.transmitter,
            "day": self.day,
            "close_minutes": round(self.close_minutes, 2),
            "close": self.close,
            "detected": self.detected,
            "weighted_minutes": round(self.weighted_minutes, 2),
            "windows": self.windows,
            "min_distance_m": round(self.min_distance_m, 2),
        }


@dataclass(frozen=True, slots=True)
class FieldResult:
    scenario: Scenario
    pair_days: tuple[PairDay, ...]
    """Every pair-day that was close, detected, or heard at all."""
    total_pair_days: int
    """All ordered pairs x days (the rest were far apart and never heard)."""
    sightings: int
    scans: int
    relay: RelayFigures = field(default_factory=RelayFigures)
    """The relay guard against the scenario's attackers (and every honest sighting)."""

    def count(self, close: bool, detected: bool) -> int:
        return sum(1 for p in self.pair_days if p.close == close and p.detected == detected)

    @property
    def true_positives(self) -> int:
        return self.count(True, True)

    @property
    def false_positives(self) -> int:
        return self.count(False, True)

    @property
    def false_negatives(self) -> int:
        return self.count(True, False)

    @property
    def true_negatives(self) -> int:
        return (
            self.total_pair_days - self.true_positives - self.false_positives - self.false_negatives
        )

    @property
    def precision(self) -> float | None:
        found = self.true_positives + self.false_positives
        return self.true_positives / found if found else None

    @property
    def recall(self) -> float | None:
        close = self.true_positives + self.false_negatives
        return self.true_positives / close if close else None

    def to_json(self) -> dict[str, Any]:
        s = self.scenario
        return {
            "scenario": s.name,
            "seed": s.seed,
            "agents": len(s.agents),
            "duration_minutes": s.duration_seconds / 60.0,
            "ground_truth": {
                "distance_m": s.ground_truth.distance_m,
                "minutes": s.ground_truth.minutes,
                "walls_block": s.ground_truth.walls_block,
            },
            "pair_days": self.total_pair_days,
            "true_positives": self.true_positives,
            "false_positives": self.false_positives,
            "false_negatives": self.false_negatives,
            "true_negatives": self.true_negatives,
            "precision": self.precision,
            "recall": self.recall,
            "sightings": self.sightings,
            "scans": self.scans,
            "relay_guard": self.relay.to_json(),
            "pairs": [p.to_json() for p in self.pair_days if p.close or p.detected],
        }


def _pairs(paths: Paths, n: int, reach: float) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    i, j = np.triu_indices(n, k=1)
    near = paths.box_gaps(i, j) <= reach
    return i[near].astype(np.int64), j[near].astype(np.int64)


def simulate(
    scenario: Scenario, progress: Callable[[str, int, int], None] | None = None
) -> FieldResult:
    """Run the scenario; deterministic for a given scenario (and its seed).

    ``progress(stage, done, total)`` is told how far the ``radio`` steps and the
    ``match`` (receivers) have come."""
    s, radio = scenario, scenario.radio
    steps, dt = s.steps, s.step_seconds
    rng = np.random.default_rng(s.seed)
    plan_rng = random.Random(s.seed)
    end = s.start + s.duration_seconds
    scans = [ScanPlan.build(a.scan, s.start, end, plan_rng) for a in s.agents]
    txs = [TxPlan.build(a.tx_power_dbm, s.start, end, plan_rng) for a in s.agents]
    # attackers transmit from their own adapter (agents n >= people) and never scan
    person_paths = Paths(s.agents)
    txs += [attack_plan(a, s, person_paths, txs) for a in s.attackers]
    never = np.array([s.start - 1e9])
    scans += [ScanPlan(never, never) for _ in s.attackers]
    agents = s.agents + tuple(
        AgentSpec(a.name, ((0.0, *a.send_at),), ScanSettings()) for a in s.attackers
    )
    n = len(agents)
    paths = Paths(agents)
    reach = max(max_range_m(radio), s.ground_truth.distance_m)
    pi, pj = _pairs(paths, n, reach)
    first_day = math.floor(s.start / DAY)
    days = math.floor((end - 1e-9) / DAY) - first_day + 1
    close_seconds = np.zeros((days, pi.shape[0]), dtype=np.float64)
    min_distance = np.full(pi.shape[0], np.inf)
    parts: list[Heard] = []
    receivers, senders = np.concatenate([pj, pi]), np.concatenate([pi, pj])
    block = max(1, round(radio.fading_seconds / dt))  # chunks hold whole fading blocks
    chunk = max(1, CHUNK_CELLS // max(1, pi.shape[0] * max(1, len(s.walls))))
    chunk = max(block, chunk // block * block)
    for begin in range(0, steps if pi.size else 0, chunk):
        if progress is not None:
            progress("radio", begin, steps)
        offsets = dt * np.arange(begin, min(steps, begin + chunk), dtype=np.float64)
        times = s.start + offsets
        here = paths.at(offsets)
        p, q = here[:, pi].reshape(-1, 2), here[:, pj].reshape(-1, 2)
        metres = distances(p, q).reshape(len(offsets), -1)
        walls = walls_crossed(p, q, s.walls).reshape(len(offsets), -1)
        near = metres <= s.ground_truth.distance_m
        if s.ground_truth.walls_block:
            near &= walls == 0
        day = np.floor(times / DAY).astype(np.int64) - first_day
        for d in np.unique(day):
            close_seconds[d] += near[day == d].sum(axis=0) * dt
        min_distance = np.minimum(min_distance, metres.min(axis=0))
        mean = np.tile(mean_rssi(radio, metres, walls), 2)
        fading = rng.normal(0.0, radio.fading_sd_db, (-(-len(offsets) // block), mean.shape[1]))
        rssi = mean + fading[np.arange(len(offsets)) // block]
        rssi += rng.normal(0.0, radio.path_loss.noise_sd_db, mean.shape)
        scanning = np.stack([plan.instance(times) >= 0 for plan in scans], axis=1)[:, receivers]
        heard = scanning & (rng.random(mean.shape) < step_reception(radio, rssi, dt))
        if s.attackers:  # an attacker sends only what it has recorded
            airing = np.stack([tx.advert(times) >= 0 for tx in txs], axis=1)[:, senders]
            heard &= airing
        k, link = np.nonzero(heard)
        parts.append(
            sightings_of(times[k], receivers[link], senders[link], rssi[k, link], scans, txs)
        )
        if len(parts) > 8:
            parts = [aggregate(parts)]
    heard_all = aggregate(parts)
    if progress is not None:
        progress("radio", steps, steps)
    relay = RelayFigures(attackers=len(s.attackers))
    detections = _detect(s, heard_all, scans, txs, relay, progress)
    result = _evaluate(s, pi, pj, close_seconds, min_distance, detections, heard_all, first_day)
    return replace(result, relay=relay)


def _detect(
    s: Scenario,
    heard: Heard,
    scans: Sequence[ScanPlan],
    txs: Sequence[TxPlan],
    relay: RelayFigures,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[tuple[int, int, int], tuple[bool, float, int]]:
    """(receiver, transmitter, day) -> (notify, weighted minutes, windows), by real matching
    (with the relay guard over each receiver's reports; its figures go to ``relay``)."""
    people = len(s.agents)
    owner = {key.key_data: x for x, tx in enumerate(txs) for key in tx.keys}
    found: dict[tuple[int, int, int], tuple[bool, float, int]] = {}
    exclude = replace(s.risk, relay_policy="exclude")
    rotating = frozenset(
        x for x, tx in enumerate(txs) if isinstance(tx, AttackPlan) and tx.rotate_address
    )
    receivers = np.unique(heard.receiver)
    for done, r in enumerate(receivers):
        if progress is not None:
            progress("match", done, len(receivers))
        observed, senders = observed_scans(heard, int(r), scans[int(r)], txs)
        observed = guard_scans(heard, int(r), observed, people, rotating)
        # Keys of transmitters this receiver never heard cannot match: leave them out; an
        # attacker's adverts are its victims' (an attack plan holds no keys of its own).
        heard_from = {int(x) for x in np.unique(senders)}
        for x in [x for x in heard_from if x >= people]:
            plan = txs[x]
            if isinstance(plan, AttackPlan):
                heard_from.update(plan.sources)
        heard_from.discard(int(r))  # its own keys, relayed back to it, are not matched
        keys = [key for x in sorted(heard_from) for key in txs[x].keys]
        result = match_keys(keys, SightingIndex(observed))
        per_sender: dict[int, list[ExposureWindow]] = defaultdict(list)
        made: list[tuple[ExposureWindow, list[tuple[bytes, MatchedScan]]]] = []
        for match in result.matches:
            windows = exposure_windows(match.key, match.scans, s.risk)
            per_sender[owner[match.key.key_data]] += windows
            made += window_scans(windows, match)
        flags = relay.add_receiver(observed, senders.tolist(), people, made)
        relayed = {id(w) for (w, _), flag in zip(made, flags, strict=True) if flag}
        for x, windows in per_sender.items():
            notify_days = set(qualifying_days(windows, s.risk))
            relayed_days = {w.day for w in windows if id(w) in relayed}
            if relayed_days:
                rescored = [score_window(w, exclude) for w in windows]
                relay.relayed_notifying_flag += len(relayed_days & notify_days)
                relay.relayed_notifying_exclude += len(
                    relayed_days & set(qualifying_days(rescored, exclude))
                )
            minutes: dict[int, float] = defaultdict(float)
            count: dict[int, int] = defaultdict(int)
            for w in windows:
                if w.score > 0:
                    minutes[w.day] += w.weighted_duration_seconds / 60.0
                count[w.day] += 1
            for day in count:
                found[(int(r), x, day // DAY)] = (day in notify_days, minutes[day], count[day])
    if progress is not None:
        progress("match", len(receivers), len(receivers))
    return found


def _evaluate(
    s: Scenario,
    pi: np.ndarray[Any, Any],
    pj: np.ndarray[Any, Any],
    close_seconds: np.ndarray[Any, Any],
    min_distance: np.ndarray[Any, Any],
    detections: dict[tuple[int, int, int], tuple[bool, float, int]],
    heard: Heard,
    first_day: int,
) -> FieldResult:
    names = [a.name for a in s.agents]
    days = close_seconds.shape[0]
    heard_links = set(zip(heard.receiver.tolist(), heard.transmitter.tolist(), strict=True))
    rows = []
    for k, (a, b) in enumerate(zip(pi.tolist(), pj.tolist(), strict=True)):
        if a >= len(names) or b >= len(names):
            continue  # an attacker: neither a receiver nor a person to be close to
        for rx, tx in ((a, b), (b, a)):
            for d in range(days):
                close_min = float(close_seconds[d, k]) / 60.0
                close = close_min >= s.ground_truth.minutes and close_min > 0
                notify, weighted, windows = detections.get((rx, tx, first_day + d), (False, 0.0, 0))
                if close or windows or (rx, tx) in heard_links:
                    rows.append(
                        PairDay(
                            names[rx],
                            names[tx],
                            (first_day + d) * DAY,
                            close_min,
                            close,
                            notify,
                            weighted,
                            windows,
                            float(min_distance[k]),
                        )
                    )
    n = len(names)
    return FieldResult(
        scenario=s,
        pair_days=tuple(rows),
        total_pair_days=n * (n - 1) * days,
        sightings=int(heard.count.sum()),
        scans=len(heard),
    )


# --- static pairs: detection rate against distance and walls -------------------------------

PAIR_SPACING_M = 10_000.0
"""Pairs stand this far from each other, out of each other's reach."""


def pair_scenario(
    distance_m: float,
    walls: int = 0,
    *,
    pairs: int = 20,
    minutes: float = 20.0,
    scan: ScanSettings | None = None,
    radio: RadioModel | None = None,
    seed: int = 0,
) -> Scenario:
    """``pairs`` independent pairs standing ``distance_m`` apart for ``minutes``, with
    ``walls`` walls between the two of each pair."""
    settings = scan or ScanSettings()
    agents: list[AgentSpec] = []
    wall_list: list[Wall] = []
    for k in range(pairs):
        x0 = k * PAIR_SPACING_M
        agents.append(AgentSpec(f"p{k:03d}a", ((0.0, x0, 0.0),), settings))
        agents.append(AgentSpec(f"p{k:03d}b", ((0.0, x0 + distance_m, 0.0),), settings))
        for w in range(walls):
            x = x0 + distance_m * (w + 1) / (walls + 1)
            wall_list.append(Wall(x, -2.0, x, 2.0))
    return Scenario(
        name=f"pairs at {distance_m:g} m, {walls} wall(s)",
        duration_seconds=minutes * 60.0,
        agents=tuple(agents),
        walls=tuple(wall_list),
        seed=seed,
        radio=radio or RadioModel(),
    )


def detection_rate(result: FieldResult) -> float:
    """Share of the directed pair links (a->b and b->a of each pair) that were detected."""
    links = len(result.scenario.agents)  # two agents per pair, two directions per pair
    detected = {(p.receiver, p.transmitter) for p in result.pair_days if p.detected}
    return len(detected) / links if links else 0.0


def with_seed(scenario: Scenario, seed: int) -> Scenario:
    return replace(scenario, seed=seed)
