"""``contact-agent run`` as a subprocess against the fake bluetoothd, a key server on
127.0.0.1 and a fake org.freedesktop.Notifications on a private session bus.

One scenario test walks the whole acceptance list (READY, status, a matching export ->
exactly one hook call and one desktop notification, disable -> off air within 2 s,
SIGTERM flushes, no identifier in the log); two more cover the untrusted clock and
D-Bus AccessDenied (exit 78).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from dbus_fast import Variant

from agent import crypto
from agent.clock import en_interval_number, rolling_start_interval_number
from agent.constants import EN_SERVICE_UUID
from agent.control import client_socket_paths, request
from agent.export.writer import generate_signing_key, public_key_pem, write_export
from agent.keyschedule import OwnTek
from agent.lab.sim import FakeBluez, PrivateBus
from agent.models import ReportType, Sighting, TemporaryExposureKey
from agent.payload import Metadata
from agent.store import Store
from tests.daemon.buses import FakeNotifications, serve
from tests.daemon.conftest import require_dbus_daemon

pytestmark = [pytest.mark.integration, pytest.mark.slow]

HOOK = """\
import sys
data = sys.stdin.read()
with open(sys.argv[1], "a", encoding="utf-8") as out:
    out.write(data.strip() + "\\n")
"""


@dataclass
class Beacon:
    """A phone near the device: a TEK and what it puts on air now."""

    tek: bytes = field(default_factory=lambda: os.urandom(16))
    tx_power: int = -8

    def payload(self, wall: float) -> bytes:
        rpi = crypto.rpi(crypto.derive_rpik(self.tek), en_interval_number(wall))
        aem = crypto.encrypt_aem(crypto.derive_aemk(self.tek), rpi, bytes(Metadata(self.tx_power)))
        return rpi + aem

    def sighting(self, wall: float, rssi: int = -60) -> Sighting:
        payload = self.payload(wall)
        return Sighting(wall, payload[:16], payload[16:], rssi)

    def diagnosis_key(self, wall: float) -> TemporaryExposureKey:
        """Valid from a little before ``wall`` for 24 h (not midnight-aligned: the test
        must not depend on the time of day)."""
        start = en_interval_number(wall) - 10
        return TemporaryExposureKey(self.tek, start, report_type=ReportType.CONFIRMED_TEST)


class KeyServer:
    """index.txt + exports on 127.0.0.1 (aiohttp adds the Date header the agent checks)."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def _index(self, request: web.Request) -> web.Response:
        return web.Response(text="".join(f"{name}\n" for name in self.files))

    async def _file(self, request: web.Request) -> web.Response:
        body = self.files.get(request.match_info["name"])
        if body is None:
            raise web.HTTPNotFound()
        return web.Response(body=body, content_type="application/zip")

    async def start(self) -> KeyServer:
        app = web.Application()
        app.router.add_get("/exp/index.txt", self._index)
        app.router.add_get("/exp/{name}", self._file)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/exp/index.txt"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


class Daemon:
    """One ``contact-agent run`` process and the helpers to talk to it."""

    def __init__(self, base: Path, env: dict[str, str]) -> None:
        self.base = base
        self.env = env
        self.data = Path(env["CONTACT_AGENT_DATA_DIR"])
        self.log = base / "daemon.log"
        self.notify_path = base / "notify"
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(str(self.notify_path))
        self.notify.setblocking(False)
        self.env["NOTIFY_SOCKET"] = str(self.notify_path)
        self.messages: list[str] = []
        self.proc: asyncio.subprocess.Process | None = None

    async def cli(self, *args: str) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "agent",
            *args,
            env=self.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode is not None
        return proc.returncode, out.decode(), err.decode()

    async def start(self) -> None:
        with self.log.open("wb") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "agent", "run", env=self.env, stderr=log
            )

    def drain(self) -> list[str]:
        with contextlib.suppress(BlockingIOError):
            while True:
                self.messages.append(self.notify.recv(4096).decode())
        return self.messages

    async def wait_for(self, predicate: Any, timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = await predicate()
            if value:
                return value
            if self.proc is not None and self.proc.returncode is not None:
                raise AssertionError(f"daemon exited ({self.proc.returncode}) waiting for {what}")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}:\n{self.log.read_text()}")
            await asyncio.sleep(0.1)

    async def ready(self) -> bool:
        return any("READY=1" in m for m in self.drain())

    async def status(self) -> dict[str, Any]:
        return await asyncio.to_thread(request, client_socket_paths(self.data, {}), "status")

    async def control(self, cmd: str) -> dict[str, Any]:
        return await asyncio.to_thread(request, client_socket_paths(self.data, {}), cmd, timeout=60)

    async def stop(self) -> int:
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.proc.wait(), 30)

    def close(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
        self.notify.close()


@pytest.fixture
def buses() -> Iterator[tuple[PrivateBus, PrivateBus]]:
    require_dbus_daemon()
    with PrivateBus() as system, PrivateBus() as session:
        yield system, session


@pytest.fixture
async def fake(buses: tuple[PrivateBus, PrivateBus]) -> AsyncIterator[FakeBluez]:
    """The fake bluetoothd with one adapter, hci0, on the private system bus."""
    bluez = FakeBluez(["hci0"], tick=0.05, stale_timeout=2.0, bus_address=buses[0].address)
    await bluez.start()
    try:
        yield bluez
    finally:
        await bluez.stop()


@contextlib.asynccontextmanager
async def daemon_setup(
    short_dir: Path, system: PrivateBus, session: PrivateBus, config: str
) -> AsyncIterator[Daemon]:
    (short_dir / "config.toml").write_text(config)
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("INVOCATION_ID", "NOTIFY_SOCKET", "WATCHDOG_USEC", "RUNTIME_DIRECTORY")
    }
    env.update(
        DBUS_SYSTEM_BUS_ADDRESS=system.address,
        DBUS_SESSION_BUS_ADDRESS=session.address,
        CONTACT_AGENT_DATA_DIR=str(short_dir / "data"),
        CONTACT_AGENT_CONFIG=str(short_dir / "config.toml"),
        CONTACT_AGENT_SYNC_MARKER=str(short_dir / "no-sync-marker"),
        LANG="C.UTF-8",
    )
    daemon = Daemon(short_dir, env)
    try:
        yield daemon
    finally:
        daemon.close()


def add_phone(fake: FakeBluez, payload: bytes, rssi: int = -60) -> None:
    """A phone advertising ``payload`` (RPI || AEM) that adapter hci0 hears."""
    fake.add_beacon(
        "phone",
        rssi=rssi,
        ServiceUUIDs=Variant("as", [EN_SERVICE_UUID]),
        ServiceData=Variant("a{sv}", {EN_SERVICE_UUID: Variant("ay", payload)}),
    )


def _radio_config(extra: str = "") -> str:
    return (
        "[radio]\nadapter = 'hci0'\nscan_mode = 'duty'\n"
        "duty_scan_seconds = 0.4\nduty_period_seconds = 1.0\n" + extra
    )


@pytest.mark.slow
async def test_daemon_end_to_end(
    short_dir: Path, buses: tuple[PrivateBus, PrivateBus], fake: FakeBluez
) -> None:
    system, session = buses
    beacon = Beacon()
    now = time.time()
    add_phone(fake, beacon.payload(now))
    desktop = FakeNotifications()
    desktop_bus = await serve(
        session.address, "org.freedesktop.Notifications", "/org/freedesktop/Notifications", desktop
    )
    server = await KeyServer().start()
    signing = generate_signing_key()
    (short_dir / "ha.pem").write_bytes(public_key_pem(signing))
    (short_dir / "hook.py").write_text(HOOK)
    hook_out = short_dir / "hook.jsonl"
    metrics_file = short_dir / "metrics" / "contact_agent.prom"
    config = _radio_config() + (
        "[clock]\nrequire_sync = false\n"
        f"[keys]\nsources = [{{ kind = 'index', url = '{server.url}' }}]\n"
        "public_keys = [{ id = '310', version = 'v1', pem_file = 'ha.pem' }]\n"
        "[risk]\nnotify_threshold_minutes = 0\n"
        f"[notify]\nlanguage = 'en'\n"
        f"exec = ['{sys.executable} {short_dir / 'hook.py'} {hook_out}']\n"
        f"[metrics]\ntextfile = '{metrics_file}'\n"
    )
    try:
        async with daemon_setup(short_dir, system, session, config) as daemon:
            code, out, _ = await daemon.cli("enable")
            assert code == 0 and "enabled" in out
            # heard 40 s ago as well: two scan instances (> 25.5 s apart), as a
            # notification needs, without making the test wait half a minute
            async with await Store.open(daemon.data) as store:
                await store.add_sightings([beacon.sighting(now - 40)])
            await daemon.start()
            await daemon.wait_for(daemon.ready, 30, "READY=1")

            # status: advertising and scanning, our advert is on air, the beacon is heard
            code, out, _ = await daemon.cli("status", "--json")
            status = json.loads(out)
            assert code == 0
            assert status["daemon"]["running"] is True
            assert (status["consent"], status["advertising"], status["scanning"]) == (
                "enabled",
                True,
                True,
            )
            assert status["adapter"] == "hci0"
            assert status["current_interval"] == en_interval_number(time.time())
            assert status["clock"]["trust"] == "assumed"
            assert len(fake.advertisements("hci0")) == 1
            code, table, _ = await daemon.cli("status")
            assert "advertising          yes" in table and "consent              enabled" in table

            async def heard_twice() -> bool:
                metrics = (await daemon.status())["metrics"]
                return metrics["adverts_heard_total"] >= 4

            await daemon.wait_for(heard_twice, 20, "the beacon in two scans")

            # a signed export with the beacon's key -> one notification on every channel
            export = write_export(
                [beacon.diagnosis_key(now)],
                signing,
                start_timestamp=int(now) - 86_400,
                end_timestamp=int(now),
            )
            server.files["1.zip"] = export
            result = await daemon.control("fetch")
            assert result["ok"] is True, result
            assert result["matched_keys"] == 1
            assert result["new_windows"] >= 1
            await daemon.wait_for(
                _true_when(lambda: len(desktop.calls) >= 1), 10, "desktop notification"
            )
            again = await daemon.control("fetch")  # same file: skipped, nothing new
            assert again["matched_keys"] == 0
            await asyncio.sleep(0.5)
            hook_lines = hook_out.read_text().splitlines()
            assert len(hook_lines) == 1
            assert len(desktop.calls) == 1
            hook = json.loads(hook_lines[0])
            assert hook["event"] == "exposure" and hook["risk_level"] == "high"
            assert hook["title"] == desktop.calls[0]["summary"] == "Possible exposure"
            status = await daemon.status()
            assert status["risk_level"] == "high"
            assert status["exposures"] >= 1
            assert status["last_fetch"]["ok"] is True

            # consent withdrawn: off air within 2 s; given again: back on air
            # (measured from the daemon's answer: starting the CLI process is not part
            # of the promise, and takes long on a busy machine)
            code, out, _ = await daemon.cli("disable")
            started = time.monotonic()
            assert code == 0 and "applied by the running daemon" in out
            while fake.advertisements("hci0"):
                assert time.monotonic() - started < 2.0, "still advertising 2 s after disable"
                await asyncio.sleep(0.05)
            status = await daemon.status()
            assert (status["advertising"], status["scanning"]) == (False, False)
            code, out, _ = await daemon.cli("enable")
            assert code == 0
            await daemon.wait_for(
                _true_when(lambda: bool(fake.advertisements("hci0"))), 10, "advertising again"
            )

            # SIGTERM: the sightings still in memory reach the database
            # (the flood guard keeps one report per RPI per 2 s: "accepted" are the
            # sightings it handed to the writer)
            async def unflushed() -> dict[str, Any] | None:
                status = await daemon.status()
                accepted = status["ingest"]["accepted"]
                return status if accepted > status["sightings"]["today"] else None

            before = await daemon.wait_for(unflushed, 20, "unflushed sightings")
            heard = before["ingest"]["accepted"]
            assert await daemon.stop() == 0
            assert any(m.startswith("STOPPING=1") for m in daemon.drain())
            async with await Store.open(daemon.data) as store:
                stored = await store.sighting_counts(0)
                own = await store.load_own_teks()
            assert stored >= heard > before["sightings"]["today"]
            code, out, _ = await daemon.cli("status", "--json")
            assert json.loads(out)["daemon"]["running"] is False

            metrics_text = metrics_file.read_text()
            assert "contact_agent_notifications_total 1\n" in metrics_text

            # no TEK, RPI or AEM in the log (INFO and above were captured)
            log = daemon.log.read_text().lower()
            assert "ready" in log
            secrets = _identifiers(own, beacon, now, fake)
            assert len(secrets) > 100
            leaked = [s for s in secrets if s in log]
            assert leaked == []
    finally:
        desktop_bus.disconnect()
        await server.stop()


def _true_when(check: Any) -> Any:
    async def predicate() -> bool:
        return bool(check())

    return predicate


def _identifiers(own: list[OwnTek], beacon: Beacon, now: float, fake: FakeBluez) -> set[str]:
    """Hex of every TEK, RPI and AEM the run involved (own keys, the beacon, the air)."""
    found: set[str] = set()
    metadata = bytes(Metadata(-8))
    keys = [t.key_data for t in own] + [beacon.tek]
    for tek in keys:
        found.add(tek.hex())
        rpik, aemk = crypto.derive_rpik(tek), crypto.derive_aemk(tek)
        start = rolling_start_interval_number(en_interval_number(now))
        for rpi in crypto.rpis(rpik, start):
            found.add(rpi.hex())
            found.add(crypto.encrypt_aem(aemk, rpi, metadata).hex())
    for tx in fake.advertisements():
        for data in tx.advert.service_data.values():
            found.add(bytes(data)[:16].hex())
            found.add(bytes(data)[16:].hex())
    return found


@pytest.mark.slow
async def test_untrusted_clock_scans_only_and_says_why(
    short_dir: Path, buses: tuple[PrivateBus, PrivateBus], fake: FakeBluez
) -> None:
    add_phone(fake, Beacon().payload(time.time()))
    config = _radio_config() + "[clock]\nrequire_sync = true\n"
    async with daemon_setup(short_dir, *buses, config) as daemon:
        await daemon.cli("enable")
        await daemon.start()
        await daemon.wait_for(daemon.ready, 30, "READY=1")
        status = await daemon.wait_for(_scanning(daemon), 10, "scanning with an untrusted clock")
        assert status["clock"]["trust"] == "untrusted"
        assert status["clock"]["reason"] == "system clock not synchronised (NTP)"
        assert status["advertising"] is False
        assert "clock not trusted" in status["advertising_reason"]
        assert fake.advertisements("hci0") == []
        fetch = await daemon.control("fetch")
        assert "clock not trusted" in fetch["skipped"]
        _, table, _ = await daemon.cli("status")
        assert "untrusted (system clock not synchronised (NTP))" in table
        assert "advertising          no (clock not trusted" in table
        ready = next(m for m in daemon.drain() if "READY=1" in m)
        assert "clock not synchronised: scanning only" in ready
        assert fake.advertisements("hci0") == []
        # SIGHUP reloads the config: a device with a trusted RTC may advertise
        (short_dir / "config.toml").write_text(_radio_config() + "[clock]\nrequire_sync = false\n")
        assert daemon.proc is not None
        daemon.proc.send_signal(signal.SIGHUP)
        await daemon.wait_for(
            _true_when(lambda: bool(fake.advertisements("hci0"))),
            10,
            "advertising after reload",
        )
        assert (await daemon.status())["clock"]["trust"] == "assumed"
        assert any("RELOADING=1" in m for m in daemon.drain())
        assert await daemon.stop() == 0


def _scanning(daemon: Daemon) -> Any:
    async def predicate() -> dict[str, Any] | None:
        status = await daemon.status()
        return status if status["scanning"] and status["metrics"]["adverts_heard_total"] else None

    return predicate


@pytest.mark.slow
async def test_access_denied_exits_78_with_a_clear_message(
    short_dir: Path, buses: tuple[PrivateBus, PrivateBus], fake: FakeBluez
) -> None:
    fake.deny_access()
    async with daemon_setup(short_dir, *buses, _radio_config()) as daemon:
        await daemon.cli("enable")
        await daemon.start()
        assert daemon.proc is not None
        code = await asyncio.wait_for(daemon.proc.wait(), 60)
        assert code == 78
        last = daemon.log.read_text().strip().splitlines()[-1]
        assert last.startswith("contact-agent: ")
        assert "bluetooth" in last.lower()
