"""Fixtures: a private dbus-daemon, the fake bluetoothd on it, and radio agents.

Each test gets a fresh bus and a fresh fake: bleak keeps one BlueZManager per event
loop and caches what it saw, so nothing may leak between tests. Without a dbus-daemon
binary the tests are skipped locally, but fail under CI (CI installs it).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import random
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from agent import crypto
from agent.ble.radio import Radio, RadioTuning
from agent.clock import Clock, SystemClock
from agent.config import RadioConfig
from agent.keyschedule import KeySchedule, OwnTek, RotationPlanner
from agent.lab.sim import FakeBluez, PrivateBus, find_dbus_daemon
from agent.lab.sim.bus import SYSTEM_BUS_ENV
from agent.models import ScanPeriod, Sighting
from agent.payload import Metadata

FAST = RadioTuning(
    scan_instance_seconds=0.5,
    watchdog_interval=0.1,
    silence_seconds=1.0,
    silence_max_seconds=4.0,
    rotation_gap=0.05,
    rotation_check_interval=0.05,
    backoff_initial=0.05,
    backoff_max=0.4,
    call_timeout=3.0,
    supervise_interval=0.05,
)
"""Production logic on a test clock: instances of 0.5 s, watchdog every 0.1 s."""


@pytest.fixture(autouse=True)
def _collect_garbage() -> Iterator[None]:
    """Finalize each test's dead D-Bus connections before the next test starts.

    When a bus dies, dbus_next leaves send futures holding the error; collected later, at
    a random point (inside pytest's own compile() calls on CPython 3.11.7), their
    finalizers can trip "SystemError: AST constructor recursion depth mismatch".
    """
    yield
    gc.collect()


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_dbus_daemon() -> None:
    if find_dbus_daemon() is None:
        if _in_ci():
            pytest.fail("dbus-daemon is missing; CI must install it (Debian: dbus-daemon)")
        pytest.skip("dbus-daemon is not installed (Debian package 'dbus-daemon')")


@pytest.fixture
def private_bus(monkeypatch: pytest.MonkeyPatch) -> Iterator[PrivateBus]:
    """A private dbus-daemon as the system bus of this test."""
    require_dbus_daemon()
    with PrivateBus() as bus:
        monkeypatch.setenv(SYSTEM_BUS_ENV, bus.address)
        yield bus


@pytest.fixture
async def make_fake(private_bus: PrivateBus) -> AsyncIterator[Any]:
    """Factory: ``await make_fake(adapters, **options)`` -> a started FakeBluez."""
    fakes: list[FakeBluez] = []

    async def make(adapters: tuple[str, ...] = ("hci0", "hci1"), **options: Any) -> FakeBluez:
        options.setdefault("tick", 0.05)
        options.setdefault("stale_timeout", 0.5)
        fake = await FakeBluez(adapters, **options).start()
        fakes.append(fake)
        return fake

    yield make
    for fake in fakes:
        await fake.stop()


@pytest.fixture
async def fake(make_fake: Any) -> FakeBluez:
    """The fake bluetoothd with adapters hci0 and hci1."""
    result: FakeBluez = await make_fake()
    return result


@dataclass
class Agent:
    """One Radio with the state a daemon would give it."""

    radio: Radio
    schedule: KeySchedule
    metadata: Metadata
    queue: asyncio.Queue[Sighting | ScanPeriod]
    """Sightings and scan periods, in the order the radio produced them."""
    persisted: list[OwnTek] = field(default_factory=list)
    task: asyncio.Task[None] | None = None
    _sightings: list[Sighting] = field(default_factory=list)
    _periods: list[ScanPeriod] = field(default_factory=list)

    def _pull(self) -> None:
        while not self.queue.empty():
            item = self.queue.get_nowait()
            (self._sightings if isinstance(item, Sighting) else self._periods).append(item)

    def sightings(self) -> list[Sighting]:
        """Everything heard so far (the queue is drained into this list)."""
        self._pull()
        return list(self._sightings)

    def periods(self) -> list[ScanPeriod]:
        self._pull()
        return list(self._periods)

    def heard(self) -> int:
        return len(self.sightings())

    def clear(self) -> None:
        self._pull()
        self._sightings.clear()
        self._periods.clear()


@pytest.fixture
async def make_agent() -> AsyncIterator[Any]:
    """Factory: ``make_agent(adapter, **config)`` -> a running Agent (stopped at teardown)."""
    agents: list[Agent] = []

    def make(
        adapter: str,
        *,
        clock: Clock | None = None,
        tuning: RadioTuning = FAST,
        start: bool = True,
        tx_power: int = -8,
        queue: asyncio.Queue[Sighting | ScanPeriod] | None = None,
        **config: Any,
    ) -> Agent:
        config.setdefault("passive", False)
        agent = Agent(
            radio=None,  # type: ignore[arg-type]
            schedule=KeySchedule(),
            metadata=Metadata(tx_power_dbm=tx_power),
            queue=queue if queue is not None else asyncio.Queue(),
        )

        async def persist(teks: list[OwnTek]) -> None:
            agent.persisted.extend(teks)

        agent.radio = Radio(
            RadioConfig(adapter=adapter, **config),
            clock or SystemClock(),
            agent.schedule,
            agent.metadata,
            agent.queue,
            scan_periods=agent.queue,
            persist_teks=persist,
            tuning=tuning,
            planner=RotationPlanner(random.Random(7)),
            rng=random.Random(7),
        )
        if start:
            agent.task = asyncio.create_task(agent.radio.run())
        agents.append(agent)
        return agent

    yield make
    for agent in agents:
        if agent.task is not None:
            agent.task.cancel()
            with contextlib.suppress(BaseException):
                await agent.task


async def eventually(predicate: Any, timeout: float = 5.0, interval: float = 0.02) -> None:
    """Wait until ``predicate()`` is true; fail with its last value otherwise."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(interval)


def expected_service_data(schedule: KeySchedule, metadata: Metadata) -> bytes:
    """RPI || AEM the schedule's latest broadcast must have put on air, from its TEK."""
    on_air = [t for t in schedule.teks if t.max_broadcast_interval is not None]
    assert on_air, "nothing was broadcast yet"
    tek = max(on_air, key=lambda t: t.max_broadcast_interval or 0)
    assert tek.max_broadcast_interval is not None
    rpi = crypto.rpi(crypto.derive_rpik(tek.key_data), tek.max_broadcast_interval)
    return rpi + crypto.encrypt_aem(crypto.derive_aemk(tek.key_data), rpi, bytes(metadata))
