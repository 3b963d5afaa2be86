"""The demo's world: a private bus, the fake bluetoothd, the key server and real agents.

Everything runs in this process on one accelerated clock, except the dbus-daemon (a
child process) and the notification hooks the agents run. The agents are the real
:class:`~agent.daemon.service.AgentService`: their radios drive bleak and bless over the
private bus against the fake bluetoothd, their stores are SQLite files in their data
directories, and they talk HTTP to the key server on 127.0.0.1. :meth:`DemoWorld.close`
stops all of it (also after a failure) and puts the environment back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.config import load_config
from agent.daemon.service import AgentService
from agent.daemon.supervise import wait_until
from agent.daemon.timebase import AcceleratedClock, ServiceTiming
from agent.lab.demo.geometry import Point, Wall, link
from agent.lab.demo.hook import hook_command, read_notifications
from agent.lab.demo.steps import DemoFailure, Timeline
from agent.lab.keyserver import LocalKeyServer
from agent.lab.sim import FakeBluez, PathLossModel, PrivateBus
from agent.lab.sim.bus import SYSTEM_BUS_ENV

_LOGGER = logging.getLogger(__name__)

API_KEY = "demo-api-key"
NOTIFICATIONS_FILE = "notifications.jsonl"
CONFIG_FILE = "config.toml"
READY_TIMEOUT = 20.0
"""Real seconds for every agent to open its store and find its adapter."""
ON_AIR_TIMEOUT = 15.0
"""Real seconds for every agent to advertise and scan once consent is given."""
STOP_TIMEOUT = 20.0
"""Real seconds an agent gets to stop cleanly before it is cancelled."""
DEMO_TIMING = ServiceTiming(tick=5.0, ready_timeout=READY_TIMEOUT)
"""Production cadences (in agent seconds, so they speed up with the clock), except the
clock watch: every 5 s instead of every second keeps its wake-ups per real second sane."""
_ENV_TO_HIDE = ("CONTACT_AGENT_SOCKET",)
"""A socket named in the environment would send the report's key release elsewhere."""


@dataclass(frozen=True, slots=True)
class WorldSettings:
    """How the world is built."""

    names: tuple[str, ...]
    tick: float = 0.1
    """Real seconds between two advertising reports of the fake bluetoothd."""
    model: PathLossModel = field(default_factory=PathLossModel)
    seed: int = 0
    tx_power_dbm: int = -8


@dataclass
class DemoAgent:
    """One running agent and where its files are."""

    name: str
    adapter: str
    data_dir: Path
    service: AgentService
    task: asyncio.Task[None] | None = None

    @property
    def notifications_path(self) -> Path:
        return self.data_dir / NOTIFICATIONS_FILE

    def notifications(self) -> list[dict[str, Any]]:
        """What the agent's notification hook recorded."""
        return read_notifications(self.notifications_path)


async def _no_ntp() -> tuple[bool, str]:
    """The clock-sync probe of the demo agents (``require_sync = false``: never needed)."""
    return False, "no NTP in the demo"


def agent_config(
    server: LocalKeyServer, public_key: Path, adapter: str, hook: str, tx_power_dbm: int
) -> str:
    """The config file of one demo agent: the key server's snippet plus radio and notify."""
    lines = [
        "# written by `contact-agent demo`",
        "[radio]",
        f'adapter = "{adapter}"',
        f"tx_power_dbm = {tx_power_dbm}",
        "[clock]",
        "require_sync = false  # no NTP in a sandbox",
        "[notify]",
        "desktop = false",
        f"exec = [{json.dumps(hook)}]",
        'language = "en"',
        server.config_toml(public_key),
    ]
    return "\n".join(lines)


class DemoWorld:
    """Build with :meth:`start`; always :meth:`close` (it undoes whatever was started)."""

    def __init__(
        self,
        work_dir: Path,
        settings: WorldSettings,
        clock: AcceleratedClock,
        timeline: Timeline,
    ) -> None:
        self.work_dir = work_dir
        self.settings = settings
        self.clock = clock
        self.timeline = timeline
        self.fake: FakeBluez | None = None
        self.server: LocalKeyServer | None = None
        self.agents: dict[str, DemoAgent] = {}
        self._stack = contextlib.AsyncExitStack()

    @property
    def key_server(self) -> LocalKeyServer:
        if self.server is None:
            raise DemoFailure(self.timeline.current_step or "setup", "no key server")
        return self.server

    def adapter(self, name: str) -> str:
        return f"hci{self.settings.names.index(name)}"

    async def start(self) -> None:
        step = self.timeline.step
        async with step("start a private D-Bus system bus and the fake bluetoothd"):
            address = self._start_bus()
            adapters = [self.adapter(n) for n in self.settings.names]
            fake = FakeBluez(
                adapters,
                clock=self.clock,
                tick=self.settings.tick,
                stale_timeout=max(1.0, 20 * self.settings.tick),
                default_rssi=None,
                model=self.settings.model,
                seed=self.settings.seed,
                bus_address=address,
            )
            await fake.start()
            self._stack.push_async_callback(fake.stop)
            self.fake = fake
            self.timeline.note(f"fake bluetoothd serves {', '.join(adapters)} on {address}")
        async with step("start the local test key server"):
            server = LocalKeyServer(clock=self.clock, api_key=API_KEY, embargo=False)
            url = await server.start()
            self._stack.push_async_callback(server.stop)
            self.server = server
            self.timeline.note(f"key server on {url} (embargo off: published keys go out at once)")
        async with step("start the agents"):
            public_key = server.write_public_key(self.work_dir / "keyserver" / "public-key.pem")
            for name in self.settings.names:
                self.agents[name] = self._start_agent(name, server, public_key)
            await self._wait_ready()
        async with step("give consent (contact-agent enable)"):
            for agent in self.agents.values():
                await agent.service.set_consent(True)
            await self._wait_on_air()

    async def close(self) -> None:
        """Stop the agents, the key server, the fake and the bus; restore the environment."""
        await self._stack.aclose()

    # ---- positions ----------------------------------------------------------------------
    def place(self, positions: dict[str, Point], walls: Sequence[Wall]) -> None:
        """Every pair of agents hears each other by the path-loss model at these places."""
        if self.fake is None:
            return
        names = list(positions)
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                metres, crossed = link(positions[a], positions[b], walls)
                self.fake.set_distance(self.adapter(a), self.adapter(b), metres, crossed)

    # ---- the parts ------------------------------------------------------------------------
    def _start_bus(self) -> str:
        bus = PrivateBus()
        address = bus.start()
        self._stack.callback(bus.stop)
        saved = {key: os.environ.get(key) for key in (SYSTEM_BUS_ENV, *_ENV_TO_HIDE)}
        self._stack.callback(_restore_environ, saved)
        os.environ[SYSTEM_BUS_ENV] = address
        for key in _ENV_TO_HIDE:
            os.environ.pop(key, None)
        return address

    def _start_agent(self, name: str, server: LocalKeyServer, public_key: Path) -> DemoAgent:
        data_dir = self.work_dir / name
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        config_path = data_dir / CONFIG_FILE
        adapter = self.adapter(name)
        hook = hook_command(data_dir / NOTIFICATIONS_FILE)
        text = agent_config(server, public_key, adapter, hook, self.settings.tx_power_dbm)
        config_path.write_text(text + "\n", encoding="utf-8")
        service = AgentService(
            load_config(config_path),
            data_dir,
            config_path=config_path,
            clock=self.clock,
            sleep=self.clock.sleep,
            sync_probe=_no_ntp,
            environ={},
            handle_signals=False,
            timing=DEMO_TIMING,
            name=name,
        )
        agent = DemoAgent(name, adapter, data_dir, service)
        agent.task = asyncio.create_task(service.run(), name=f"demo-agent-{name}")
        self._stack.push_async_callback(_stop_agent, agent)
        return agent

    async def _wait_ready(self) -> None:
        agents = list(self.agents.values())

        def settled() -> bool:
            return all(a.service.ready.is_set() or _ended(a) for a in agents)

        await wait_until(settled, READY_TIMEOUT + 5.0)
        for agent in agents:
            if _ended(agent):
                raise DemoFailure("start the agents", f"{agent.name} stopped: {_end_reason(agent)}")
            if not agent.service.ready.is_set():
                raise DemoFailure("start the agents", f"{agent.name} did not get ready in time")
            if agent.service.degraded:
                raise DemoFailure("start the agents", f"{agent.name}: {agent.service.degraded}")
        self.timeline.note(
            "agents running: "
            + ", ".join(f"{a.name} on {a.adapter} (data in {a.data_dir})" for a in agents)
        )

    async def _wait_on_air(self) -> None:
        agents = list(self.agents.values())

        def on_air(agent: DemoAgent) -> bool:
            status = agent.service.radio_status()
            return bool(status.get("advertising") and status.get("scanning"))

        if not await wait_until(
            lambda: all(on_air(a) or _ended(a) for a in agents), ON_AIR_TIMEOUT
        ):
            late = [a.name for a in agents if not on_air(a)]
            raise DemoFailure(
                "give consent (contact-agent enable)",
                f"{', '.join(late)} did not start advertising and scanning within "
                f"{ON_AIR_TIMEOUT:.0f} s",
            )
        for agent in agents:
            if _ended(agent):
                raise DemoFailure(
                    "give consent (contact-agent enable)",
                    f"{agent.name} stopped: {_end_reason(agent)}",
                )
        self.timeline.note("consent given: every agent advertises and scans")

    def check_running(self) -> None:
        """Raise :class:`DemoFailure` when an agent's daemon has stopped by itself."""
        for agent in self.agents.values():
            if _ended(agent):
                raise DemoFailure(
                    self.timeline.current_step or "run",
                    f"{agent.name} stopped: {_end_reason(agent)}",
                )


def _ended(agent: DemoAgent) -> bool:
    return agent.task is not None and agent.task.done()


def _end_reason(agent: DemoAgent) -> str:
    task = agent.task
    if task is None or not task.done():
        return "still running"
    if task.cancelled():
        return "cancelled"
    exc = task.exception()
    if exc is None:
        return "its daemon ended"
    return str(exc) or type(exc).__name__


async def _stop_agent(agent: DemoAgent) -> None:
    task = agent.task
    if task is None:
        return
    agent.service.stop()
    done, _ = await asyncio.wait({task}, timeout=STOP_TIMEOUT)
    if not done:
        _LOGGER.warning("%s did not stop within %.0f s; cancelling it", agent.name, STOP_TIMEOUT)
        task.cancel()
        await asyncio.wait({task})
    if not task.cancelled() and task.exception() is not None:
        _LOGGER.warning("%s ended with an error: %s", agent.name, task.exception())


def _restore_environ(saved: dict[str, str | None]) -> None:
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
