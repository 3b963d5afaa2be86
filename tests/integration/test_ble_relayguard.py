"""The relay guard on the real scanner (bleak over D-Bus) against the fake bluetoothd.

Relayed beacons do what no real device does (one RPI from two addresses, one address with
two RPIs, one RPI with two AEMs, one RPI on air too long); honest beacons rotate address
and RPI together. Each signal must flag the relayed beacon's sightings and never an
honest one. The guard's thresholds are shortened for the test (as ``FAST`` shortens the
radio's), the logic is the production one. Everything waits for events, not for time.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from dbus_fast import Variant

from agent.clock import SystemClock
from agent.constants import EN_SERVICE_UUID
from agent.lab.sim import FakeBluez
from agent.relayguard import GuardSettings, Reason, RelayGuard
from tests.integration.conftest import Agent, eventually

AEM = b"\x40\x08\x00\x00"
TIMEOUT = 20.0


def _beacon(fake: FakeBluez, beacon_id: str, address: str, rpi: bytes, aem: bytes = AEM) -> None:
    fake.add_beacon(
        beacon_id,
        rssi=-60,
        address=address,
        ServiceUUIDs=Variant("as", [EN_SERVICE_UUID]),
        ServiceData=Variant("a{sv}", {EN_SERVICE_UUID: Variant("ay", rpi + aem)}),
    )


def _agent(make_agent: Any, **settings: Any) -> Agent:
    agent: Agent = make_agent("hci1")
    guard = RelayGuard(SystemClock(), GuardSettings(**settings))
    agent.radio.scanner.relay_guard = guard
    return agent


def _masks(agent: Agent, rpi: bytes) -> list[int]:
    return [s.relay for s in agent.sightings() if s.rpi == rpi]


def _heard(agent: Agent, rpi: bytes, n: int = 3) -> bool:
    return len(_masks(agent, rpi)) >= n


def _flagged(agent: Agent, rpi: bytes, reason: Reason) -> bool:
    return any(m & reason for m in _masks(agent, rpi))


async def test_honest_beacons_rotating_address_and_rpi_together_are_never_flagged(
    fake: FakeBluez, make_agent: Any
) -> None:
    agent = _agent(make_agent, hold_seconds=0.5)
    seen: list[bytes] = []
    for n in range(4):  # two phones, each rotating its address and RPI together
        current = [os.urandom(16), os.urandom(16)]
        for phone, rpi in enumerate(current):
            fake.remove_beacon(f"phone{phone}")
            _beacon(fake, f"phone{phone}", f"0{phone}:00:00:00:00:{n:02X}", rpi)
        await eventually(lambda c=current: all(_heard(agent, r) for r in c), TIMEOUT)
        seen += current
    sightings = [s for s in agent.sightings() if s.rpi in seen]
    assert len(sightings) >= 24
    assert all(s.relay == 0 for s in sightings)


async def test_one_rpi_from_a_second_address_at_once_is_flagged(
    fake: FakeBluez, make_agent: Any
) -> None:
    agent = _agent(make_agent)
    victim, bystander = os.urandom(16), os.urandom(16)
    _beacon(fake, "victim", "01:11:11:11:11:11", victim)
    _beacon(fake, "bystander", "02:22:22:22:22:22", bystander)
    await eventually(lambda: _heard(agent, victim) and _heard(agent, bystander), TIMEOUT)
    assert not any(_masks(agent, victim))
    _beacon(fake, "relay", "03:33:33:33:33:33", victim)  # the relay's own adapter
    await eventually(lambda: _flagged(agent, victim, Reason.MULTI_ADDRESS), TIMEOUT)
    assert not any(_masks(agent, bystander))
    assert agent.radio.status()["relay_guard"]["signals"]["multi_address"] == 1
    assert agent.radio.scanner.counters.relay_flagged >= 1


async def test_one_address_sending_two_rpis_at_once_is_flagged(
    fake: FakeBluez, make_agent: Any
) -> None:
    agent = _agent(make_agent)
    first, second, bystander = os.urandom(16), os.urandom(16), os.urandom(16)
    _beacon(fake, "bystander", "02:22:22:22:22:22", bystander)
    _beacon(fake, "relay-a", "03:33:33:33:33:33", first)
    _beacon(fake, "relay-b", "03:33:33:33:33:33", second)  # one adapter, two relayed RPIs
    await eventually(
        lambda: (
            _flagged(agent, first, Reason.MULTI_RPI) and _flagged(agent, second, Reason.MULTI_RPI)
        ),
        TIMEOUT,
    )
    await eventually(lambda: _heard(agent, bystander), TIMEOUT)
    assert not any(_masks(agent, bystander))


async def test_one_rpi_with_a_second_aem_is_flagged(fake: FakeBluez, make_agent: Any) -> None:
    agent = _agent(make_agent)
    rpi, bystander = os.urandom(16), os.urandom(16)
    _beacon(fake, "phone", "01:11:11:11:11:11", rpi)
    _beacon(fake, "bystander", "02:22:22:22:22:22", bystander)
    await eventually(lambda: _heard(agent, rpi), TIMEOUT)
    fake.remove_beacon("phone")
    _beacon(fake, "phone", "01:11:11:11:11:11", rpi, aem=b"\x40\x14\x00\x00")  # forged TX power
    await eventually(lambda: _flagged(agent, rpi, Reason.AEM_CHANGED), TIMEOUT)
    await eventually(lambda: _heard(agent, bystander), TIMEOUT)
    assert not any(_masks(agent, bystander))


async def test_one_rpi_on_air_too_long_is_flagged(fake: FakeBluez, make_agent: Any) -> None:
    agent = _agent(make_agent, overlong_seconds=1.0)
    stuck = os.urandom(16)
    _beacon(fake, "replay", "03:33:33:33:33:33", stuck)
    await eventually(lambda: _flagged(agent, stuck, Reason.OVERLONG), TIMEOUT)
    first = agent.sightings()[0]
    assert first.relay == 0  # the first second of an RPI is nothing unusual


async def test_a_phone_stack_restart_mid_interval_is_flagged_a_known_false_positive(
    fake: FakeBluez, make_agent: Any
) -> None:
    """Same RPI, new address, the old one silent, both held beyond ``hold_seconds``: the
    guard cannot tell this from a replay by another transmitter (docs/matching.md)."""
    agent = _agent(make_agent, hold_seconds=0.5)
    rpi = os.urandom(16)
    _beacon(fake, "phone", "01:11:11:11:11:11", rpi)
    await eventually(lambda: _span(agent, rpi) >= 0.6, TIMEOUT)
    fake.remove_beacon("phone")  # bluetoothd restarts with a fresh address
    _beacon(fake, "phone", "01:44:44:44:44:44", rpi)
    await eventually(lambda: _flagged(agent, rpi, Reason.MULTI_ADDRESS), TIMEOUT)


def _span(agent: Agent, rpi: bytes) -> float:
    times = [s.time for s in agent.sightings() if s.rpi == rpi]
    return max(times) - min(times) if times else 0.0


async def test_the_guard_keeps_no_address_or_identifier(fake: FakeBluez, make_agent: Any) -> None:
    agent = _agent(make_agent)
    rpi = os.urandom(16)
    _beacon(fake, "phone", "01:55:55:55:55:55", rpi)
    await eventually(lambda: _heard(agent, rpi), TIMEOUT)
    guard = agent.radio.scanner.relay_guard
    await asyncio.sleep(0)
    keys = [*guard._rpis.current, *guard._addresses.current]
    assert keys and all(len(k) == 16 for k in keys)
    assert rpi not in keys and all(b"01:55" not in k for k in keys)
