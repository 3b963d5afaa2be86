"""Radio faults with the daemon's real radio (bleak + bless) against the fake bluetoothd.

* F9: bluetoothd restarts 20 times in a row under ``contact-agent run``; each time
  advertising and scanning come back, with exactly one advertisement registered.
* F10: the wall clock steps forward and backward across interval and day boundaries
  under an in-process daemon; no RPI ever goes on air again after another one followed
  it (the fake's log of frames on air), and every step rotates (or, behind a day's
  high-water mark with its keys used up, pauses).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import agent.ble.radio
from agent import crypto
from agent.ble.radio import RadioTuning
from agent.daemon.service import AgentService
from agent.daemon.timebase import ServiceTiming
from agent.lab.sim import FakeBluez
from agent.lab.sim.bus import SYSTEM_BUS_ENV
from tests.daemon.fakes import SteppableClock
from tests.daemon.test_service import TRUSTED, running
from tests.faults.scripts import base as base
from tests.faults.scripts import harness as harness
from tests.faults.scripts import load_script, require_dbus_daemon

RESTARTS = 20


async def until(check: Callable[[], bool], timeout: float, what: str) -> float:
    """Seconds until ``check()`` held; fails after ``timeout``."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < timeout, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)
    return time.monotonic() - started


@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_twenty_bluetoothd_restarts_in_a_row(harness: ModuleType, base: Path) -> None:
    require_dbus_daemon()
    async with harness.simulated_air() as (bus, fake):
        harness.en_beacon(fake, "phone", os.urandom(20))
        daemon = harness.DaemonProcess(base, bus.address, harness.radio_config())
        try:
            await daemon.cli("enable")
            await daemon.start()
            await daemon.wait_ready()
            heard = 0
            most = 0
            recoveries = []
            for n in range(RESTARTS):
                heard = (await daemon.control("status"))["metrics"]["adverts_heard_total"]
                await fake.restart(downtime=0.2, graceful=n % 2 == 0)
                assert fake.advertisements("hci0") == []
                started = time.monotonic()
                while True:
                    adverts = len(fake.advertisements("hci0"))
                    most = max(most, adverts)
                    status = await daemon.control("status")
                    back = status["advertising"] and status["scanning"] and adverts == 1
                    if back and status["metrics"]["adverts_heard_total"] > heard:
                        break
                    assert time.monotonic() - started < 10, f"restart {n}: not back in 10 s"
                    await asyncio.sleep(0.1)
                recoveries.append(time.monotonic() - started)
            assert most == 1  # never two registrations at once
            assert daemon.running
            status = await daemon.control("status")
            assert status["degraded"] is None
            assert status["metrics"]["task_restarts_total"] == 0  # the radio recovered itself
            assert await daemon.stop() == 0
            assert "Traceback" not in daemon.log.read_text()
        finally:
            daemon.close()
    assert len(recoveries) == RESTARTS


def on_air_sequence(fake: FakeBluez) -> list[bytes]:
    """The EN payloads the adapter put on air, consecutive repeats folded."""
    sequence: list[bytes] = []
    for frame in fake.frames("hci0"):
        if frame.service_data is not None and (not sequence or sequence[-1] != frame.service_data):
            sequence.append(frame.service_data)
    return sequence


@contextlib.asynccontextmanager
async def radio_service(base: Path, clock: SteppableClock, monkeypatch: pytest.MonkeyPatch) -> Any:
    timing = ServiceTiming(tick=0.1, housekeeping=0.5, first_fetch_delay=60, ready_timeout=10)
    # production radio code; only its polling is shortened: the rotation loop checks for
    # steps every 10 s in production (a step rotates within about 11 s, measured)
    fast = functools.partial(RadioTuning, rotation_check_interval=0.3)
    monkeypatch.setattr(agent.ble.radio, "RadioTuning", fast)
    async with load_script("fault_harness").simulated_air() as (bus, fake):
        monkeypatch.setenv(SYSTEM_BUS_ENV, bus.address)
        service = AgentService(
            TRUSTED, base / "data", clock=clock, timing=timing, environ={}, handle_signals=False
        )
        async with running(service):
            await service.set_consent(True)
            yield service, fake


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_clock_steps_never_put_an_rpi_on_air_twice(
    base: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_dbus_daemon()
    now = time.time()
    midnight = (now // 86_400 + 1) * 86_400  # M: the next UTC midnight
    # start 30 s before an interval boundary, 20.5 minutes before midnight
    clock = SteppableClock(offset=midnight - 20 * 60 - 30 - now)
    targets = [
        ("forward 2 h, across midnight", midnight + 2 * 3600 + 5),
        ("back 2.5 h, to the first interval", midnight - 25 * 60),
        ("forward across midnight, behind that day's mark", midnight + 5),
        ("forward 3 h", midnight + 3 * 3600 + 5),
        ("forward a little, across one interval boundary", None),
    ]
    async with radio_service(base, clock, monkeypatch) as (service, fake):
        await until(lambda: len(on_air_sequence(fake)) == 1, 15, "advertising")
        outcomes = []
        for what, target in targets:
            if target is None:
                wall = clock.wall()
                target = (wall // 600 + 1) * 600 + 5
            before = len(on_air_sequence(fake))
            clock.step(target - clock.wall())
            started = time.monotonic()
            while len(on_air_sequence(fake)) == before:
                paused = service.radio_status().get("advertising_paused")
                if paused and time.monotonic() - started > 3:
                    break  # advertising pauses rather than repeat an interval
                assert time.monotonic() - started < 15, f"{what}: no rotation"
                await asyncio.sleep(0.05)
            outcomes.append("rotated" if len(on_air_sequence(fake)) > before else "paused")
        sequence = on_air_sequence(fake)
        schedule = service.schedule
        assert schedule is not None
        teks = list(schedule.teks)
    assert len(sequence) == len(set(sequence)), "an RPI went on air again"
    assert outcomes[0] == outcomes[3] == outcomes[4] == "rotated", outcomes
    # every payload on air is the RPI of one of our keys at an interval it was valid for
    valid = set()
    for tek in teks:
        rpik = crypto.derive_rpik(tek.key_data)
        valid |= set(crypto.rpis(rpik, tek.rolling_start_interval_number, tek.rolling_period))
    assert {p[:16] for p in sequence} <= valid
    assert len(teks) >= 3  # the backward steps took fresh keys (or paused)
