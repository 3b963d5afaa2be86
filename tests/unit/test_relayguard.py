"""The relay guard's signals, one by one, against honest devices that must stay unflagged."""

from __future__ import annotations

import os
from dataclasses import replace

import pytest

from agent.clock import FakeClock
from agent.config import RiskConfig
from agent.matching.core import MatchedScan
from agent.models import ExposureWindow, ReportType, ScanInstance
from agent.relayguard import (
    GuardSettings,
    Reason,
    RelayGuard,
    reason_names,
    time_shift_seconds,
    time_shifted,
)
from agent.risk import score_window

AEM = b"\x01\x02\x03\x04"


def rpi() -> bytes:
    return os.urandom(16)


class Air:
    """Reports at 1 s steps on a fake clock; returns the OR of every mask seen per RPI."""

    def __init__(self, settings: GuardSettings | None = None) -> None:
        self.clock = FakeClock(wall=1_700_000_000.0)
        self.guard = RelayGuard(self.clock, settings)
        self.masks: dict[bytes, int] = {}

    def hear(self, address: str, r: bytes, aem: bytes = AEM) -> int:
        mask = self.guard.observe(address, r, aem, self.clock.wall())
        self.masks[r] = self.masks.get(r, 0) | mask
        return mask

    def run(self, seconds: int, *senders: tuple[str, bytes]) -> None:
        for _ in range(seconds):
            for address, r in senders:
                self.hear(address, r)
            self.clock.advance(1.0)

    def flagged(self) -> int:
        return sum(1 for m in self.masks.values() if m)


def test_honest_devices_rotating_address_and_rpi_together_are_never_flagged() -> None:
    air = Air()
    for n in range(8):  # two hours, a rotation every 15 minutes, three devices side by side
        senders = [(f"AA:00:00:00:{d:02X}:{n:02X}", rpi()) for d in range(3)]
        air.run(15 * 60, *senders)
    assert air.flagged() == 0
    assert air.guard.stats().flagged == 0


@pytest.mark.parametrize("address_first", [True, False])
def test_a_rotation_edge_out_of_step_by_seconds_is_not_flagged(address_first: bool) -> None:
    """Address a few seconds before the RPI (or the other way round) at every rotation."""
    air = Air()
    rpis = [rpi() for _ in range(5)]
    for n in range(4):
        air.run(600, (f"A{n}", rpis[n]))
        edge = (f"A{n + 1}", rpis[n]) if address_first else (f"A{n}", rpis[n + 1])
        air.run(3, edge)
    air.run(600, ("A4", rpis[4]))
    assert air.flagged() == 0


def test_one_rpi_from_two_addresses_at_once_is_flagged() -> None:
    air = Air()
    x = rpi()
    air.run(30, ("A", x), ("RELAY", x))
    assert air.masks[x] & Reason.MULTI_ADDRESS
    assert air.guard.stats().signals["multi_address"] == 1


def test_a_phone_stack_restart_mid_interval_is_a_known_false_positive() -> None:
    """Same RPI (same interval), new address, old one silent: each held for minutes. This
    looks exactly like a replay from another transmitter; ``docs/matching.md`` says so."""
    air = Air()
    x = rpi()
    air.run(300, ("A", x))
    air.run(300, ("B", x))
    assert air.masks[x] == Reason.MULTI_ADDRESS


def test_one_address_sending_two_rpis_at_once_flags_both() -> None:
    air = Air()
    x, y = rpi(), rpi()
    air.run(5, ("RELAY", x), ("RELAY", y))
    assert air.masks[x] & Reason.MULTI_RPI and air.masks[y] & Reason.MULTI_RPI
    air.run(2, ("RELAY", x))
    assert air.masks[x] & Reason.MULTI_RPI


def test_one_address_holding_two_rpis_one_after_the_other_is_flagged() -> None:
    """A relay's own adapter keeps its address while the victim's RPI changes."""
    air = Air()
    x, y = rpi(), rpi()
    air.run(120, ("RELAY", x))
    air.run(120, ("RELAY", y))
    assert air.masks[y] & Reason.MULTI_RPI


def test_one_rpi_with_two_aems_is_flagged() -> None:
    air = Air()
    x = rpi()
    assert air.hear("A", x, AEM) == 0
    assert air.hear("A", x, b"\x09\x09\x09\x09") & Reason.AEM_CHANGED


def test_an_rpi_on_air_for_longer_than_25_minutes_is_flagged() -> None:
    air = Air()
    x = rpi()
    air.run(25 * 60, ("A", x))
    assert air.masks[x] == 0  # a slow phone's 20-minute RPI plus margin stays clean
    air.run(5, ("A", x))
    assert air.masks[x] == Reason.OVERLONG


def test_a_long_silence_restarts_the_presence() -> None:
    air = Air()
    x = rpi()
    air.run(15 * 60, ("A", x))
    air.clock.advance(11 * 60)  # gone, then back (an RPI's lifetime is at most ~20 min)
    air.run(15 * 60, ("A", x))
    assert air.masks[x] == 0


def test_hashes_die_with_their_key_and_live_entries_move_on() -> None:
    air = Air()
    x, gone = rpi(), rpi()
    air.run(10, ("A", x), ("B", gone))
    tables = air.guard._rpis
    assert x not in tables.current and all(len(h) == 16 for h in tables.current)
    assert air.guard.stats().tracked_rpis == 2
    air.run(20 * 60, ("A", x))  # two key periods and more: `gone` is forgotten
    assert air.guard.stats().tracked_rpis == 1
    assert air.masks[x] == 0
    air.run(6 * 60, ("A", x))  # the entry of x moved from key to key: its presence continues
    assert air.masks[x] == Reason.OVERLONG


def test_the_tables_are_capped() -> None:
    air = Air(GuardSettings(max_tracked=10))
    for n in range(50):
        air.hear(f"A{n}", rpi())
    stats = air.guard.stats()
    assert stats.tracked_rpis == 10 and stats.untracked == 40


def test_clear_forgets_everything() -> None:
    air = Air()
    x = rpi()
    air.run(5, ("A", x), ("B", x))
    air.guard.clear()
    assert air.guard.stats().tracked_rpis == 0
    assert air.hear("C", x) == 0


def _scan(j: int, first: float, last: float) -> MatchedScan:
    return MatchedScan(j, first, last, 3, 40, 38, 40.0, -10, 0, None)


def test_time_shift_is_measured_from_the_rpis_own_interval() -> None:
    j = 2_833_333
    start = j * 600.0
    assert time_shift_seconds(j, start, start + 599) == 0
    assert time_shift_seconds(j, start - 100, start + 10) == 100
    assert time_shift_seconds(j, start + 700, start + 800) == 200
    scans = [_scan(j, start + 10, start + 20), _scan(j, start + 600 + 1801, start + 600 + 1810)]
    marked = time_shifted(scans, 30 * 60)
    assert [s.relay for s in marked] == [0, Reason.TIME_SHIFTED]


def _window(relay: int) -> ExposureWindow:
    return ExposureWindow(
        start=1_700_000_000,
        duration_seconds=1800,
        report_type=ReportType.CONFIRMED_TEST,
        infectiousness=1,
        calibration_confidence=0,
        scan_instances=(ScanInstance(40, 38, 300),) * 6,
        key_data=bytes(16),
        relay=relay,
    )


@pytest.mark.parametrize("relay", [0, int(Reason.MULTI_RPI)])
def test_policy_flag_scores_and_exclude_leaves_out(relay: int) -> None:
    flagged = score_window(_window(relay), RiskConfig())
    assert flagged.score == 1800.0
    excluded = score_window(_window(relay), replace(RiskConfig(), relay_policy="exclude"))
    assert excluded.score == (0.0 if relay else 1800.0)


def test_reason_names() -> None:
    assert reason_names(Reason.MULTI_RPI | Reason.TIME_SHIFTED) == ["multi_rpi", "time_shifted"]
    assert reason_names(0) == []


def test_memory_stays_bounded_under_a_chain_of_rpis_and_addresses() -> None:
    """A transmitter handing each RPI to a new address (and so on) for hours: the nodes
    forgotten with their key are not kept alive by their peers."""
    air = Air()
    previous = rpi()
    for n in range(3 * 3600 // 5):
        current = rpi()
        air.hear(f"A{n}", previous)
        air.hear(f"A{n}", current)
        previous = current
        air.clock.advance(5.0)
    stats = air.guard.stats()
    live = air.guard._live  # white-box: every node reachable from the guard
    assert stats.tracked_rpis + stats.tracked_addresses == len(live) < 2 * 2 * 1200 // 5 + 10
