"""A simulated two-device field test: what devices A and B would have logged.

Seeded and self-contained (the ground truth of the field-report tests): each device has a
real TEK and advertises real RPIs and AEMs (its TX power in the metadata); the other
device hears it once a second with a log-distance path-loss model plus Gaussian noise,
misses some adverts, and goes deaf for the stretches listed in ``GAPS``. The distance
schedule is 1 m, 3 m, then 10 m behind a wall, ten minutes each.
"""

from __future__ import annotations

import functools
import math
import random
from dataclasses import dataclass, field

from agent import crypto
from agent.clock import en_interval_number
from agent.field.marks import Mark, new_mark
from agent.models import Sighting
from agent.payload import Metadata

T0 = 1_714_564_800.0
"""2024-05-01T12:00:00Z."""
LEAD_SECONDS = 120.0
"""Both devices run before the first mark."""
SEGMENT_SECONDS = 600.0
SCHEDULE = ((1.0, False, "table"), (3.0, False, "hall"), (10.0, True, "behind the wall"))
LOSS_AT_1M_DB = 44.0
PATH_LOSS_EXPONENT = 2.0
WALL_LOSS_DB = 8.0
NOISE_SD_DB = 3.0
GAPS = {
    # receiver -> (segment index, seconds after the mark, length): nothing heard then
    "A": ((1, 200.0, 90.0),),
    "B": ((2, 100.0, 150.0),),
}


@dataclass(frozen=True)
class Device:
    name: str
    tek: bytes
    tx_power_dbm: int

    def advert(self, t: float) -> tuple[bytes, bytes]:
        """RPI and AEM on air at time ``t`` (a new RPI every 10-minute interval)."""
        return _advert(self.tek, self.tx_power_dbm, en_interval_number(t))


@functools.lru_cache(maxsize=256)
def _advert(tek: bytes, tx_power_dbm: int, en_interval: int) -> tuple[bytes, bytes]:
    rpi = crypto.rpi(crypto.derive_rpik(tek), en_interval)
    metadata = bytes(Metadata(tx_power_dbm=tx_power_dbm))
    return rpi, crypto.encrypt_aem(crypto.derive_aemk(tek), rpi, metadata)


@dataclass
class FieldRun:
    a: Device
    b: Device
    marks: list[Mark]
    log_a: list[Sighting] = field(default_factory=list)
    """What A heard."""
    log_b: list[Sighting] = field(default_factory=list)
    stranger: Device | None = None
    stranger_count: int = 0

    @property
    def end(self) -> float:
        return self.marks[-1].time


def path_loss_db(distance_m: float, wall: bool) -> float:
    return (
        LOSS_AT_1M_DB
        + 10 * PATH_LOSS_EXPONENT * math.log10(distance_m)
        + (WALL_LOSS_DB if wall else 0.0)
    )


def _rng_bytes(rng: random.Random, n: int) -> bytes:
    return bytes(rng.getrandbits(8) for _ in range(n))


def _heard(
    rng: random.Random, receiver: str, segment: int | None, since_mark: float, settle: float
) -> bool:
    if segment is None:
        return rng.random() < 0.9
    if since_mark < settle:
        return False  # devices being moved to the new place
    for gap_segment, start, length in GAPS[receiver]:
        if segment == gap_segment and start <= since_mark < start + length:
            return False
    wall = SCHEDULE[segment][1]
    return rng.random() < (0.55 if wall else 0.9)


def simulate(seed: int = 7, stranger: bool = False, t0: float = T0) -> FieldRun:
    """Both logs of one run from ``t0``; ``stranger`` adds a third phone only A hears."""
    rng = random.Random(seed)
    a = Device("A", _rng_bytes(rng, 16), tx_power_dbm=-6)
    b = Device("B", _rng_bytes(rng, 16), tx_power_dbm=-10)
    first = t0 + LEAD_SECONDS
    marks = [
        new_mark(distance_m=d, time=first + i * SEGMENT_SECONDS, note=note, wall=wall)
        for i, (d, wall, note) in enumerate(SCHEDULE)
    ]
    marks.append(new_mark(distance_m=None, time=first + len(SCHEDULE) * SEGMENT_SECONDS))
    run = FieldRun(a, b, marks)
    settles = {(name, i): rng.uniform(2.0, 25.0) for name in "AB" for i in range(len(SCHEDULE))}
    for second in range(int(run.end - t0)):
        for receiver, transmitter, log in (("A", b, run.log_a), ("B", a, run.log_b)):
            t = t0 + second + rng.uniform(0.0, 0.99)
            segment = None if t < first else min(int((t - first) // SEGMENT_SECONDS), 2)
            distance, wall = (1.0, False) if segment is None else SCHEDULE[segment][:2]
            since = 0.0 if segment is None else t - marks[segment].time
            settle = 0.0 if segment is None else settles[(receiver, segment)]
            if not _heard(rng, receiver, segment, since, settle):
                continue
            rssi = round(
                transmitter.tx_power_dbm - path_loss_db(distance, wall) + rng.gauss(0, NOISE_SD_DB)
            )
            rpi, aem = transmitter.advert(t)
            log.append(Sighting(time=t, rpi=rpi, aem=aem, rssi=rssi))
    if stranger:
        run.stranger = Device("S", _rng_bytes(rng, 16), tx_power_dbm=0)
        for second in range(0, int(SEGMENT_SECONDS), 10):
            t = first + second + 0.5
            rpi, aem = run.stranger.advert(t)
            run.log_a.append(Sighting(time=t, rpi=rpi, aem=aem, rssi=-90))
            run.stranger_count += 1
        run.log_a.sort(key=lambda s: s.time)
    return run


def expected_latency(log: list[Sighting], mark: Mark, until: float) -> float | None:
    """Ground truth: first sighting in [mark, until) minus the mark's time."""
    times = [s.time for s in log if mark.time <= s.time < until]
    return min(times) - mark.time if times else None
