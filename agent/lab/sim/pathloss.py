"""Radio links of the simulator: a fixed RSSI per link, or a log-distance path-loss model.

``RSSI = tx_at_1m - 10 * n * log10(d) - walls * wall_loss + noise`` with Gaussian noise
from a seeded RNG, so a simulation is reproducible. A result below the receiver's
sensitivity means the advertisement is not heard at all.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

RSSI_FLOOR = -127
RSSI_CEILING = 20


@dataclass(frozen=True, slots=True)
class PathLossModel:
    """Log-distance path loss with walls and noise."""

    tx_at_1m: float = -59.0
    """RSSI at one metre without walls (a phone at about -15 dBm TX power)."""
    exponent: float = 2.0
    """Path-loss exponent n: 2 in free space, 2.5..3.5 indoors."""
    wall_loss_db: float = 5.0
    noise_sd_db: float = 2.0
    sensitivity_dbm: float = -100.0
    """Weaker signals are not received."""

    def mean_rssi(self, distance_m: float, walls: int = 0) -> float:
        """The noise-free RSSI at ``distance_m`` (distances under 10 cm count as 10 cm)."""
        d = max(distance_m, 0.1)
        return self.tx_at_1m - 10.0 * self.exponent * math.log10(d) - walls * self.wall_loss_db

    def sample(self, rng: random.Random, distance_m: float, walls: int = 0) -> int | None:
        """One received RSSI in dBm, or None when the signal is below sensitivity."""
        value = self.mean_rssi(distance_m, walls) + rng.gauss(0.0, self.noise_sd_db)
        if value < self.sensitivity_dbm:
            return None
        return max(RSSI_FLOOR, min(RSSI_CEILING, round(value)))


@dataclass(frozen=True, slots=True)
class Link:
    """How one receiver hears one transmitter: a fixed RSSI or a distance."""

    rssi: int | None = None
    """Fixed RSSI on every report (None with no distance: out of range)."""
    distance_m: float | None = None
    walls: int = 0

    def sample(self, model: PathLossModel, rng: random.Random) -> int | None:
        if self.distance_m is not None:
            return model.sample(rng, self.distance_m, self.walls)
        return self.rssi
