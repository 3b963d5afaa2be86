"""The daemon in-process: real store, real control socket, a fake radio port."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from agent.clock import SystemClock, en_interval_number
from agent.config import ClockConfig, Config, KeysConfig, KeySource, load_config
from agent.control import RELEASE_COMMAND, ControlError, daemon_socket_path, request
from agent.daemon.offline import set_consent_offline
from agent.daemon.service import AgentService, ServiceTiming
from agent.daemon.timebase import AcceleratedClock
from agent.errors import AgentError, BluetoothAccessDeniedError, BluetoothError
from agent.models import Sighting
from agent.report.release import publishable
from agent.store import Store
from tests.daemon.fakes import RadioFactory, SteppableClock, eventually

FAST = ServiceTiming(
    tick=0.05,
    sync_probe=0.1,
    housekeeping=0.1,
    first_fetch_delay=0.1,
    writer_flush=30.0,
    ready_timeout=2.0,
    heartbeat_max_age=5.0,
)
TRUSTED = Config(clock=ClockConfig(require_sync=False))


class Probe:
    """The system's answer to "is the clock synchronised?", settable by the test."""

    def __init__(self, synchronized: bool) -> None:
        self.synchronized = synchronized
        self.calls = 0

    async def __call__(self) -> tuple[bool, str]:
        self.calls += 1
        return self.synchronized, "timedate1"


@contextlib.asynccontextmanager
async def running(service: AgentService) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(service.run())
    ready = asyncio.create_task(service.ready.wait())
    await asyncio.wait({task, ready}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        ready.cancel()
        task.result()  # raises the startup error
    try:
        yield task
    finally:
        service.stop()
        await asyncio.wait_for(task, 10)


def make(
    data: Path, factory: RadioFactory, config: Config = TRUSTED, **kwargs: Any
) -> AgentService:
    kwargs.setdefault("environ", {})
    return AgentService(
        config,
        data,
        radio_factory=factory,
        timing=kwargs.pop("timing", FAST),
        handle_signals=False,
        **kwargs,
    )


async def ask(data: Path, cmd: str) -> dict[str, Any]:
    return await asyncio.to_thread(request, [daemon_socket_path(data, {})], cmd)


async def test_consent_is_off_until_enabled_and_applies_at_once(short_dir: Path) -> None:
    data = short_dir / "data"
    factory = RadioFactory()
    service = make(data, factory)
    async with running(service):
        radio = factory.last
        assert (radio.scanning_allowed, radio.advertising_allowed) == (False, False)
        status = await ask(data, "status")
        assert status["consent"] == "not given"
        assert "contact-agent enable" in status["advertising_reason"]
        assert status["advertising"] is False and status["scanning"] is False
        assert (await ask(data, "enable"))["consent"] == "enabled"
        assert (radio.scanning_allowed, radio.advertising_allowed) == (True, True)
        await eventually(lambda: bool(radio.payloads))
        started = time.monotonic()  # the promise: off within 2 s of the request
        assert (await ask(data, "disable"))["consent"] == "disabled"
        assert (radio.scanning_allowed, radio.advertising_allowed) == (False, False)
        assert time.monotonic() - started < 2.0
        await eventually(lambda: not radio.payloads)
    # consent survives a restart, and the broadcast key was saved before going on air
    factory2 = RadioFactory()
    async with running(make(data, factory2)):
        assert (await ask(data, "status"))["consent"] == "disabled"
        assert factory2.last.scanning_allowed is False
    async with await Store.open(data) as store:
        teks = await store.load_own_teks()
    assert len(teks) == 1 and teks[0].max_broadcast_interval is not None


async def test_untrusted_clock_scans_but_neither_advertises_nor_matches(short_dir: Path) -> None:
    data = short_dir / "data"
    await set_consent_offline(data, True, SystemClock())
    probe = Probe(synchronized=False)
    factory = RadioFactory()
    config = Config(clock=ClockConfig(require_sync=True))
    async with running(make(data, factory, config, sync_probe=probe)):
        radio = factory.last
        assert radio.scanning_allowed is True
        assert radio.advertising_allowed is False
        status = await ask(data, "status")
        assert status["clock"]["trust"] == "untrusted"
        assert "not synchronised" in status["clock"]["reason"]
        assert "clock not trusted" in status["advertising_reason"]
        fetched = await ask(data, "fetch")
        assert "clock not trusted" in fetched["skipped"]
        probe.synchronized = True
        await eventually(lambda: radio.advertising_allowed)
        status = await ask(data, "status")
        assert status["clock"] == {
            **status["clock"],
            "trust": "synced",
            "trusted": True,
            "source": "timedate1",
        }
        assert status["advertising"] is True


async def test_clock_step_rotates_at_once(short_dir: Path) -> None:
    clock = SteppableClock()
    factory = RadioFactory()
    service = make(short_dir / "data", factory, clock=clock)
    async with running(service):
        clock.step(3 * 3600)
        await eventually(lambda: factory.last.rotations_requested == 1)
        assert service.metrics.get("clock_steps_total") == 1


async def test_the_radio_is_built_once_and_not_restarted_by_the_daemon(short_dir: Path) -> None:
    """The radio restarts its own parts (tests/integration); what ends its run ends the
    daemon, rather than a second restart loop around it."""
    factory = RadioFactory(BluetoothError("Bluetooth: the radio gave up"))
    service = make(short_dir / "data", factory)
    with pytest.raises(BluetoothError, match="gave up") as caught:
        await asyncio.wait_for(service.run(), 10)
    assert caught.value.exit_code == 1  # systemd restarts the service (not exit 78)
    assert len(factory.radios) == 1
    assert service.metrics.get("task_restarts_total") == 0


async def test_access_denied_ends_the_daemon_with_exit_78(short_dir: Path) -> None:
    denied = BluetoothAccessDeniedError("D-Bus refused access to org.bluez (bluetooth group)")
    service = make(short_dir / "data", RadioFactory(denied))
    with pytest.raises(BluetoothAccessDeniedError) as caught:
        await asyncio.wait_for(service.run(), 10)
    assert caught.value.exit_code == 78
    assert not daemon_socket_path(short_dir / "data", {}).exists()


@pytest.mark.slow
async def test_pending_sightings_are_flushed_on_stop(short_dir: Path) -> None:
    data = short_dir / "data"
    await set_consent_offline(data, True, SystemClock())
    factory = RadioFactory()
    service = make(data, factory)  # writer_flush=30 s: nothing is written before the stop
    async with running(service):
        await eventually(lambda: factory.last.heard >= 20)
        status = await ask(data, "status")
        assert status["sightings"]["today"] == 0
    heard = factory.last.heard
    async with await Store.open(data) as store:
        assert await store.sighting_counts(0) == heard


async def test_untrusted_purge_uses_the_persisted_lower_bound(short_dir: Path) -> None:
    data = short_dir / "data"
    now = time.time()
    bound = now - 5 * 86_400  # the last good time we knew: 5 days ago
    async with await Store.open(data) as store:
        await store.set_clock_lower_bound(bound)
        await store.add_sightings(
            [
                Sighting(bound - 20 * 86_400, b"\x01" * 16, bytes(4), -60),  # provably old
                Sighting(bound - 10 * 86_400, b"\x02" * 16, bytes(4), -60),  # maybe not
                Sighting(now - 60, b"\x03" * 16, bytes(4), -60),
            ]
        )
    probe = Probe(synchronized=False)
    service = make(data, RadioFactory(), Config(), sync_probe=probe)
    async with running(service):
        await eventually(lambda: service.metrics.get("purges_total") == 1)
        status = await ask(data, "status")
        assert status["clock"]["trust"] == "untrusted"
        assert status["clock"]["lower_bound"] >= bound
    async with await Store.open(data) as store:
        assert await store.sighting_counts(0) == 2
        assert await store.sighting_counts(bound - 15 * 86_400) == 2
        saved = await store.clock_lower_bound() or 0.0
    assert saved >= bound


@pytest.mark.slow
async def test_watchdog_is_fed_only_while_loops_beat(short_dir: Path) -> None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(short_dir / "notify"))
    sock.setblocking(False)
    environ = {
        "NOTIFY_SOCKET": str(short_dir / "notify"),
        "WATCHDOG_USEC": "200000",
        "WATCHDOG_PID": str(os.getpid()),
    }
    service = make(short_dir / "data", RadioFactory(), environ=environ)
    messages: list[str] = []

    def drain() -> list[str]:
        with contextlib.suppress(BlockingIOError):
            while True:
                messages.append(sock.recv(4096).decode())
        return messages

    try:
        async with running(service):
            await eventually(lambda: any("READY=1" in m for m in drain()))
            await eventually(lambda: sum(m == "WATCHDOG=1" for m in drain()) >= 3)
            service.heartbeats.register("stuck-loop", 0.05)
            await asyncio.sleep(0.2)
            drain()
            before = messages.count("WATCHDOG=1")
            await asyncio.sleep(0.5)
            assert messages.count("WATCHDOG=1") == before  # starved: systemd would restart
            service.heartbeats.unregister("stuck-loop")
            await eventually(lambda: drain().count("WATCHDOG=1") > before)
        drain()
        assert any(m.startswith("STOPPING=1") for m in messages)
        ready = next(m for m in messages if "READY=1" in m)
        assert "STATUS=consent off" in ready
    finally:
        sock.close()


@pytest.mark.slow
async def test_degraded_ready_when_bluez_does_not_answer(short_dir: Path) -> None:
    timing = replace(FAST, ready_timeout=0.3)
    service = make(short_dir / "data", RadioFactory(ready=False), timing=timing)
    async with running(service):
        status = await ask(short_dir / "data", "status")
        assert status["degraded"] == "Bluetooth adapter hci0 not reachable"


async def test_second_daemon_on_the_same_data_dir_is_refused(short_dir: Path) -> None:
    data = short_dir / "data"
    async with running(make(data, RadioFactory())):
        with pytest.raises(AgentError, match="already using"):
            await make(data, RadioFactory()).run()


async def test_reload_applies_a_new_config_and_keeps_the_old_on_error(short_dir: Path) -> None:
    data = short_dir / "data"
    path = short_dir / "config.toml"
    path.write_text("[clock]\nrequire_sync = false\n")
    probe = Probe(synchronized=False)
    service = make(data, RadioFactory(), load_config(path), config_path=path, sync_probe=probe)
    async with running(service):
        assert (await ask(data, "status"))["clock"]["trust"] == "assumed"
        path.write_text("[clock]\nrequire_sync = true\n[notify]\nlanguage = 'kk'\n")
        assert (await ask(data, "reload"))["reloaded"] is True
        status = await ask(data, "status")
        assert status["clock"]["trust"] == "untrusted"
        assert service.config.notify.language == "kk"
        path.write_text("[clock]\nrequire_sync = 'yes'\n")
        with pytest.raises(ControlError, match="require_sync must be bool"):
            await ask(data, "reload")
        assert service.config.clock.require_sync is True
        assert service.config.notify.language == "kk"


@pytest.mark.slow
async def test_two_agents_in_one_process_on_an_accelerated_clock(short_dir: Path) -> None:
    clock = AcceleratedClock(scale=50.0)
    factories = [RadioFactory(), RadioFactory()]
    services = [
        make(short_dir / name, factory, clock=clock, sleep=clock.sleep, name=name)
        for name, factory in zip(("alice", "bob"), factories, strict=True)
    ]
    for service in services:
        await set_consent_offline(service.data_dir, True, clock)
    async with running(services[0]), running(services[1]):
        await asyncio.sleep(0.2)  # 10 s of agent time
        for name, service in zip(("alice", "bob"), services, strict=True):
            status = await ask(service.data_dir, "status")
            assert status["daemon"]["name"] == name
            assert status["advertising"] is True
        # 50 agent seconds per real second, bracketed by real readings on both sides
        # (a busy machine may sleep longer than asked; the ratio still holds).
        real_before = time.monotonic()
        start = clock.wall()
        real_after_start = time.monotonic()
        await asyncio.sleep(0.1)
        real_before_end = time.monotonic()
        agent_seconds = clock.wall() - start
        real_end = time.monotonic()
        assert 50 * (real_before_end - real_after_start) <= agent_seconds
        assert agent_seconds <= 50 * (real_end - real_before)
    payloads = {f.last.payloads[0] for f in factories}
    assert len(payloads) == 2  # each agent its own key


async def test_key_sources_without_a_pinned_key_refuse_to_start(short_dir: Path) -> None:
    config = replace(TRUSTED, keys=KeysConfig(sources=(KeySource(kind="dir", path="/srv"),)))
    service = make(short_dir / "data", RadioFactory(), config)
    with pytest.raises(AgentError, match="public_keys is empty") as caught:
        await service.run()
    assert caught.value.exit_code == 78


async def test_same_day_release_ends_the_key_on_air_and_rotates(short_dir: Path) -> None:
    data = short_dir / "data"
    await set_consent_offline(data, True, SystemClock())
    factory = RadioFactory()
    async with running(make(data, factory)):
        radio = factory.last
        await eventually(lambda: len(radio.payloads) == 1)
        answer = await ask(data, RELEASE_COMMAND)
        assert answer == {"ended": True, "rotated": True}
        assert len(radio.payloads) == 2 and radio.payloads[0] != radio.payloads[1]
        async with await Store.open(data) as store:
            teks = sorted(await store.load_own_teks(), key=lambda t: t.key_data)
        interval = en_interval_number(time.time())
        ended = [t for t in teks if t.end_interval_number == interval + 1]
        assert len(teks) == 2 and len(ended) == 1  # the old key ends now: publishable
        assert [k.key_data for k in publishable(teks, interval)] == [ended[0].key_data]


@pytest.mark.slow
async def test_forget_while_running_turns_the_radio_off_and_deletes_everything(
    short_dir: Path,
) -> None:
    data = short_dir / "data"
    await set_consent_offline(data, True, SystemClock())
    factory = RadioFactory()
    async with running(make(data, factory)):
        first = factory.last
        await eventually(lambda: bool(first.payloads) and first.heard > 5)
        answer = await ask(data, "forget")
        assert answer == {"forgotten": True, "consent": "disabled"}
        assert (first.scanning_allowed, first.advertising_allowed) == (False, False)
        await eventually(lambda: first.restarts == 1)  # started over on an empty schedule
        assert len(factory.radios) == 1 and first.request.schedule.teks == []
        await asyncio.sleep(0.2)
        status = await ask(data, "status")
        assert status["consent"] == "disabled"
        assert status["sightings"] == {"today": 0, "last_14_days": 0}
    async with await Store.open(data) as store:
        assert await store.sighting_counts(0) == 0
        assert await store.load_own_teks() == []
        assert await store.get_state("consent") == "disabled"
