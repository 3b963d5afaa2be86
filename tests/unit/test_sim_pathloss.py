"""The simulator's path-loss model: RSSI = tx_at_1m - 10 n log10(d) - walls * loss + noise."""

from __future__ import annotations

import random
import statistics

import pytest

from agent.lab.sim.air import random_nrpa
from agent.lab.sim.pathloss import Link, PathLossModel


def test_mean_rssi_follows_the_log_distance_formula() -> None:
    m = PathLossModel(tx_at_1m=-59, exponent=2.0, wall_loss_db=5.0)
    assert m.mean_rssi(1.0) == -59
    assert m.mean_rssi(10.0) == pytest.approx(-79)
    assert m.mean_rssi(10.0, walls=2) == pytest.approx(-89)
    assert PathLossModel(tx_at_1m=-59, exponent=3.0).mean_rssi(100.0) == pytest.approx(-119)
    assert m.mean_rssi(0.0) == m.mean_rssi(0.1)  # no infinity at zero distance


def test_noise_is_seeded_and_has_the_configured_spread() -> None:
    m = PathLossModel(noise_sd_db=4.0, sensitivity_dbm=-200)
    first = [m.sample(random.Random(42), 3.0) for _ in range(5)]
    rng_a, rng_b = random.Random(9), random.Random(9)
    assert [m.sample(rng_a, 3.0) for _ in range(50)] == [m.sample(rng_b, 3.0) for _ in range(50)]
    samples = [m.sample(rng_a, 3.0) for _ in range(4000)]
    values = [s for s in samples if s is not None]
    assert statistics.mean(values) == pytest.approx(m.mean_rssi(3.0), abs=0.3)
    assert statistics.stdev(values) == pytest.approx(4.0, abs=0.3)
    assert len(set(first)) == 1  # same seed, same first draw


def test_too_weak_is_not_heard_and_values_are_clamped() -> None:
    m = PathLossModel(noise_sd_db=0.0, sensitivity_dbm=-100)
    rng = random.Random(0)
    assert m.sample(rng, 1_000_000.0) is None
    assert PathLossModel(tx_at_1m=40, noise_sd_db=0.0).sample(rng, 1.0) == 20


def test_links_fixed_or_by_distance() -> None:
    m, rng = PathLossModel(noise_sd_db=0.0), random.Random(0)
    assert Link(rssi=-55).sample(m, rng) == -55
    assert Link().sample(m, rng) is None  # out of range
    assert Link(distance_m=10.0, walls=1).sample(m, rng) == round(m.mean_rssi(10.0, 1))


def test_addresses_are_non_resolvable_private() -> None:
    rng = random.Random(3)
    addresses = {random_nrpa(rng) for _ in range(1000)}
    assert len(addresses) == 1000
    for address in addresses:
        first = int(address.split(":")[0], 16)
        assert first >> 6 == 0  # top two bits 00: non-resolvable private
        assert address not in ("00:00:00:00:00:00", "3F:FF:FF:FF:FF:FF")
