"""Shared by the fault scripts and tests: the simulated air and ``contact-agent run``.

- :func:`simulated_air`: a private dbus-daemon standing in for the system bus and the fake
  bluetoothd (:class:`agent.lab.sim.FakeBluez`) with one adapter, ``hci0``, on it.
- :class:`DaemonProcess`: ``python -m agent run`` as a child process on that bus, with
  its own data directory, config file, sd_notify socket and log file; READY detection,
  control-socket requests, kill -9, SIGTERM, resident memory.
- :func:`en_beacon`: an outside phone advertising EN service data.

No root and no Bluetooth hardware are needed; nothing here talks to the network.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from dbus_fast import Variant

from agent.constants import EN_SERVICE_UUID
from agent.control import client_socket_paths, request
from agent.export.writer import generate_signing_key, public_key_pem
from agent.lab.sim import FakeBluez, PrivateBus

T = TypeVar("T")

SYSTEMD_VARIABLES = ("INVOCATION_ID", "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


def short_dir(prefix: str = "ca-") -> Path:
    """A directory under /tmp: Unix socket paths must stay under 108 bytes."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


@contextlib.asynccontextmanager
async def simulated_air(
    *, tick: float = 0.05, stale_timeout: float = 2.0, adapters: tuple[str, ...] = ("hci0",)
) -> AsyncIterator[tuple[PrivateBus, FakeBluez]]:
    """A private system bus with the fake bluetoothd serving ``adapters``."""
    with PrivateBus() as bus:
        fake = FakeBluez(
            list(adapters), tick=tick, stale_timeout=stale_timeout, bus_address=bus.address
        )
        await fake.start()
        try:
            yield bus, fake
        finally:
            await fake.stop()


def widen_send_buffer(fake: FakeBluez, size: int = 4 << 20) -> None:
    """Give the fake's bus connection a larger socket send buffer.

    At thousands of reports a second the fake's bursts can fill the default 208 kB
    buffer while dbus-daemon is busy, and dbus-fast (5.2) then drops the connection on
    the EAGAIN instead of waiting; real bluetoothd is C and has no such limit. The
    kernel caps ``size`` at ``net.core.wmem_max``.
    """
    sock = getattr(getattr(fake, "_bus", None), "_sock", None)
    if isinstance(sock, socket.socket):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)


def en_beacon(fake: FakeBluez, beacon_id: str, payload: bytes, rssi: int = -60) -> None:
    """An outside phone advertising ``payload`` (RPI || AEM) that every adapter hears."""
    fake.add_beacon(
        beacon_id,
        rssi=rssi,
        ServiceUUIDs=Variant("as", [EN_SERVICE_UUID]),
        ServiceData=Variant("a{sv}", {EN_SERVICE_UUID: Variant("ay", payload)}),
    )


def radio_config(extra: str = "", *, scan: str = "continuous") -> str:
    """Config TOML: hci0, a trusted clock (tests), no desktop notifications."""
    radio = "[radio]\nadapter = 'hci0'\n"
    if scan == "duty":
        radio += "scan_mode = 'duty'\nduty_scan_seconds = 0.4\nduty_period_seconds = 1.0\n"
    return radio + "[clock]\nrequire_sync = false\n[notify]\ndesktop = false\n" + extra


def local_keys(base: Path) -> str:
    """Config TOML ``[keys]``: an empty local key directory and a pinned public key, so
    ``fetch`` runs a cycle (and writes every sighting heard before it)."""
    keys = base / "keys"
    keys.mkdir(exist_ok=True)
    (base / "ha.pem").write_bytes(public_key_pem(generate_signing_key()))
    return (
        f"[keys]\nsources = [{{ kind = 'dir', path = '{keys}' }}]\n"
        "public_keys = [{ id = '310', version = 'v1', pem_file = 'ha.pem' }]\n"
        "fetch_interval_hours = 24\n"
    )


class DaemonProcess:
    """``python -m agent run`` on the simulated air (one process at a time)."""

    def __init__(self, base: Path, bus_address: str, config: str) -> None:
        self.base = base
        self.data = base / "data"
        self.config_path = base / "config.toml"
        self.config_path.write_text(config, encoding="utf-8")
        self.log = base / "daemon.log"
        env = {k: v for k, v in os.environ.items() if k not in SYSTEMD_VARIABLES}
        env.update(
            DBUS_SYSTEM_BUS_ADDRESS=bus_address,
            DBUS_SESSION_BUS_ADDRESS="",
            CONTACT_AGENT_DATA_DIR=str(self.data),
            CONTACT_AGENT_CONFIG=str(self.config_path),
            CONTACT_AGENT_SYNC_MARKER=str(base / "no-sync-marker"),
            LANG="C.UTF-8",
        )
        self.notify_path = base / "notify"
        self._notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._notify.bind(str(self.notify_path))
        self._notify.setblocking(False)
        env["NOTIFY_SOCKET"] = str(self.notify_path)
        self.env = env
        self.proc: asyncio.subprocess.Process | None = None
        self.messages: list[str] = []
        self.started_at = 0.0
        self._reader_added = False

    # ---- the process ---------------------------------------------------------------------
    async def start(
        self, *args: str, preexec: Callable[[], None] | None = None, debug: bool = False
    ) -> None:
        """Start ``run ARGS`` (``--debug run`` with ``debug``); ``preexec`` runs in the
        child before exec (limits)."""
        self.drain()
        self.messages.clear()
        with self.log.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "agent",
                *(["--debug"] if debug else []),
                "run",
                *args,
                env=self.env,
                stderr=log,
                preexec_fn=preexec,
            )
        self.started_at = time.monotonic()
        if not self._reader_added:  # read sd_notify messages as they come, like systemd
            asyncio.get_running_loop().add_reader(self._notify.fileno(), self.drain)
            self._reader_added = True

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def kill9(self) -> int | None:
        """SIGKILL; returns the exit status it had already ended with (None: killed)."""
        assert self.proc is not None
        ended = self.proc.returncode
        if ended is None:
            self.proc.kill()
        await self.proc.wait()
        return ended

    async def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait; the exit status."""
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.proc.wait(), timeout)

    def close(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
        if self._reader_added:
            with contextlib.suppress(RuntimeError, ValueError):
                asyncio.get_running_loop().remove_reader(self._notify.fileno())
        self._notify.close()

    # ---- what it says --------------------------------------------------------------------
    def drain(self) -> list[str]:
        """sd_notify messages received so far."""
        with contextlib.suppress(BlockingIOError):
            while True:
                self.messages.append(self._notify.recv(4096).decode())
        return self.messages

    def is_ready(self) -> bool:
        return any("READY=1" in m for m in self.drain())

    async def wait_ready(self, timeout: float = 30.0) -> float:
        """Seconds from start to READY=1; raises if the daemon ended or took too long."""
        deadline = time.monotonic() + timeout
        while not self.is_ready():
            if not self.running:
                raise RuntimeError(f"daemon exited ({self.proc and self.proc.returncode})")
            if time.monotonic() > deadline:
                raise TimeoutError(f"no READY=1 within {timeout} s")
            await asyncio.sleep(0.02)
        return time.monotonic() - self.started_at

    async def control(self, cmd: str, timeout: float = 30.0, **args: Any) -> dict[str, Any]:
        paths = client_socket_paths(self.data, {})
        return await asyncio.to_thread(request, paths, cmd, timeout=timeout, **args)

    async def cli(self, *args: str, timeout: float = 60.0) -> tuple[int, str, str]:
        """Run ``python -m agent ARGS`` with the daemon's environment."""
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "agent",
            *args,
            env=self.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
        assert proc.returncode is not None
        return proc.returncode, out.decode(), err.decode()

    def rss_bytes(self) -> int:
        """Resident memory of the daemon now (VmRSS), 0 when it is not running."""
        if not self.running:
            return 0
        return read_rss(self.pid)


def read_rss(pid: int) -> int:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def add_output_arguments(parser: argparse.ArgumentParser) -> None:
    """``--dir`` (keep the work there) and ``--json`` of every fault script."""
    parser.add_argument("--dir", type=Path, default=None, help="work here (kept afterwards)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")


def run_in(directory: Path | None, prefix: str, work: Callable[[Path], Awaitable[T]]) -> T:
    """``asyncio.run(work(base))`` in ``directory`` or a temporary one (removed after)."""
    base = directory or short_dir(prefix)
    base.mkdir(parents=True, exist_ok=True)
    try:
        return asyncio.run(work(base))
    finally:
        if directory is None:
            shutil.rmtree(base, ignore_errors=True)


def print_figures(title: str, figures: Mapping[str, object], as_json: bool) -> None:
    if as_json:
        print(json.dumps(figures, indent=2))
        return
    print(title)
    for name, value in figures.items():
        print(f"  {name:26} {value}")


def files_under(root: Path) -> Mapping[Path, bytes]:
    """Every regular file under ``root`` with its raw bytes (sockets, fifos skipped)."""
    found: dict[Path, bytes] = {}
    for path in sorted(root.rglob("*")):
        with contextlib.suppress(OSError):
            if path.is_file() and not path.is_symlink():
                found[path] = path.read_bytes()
    return found


def identifier_hits(root: Path, needles: list[bytes]) -> list[tuple[str, int, str]]:
    """(file, needle index, form) of every needle in any file under ``root``.

    A needle counts as found in raw bytes or as lower- or upper-case hex text.
    """
    hits = []
    files = files_under(root)
    for index, needle in enumerate(needles):
        forms = {"raw": needle, "hex": needle.hex().encode(), "HEX": needle.hex().upper().encode()}
        for path, data in files.items():
            for form, pattern in forms.items():
                if pattern in data:
                    hits.append((str(path.relative_to(root)), index, form))
    return hits
