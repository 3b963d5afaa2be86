"""EN interval arithmetic, the fake clock, step detection and the clock-trust decision."""

from __future__ import annotations

import pytest

from agent.clock import (
    ClockTrust,
    FakeClock,
    StepDetector,
    SystemClock,
    decide_clock_trust,
    en_interval_number,
    interval_start_seconds,
    rolling_start_interval_number,
)
from agent.errors import MalformedInputError


def test_en_interval_number_of_the_vector_time() -> None:
    assert en_interval_number(1585785600) == 2642976
    assert en_interval_number(1585785600 + 599.9) == 2642976
    assert en_interval_number(1585785600 + 600) == 2642977
    assert interval_start_seconds(2642977) == 1585786200


def test_rolling_start_is_utc_midnight() -> None:
    assert rolling_start_interval_number(2642976 + 143) == 2642976
    assert rolling_start_interval_number(2642976 + 144) == 2642976 + 144
    assert rolling_start_interval_number(2642976) % 144 == 0


def test_negative_times_are_rejected() -> None:
    with pytest.raises(MalformedInputError, match="must not be negative"):
        en_interval_number(-1)
    with pytest.raises(MalformedInputError, match="must not be negative"):
        rolling_start_interval_number(-5)


def test_fake_clock_moves_only_when_told() -> None:
    clock = FakeClock(wall=1000.0, monotonic=5.0)
    assert (clock.wall(), clock.monotonic()) == (1000.0, 5.0)
    clock.advance(10)
    assert (clock.wall(), clock.monotonic()) == (1010.0, 15.0)
    clock.step(-600)
    assert (clock.wall(), clock.monotonic()) == (410.0, 15.0)
    with pytest.raises(ValueError, match="forward"):
        clock.advance(-1)


def test_system_clock_is_sane() -> None:
    clock = SystemClock()
    assert clock.wall() > 1_600_000_000
    assert clock.monotonic() <= clock.monotonic()


def test_step_detector_sees_steps_both_ways_and_ignores_normal_progress() -> None:
    clock = FakeClock()
    detector = StepDetector(clock)
    clock.advance(30)
    assert detector.check() == 0.0
    clock.step(3 * 3600)
    assert detector.check() == pytest.approx(3 * 3600)
    clock.advance(1)
    assert detector.check() == 0.0
    clock.step(-15 * 60)
    assert detector.check() == pytest.approx(-900)
    clock.step(1.5)  # below the threshold: NTP slewing noise
    assert detector.check() == 0.0


def test_trust_not_required_is_assumed() -> None:
    d = decide_clock_trust(require_sync=False, system_synchronized=False, wall=0, lower_bound=None)
    assert d.state is ClockTrust.ASSUMED
    assert d.state.trusted


def test_trust_needs_sync() -> None:
    d = decide_clock_trust(require_sync=True, system_synchronized=False, wall=2e9, lower_bound=None)
    assert d.state is ClockTrust.UNTRUSTED
    assert "not synchronised" in d.reason
    assert not d.state.trusted


def test_trust_synced_and_plausible() -> None:
    d = decide_clock_trust(
        require_sync=True, system_synchronized=True, wall=1.7e9, lower_bound=1.69e9
    )
    assert d.state is ClockTrust.SYNCED


def test_trust_rejects_time_before_lower_bound_or_far_beyond() -> None:
    before = decide_clock_trust(
        require_sync=True, system_synchronized=True, wall=1.6e9, lower_bound=1.7e9
    )
    assert before.state is ClockTrust.UNTRUSTED
    assert "earlier" in before.reason
    far = decide_clock_trust(
        require_sync=True, system_synchronized=True, wall=1.7e9 + 400 * 86400, lower_bound=1.7e9
    )
    assert far.state is ClockTrust.UNTRUSTED
    assert "more than a year" in far.reason
