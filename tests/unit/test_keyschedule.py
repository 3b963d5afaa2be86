"""The key schedule: daily TEKs, RPIs per interval, rotation plan, no reuse after clock steps."""

from __future__ import annotations

import itertools
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from agent import crypto
from agent.clock import FakeClock, en_interval_number
from agent.keyschedule import KeySchedule, OwnTek, RotationPlanner
from agent.payload import Metadata

META = Metadata(tx_power_dbm=-8)
DAY0 = 2642976  # a UTC midnight (the vector key's start)


def counter_keys() -> itertools.count[int]:
    return itertools.count(1)


def make_schedule(teks: list[OwnTek] | None = None) -> KeySchedule:
    counter = counter_keys()
    return KeySchedule(teks or [], tek_factory=lambda: next(counter).to_bytes(16, "big"))


def test_first_broadcast_creates_an_aligned_key_and_the_right_rpi() -> None:
    schedule = make_schedule()
    b = schedule.broadcast(DAY0 + 37, META)
    assert b is not None
    assert b.tek.rolling_start_interval_number == DAY0
    assert b.tek.rolling_period == 144
    rpi = crypto.rpi(crypto.derive_rpik(b.tek.key_data), DAY0 + 37)
    assert b.service_data.rpi == rpi
    meta = crypto.decrypt_aem(crypto.derive_aemk(b.tek.key_data), rpi, b.service_data.aem)
    assert Metadata.from_bytes(meta) == META
    assert b.tek.max_broadcast_interval == DAY0 + 37
    assert schedule.pop_dirty() == [b.tek]
    assert schedule.pop_dirty() == []


def test_the_same_key_serves_the_whole_day_and_a_new_one_starts_at_midnight() -> None:
    schedule = make_schedule()
    first = schedule.broadcast(DAY0, META)
    last = schedule.broadcast(DAY0 + 143, META)
    nxt = schedule.broadcast(DAY0 + 144, META)
    assert first and last and nxt
    assert first.tek.key_data == last.tek.key_data
    assert nxt.tek.key_data != first.tek.key_data
    assert nxt.tek.rolling_start_interval_number == DAY0 + 144


def test_real_keys_come_from_the_csprng() -> None:
    schedule = KeySchedule()
    a = schedule.broadcast(DAY0, META)
    b = schedule.broadcast(DAY0 + 144, META)
    assert a and b and a.tek.key_data != b.tek.key_data
    assert len(a.tek.key_data) == 16


def test_backward_step_never_reuses_a_pair_and_ends_the_old_key() -> None:
    schedule = make_schedule()
    a = schedule.broadcast(DAY0 + 10, META)
    b = schedule.broadcast(DAY0 + 8, META)  # clock stepped back 20 min
    assert a and b
    assert b.tek.key_data != a.tek.key_data
    assert b.tek.rolling_start_interval_number == DAY0
    old = next(t for t in schedule.teks if t.key_data == a.tek.key_data)
    assert old.rolling_period == 11  # intervals DAY0..DAY0+10 were on air


def test_at_most_three_keys_per_day_then_advertising_pauses() -> None:
    schedule = make_schedule()
    assert schedule.broadcast(DAY0 + 50, META)
    assert schedule.broadcast(DAY0 + 40, META)
    assert schedule.broadcast(DAY0 + 30, META)
    assert schedule.broadcast(DAY0 + 20, META) is None  # a fourth key is not allowed
    assert len(schedule.teks) == 3
    # the third key is still usable going forward
    later = schedule.broadcast(DAY0 + 31, META)
    assert later is not None


@settings(max_examples=80, deadline=None)
@given(st.lists(st.integers(min_value=-200, max_value=200), min_size=1, max_size=60))
def test_no_tek_interval_pair_is_ever_broadcast_twice(steps: list[int]) -> None:
    schedule = make_schedule()
    seen: set[tuple[bytes, int]] = set()
    interval = DAY0 + 300
    for step in steps:
        interval = max(0, interval + step)
        b = schedule.broadcast(interval, META)
        if b is None:
            continue
        pair = (b.tek.key_data, b.en_interval)
        assert pair not in seen
        seen.add(pair)
        assert b.tek.covers(interval)


def test_end_current_key_for_same_day_release() -> None:
    schedule = make_schedule()
    a = schedule.broadcast(DAY0 + 60, META)
    assert a
    ended = schedule.end_current_key(DAY0 + 61)
    assert ended is not None
    ended_now = next(t for t in schedule.teks if t.key_data == a.tek.key_data)
    assert ended_now.rolling_period == 61
    assert ended_now in schedule.releasable(DAY0 + 61)
    b = schedule.broadcast(DAY0 + 61, META)
    assert b and b.tek.key_data != a.tek.key_data
    assert b.tek.rolling_start_interval_number == DAY0
    assert b.tek not in schedule.releasable(DAY0 + 61)


def test_releasable_keys_are_the_last_14_days_that_ended() -> None:
    schedule = make_schedule()
    for day in range(20):
        assert schedule.broadcast(DAY0 + day * 144 + 5, META)
    now = DAY0 + 19 * 144 + 6
    keys = schedule.releasable(now)
    starts = sorted(t.rolling_start_interval_number for t in keys)
    assert starts == [DAY0 + d * 144 for d in range(5, 19)]  # 14 days, not today's key


def test_own_rpis_cover_every_interval_of_recent_keys() -> None:
    schedule = make_schedule()
    b = schedule.broadcast(DAY0 + 3, META)
    assert b
    own = schedule.own_rpis(DAY0 + 3)
    assert len(own) == 144
    assert b.service_data.rpi in own


def test_drop_older_than_14_days() -> None:
    schedule = make_schedule()
    for day in range(16):
        schedule.broadcast(DAY0 + day * 144, META)
    gone = schedule.drop_older_than(DAY0 + 15 * 144)
    assert [t.rolling_start_interval_number for t in gone] == [DAY0]
    assert len(schedule.teks) == 15


def test_rotation_delays_are_between_10_and_20_minutes() -> None:
    planner = RotationPlanner(random.Random(7))
    delays = [planner.next_delay() for _ in range(2000)]
    assert all(600 < d < 1200 for d in delays)
    assert min(delays) < 650 and max(delays) > 1150  # uses the whole range


def test_two_simulated_hours_each_rpi_under_20_minutes_and_always_new() -> None:
    clock = FakeClock(wall=DAY0 * 600 + 3600)
    planner = RotationPlanner(random.Random(1))
    schedule = make_schedule()
    end = clock.wall() + 2 * 3600
    rpis: list[bytes] = []
    while clock.wall() < end:
        b = schedule.broadcast(en_interval_number(clock.wall()), META)
        assert b is not None
        rpis.append(b.service_data.rpi)
        delay = planner.next_delay()
        assert delay < 20 * 60
        clock.advance(delay)
    assert len(rpis) == len(set(rpis))
    assert len(rpis) >= 6


def test_ending_the_key_in_the_last_interval_of_the_day_is_known() -> None:
    schedule = make_schedule()
    last = DAY0 + 143
    a = schedule.broadcast(last, META)
    assert a and not schedule.ended(a.tek)
    schedule.end_current_key(last)
    assert schedule.ended(a.tek)  # the period is already 144: only the flag says so
    b = schedule.broadcast(last, META)
    assert b and b.tek.key_data != a.tek.key_data
    assert not schedule.ended(b.tek)


def test_forgotten_keys_leave_no_ended_mark_behind() -> None:
    schedule = make_schedule()
    a = schedule.broadcast(DAY0 + 5, META)
    assert a
    schedule.end_current_key(DAY0 + 6)
    assert schedule.ended(a.tek)
    schedule.drop_older_than(DAY0 + 15 * 144)
    assert schedule.teks == []
    assert not schedule.ended(a.tek)
