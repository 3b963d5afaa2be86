"""The in-process radio of the simulated field: who hears whom, when, at what RSSI.

No D-Bus and no bluetoothd: time advances in fixed steps (``step_seconds``) and, per step
and directed link, the receiver hears the transmitter when it is scanning and at least
one of the step's advertising frames gets through. Per frame the chance is
``(1 - frame_loss) * sigmoid((rssi - sensitivity) / 3 dB)``: it fades out smoothly
around the sensitivity. The RSSI of a step is the path-loss model's mean plus Gaussian
noise (:mod:`agent.lab.sim.pathloss`, with walls as extra loss).

What the agents themselves would do is real: each transmitter runs a
:class:`~agent.keyschedule.KeySchedule` with random 10-20 minute rotations
(:class:`~agent.keyschedule.RotationPlanner`), so every advert carries a real RPI and AEM;
each receiver scans continuously (60 s instances) or duty-cycled (4 s every 5 min, with
Android's jitter), and what it hears is aggregated per (RPI, scan instance) exactly like
the store does it for the matcher (:class:`~agent.models.ObservedScan`).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np

from agent.clock import en_interval_number
from agent.constants import DUTY_SCAN_JITTER_FRACTION, SCAN_INSTANCE_SECONDS
from agent.keyschedule import KeySchedule, RotationPlanner
from agent.lab.demo.geometry import FloatArray, IntArray
from agent.lab.demo.scenario import AgentSpec, RadioModel, ScanSettings
from agent.models import ObservedScan, ReportType, TemporaryExposureKey
from agent.payload import Metadata

FADE_DB = 3.0
"""Width of the soft reception edge around the sensitivity."""
RSSI_LIMITS = (-127, 20)


@dataclass(frozen=True, slots=True)
class ScanPlan:
    """One receiver's scan instances: [starts[i], ends[i])."""

    starts: FloatArray
    ends: FloatArray

    @staticmethod
    def build(settings: ScanSettings, start: float, end: float, rng: random.Random) -> ScanPlan:
        """Instances from before ``start`` (the agent was already scanning) to ``end``."""
        if settings.mode == "continuous":
            first = start - rng.uniform(0.0, SCAN_INSTANCE_SECONDS) - SCAN_INSTANCE_SECONDS
            count = int((end - first) // SCAN_INSTANCE_SECONDS) + 2
            starts = first + SCAN_INSTANCE_SECONDS * np.arange(count, dtype=np.float64)
            return ScanPlan(starts, starts + SCAN_INSTANCE_SECONDS)
        period = settings.duty_period_seconds
        t = start - rng.uniform(0.0, period) - period
        found = []
        while t < end:
            found.append(t)
            t += period * (1.0 - rng.uniform(0.0, DUTY_SCAN_JITTER_FRACTION))
        starts = np.array(found, dtype=np.float64)
        return ScanPlan(starts, starts + settings.duty_scan_seconds)

    def instance(self, times: FloatArray) -> IntArray:
        """The scan instance of each time, or -1 when the receiver is not scanning."""
        index = np.searchsorted(self.starts, times, side="right") - 1
        inside = (index >= 0) & (times < self.ends[np.maximum(index, 0)])
        return np.where(inside, index, -1).astype(np.int64)


@dataclass(frozen=True, slots=True)
class TxPlan:
    """One transmitter's adverts: advert i is on air from ``rotations[i]``."""

    rotations: FloatArray
    adverts: tuple[tuple[bytes, bytes], ...]
    """(RPI, AEM) of each rotation."""
    keys: tuple[TemporaryExposureKey, ...]
    """Its TEKs as they would be published (report type CONFIRMED_TEST)."""

    @staticmethod
    def build(tx_power_dbm: int, start: float, end: float, rng: random.Random) -> TxPlan:
        planner = RotationPlanner(rng)
        schedule = KeySchedule()
        metadata = Metadata(tx_power_dbm)
        t = start - rng.uniform(0.0, 1.0) * planner.next_delay()
        times, adverts = [], []
        while t < end:
            broadcast = schedule.broadcast(en_interval_number(t), metadata)
            if broadcast is not None:  # None only after a backward step: never here
                times.append(t)
                adverts.append((broadcast.service_data.rpi, broadcast.service_data.aem))
            t += planner.next_delay()
        keys = tuple(
            TemporaryExposureKey(
                k.key_data,
                k.rolling_start_interval_number,
                k.rolling_period,
                report_type=ReportType.CONFIRMED_TEST,
            )
            for k in schedule.teks
            if k.max_broadcast_interval is not None
        )
        return TxPlan(np.array(times, dtype=np.float64), tuple(adverts), keys)

    def advert(self, times: FloatArray) -> IntArray:
        return (np.searchsorted(self.rotations, times, side="right") - 1).astype(np.int64)


class Paths:
    """Positions of every agent over time (linear between path points)."""

    def __init__(self, agents: Sequence[AgentSpec]) -> None:
        self._t = [np.array([p[0] for p in a.path], dtype=np.float64) for a in agents]
        self._x = [np.array([p[1] for p in a.path], dtype=np.float64) for a in agents]
        self._y = [np.array([p[2] for p in a.path], dtype=np.float64) for a in agents]
        self.boxes = np.array(
            [[x.min(), y.min(), x.max(), y.max()] for x, y in zip(self._x, self._y, strict=True)]
        )

    def at(self, offsets: FloatArray) -> FloatArray:
        """Positions at ``offsets`` (seconds since the start): shape (len(offsets), n, 2)."""
        out = np.empty((offsets.shape[0], len(self._t), 2), dtype=np.float64)
        for i, (t, x, y) in enumerate(zip(self._t, self._x, self._y, strict=True)):
            out[:, i, 0] = np.interp(offsets, t, x)
            out[:, i, 1] = np.interp(offsets, t, y)
        return out

    def box_gaps(self, i: IntArray, j: IntArray) -> FloatArray:
        """A lower bound of the distance between agents i and j at any time."""
        a, b = self.boxes[i], self.boxes[j]
        dx = np.maximum(0.0, np.maximum(a[:, 0] - b[:, 2], b[:, 0] - a[:, 2]))
        dy = np.maximum(0.0, np.maximum(a[:, 1] - b[:, 3], b[:, 1] - a[:, 3]))
        gaps: FloatArray = np.hypot(dx, dy)
        return gaps


def max_range_m(radio: RadioModel) -> float:
    """Beyond this even a 6-sigma peak of noise and fading stays 15 dB below the sensitivity."""
    model = radio.path_loss
    spread = math.hypot(model.noise_sd_db, radio.fading_sd_db)
    floor = model.sensitivity_dbm - 6.0 * spread - 5.0 * FADE_DB
    return float(10.0 ** ((model.tx_at_1m - floor) / (10.0 * model.exponent)))


def mean_rssi(radio: RadioModel, metres: FloatArray, walls: IntArray) -> FloatArray:
    d = np.maximum(metres, 0.1)
    model = radio.path_loss
    loss = 10.0 * model.exponent * np.log10(d) + walls * model.wall_loss_db
    rssi: FloatArray = model.tx_at_1m - loss
    return rssi


def step_reception(radio: RadioModel, rssi: FloatArray, step_seconds: float) -> FloatArray:
    """Chance that at least one advertising frame of a step is received."""
    frames = max(1.0, step_seconds * 1000.0 / radio.advertising_interval_ms)
    per_frame = (1.0 - radio.frame_loss) / (
        1.0 + np.exp(-(rssi - radio.path_loss.sensitivity_dbm) / FADE_DB)
    )
    return 1.0 - (1.0 - per_frame) ** frames


@dataclass
class Heard:
    """Sightings aggregated per (receiver, transmitter, scan instance, advert)."""

    receiver: IntArray
    transmitter: IntArray
    instance: IntArray
    advert: IntArray
    count: IntArray
    rssi_sum: FloatArray
    rssi_min: IntArray
    rssi_max: IntArray
    first: FloatArray
    last: FloatArray

    @staticmethod
    def empty() -> Heard:
        i, f = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
        return Heard(i, i, i, i, i, f, i, i, f, f)

    def __len__(self) -> int:
        return int(self.receiver.shape[0])


def aggregate(parts: Sequence[Heard]) -> Heard:
    """Merge partial aggregates (e.g. of consecutive time chunks) group by group."""
    if not parts:
        return Heard.empty()
    cat = {f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(Heard)}
    if cat["receiver"].size == 0:
        return Heard.empty()
    columns = [cat["receiver"], cat["transmitter"], cat["instance"], cat["advert"]]
    radix = [int(c.max()) + 1 for c in columns]
    key = columns[0]
    for column, size in zip(columns[1:], radix[1:], strict=True):
        key = key * size + column
    groups, inverse = np.unique(key, return_inverse=True)
    decoded = []
    for size in reversed(radix[1:]):
        decoded.append(groups % size)
        groups = groups // size
    advert, instance, transmitter = decoded
    n = groups.shape[0]

    def reduce(op: np.ufunc, values: FloatArray | IntArray, fill: float) -> FloatArray:
        out = np.full(n, fill, dtype=np.float64)
        op.at(out, inverse, values)
        return out

    return Heard(
        receiver=groups,
        transmitter=transmitter,
        instance=instance,
        advert=advert,
        count=np.bincount(inverse, weights=cat["count"], minlength=n).astype(np.int64),
        rssi_sum=np.bincount(inverse, weights=cat["rssi_sum"], minlength=n).astype(np.float64),
        rssi_min=reduce(np.minimum, cat["rssi_min"], np.inf).astype(np.int64),
        rssi_max=reduce(np.maximum, cat["rssi_max"], -np.inf).astype(np.int64),
        first=reduce(np.minimum, cat["first"], np.inf),
        last=reduce(np.maximum, cat["last"], -np.inf),
    )


def sightings_of(
    times: FloatArray,
    receiver: IntArray,
    transmitter: IntArray,
    rssi: FloatArray,
    scans: Sequence[ScanPlan],
    txs: Sequence[TxPlan],
) -> Heard:
    """Individual sightings (one per heard step) grouped into scans."""
    value = np.clip(np.rint(rssi), *RSSI_LIMITS).astype(np.int64)
    instance = np.empty(times.shape[0], dtype=np.int64)
    advert = np.empty(times.shape[0], dtype=np.int64)
    for r in np.unique(receiver):
        mask = receiver == r
        instance[mask] = scans[int(r)].instance(times[mask])
    for x in np.unique(transmitter):
        mask = transmitter == x
        advert[mask] = txs[int(x)].advert(times[mask])
    ones = np.ones(times.shape[0], dtype=np.int64)
    return aggregate(
        [
            Heard(
                receiver,
                transmitter,
                instance,
                advert,
                ones,
                value.astype(np.float64),
                value,
                value,
                times,
                times,
            )
        ]
    )


def observed_scans(
    heard: Heard, receiver: int, scans: ScanPlan, txs: Sequence[TxPlan]
) -> tuple[list[ObservedScan], IntArray]:
    """The receiver's scans as the store hands them to the matcher, and their transmitters."""
    rows = np.nonzero(heard.receiver == receiver)[0]
    result, senders = [], []
    for k in rows:
        inst, tx = int(heard.instance[k]), int(heard.transmitter[k])
        rpi, aem = txs[tx].adverts[int(heard.advert[k])]
        previous = inst - 1 if inst > 0 else None
        result.append(
            ObservedScan(
                rpi=rpi,
                aem=aem,
                first_seen=float(heard.first[k]),
                last_seen=float(heard.last[k]),
                count=int(heard.count[k]),
                rssi_min=int(heard.rssi_min[k]),
                rssi_max=int(heard.rssi_max[k]),
                rssi_mean=float(heard.rssi_sum[k] / heard.count[k]),
                previous_scan_end=None if previous is None else float(scans.ends[previous]),
                scan_start=float(scans.starts[inst]),
                previous_scan_start=None if previous is None else float(scans.starts[previous]),
            )
        )
        senders.append(tx)
    return result, np.array(senders, dtype=np.int64)
