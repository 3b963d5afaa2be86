"""Relay and replay attackers in the simulated field, and the relay guard against them.

An attacker (:class:`~agent.lab.demo.scenario.AttackerSpec`) records every EN advert its
sniffer hears in one place and re-broadcasts it from its own adapter in another, live
or later: :class:`AttackPlan` is its transmitter, cycling through what it recorded, one
advert per step, from one address (or, a careful attacker, a fresh address per RPI).
Each receiver's reports (one per scan's first and last sighting, with the sender's
address: an honest agent's changes with every RPI) go through the agent's real
:class:`~agent.relayguard.RelayGuard`, in time order, and each observed scan gets the
reasons it raised. :class:`RelayFigures` holds the result against ground truth: the
share of exposure windows with relayed sightings that the guard flagged, and the share
of honest sightings it flagged.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from agent import crypto
from agent.lab.demo.geometry import FloatArray, IntArray, walls_crossed
from agent.lab.demo.scenario import AttackerSpec, Scenario
from agent.lab.demo.simradio import Heard, Paths, TxPlan
from agent.matching.core import KeyMatch, MatchedScan
from agent.models import ExposureWindow, ObservedScan
from agent.relayguard import ALL_REASONS, RelayGuard, reason_names


@dataclass(frozen=True, slots=True)
class AttackPlan(TxPlan):
    """An attacker's transmitter: per simulation step the advert it sends, or -1."""

    start: float
    step: float
    table: IntArray
    sources: tuple[int, ...]
    """The agent each advert was recorded from."""
    rotate_address: bool = False
    """A fresh address for each relayed RPI (else one address for everything)."""

    def advert(self, times: FloatArray) -> IntArray:
        k = np.rint((times - self.start) / self.step).astype(np.int64)
        inside = (k >= 0) & (k < self.table.shape[0])
        out = np.full(times.shape[0], -1, dtype=np.int64)
        out[inside] = self.table[k[inside]]
        return out


def attack_plan(
    spec: AttackerSpec, scenario: Scenario, people: Paths, txs: Sequence[TxPlan]
) -> AttackPlan:
    """What ``spec`` sends at each step: the adverts its sniffer recorded ``delay``
    earlier within its range (no wall in between), one after the other."""
    s = scenario
    steps = s.steps
    table = np.full(steps, -1, dtype=np.int64)
    index: dict[tuple[int, int], int] = {}
    adverts: list[tuple[bytes, bytes]] = []
    sources: list[int] = []
    offsets = s.step_seconds * np.arange(steps, dtype=np.float64) - spec.delay_seconds
    valid = np.nonzero(offsets >= 0)[0]
    if valid.size:
        recorded = offsets[valid]
        here = people.at(recorded)  # (steps, people, 2)
        n = here.shape[1]
        p = here.reshape(-1, 2)
        q = np.tile(np.array(spec.record_at, dtype=np.float64), (p.shape[0], 1))
        metres = np.hypot(p[:, 0] - q[:, 0], p[:, 1] - q[:, 1]).reshape(-1, n)
        walls = walls_crossed(p, q, s.walls).reshape(-1, n)
        heard = (metres <= spec.record_range_m) & (walls == 0)
        advert_of = np.stack([tx.advert(s.start + recorded) for tx in txs[:n]], axis=1)
        for row, step in enumerate(valid.tolist()):
            victims = np.nonzero(heard[row])[0]
            if victims.size == 0:
                continue
            victim = int(victims[step % victims.size])
            key = (victim, int(advert_of[row, victim]))
            if key not in index:
                index[key] = len(adverts)
                adverts.append(txs[victim].adverts[key[1]])
                sources.append(victim)
            table[step] = index[key]
    return AttackPlan(
        rotations=np.zeros(0, dtype=np.float64),
        adverts=tuple(adverts),
        keys=(),
        start=s.start,
        step=s.step_seconds,
        table=table,
        sources=tuple(sources),
        rotate_address=spec.rotate_address,
    )


class _EventClock:
    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now


def guard_scans(
    heard: Heard,
    receiver: int,
    observed: list[ObservedScan],
    people: int,
    rotating: frozenset[int] = frozenset(),
) -> list[ObservedScan]:
    """``observed`` (the receiver's scans, in the order of :func:`observed_scans`) with
    the reasons the relay guard gives their sightings (``rotating``: attackers that use
    a fresh address for each RPI)."""
    rows = np.nonzero(heard.receiver == receiver)[0]
    events: list[tuple[float, int]] = []
    addresses: list[str] = []
    for i, k in enumerate(rows.tolist()):
        tx = int(heard.transmitter[k])
        # an honest agent's address changes with its RPI; an attacker's adapter keeps one
        one_address = tx >= people and tx not in rotating
        addresses.append(f"{tx}" if one_address else f"{tx}/{int(heard.advert[k])}")
        first, last = float(heard.first[k]), float(heard.last[k])
        events.append((first, i))
        if last > first:
            events.append((last, i))
    events.sort()
    clock = _EventClock()
    guard = RelayGuard(clock)
    masks = [0] * len(observed)
    for time, i in events:
        clock.now = time
        scan = observed[i]
        masks[i] |= guard.observe(addresses[i], scan.rpi, scan.aem, time)
    return [replace(scan, relay=mask) for scan, mask in zip(observed, masks, strict=True)]


def _scan_key(rpi: bytes, first: float, last: float, start: float | None) -> tuple[Any, ...]:
    return (rpi, first, last, start)


@dataclass(slots=True)
class RelayFigures:
    """The relay guard against ground truth, over every receiver."""

    attackers: int = 0
    relayed_windows: int = 0
    """Exposure windows holding at least one sighting an attacker sent."""
    caught_windows: int = 0
    """... of which the guard flagged (any reason)."""
    honest_sightings: int = 0
    """Sightings of honest agents' RPIs that no attacker sent to this receiver."""
    honest_flagged: int = 0
    collateral_sightings: int = 0
    """Sightings an honest agent sent itself of an RPI an attacker also sent here."""
    collateral_flagged: int = 0
    """... that carry a reason (the RPI is marked from the moment the guard noticed)."""
    honest_windows: int = 0
    honest_windows_flagged: int = 0
    relayed_notifying_flag: int = 0
    """Pair-days with relayed windows that notify under the scenario's policy."""
    relayed_notifying_exclude: int = 0
    """... and those that still notify with ``relay_policy = "exclude"``."""
    reasons: Counter[str] = field(default_factory=Counter)
    """Reasons seen on the caught windows."""

    @property
    def caught_share(self) -> float | None:
        return self.caught_windows / self.relayed_windows if self.relayed_windows else None

    @property
    def honest_flagged_share(self) -> float | None:
        return self.honest_flagged / self.honest_sightings if self.honest_sightings else None

    def add_receiver(
        self,
        observed: Sequence[ObservedScan],
        senders: Sequence[int],
        people: int,
        windows: Sequence[tuple[ExposureWindow, Sequence[tuple[bytes, MatchedScan]]]],
    ) -> list[bool]:
        """Count one receiver: its guarded scans (with their senders) and its windows
        with the matched scans each holds; returns which windows hold relayed sightings."""
        relayed_rpis = {o.rpi for o, tx in zip(observed, senders, strict=True) if tx >= people}
        relayed_scans = {
            _scan_key(o.rpi, o.first_seen, o.last_seen, o.scan_start)
            for o, tx in zip(observed, senders, strict=True)
            if tx >= people
        }
        for o, tx in zip(observed, senders, strict=True):
            flagged = o.count if o.relay & ALL_REASONS else 0
            if tx < people and o.rpi not in relayed_rpis:
                self.honest_sightings += o.count
                self.honest_flagged += flagged
            elif tx < people:
                self.collateral_sightings += o.count
                self.collateral_flagged += flagged
        flags: list[bool] = []
        for window, scans in windows:
            relayed = any(
                _scan_key(rpi, s.first_seen, s.last_seen, s.scan_start) in relayed_scans
                for rpi, s in scans
            )
            flags.append(relayed)
            if relayed:
                self.relayed_windows += 1
                if window.relay:
                    self.caught_windows += 1
                    self.reasons.update(reason_names(window.relay))
            else:
                self.honest_windows += 1
                self.honest_windows_flagged += 1 if window.relay else 0
        return flags

    def to_json(self) -> dict[str, Any]:
        return {
            "attackers": self.attackers,
            "relayed_windows": self.relayed_windows,
            "caught_windows": self.caught_windows,
            "caught_share": self.caught_share,
            "honest_sightings": self.honest_sightings,
            "honest_flagged": self.honest_flagged,
            "honest_flagged_share": self.honest_flagged_share,
            "collateral_sightings": self.collateral_sightings,
            "collateral_flagged": self.collateral_flagged,
            "honest_windows": self.honest_windows,
            "honest_windows_flagged": self.honest_windows_flagged,
            "relayed_notifying_flag": self.relayed_notifying_flag,
            "relayed_notifying_exclude": self.relayed_notifying_exclude,
            "reasons": dict(sorted(self.reasons.items())),
        }


def window_scans(
    windows: Sequence[ExposureWindow], match: KeyMatch
) -> list[tuple[ExposureWindow, list[tuple[bytes, MatchedScan]]]]:
    """Each of one key's windows (sorted by start) with the matched scans it was made of,
    each with its RPI (derived again from the key: a matched scan does not carry it)."""
    rpik = crypto.derive_rpik(match.key.key_data)
    ordered = sorted(match.scans, key=lambda s: s.first_seen)
    starts = [w.start for w in windows] + [float("inf")]
    return [
        (
            w,
            [
                (crypto.rpi(rpik, s.en_interval), s)
                for s in ordered
                if starts[i] <= s.first_seen < starts[i + 1]
            ],
        )
        for i, w in enumerate(windows)
    ]
